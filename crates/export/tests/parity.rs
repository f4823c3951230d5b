//! The exported graphs, run by tract (an independent ONNX runtime), against sekator's burn model on tiny
//! random checkpoints with uneven plans and padded batches.

mod common;

use common::*;
use sekator_export::onnx::{self, OnnxOptions};
use sekator_model::testing::tiny_config;

const LENS: [usize; 3] = [7, 3, 5];

/// f32 export of an uneven model (heads [3, 1, 4], FFN [64, 16, 40], pooler) matches burn on every real
/// token and on the pooler; the int8 export stays close in direction.
#[test]
fn uneven_model_with_pooler() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = uneven_config();
    write_model(dir.path(), &cfg, 5, true);
    let report = onnx::export_dir(dir.path(), &OnnxOptions::default()).unwrap();
    assert!(report.pooler);
    let b = Batch::new(&LENS, cfg.vocab_size);
    let h = cfg.hidden_size;
    let (hidden, pooled) = burn_outputs(dir.path(), &b);
    let pooled = pooled.expect("model has a pooler");

    let outs = tract_outputs(&report.f32.path, &b);
    assert_eq!(outs.len(), 2, "last_hidden_state and pooler_output");
    assert_eq!(outs[0].0, vec![b.batch, b.seq, h]);
    assert_eq!(outs[1].0, vec![b.batch, h]);
    let d_hidden = max_diff_real(&outs[0].1, &hidden, &b, h);
    let d_pool = max_diff(&outs[1].1, &pooled);
    eprintln!("f32 uneven+pooler: max |diff| hidden {d_hidden:e}, pooler {d_pool:e}");
    assert!(d_hidden <= 1e-5, "hidden differs by {d_hidden}");
    assert!(d_pool <= 1e-5, "pooler differs by {d_pool}");

    let int8 = report.int8.as_ref().expect("int8 is on by default");
    let q = tract_outputs(&int8.path, &b);
    let cos_pool = min_row_cosine(&q[1].1, &pooled, h);
    let cos_mean = min_row_cosine(&mean_pool(&q[0].1, &b, h), &mean_pool(&hidden, &b, h), h);
    eprintln!("int8 uneven+pooler: min cosine pooler {cos_pool:.5}, mean-pooled {cos_mean:.5}");
    assert!(cos_pool >= 0.99, "int8 pooler cosine {cos_pool}");
    assert!(cos_mean >= 0.99, "int8 mean-pooled cosine {cos_mean}");
}

/// No pooler (only `last_hidden_state`), and the other activations the config allows.
#[test]
fn no_pooler_tanh_gelu_and_relu() {
    for (act, seed) in [("gelu_new", 8), ("relu", 9)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = tiny_config(2);
        cfg.hidden_act = act.into();
        cfg.add_pruned_heads(0, &[0, 2]);
        cfg.add_pruned_heads(1, &[1, 2, 3]);
        cfg.set_ffn_sizes(vec![24, 64]);
        write_model(dir.path(), &cfg, seed, false);
        let opts = OnnxOptions {
            int8: false,
            overwrite: false,
        };
        let report = onnx::export_dir(dir.path(), &opts).unwrap();
        assert!(!report.pooler && report.int8.is_none());
        assert!(!report.dir.join("model_qint8.onnx").exists());
        let b = Batch::new(&LENS, cfg.vocab_size);
        let (hidden, pooled) = burn_outputs(dir.path(), &b);
        assert!(pooled.is_none());
        let outs = tract_outputs(&report.f32.path, &b);
        assert_eq!(outs.len(), 1, "only last_hidden_state");
        let d = max_diff_real(&outs[0].1, &hidden, &b, cfg.hidden_size);
        eprintln!("f32 {act}, no pooler: max |diff| hidden {d:e}");
        assert!(d <= 1e-5, "{act}: hidden differs by {d}");
    }
}

/// A trimmed vocabulary (`surgery --vocab-from`): 23 word-embedding rows instead of 160, ids up to 22.
#[test]
fn trimmed_vocabulary() {
    use sekator_model::weights::RandomWeights;
    use sekator_model::{write_model_dir, BertModel, Cpu};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny_config(2);
    cfg.vocab_size = 23;
    let model =
        BertModel::<Cpu>::load(&cfg, &mut RandomWeights::new(12), &Default::default()).unwrap();
    write_model_dir(dir.path(), &cfg, &model.export(), None, true).unwrap();
    let opts = OnnxOptions {
        int8: false,
        overwrite: false,
    };
    let report = onnx::export_dir(dir.path(), &opts).unwrap();
    let b = Batch::new(&LENS, cfg.vocab_size);
    assert!(b.ids.iter().any(|&i| i >= 20) && b.ids.iter().all(|&i| i < 23));
    let (hidden, _) = burn_outputs(dir.path(), &b);
    let outs = tract_outputs(&report.f32.path, &b);
    let d = max_diff_real(&outs[0].1, &hidden, &b, cfg.hidden_size);
    eprintln!("f32 trimmed vocabulary (23 rows): max |diff| hidden {d:e}");
    assert!(d <= 1e-5, "hidden differs by {d}");
}

/// A width-pruned model (`surgery` plan `hidden`): residual stream 32 -> 20 wide, heads still 8 wide (so
/// `head_dim` differs from `hidden_size / num_attention_heads`), uneven heads and FFN, pooler.
#[test]
fn width_pruned_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = uneven_config();
    cfg.add_pruned_hidden(&(0..32).filter(|d| d % 3 == 1).collect::<Vec<_>>()[..]);
    cfg.add_pruned_hidden(&[0, 31]);
    assert_eq!((cfg.hidden_size, cfg.head_dim()), (20, 8));
    write_model(dir.path(), &cfg, 13, true);
    let report = onnx::export_dir(dir.path(), &OnnxOptions::default()).unwrap();
    let b = Batch::new(&LENS, cfg.vocab_size);
    let h = cfg.hidden_size;
    let (hidden, pooled) = burn_outputs(dir.path(), &b);
    let outs = tract_outputs(&report.f32.path, &b);
    assert_eq!(outs[0].0, vec![b.batch, b.seq, h]);
    let d_hidden = max_diff_real(&outs[0].1, &hidden, &b, h);
    let d_pool = max_diff(&outs[1].1, &pooled.unwrap());
    eprintln!("f32 width-pruned (hidden 20, heads of 8): max |diff| hidden {d_hidden:e}, pooler {d_pool:e}");
    assert!(d_hidden <= 1e-5 && d_pool <= 1e-5, "{d_hidden} {d_pool}");
}
