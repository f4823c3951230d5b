//! `--criterion magnitude`: norms checked against the weights, pruned checkpoints, determinism, no data.

mod common;

use sekator_importance::{score, Criterion, ImportanceOptions, Normalize, Scores};
use sekator_model::backend::DeviceKind;
use sekator_model::testing::tiny_config;
use sekator_model::SafetensorsWeights;

/// Magnitude options with raw scores and a pairs file that does not exist (none must be read).
fn opts(dir: &std::path::Path) -> ImportanceOptions {
    ImportanceOptions {
        criterion: Criterion::Magnitude,
        normalize: Normalize::None,
        ..common::opts(&dir.join("no-such-pairs.tsv"))
    }
}

/// Sum of squares of rows `r` (or of columns `r` when `cols`) of tensor `name`, written out here
/// independently of the crate's code.
fn sq(w: &SafetensorsWeights, name: &str, r: std::ops::Range<usize>, cols: bool) -> f64 {
    let (shape, data) = w.read_f32(name).unwrap();
    let width = if shape.len() == 2 { shape[1] } else { 1 };
    let mut s = 0.0f64;
    for (i, &v) in data.iter().enumerate() {
        let (row, col) = (i / width, i % width);
        if r.contains(if cols { &col } else { &row }) {
            s += (v as f64) * (v as f64);
        }
    }
    s
}

/// The expected raw score of head `p` (current index) of layer `l`, with head size `hd`.
fn head_norm(w: &SafetensorsWeights, l: usize, p: usize, hd: usize) -> f64 {
    let r = p * hd..(p + 1) * hd;
    let mut s = 0.0;
    for which in ["query", "key", "value"] {
        for kind in ["weight", "bias"] {
            let name = format!("encoder.layer.{l}.attention.self.{which}.{kind}");
            s += sq(w, &name, r.clone(), false);
        }
    }
    let out = format!("encoder.layer.{l}.attention.output.dense.weight");
    (s + sq(w, &out, r, true)).sqrt()
}

/// The expected raw score of FFN neuron `j` (current index) of layer `l`.
fn ffn_norm(w: &SafetensorsWeights, l: usize, j: usize) -> f64 {
    let p = format!("encoder.layer.{l}");
    (sq(
        w,
        &format!("{p}.intermediate.dense.weight"),
        j..j + 1,
        false,
    ) + sq(w, &format!("{p}.intermediate.dense.bias"), j..j + 1, false)
        + sq(w, &format!("{p}.output.dense.weight"), j..j + 1, true))
    .sqrt()
}

fn close(got: f32, want: f64, what: &str) {
    assert!(
        (got as f64 - want).abs() < 1e-5,
        "{what}: got {got}, want {want}"
    );
}

#[test]
fn raw_magnitudes_equal_weight_norms_and_need_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny(dir.path(), "m", 2, 17);
    let s = score(&model, &opts(dir.path()), DeviceKind::Cpu).unwrap();
    let w = SafetensorsWeights::open_dir(&model).unwrap();
    // the biases are random too, so leaving them out would show
    assert!(sq(&w, "encoder.layer.1.attention.self.key.bias", 0..8, false) > 0.0);
    for l in 0..2 {
        for h in [0, 3] {
            close(s.heads[l][h], head_norm(&w, l, h, 8), &format!("L{l}H{h}"));
        }
        for j in [0, 17, 63] {
            close(s.ffn[l][j], ffn_norm(&w, l, j), &format!("L{l} FFN {j}"));
        }
    }
    assert!(s.heads.iter().flatten().all(|&x| x > 0.0));
    assert_eq!(s.head_present, vec![vec![true; 4]; 2]);
    // nothing was measured: no pairs, no loss, no throughput, no device
    let m = &s.meta;
    assert_eq!((m.samples, m.batches, m.skipped_lines), (0, 0, 0));
    assert_eq!(
        (m.mean_loss, m.grad_seconds, m.pairs_per_s),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(m.pairs_per_s_after_first, None);
    assert_eq!((m.data.as_str(), m.data_hash.as_str()), ("", ""));
    assert_eq!(
        (m.criterion, m.device.as_str()),
        (Criterion::Magnitude, "none")
    );

    // layer normalisation divides each layer's raw vector by its norm
    let mut o = opts(dir.path());
    o.normalize = Normalize::Layer;
    let n = score(&model, &o, DeviceKind::Cpu).unwrap();
    let norm: f32 = s.heads[1].iter().map(|x| x * x).sum::<f32>().sqrt();
    close(
        n.heads[1][2],
        (s.heads[1][2] / norm) as f64,
        "normalised L1H2",
    );
}

