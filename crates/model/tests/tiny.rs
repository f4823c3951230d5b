//! Properties of the BERT definition on tiny random checkpoints built here.

use burn::tensor::Tensor;
use sekator_model::testing::{tiny_config, write_random_model};
use sekator_model::{Cpu, Encoder, NamedTensor, SafetensorsWeights, TokenBatch, UnitMasks};

type B = Cpu;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn hidden_of(enc: &Encoder<B>, texts: &[&str], masks: Option<&UnitMasks<B>>) -> (Vec<f32>, usize) {
    let toks = enc.tokenize(texts, 64).unwrap();
    let batch = TokenBatch::new(&toks.iter().collect::<Vec<_>>(), enc.tokenizer.pad_id);
    let (h, mask) = enc.forward(&batch, masks);
    (
        sekator_model::testing::real_token_states(&h, &mask),
        batch.seq,
    )
}

const TEXTS: [&str; 3] = [
    "привет мир",
    "a much longer english sentence with many words in it",
    "короткий",
];

#[test]
fn padding_does_not_change_real_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Default::default();
    write_random_model::<B>(dir.path(), &tiny_config(2), 7, &dev).unwrap();
    let enc = Encoder::<B>::load(dir.path(), &dev).unwrap();
    let (batched, seq) = hidden_of(&enc, &TEXTS, None);
    let h = enc.hidden_size();
    for (i, t) in TEXTS.iter().enumerate() {
        let (alone, len) = hidden_of(&enc, &[t], None);
        let rows = &batched[i * seq * h..(i * seq + len) * h];
        let d = max_diff(rows, &alone);
        assert!(
            d < 1e-5,
            "text {i}: padded batch differs from single by {d}"
        );
        // and padding really was present for the short texts
        assert!(i == 1 || len < seq);
    }
}

#[test]
fn uneven_model_saves_and_reloads_identically() {
    let dev = Default::default();
    let mut cfg = tiny_config(2);
    cfg.add_pruned_heads(1, &[0, 3]);
    cfg.set_ffn_sizes(vec![64, 16]);
    assert_eq!(cfg.heads_per_layer(), vec![4, 2]);
    let a = tempfile::tempdir().unwrap();
    write_random_model::<B>(a.path(), &cfg, 11, &dev).unwrap();
    let enc = Encoder::<B>::load(a.path(), &dev).unwrap();
    assert_eq!(enc.model.num_heads(), vec![4, 2]);
    assert_eq!(enc.model.ffn_sizes(), vec![64, 16]);
    let b = tempfile::tempdir().unwrap();
    let out = b.path().join("copy");
    enc.save(&out, false).unwrap();
    let again = Encoder::<B>::load(&out, &dev).unwrap();
    assert_eq!(again.config, enc.config);
    let (h1, _) = hidden_of(&enc, &TEXTS, None);
    let (h2, _) = hidden_of(&again, &TEXTS, None);
    assert_eq!(h1, h2, "reloaded model must give bit-identical outputs");
    // tensors themselves are bit-identical
    let wa = SafetensorsWeights::open_dir(a.path()).unwrap();
    let wb = SafetensorsWeights::open_dir(&out).unwrap();
    assert_eq!(wa.names(), wb.names());
    for n in wa.names() {
        assert_eq!(
            wa.read_f32(&n).unwrap(),
            wb.read_f32(&n).unwrap(),
            "tensor {n}"
        );
    }
    // saving over an existing directory needs overwrite
    assert!(enc.save(&out, false).is_err());
}

/// Zeroing head `h` of layer `l` in the mask must equal removing it: both zeroing the matching columns of
/// the output projection and physically slicing the head out of Q/K/V/output give the same hidden states.
#[test]
fn zero_head_mask_equals_removing_the_head() {
    let dev = Default::default();
    let cfg = tiny_config(2);
    let dir = tempfile::tempdir().unwrap();
    write_random_model::<B>(dir.path(), &cfg, 3, &dev).unwrap();
    let enc = Encoder::<B>::load(dir.path(), &dev).unwrap();
    let (layer, head, hd) = (0usize, 1usize, cfg.head_dim());
    let mut hm = vec![vec![1.0f32; 4]; 2];
    hm[layer][head] = 0.0;
    let masks = UnitMasks::<B>::from_values(&hm, &[vec![], vec![]], &dev);
    let (masked, _) = hidden_of(&enc, &TEXTS, Some(&masks));
    let (full, _) = hidden_of(&enc, &TEXTS, None);
    assert!(
        max_diff(&masked, &full) > 1e-3,
        "the mask must change something"
    );

    // Physically remove the head: slice rows of Q/K/V (and biases), columns of the output projection.
    let mut tensors: Vec<NamedTensor> = enc.model.export();
    let keep: Vec<usize> = (0..4 * hd).filter(|i| i / hd != head).collect();
    let p = format!("encoder.layer.{layer}.attention");
    for t in tensors.iter_mut() {
        let is_qkv = ["query", "key", "value"]
            .iter()
            .any(|m| t.name.starts_with(&format!("{p}.self.{m}")));
        if is_qkv && t.name.ends_with(".weight") {
            let cols = t.shape[1];
            t.data = keep
                .iter()
                .flat_map(|&r| t.data[r * cols..(r + 1) * cols].to_vec())
                .collect();
            t.shape[0] = keep.len();
        } else if is_qkv {
            t.data = keep.iter().map(|&r| t.data[r]).collect();
            t.shape[0] = keep.len();
        } else if t.name == format!("{p}.output.dense.weight") {
            let (rows, cols) = (t.shape[0], t.shape[1]);
            t.data = (0..rows)
                .flat_map(|r| keep.iter().map(move |&c| (r, c)))
                .map(|(r, c)| t.data[r * cols + c])
                .collect();
            t.shape[1] = keep.len();
        }
    }
    let mut pcfg = cfg.clone();
    pcfg.add_pruned_heads(layer, &[head]);
    let out = dir.path().join("pruned");
    sekator_model::write_model_dir(&out, &pcfg, &tensors, Some(dir.path()), false).unwrap();
    let pruned = Encoder::<B>::load(&out, &dev).unwrap();
    assert_eq!(pruned.model.num_heads(), vec![3, 4]);
    let (cut, _) = hidden_of(&pruned, &TEXTS, None);
    let d = max_diff(&masked, &cut);
    assert!(d < 1e-5, "masked vs pruned differ by {d}");
}

