//! Width pruning (plan key `hidden`): the cut model equals the original run with the same residual-stream
//! dimensions masked (LayerNorm statistics over the kept ones, [`sekator_model::masks`]), on tiny models
//! with uneven plans, when re-cut, and on MiniLM; plans that break a shape are refused naming it.

mod common;

use std::path::Path;

use common::*;
use sekator_model::layers::to_vec;
use sekator_model::{BertConfig, Encoder, TokenBatch, UnitMasks};
use sekator_surgery::{run, Plan, PlanSource};

/// `masks_for(cfg, plan)` plus the 0/1 hidden mask over `cfg`'s current dimensions.
fn width_masks(cfg: &BertConfig, plan: &Plan) -> UnitMasks<B> {
    let m: Vec<f32> = cfg
        .kept_hidden()
        .iter()
        .map(|d| if plan.hidden.contains(d) { 0.0 } else { 1.0 })
        .collect();
    masks_for(cfg, plan).with_hidden(sekator_model::layers::tensor1(m, &Default::default()))
}

/// Columns `keep` of rows of width `d` (the masked original's output at the dimensions the cut kept).
fn columns(flat: &[f32], d: usize, keep: &[usize]) -> Vec<f32> {
    flat.chunks(d)
        .flat_map(|row| keep.iter().map(move |&k| row[k]))
        .collect()
}

/// Positions in `cfg`'s current order of the dimensions `plan` keeps.
fn kept_positions(cfg: &BertConfig, plan: &Plan) -> Vec<usize> {
    let kept = cfg.kept_hidden();
    (0..kept.len())
        .filter(|&p| !plan.hidden.contains(&kept[p]))
        .collect()
}

/// Hidden states and pooler output (when there is one) of `TEXTS`.
fn outputs(enc: &Encoder<B>, masks: Option<&UnitMasks<B>>) -> (Vec<f32>, Option<Vec<f32>>) {
    let toks = enc.tokenize(&TEXTS, 64).unwrap();
    let batch = TokenBatch::new(&toks.iter().collect::<Vec<_>>(), enc.tokenizer.pad_id);
    let (h, mask) = enc.forward(&batch, masks);
    let pooled = enc.model.pool(&h).map(|p| {
        let mut v = to_vec(&p);
        if let Some(m) = masks.and_then(|m| m.hidden.as_ref()) {
            let m = to_vec(m);
            v.iter_mut()
                .zip(m.iter().cycle())
                .for_each(|(x, m)| *x *= m);
        }
        v
    });
    (sekator_model::testing::real_token_states(&h, &mask), pooled)
}

fn cut(model: &Path, plan: &Plan, out: &Path) {
    let p = write_plan(out.parent().unwrap(), "width-plan.json", plan);
    let mut o = opts(model, PlanSource::File(p), out);
    o.export.int8 = false;
    run(&o, None).unwrap();
}

/// max |cut - masked original| over the kept dimensions, hidden states and pooler.
fn cut_vs_masked(model: &Path, plan: &Plan, out: &Path) -> f32 {
    let dev = Default::default();
    let orig = Encoder::<B>::load(model, &dev).unwrap();
    let pruned = Encoder::<B>::load(out, &dev).unwrap();
    let keep = kept_positions(&orig.config, plan);
    assert_eq!(pruned.config.hidden_size, keep.len());
    let d = orig.config.hidden_size;
    let (h_ref, p_ref) = outputs(&orig, Some(&width_masks(&orig.config, plan)));
    let (h_cut, p_cut) = outputs(&pruned, None);
    let mut diff = max_diff(&columns(&h_ref, d, &keep), &h_cut);
    if let (Some(a), Some(b)) = (p_ref, p_cut) {
        diff = diff.max(max_diff(&columns(&a, d, &keep), &b));
    }
    // and the cut matters: the unmasked original differs
    let (h_full, _) = outputs(&orig, None);
    assert!(max_diff(&columns(&h_full, d, &keep), &h_cut) > 1e-2);
    diff
}

