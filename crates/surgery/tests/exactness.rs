//! Acceptance 1: a pruned checkpoint computes exactly what the original computes with the same heads and
//! FFN neurons masked to zero (max |diff| <= 1e-5), for uneven plans and for re-pruning a pruned checkpoint.

mod common;

use common::*;
use sekator_model::{Encoder, SafetensorsWeights};
use sekator_surgery::{run, Plan, PlanSource};

/// 6 layers of 4 heads, FFN 64: heads kept per layer [4, 1, 3, 1, 4, 2], FFN widths [53, 64, 1, 32, 63, 40].
fn uneven_plan() -> Plan {
    let mut p =
        plan_from_json(r#"{"heads": {"1": [0, 2, 3], "2": [1], "3": [0, 1, 3], "5": [0, 3]}}"#);
    let ffn: [(usize, Vec<usize>); 5] = [
        (0, (0..64).filter(|i| i % 6 == 1).collect()), // 11 scattered neurons
        (2, (0..64).filter(|&i| i != 37).collect()),   // all but one
        (3, (0..64).step_by(2).collect()),             // every other one
        (4, vec![63]),
        (5, (10..34).collect()), // a contiguous block of 24
    ];
    for (l, v) in ffn {
        p.ffn.insert(l.to_string(), v);
    }
    p
}

#[test]
fn uneven_plan_equals_masked_original() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(6), 21);
    let plan = uneven_plan();
    let plan_path = write_plan(tmp.path(), "plan.json", &plan);
    let out = tmp.path().join("pruned");
    let outcome = run(&opts(&model, PlanSource::File(plan_path), &out), None).unwrap();
    assert_eq!(outcome.plan, plan);

    let dev = Default::default();
    let orig = Encoder::<B>::load(&model, &dev).unwrap();
    let pruned = Encoder::<B>::load(&out, &dev).unwrap();
    assert_eq!(pruned.model.num_heads(), vec![4, 1, 3, 1, 4, 2]);
    assert_eq!(pruned.model.ffn_sizes(), vec![53, 64, 1, 32, 63, 40]);
    assert_eq!(
        pruned.config.intermediate_sizes,
        Some(vec![53, 64, 1, 32, 63, 40])
    );
    assert_eq!(pruned.config.pruned_heads, plan.heads);
    assert_eq!(pruned.config.pruned_ffn, plan.ffn);

    let reference = hidden(&orig, Some(&masks_for(&orig.config, &plan)));
    let got = hidden(&pruned, None);
    let d = max_diff(&reference, &got);
    println!("tiny 6-layer uneven plan: max |diff| = {d:e}");
    assert!(
        d <= 1e-5,
        "pruned model differs from the masked original by {d}"
    );
    // and the plan matters: the unmasked original is far from it
    assert!(max_diff(&hidden(&orig, None), &got) > 1e-2);
    // pooler output (LaBSE's embedding) agrees too
    let toks = orig.tokenize(&common::TEXTS, 64).unwrap();
    let batch = sekator_model::TokenBatch::new(&toks.iter().collect::<Vec<_>>(), 0);
    let (h1, _) = orig.forward(&batch, Some(&masks_for(&orig.config, &plan)));
    let (h2, _) = pruned.forward(&batch, None);
    let p1 = sekator_model::layers::to_vec(&orig.model.pool(&h1).unwrap());
    let p2 = sekator_model::layers::to_vec(&pruned.model.pool(&h2).unwrap());
    assert!(max_diff(&p1, &p2) <= 1e-5);
    // tokenizer files came along
    assert!(out.join("vocab.txt").exists() && out.join("tokenizer_config.json").exists());
    for f in ["plan.json", "size.json", "manifest.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert_eq!(Plan::read(&out.join("plan.json")).unwrap(), plan);
}