#[test]
fn ffn_mask_zero_equals_dropping_the_neuron() {
    let dev = Default::default();
    let cfg = tiny_config(1);
    let dir = tempfile::tempdir().unwrap();
    write_random_model::<B>(dir.path(), &cfg, 5, &dev).unwrap();
    let enc = Encoder::<B>::load(dir.path(), &dev).unwrap();
    let mut fm = vec![1.0f32; 64];
    fm[10] = 0.0;
    fm[63] = 0.0;
    let masks = UnitMasks::<B>::from_values(&[vec![]], &[fm], &dev);
    let (masked, _) = hidden_of(&enc, &TEXTS, Some(&masks));
    // Zero the two neurons' columns in the FFN output projection instead.
    let mut tensors = enc.model.export();
    for t in tensors
        .iter_mut()
        .filter(|t| t.name == "encoder.layer.0.output.dense.weight")
    {
        let cols = t.shape[1];
        for r in 0..t.shape[0] {
            t.data[r * cols + 10] = 0.0;
            t.data[r * cols + 63] = 0.0;
        }
    }
    let out = dir.path().join("zeroed");
    sekator_model::write_model_dir(&out, &cfg, &tensors, Some(dir.path()), false).unwrap();
    let zeroed = Encoder::<B>::load(&out, &dev).unwrap();
    let (z, _) = hidden_of(&zeroed, &TEXTS, None);
    assert!(max_diff(&masked, &z) < 1e-5);
}

#[test]
fn embed_keeps_input_order_and_normalizes() {
    let dev = Default::default();
    let dir = tempfile::tempdir().unwrap();
    write_random_model::<B>(dir.path(), &tiny_config(2), 9, &dev).unwrap();
    let enc = Encoder::<B>::load(dir.path(), &dev).unwrap();
    let texts: Vec<String> = ["x", "a longer one here", "", "среднее предложение"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let opts = sekator_model::EmbedOptions {
        pooling: sekator_model::Pooling::Mean,
        normalize: true,
        batch_size: 2,
        max_length: 64,
    };
    let all = enc.embed(&texts, &opts, |_| {}).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let one = enc.embed(std::slice::from_ref(t), &opts, |_| {}).unwrap();
        assert!(max_diff(&all[i], &one[0]) < 1e-5, "row {i} out of order");
        let norm: f32 = all[i].iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    // unused import guard: Tensor is used for type inference in other tests
    let _ = Tensor::<B, 1>::zeros([1], &dev);
}

#[test]
fn batched_word_encodings_equal_one_at_a_time() {
    let dev = Default::default();
    let dir = tempfile::tempdir().unwrap();
    write_random_model::<B>(dir.path(), &tiny_config(2), 11, &dev).unwrap();
    let enc = Encoder::<B>::load(dir.path(), &dev).unwrap();
    let texts: Vec<Vec<&str>> = vec![
        vec!["x"],
        vec!["a", "longer", "one", "here", ",", "with", "more", "words"],
        vec!["среднее", "предложение"],
        vec![
            "cut", "off", "by", "the", "limit", "of", "eight", "tokens", "here", "now",
        ],
    ];
    let many = enc.encode_words_many(&texts, 8, 3).unwrap();
    for (i, words) in texts.iter().enumerate() {
        let one = enc.encode_words(words, 8).unwrap();
        assert_eq!(many[i].word_ids, one.word_ids, "text {i}: token/word map");
        assert!(
            max_diff(&many[i].hidden, &one.hidden) < 1e-5,
            "text {i}: hidden states differ"
        );
        assert_eq!(many[i].word_vectors(words.len()).len(), words.len());
    }
    assert_eq!(many[3].word_ids.len(), 8, "truncated at max_length");
}