#[test]
fn uneven_width_heads_and_ffn_equal_the_masked_original() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(3), 31);
    let mut plan =
        plan_from_json(r#"{"heads": {"0": [1, 2], "2": [0]}, "ffn": {"1": [3, 4, 40]}}"#);
    plan.hidden = vec![0, 3, 4, 5, 11, 17, 18, 30, 31]; // 32 -> 23, scattered, both ends
    let out = tmp.path().join("cut");
    cut(&model, &plan, &out);
    let d = cut_vs_masked(&model, &plan, &out);
    println!("tiny width 32 -> 23 + heads + FFN: max |diff| = {d:e}");
    assert!(d <= 1e-5, "{d}");

    let cfg = sekator_model::read_config(&out).unwrap();
    assert_eq!((cfg.hidden_size, cfg.head_dim()), (23, 8));
    assert_eq!(cfg.pruned_hidden, plan.hidden);
    assert_eq!(cfg.heads_per_layer(), vec![2, 4, 3]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        json["model_type"], "sekator_bert",
        "remote code for head_dim"
    );
    assert_eq!(json["head_dim"], 8);
    assert!(
        out.join("onnx/model.onnx").is_file(),
        "ONNX export (self-checked)"
    );
    assert_eq!(Plan::read(&out.join("plan.json")).unwrap(), plan);
}

/// A second cut names original dimensions (some already gone: skipped) and equals the one-shot cut.
#[test]
fn recutting_speaks_original_dimensions() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(2), 32);
    let first = Plan {
        hidden: vec![2, 9, 20],
        ..Plan::default()
    };
    let second = Plan {
        hidden: vec![9, 10, 25, 26],
        ..Plan::default()
    };
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    cut(&model, &first, &a);
    cut(&a, &second, &b);
    let mut both = first.clone();
    both.merge(&second);
    assert_eq!(both.hidden, vec![2, 9, 10, 20, 25, 26]);
    assert_eq!(
        sekator_model::read_config(&b).unwrap().pruned_hidden,
        both.hidden
    );
    let once = tmp.path().join("once");
    cut(&model, &both, &once);
    let dev = Default::default();
    let (x, _) = outputs(&Encoder::<B>::load(&b, &dev).unwrap(), None);
    let (y, _) = outputs(&Encoder::<B>::load(&once, &dev).unwrap(), None);
    assert_eq!(x, y, "two cuts and one cut give the same weights");
    assert!(cut_vs_masked(&model, &both, &once) <= 1e-5);
}

#[test]
fn width_plans_that_break_a_shape_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(1), 33);
    for (hidden, needle) in [
        (
            vec![32],
            "names dimension 32, the model's original width (hidden_size) is 32",
        ),
        (
            (0..31).collect(),
            "leaves the residual stream 1 of 32 dimensions wide",
        ),
    ] {
        let p = write_plan(
            tmp.path(),
            "bad.json",
            &Plan {
                hidden,
                ..Plan::default()
            },
        );
        let out = tmp.path().join("never");
        let err = run(&opts(&model, PlanSource::File(p), &out), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
        assert!(!out.exists());
    }
}

/// MiniLM 384 -> 256 wide (every third dimension gone) with half the FFN of layer 2: exact.
#[test]
fn minilm_width_cut_equals_the_masked_original() {
    let Some(model) = minilm() else {
        eprintln!("skipped: data/models/all-MiniLM-L6-v2 not present");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut plan = Plan {
        hidden: (0..384).filter(|d| d % 3 == 2).collect(),
        ..Plan::default()
    };
    plan.ffn.insert("2".into(), (0..1536).step_by(2).collect());
    let out = tmp.path().join("cut");
    cut(&model, &plan, &out);
    let d = cut_vs_masked(&model, &plan, &out);
    println!("MiniLM width 384 -> 256: max |diff| = {d:e}");
    assert!(d <= 1e-5, "{d}");
}