/// Pruning a pruned checkpoint again: the plan speaks in original indices (some already gone, skipped),
/// the config merges them, and the result equals both the masked original and a one-shot cut.
#[test]
fn repruning_keeps_original_indices() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(3), 5);
    let p1 =
        plan_from_json(r#"{"heads": {"0": [1], "2": [0, 3]}, "ffn": {"1": [0, 5, 9], "2": [63]}}"#);
    let p2 =
        plan_from_json(r#"{"heads": {"0": [1, 2], "1": [3]}, "ffn": {"1": [5, 6, 40], "2": [0]}}"#);
    let once = tmp.path().join("once");
    let twice = tmp.path().join("twice");
    let direct = tmp.path().join("direct");
    run(
        &opts(
            &model,
            PlanSource::File(write_plan(tmp.path(), "p1.json", &p1)),
            &once,
        ),
        None,
    )
    .unwrap();
    let o2 = run(
        &opts(
            &once,
            PlanSource::File(write_plan(tmp.path(), "p2.json", &p2)),
            &twice,
        ),
        None,
    )
    .unwrap();
    // head 1 of layer 0 and neuron 5 of layer 1 were gone already: only the new ones are in this step's plan
    assert_eq!(o2.plan.heads["0"], vec![2]);
    assert_eq!(o2.plan.ffn["1"], vec![6, 40]);

    let mut union = p1.clone();
    union.merge(&p2);
    let dev = Default::default();
    let orig = Encoder::<B>::load(&model, &dev).unwrap();
    let pruned = Encoder::<B>::load(&twice, &dev).unwrap();
    assert_eq!(pruned.config.pruned_heads, union.heads);
    assert_eq!(pruned.config.pruned_ffn, union.ffn);
    assert_eq!(pruned.model.num_heads(), vec![2, 3, 2]);
    assert_eq!(pruned.model.ffn_sizes(), vec![64, 59, 62]);
    assert_eq!(
        pruned.config.kept_ffn(1),
        (0..64)
            .filter(|i| ![0, 5, 6, 9, 40].contains(i))
            .collect::<Vec<_>>()
    );

    let d = max_diff(
        &hidden(&orig, Some(&masks_for(&orig.config, &union))),
        &hidden(&pruned, None),
    );
    println!("re-pruned twice: max |diff| vs masked original = {d:e}");
    assert!(d <= 1e-5, "{d}");

    // The once-pruned model masked with the second plan's units (mapped through its kept lists) agrees too.
    let mid = Encoder::<B>::load(&once, &dev).unwrap();
    let d = max_diff(
        &hidden(&mid, Some(&masks_for(&mid.config, &p2))),
        &hidden(&pruned, None),
    );
    assert!(d <= 1e-5, "{d}");

    // Cutting the union in one go from the original gives bit-identical tensors.
    run(
        &opts(
            &model,
            PlanSource::File(write_plan(tmp.path(), "u.json", &union)),
            &direct,
        ),
        None,
    )
    .unwrap();
    let a = SafetensorsWeights::open_dir(&twice).unwrap();
    let b = SafetensorsWeights::open_dir(&direct).unwrap();
    assert_eq!(a.names(), b.names());
    for n in a.names() {
        assert_eq!(
            a.read_f32(&n).unwrap(),
            b.read_f32(&n).unwrap(),
            "tensor {n}"
        );
    }
}

/// Layer dropping renumbers layers and computes exactly the kept layers of the original, in order.
#[test]
fn keep_layers_runs_the_kept_layers_of_the_original() {
    use burn::tensor::Tensor;
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    let mut cfg = sekator_model::testing::tiny_config(4);
    cfg.add_pruned_heads(2, &[0]);
    cfg.set_ffn_sizes(vec![64, 48, 40, 64]);
    tiny_model(&model, &cfg, 9);
    let out = tmp.path().join("dropped");
    let mut o = opts(&model, PlanSource::None, &out);
    o.keep_layers = Some(vec![0, 2]);
    run(&o, None).unwrap();
    let dev = Default::default();
    let orig = Encoder::<B>::load(&model, &dev).unwrap();
    let dropped = Encoder::<B>::load(&out, &dev).unwrap();
    assert_eq!(dropped.config.num_hidden_layers, 2);
    assert_eq!(dropped.model.num_heads(), vec![4, 3]);
    assert_eq!(dropped.config.ffn_sizes(), vec![64, 40]);
    assert_eq!(dropped.config.pruned_heads["1"], vec![0]);
    assert_eq!(
        dropped.config.extra["kept_layers"],
        serde_json::json!([0, 2])
    );

    let toks = orig.tokenize(&common::TEXTS, 64).unwrap();
    let batch =
        sekator_model::TokenBatch::new(&toks.iter().collect::<Vec<_>>(), orig.tokenizer.pad_id);
    let (ids, mask) = batch.tensors::<B>(&dev);
    let real = mask.clone();
    let [b, s] = ids.dims();
    let types = Tensor::<B, 2, burn::tensor::Int>::zeros([b, s], &dev);
    let norm = sekator_model::masks::Norm {
        hidden: None,
        eps: orig.model.layer_norm_eps,
    };
    let mut x = orig.model.embeddings.forward(ids, types, norm);
    let bias = (mask.neg() + 1.0)
        .mul_scalar(f32::MIN)
        .reshape([b, 1, 1, s]);
    for l in [0, 2] {
        x = orig.model.layers[l]
            .attention
            .forward(x, bias.clone(), None, norm);
        x = orig.model.layers[l].feed_forward.forward(x, None, norm);
    }
    let reference = sekator_model::testing::real_token_states(&x, &real);
    let d = max_diff(&reference, &hidden(&dropped, None));
    assert!(d <= 1e-5, "{d}");
}

/// Global ratio plans from (stand-in) importance scores, in K = 2 steps with re-scoring, stay exact.
#[test]
fn importance_plan_in_two_steps_is_exact_and_reaches_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(3), 13);
    let imp = tmp.path().join("imp");
    common::stand_in_importance(&model, &imp, &model);
    let rule = sekator_surgery::Rule {
        heads_ratio: 0.5,
        ffn_ratio: 0.5,
        ..Default::default()
    };
    let out = tmp.path().join("pruned");
    let mut o = opts(&model, PlanSource::Importance { dir: imp, rule }, &out);
    o.steps = 2;
    let mut r = sekator_surgery::MagnitudeRescorer;
    let outcome = run(&o, Some(&mut r)).unwrap();
    assert_eq!(outcome.step_plans.len(), 2);
    let heads: usize = outcome.plan.heads.values().map(Vec::len).sum();
    let ffn: usize = outcome.plan.ffn.values().map(Vec::len).sum();
    assert_eq!((heads, ffn), (6, 96), "half of 12 heads and of 192 neurons");
    let first: usize = outcome.step_plans[0].heads.values().map(Vec::len).sum();
    assert_eq!(first, 3, "equal steps");
    let dev = Default::default();
    let orig = Encoder::<B>::load(&model, &dev).unwrap();
    let pruned = Encoder::<B>::load(&out, &dev).unwrap();
    assert_eq!(pruned.model.num_heads().iter().sum::<usize>(), 6);
    let d = max_diff(
        &hidden(&orig, Some(&masks_for(&orig.config, &outcome.plan))),
        &hidden(&pruned, None),
    );
    assert!(d <= 1e-5, "{d}");
}