#[test]
fn pruned_heads_score_zero_in_original_head_space() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny_config(2);
    cfg.add_pruned_heads(0, &[2]);
    cfg.add_pruned_heads(1, &[0, 3]);
    cfg.set_ffn_sizes(vec![64, 24]);
    let model = common::tiny_model(dir.path(), "pruned", &cfg, 9);
    let s = score(&model, &opts(dir.path()), DeviceKind::Cpu).unwrap();
    assert_eq!(
        s.head_present,
        vec![
            vec![true, true, false, true],
            vec![false, true, true, false]
        ]
    );
    assert_eq!(
        (s.heads[0][2], s.heads[1][0], s.heads[1][3]),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(s.ffn.iter().map(Vec::len).collect::<Vec<_>>(), vec![64, 24]);
    // present heads map to their current rows: original head 3 of layer 0 is row 2, head 2 of layer 1 row 1
    let w = SafetensorsWeights::open_dir(&model).unwrap();
    close(s.heads[0][3], head_norm(&w, 0, 2, 8), "L0H3");
    close(s.heads[1][2], head_norm(&w, 1, 1, 8), "L1H2");
    close(s.ffn[1][23], ffn_norm(&w, 1, 23), "L1 FFN 23");
    let out = dir.path().join("out");
    sekator_importance::scores::write(&s, &out).unwrap();
    assert_eq!(Scores::read(&out).unwrap(), s);
}

#[test]
fn magnitude_is_deterministic_and_its_manifest_is_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny(dir.path(), "m", 2, 5);
    let o = opts(dir.path());
    let a = score(&model, &o, DeviceKind::Cpu).unwrap();
    let b = score(&model, &o, DeviceKind::Cpu).unwrap();
    assert_eq!((&a.heads, &a.ffn), (&b.heads, &b.ffn));

    // the written manifest is what a rerun expects, without a data input; taylor expects another one
    let out = dir.path().join("out");
    sekator_importance::scores::write(&a, &out).unwrap();
    let written = sekator_pipeline::Manifest::read(&out).unwrap();
    let want = sekator_importance::expected_manifest(&model, &o).unwrap();
    assert!(want.matches(&written));
    assert!(!written.inputs.contains_key("data"));
    let data = common::write_pairs(dir.path(), "pairs.tsv", &common::pairs(64));
    let taylor = common::opts(&data);
    let other = sekator_importance::expected_manifest(&model, &taylor).unwrap();
    assert!(!other.matches(&written));
}

#[test]
fn magnitude_validate_reads_data_and_measures_ablations() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny(dir.path(), "m", 2, 3);
    let mut o = opts(dir.path());
    o.validate = 3;
    let e = score(&model, &o, DeviceKind::Cpu).unwrap_err().to_string();
    assert!(e.contains("no-such-pairs.tsv"), "{e}");

    o.data = common::write_pairs(dir.path(), "pairs.tsv", &common::pairs(64));
    let s = score(&model, &o, DeviceKind::Cpu).unwrap();
    let plain = score(&model, &opts(dir.path()), DeviceKind::Cpu).unwrap();
    assert_eq!(
        s.heads, plain.heads,
        "--validate must not change the scores"
    );
    let v = s.meta.validate.as_ref().unwrap();
    assert_eq!(v.heads.len(), 3);
    assert!(v.base_loss > 0.0 && v.heads.iter().any(|h| h.loss_increase != 0.0));
    for h in &v.heads {
        close(s.heads[h.layer][h.head], h.raw_score, "validated raw score");
    }
    // the pairs went to the check only: still no gradient pass
    assert_eq!((s.meta.samples, s.meta.batches), (64, 4));
    assert_eq!((s.meta.mean_loss, s.meta.pairs_per_s), (0.0, 0.0));
    assert!(!s.meta.data_hash.is_empty());
}

#[test]
fn config_key_runs_magnitude_without_the_pairs_file_and_a_rerun_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny(dir.path(), "model", 2, 1);
    let config = dir.path().join("run.toml");
    let text = format!(
        "[run]\nname = \"t\"\nmodel = {model:?}\npairs = {:?}\nruns_dir = {:?}\ndevice = \"cpu\"\n\n\
         [importance]\ncriterion = \"magnitude\"\n",
        dir.path().join("missing.tsv"),
        dir.path().join("runs")
    );
    std::fs::write(&config, text).unwrap();
    let run = || {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_importance"))
            .args(["--quiet", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let (out, err) = (o.stdout, o.stderr);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&err));
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    };
    let (stdout, _) = run();
    assert!(stdout.contains("weight magnitudes"), "{stdout}");
    let s = Scores::read(&dir.path().join("runs/t/importance")).unwrap();
    assert_eq!(s.meta.criterion, Criterion::Magnitude);
    let (_, stderr) = run();
    assert!(stderr.contains("up to date"), "{stderr}");
}
