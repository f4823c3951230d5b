//! Acceptance 3 (zeroed head ~ 0, dominant head on top), determinism, pruned checkpoints, file round trip.

mod common;

use sekator_importance::{score, Criterion, Normalize, Scores};
use sekator_model::backend::DeviceKind;
use sekator_model::testing::tiny_config;

#[test]
fn zeroed_head_scores_zero_and_dominant_head_scores_top() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::tiny(dir.path(), "base", 2, 21);
    let data = common::write_pairs(dir.path(), "pairs.tsv", &common::pairs(64));

    // Layer 1, head 1: Q/K/V weights and biases zeroed -> its output is 0 whatever its mask.
    let zeroed = dir.path().join("zeroed");
    common::edit_model(&base, &zeroed, |cfg, t| {
        for which in ["query", "key", "value"] {
            common::scale_head(cfg, t, 1, which, 1, 0.0);
        }
    });
    let s = score(&zeroed, &common::opts(&data), DeviceKind::Cpu).unwrap();
    let z = s.heads[1][1];
    assert!(z.abs() < 1e-6, "zeroed head scored {z}");
    let last = *s.ranked_heads().last().unwrap();
    assert_eq!(
        (last.0, last.1),
        (1, 1),
        "zeroed head must rank last: {:?}",
        s.ranked_heads()
    );

    // Layer 0, head 2 dominates: the value projections of the other heads are scaled by 0.02.
    let dominant = dir.path().join("dominant");
    common::edit_model(&base, &dominant, |cfg, t| {
        for h in [0, 1, 3] {
            common::scale_head(cfg, t, 0, "value", h, 0.02);
        }
    });
    let s = score(&dominant, &common::opts(&data), DeviceKind::Cpu).unwrap();
    let top = s.ranked_heads()[0];
    assert_eq!(
        (top.0, top.1),
        (0, 2),
        "dominant head must rank first: {:?}",
        s.ranked_heads()
    );
    assert!(
        top.2 > 0.99,
        "layer-normalised score of a dominant head should be ~1, got {}",
        top.2
    );
    // without normalisation it still beats the rest of its layer by far
    let mut o = common::opts(&data);
    o.normalize = Normalize::None;
    let raw = score(&dominant, &o, DeviceKind::Cpu).unwrap();
    let others = [0, 1, 3]
        .iter()
        .map(|&h| raw.heads[0][h])
        .fold(0.0f32, f32::max);
    assert!(raw.heads[0][2] > 10.0 * others, "raw {:?}", raw.heads[0]);
}

