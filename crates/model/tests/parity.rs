//! Parity with PyTorch/transformers on fixtures written by `scripts/reference/make_model_fixtures.py`.
//!
//! The MiniLM test needs `data/models/all-MiniLM-L6-v2` (`just fetch-model minilm`); it fails, not skips,
//! when the model is missing, so CI cannot pass without running it.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use safetensors::tensor::{Dtype, SafeTensors};
use sekator_model::layers::to_vec;
use sekator_model::{BertModel, Cpu, Encoder, SafetensorsWeights, TokenBatch};

type B = Cpu;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    fn open(name: &str) -> Self {
        Self {
            bytes: std::fs::read(fixtures().join(name)).unwrap(),
        }
    }
    fn get(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).unwrap();
        let data = match t.dtype() {
            Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            Dtype::I64 => t
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            d => panic!("unexpected dtype {d:?}"),
        };
        (t.shape().to_vec(), data)
    }
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}

fn minilm_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").exists(),
        "MiniLM is missing at {}: run `just fetch-model minilm` first",
        dir.display()
    );
    dir
}

#[test]
fn minilm_matches_transformers() {
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("minilm_reference.json")).unwrap(),
    )
    .unwrap();
    let sentences: Vec<String> = meta["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let max_length = meta["max_length"].as_u64().unwrap() as usize;
    let fx = Fixture::open("minilm_reference.safetensors");
    let dev = Default::default();
    let enc = Encoder::<B>::load(&minilm_dir(), &dev).unwrap();

    // Token ids, row by row, up to each sentence's real length.
    let (ishape, ids) = fx.get("input_ids");
    let (_, mask) = fx.get("attention_mask");
    let seq = ishape[1];
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let tokens = enc.tokenize(&refs, max_length).unwrap();
    let mut truncated = 0;
    for (i, t) in tokens.iter().enumerate() {
        let len = mask[i * seq..(i + 1) * seq]
            .iter()
            .filter(|&&m| m > 0.0)
            .count();
        let expected: Vec<u32> = ids[i * seq..i * seq + len]
            .iter()
            .map(|&v| v as u32)
            .collect();
        assert_eq!(t.ids, expected, "token ids of sentence {i}");
        truncated += (len == max_length) as usize;
    }
    assert!(truncated >= 2, "fixtures must exercise truncation");

    // Hidden states at sampled positions, from one padded batch of all 16 sentences.
    let batch = TokenBatch::new(&tokens.iter().collect::<Vec<_>>(), enc.tokenizer.pad_id);
    let (hidden, _) = enc.forward(&batch, None);
    let h = enc.hidden_size();
    let hid = to_vec(&hidden);
    let (_, pos) = fx.get("hidden_positions");
    let (sshape, sample) = fx.get("hidden_sample");
    let k = sshape[1];
    let mut ours = Vec::new();
    for i in 0..sentences.len() {
        for j in 0..k {
            let p = pos[i * k + j] as usize;
            ours.extend_from_slice(&hid[(i * batch.seq + p) * h..(i * batch.seq + p + 1) * h]);
        }
    }
    let d = max_diff(&ours, &sample);
    assert!(d <= 1e-4, "hidden states differ by {d}");
    let (fshape, full0) = fx.get("hidden_full_0");
    let d = max_diff(&hid[..fshape[0] * h], &full0);
    assert!(d <= 1e-4, "hidden state of sentence 0 differs by {d}");

    // Pooled vectors.
    let v = enc.embed_variants(&sentences, max_length, 5).unwrap();
    for (name, got) in [("cls", &v.cls), ("mean", &v.mean), ("pooler", &v.pooler)] {
        let flat: Vec<f32> = got.iter().flatten().copied().collect();
        let d = max_diff(&flat, &fx.get(name).1);
        assert!(d <= 1e-4, "{name} differs by {d}");
    }
}

/// A tiny random transformers `BertModel` with a pooler, and the same after `prune_heads`.
#[test]
fn tiny_hf_models_match_including_pruned_heads() {
    for (dir, reference) in [
        ("tiny_bert", "tiny_bert_reference.safetensors"),
        ("tiny_bert_pruned", "tiny_bert_pruned_reference.safetensors"),
    ] {
        let dir = fixtures().join(dir);
        let cfg = sekator_model::read_config(&dir).unwrap();
        let dev = Default::default();
        let model =
            BertModel::<B>::load(&cfg, &mut SafetensorsWeights::open_dir(&dir).unwrap(), &dev)
                .unwrap();
        let fx = Fixture::open(reference);
        let (shape, ids) = fx.get("input_ids");
        let (_, mask) = fx.get("attention_mask");
        let ids: Vec<i32> = ids.iter().map(|&v| v as i32).collect();
        let maskf: Vec<f32> = mask.iter().map(|&v| v as f32).collect();
        let shape2 = [shape[0], shape[1]];
        let hidden = model.forward(
            Tensor::<B, 2, Int>::from_data(TensorData::new(ids, shape2), &dev),
            Tensor::<B, 2>::from_data(TensorData::new(maskf.clone(), shape2), &dev),
            None,
        );
        let (_, expected) = fx.get("last_hidden_state");
        let got = to_vec(&hidden);
        let h = cfg.hidden_size;
        // Compare real tokens only: padded positions are never used downstream.
        let mut d: f64 = 0.0;
        for (t, m) in maskf.iter().enumerate() {
            if *m > 0.0 {
                d = d.max(max_diff(
                    &got[t * h..(t + 1) * h],
                    &expected[t * h..(t + 1) * h],
                ));
            }
        }
        assert!(d <= 1e-5, "{}: hidden differs by {d}", dir.display());
        let pooled = to_vec(&model.pool(&hidden).expect("fixture has a pooler"));
        let d = max_diff(&pooled, &fx.get("pooler_output").1);
        assert!(d <= 1e-5, "{}: pooler differs by {d}", dir.display());
    }
}