#[test]
fn same_inputs_give_identical_scores_and_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny(dir.path(), "m", 2, 3);
    let data = common::write_pairs(dir.path(), "pairs.tsv", &common::pairs(100));
    let mut o = common::opts(&data);
    o.validate = 5;
    let a = score(&model, &o, DeviceKind::Cpu).unwrap();
    let b = score(&model, &o, DeviceKind::Cpu).unwrap();
    assert_eq!(a.heads, b.heads);
    assert_eq!(a.ffn, b.ffn);
    let (va, vb) = (
        a.meta.validate.as_ref().unwrap(),
        b.meta.validate.as_ref().unwrap(),
    );
    assert_eq!(va.heads, vb.heads);
    assert_eq!(va.heads.len(), 5);
    assert!(va.spearman.is_nan() || va.spearman.abs() <= 1.0);
    assert_eq!(a.meta.samples, 64);
    assert_eq!(a.meta.batches, 4);

    // layer normalisation: every layer's head vector and FFN vector has unit L2 norm
    for row in a.heads.iter().chain(a.ffn.iter()) {
        let n: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "norm {n}");
    }

    let out = dir.path().join("out");
    sekator_importance::scores::write(&a, &out).unwrap();
    for f in [
        "importance.safetensors",
        "importance.json",
        "heads.csv",
        "heads.png",
        "ffn.png",
        "manifest.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let back = Scores::read(&out).unwrap();
    assert_eq!(back, a);
    let csv = std::fs::read_to_string(out.join("heads.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 8);
    assert!(csv.starts_with("layer,head,score\n"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("importance.json")).unwrap())
            .unwrap();
    for k in [
        "checkpoint_hash",
        "data_hash",
        "loss",
        "criterion",
        "normalize",
        "samples",
        "batch_size",
        "max_length",
        "seed",
        "seconds",
        "validate",
    ] {
        assert!(json.get(k).is_some(), "importance.json lacks {k}");
    }
    assert_eq!(
        json["checkpoint_hash"],
        sekator_model::checkpoint_hash(&model).unwrap()
    );
    // the manifest matches what a rerun would expect
    let want = sekator_importance::expected_manifest(&model, &o).unwrap();
    assert!(want.matches(&sekator_pipeline::Manifest::read(&out).unwrap()));

    // a different seed samples different data and gives different scores
    let mut o2 = o.clone();
    o2.seed = 1;
    o2.validate = 0;
    assert_ne!(score(&model, &o2, DeviceKind::Cpu).unwrap().heads, a.heads);
}

#[test]
fn pruned_checkpoint_scores_in_original_head_space() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny_config(2);
    cfg.add_pruned_heads(1, &[0, 3]);
    cfg.set_ffn_sizes(vec![64, 24]);
    let model = common::tiny_model(dir.path(), "pruned", &cfg, 9);
    let data = common::write_pairs(dir.path(), "pairs.tsv", &common::pairs(64));
    let mut o = common::opts(&data);
    o.criterion = Criterion::Fisher;
    o.normalize = Normalize::Global;
    o.validate = 3;
    let s = score(&model, &o, DeviceKind::Cpu).unwrap();
    assert_eq!(
        s.head_present,
        vec![vec![true; 4], vec![false, true, true, false]]
    );
    assert_eq!((s.heads[1][0], s.heads[1][3]), (0.0, 0.0));
    assert!(s.heads[1][1] > 0.0 && s.heads[1][2] > 0.0);
    assert_eq!(s.ffn.iter().map(Vec::len).collect::<Vec<_>>(), vec![64, 24]);
    // global normalisation: all head scores together have unit norm
    let n: f32 = s.heads.iter().flatten().map(|x| x * x).sum::<f32>().sqrt();
    assert!((n - 1.0).abs() < 1e-4);
    for v in &s.meta.validate.as_ref().unwrap().heads {
        assert!(
            s.head_present[v.layer][v.head],
            "validated a pruned head {v:?}"
        );
    }
    let out = dir.path().join("out");
    sekator_importance::scores::write(&s, &out).unwrap();
    assert_eq!(Scores::read(&out).unwrap(), s);
}

#[test]
fn teacher_loss_is_zero_for_the_teacher_itself_and_not_for_a_changed_model() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = common::tiny(dir.path(), "teacher", 2, 4);
    let data = common::write_pairs(dir.path(), "pairs.tsv", &common::pairs(32));
    let mut o = common::opts(&data);
    o.samples = 32;
    o.loss = sekator_importance::LossKind::Teacher;
    o.teacher = Some(teacher.clone());
    // raw scores: normalising would blow f32 rounding noise up to unit norm
    o.normalize = Normalize::None;
    let same = score(&teacher, &o, DeviceKind::Cpu).unwrap();
    assert!(same.meta.mean_loss.abs() < 1e-10, "{}", same.meta.mean_loss);
    let max_abs = |s: &Scores| {
        s.heads
            .iter()
            .flatten()
            .fold(0.0f32, |m, &x| m.max(x.abs()))
    };
    assert!(
        max_abs(&same) < 1e-7,
        "teacher vs itself: {}",
        max_abs(&same)
    );
    let student = dir.path().join("student");
    common::edit_model(&teacher, &student, |cfg, t| {
        common::scale_head(cfg, t, 0, "value", 0, 0.5)
    });
    let s = score(&student, &o, DeviceKind::Cpu).unwrap();
    assert!(s.meta.mean_loss > 0.0);
    assert!(
        max_abs(&s) > 1e3 * max_abs(&same).max(1e-9),
        "changed model {} vs teacher itself {}",
        max_abs(&s),
        max_abs(&same)
    );
}

#[test]
fn spearman_basics() {
    use sekator_importance::spearman;
    assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
    assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    // ties get average ranks: ranks a = [1.5, 1.5, 3], b = [1, 2, 3]
    let r = spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]);
    assert!((r - 0.866_025_403_784).abs() < 1e-9, "{r}");
    assert!(spearman(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
}
