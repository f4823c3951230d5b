//! Acceptance 2: exact parameter counts (analytic == stored) and the LaBSE-shaped size/FLOPs ratios.

mod common;

use common::*;
use sekator_model::BertConfig;
use sekator_surgery::plan::{Limits, Scores};
use sekator_surgery::size::{analytic_params, file_params, flops_per_token, SizeReport};
use sekator_surgery::slice::planned_config;
use sekator_surgery::{run, PlanSource, Rule};

#[test]
fn analytic_count_equals_the_written_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(3), 1);
    let cfg = sekator_model::read_config(&model).unwrap();
    let before = file_params(&model).unwrap();
    assert_eq!(before.params, analytic_params(&cfg, true).total);
    let plan = plan_from_json(
        r#"{"heads": {"0": [0, 1, 2], "2": [3]}, "ffn": {"1": [1, 2, 3, 50], "2": [7]}}"#,
    );
    let out = tmp.path().join("pruned");
    let o = run(
        &opts(
            &model,
            PlanSource::File(write_plan(tmp.path(), "p.json", &plan)),
            &out,
        ),
        None,
    )
    .unwrap();
    let after = file_params(&out).unwrap();
    let pc = sekator_model::read_config(&out).unwrap();
    assert_eq!(after.params, analytic_params(&pc, true).total);
    assert_eq!(o.report.after.file, Some(after));
    // 4 heads of 8 dims in hidden 32: 4 * (4*32*8 + 3*8); 5 neurons: 5 * (2*32 + 1)
    assert_eq!(
        before.params - after.params,
        4 * (4 * 32 * 8 + 3 * 8) + 5 * (2 * 32 + 1)
    );
    // f32 data plus the JSON header
    assert!(
        after.bytes as usize > 4 * after.params && (after.bytes as usize) < 4 * after.params + 8192
    );
    // size.json holds the same numbers
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("size.json")).unwrap()).unwrap();
    assert_eq!(json["after"]["params"]["total"], after.params);
    assert_eq!(json["before"]["file"]["params"], before.params);
}

fn labse_shaped() -> BertConfig {
    let mut c = BertConfig::new(55083, 768, 12, 12, 3072);
    c.max_position_embeddings = 512;
    c.type_vocab_size = 2;
    c
}

/// Deterministic pseudo-random scores for a config (which units go does not change the counts).
fn scores_for(cfg: &BertConfig, seed: u64) -> Scores {
    let mut rng = sekator_model::rng::SplitMix64::new(seed);
    Scores {
        heads: (0..cfg.num_hidden_layers)
            .map(|_| {
                (0..cfg.num_attention_heads)
                    .map(|_| Some(rng.uniform() as f32))
                    .collect()
            })
            .collect(),
        ffn: (0..cfg.num_hidden_layers)
            .map(|l| {
                (0..cfg.ffn_sizes()[l])
                    .map(|i| (i, rng.uniform() as f32))
                    .collect()
            })
            .collect(),
        hidden: Vec::new(),
    }
}

fn planned(cfg: &BertConfig, rule: &Rule) -> BertConfig {
    let plan = rule.plan(&scores_for(cfg, 42)).unwrap();
    planned_config(cfg, &plan.resolve(cfg, Limits::default()).unwrap())
}

#[test]
fn labse_shaped_ratios() {
    let cfg = labse_shaped();
    let before = SizeReport::analytic(&cfg, true);
    assert_eq!(before.params.total, 128_345_088);
    assert_eq!(before.params.embeddings, 42_700_032);
    assert_eq!(before.params.encoder, 85_054_464);
    assert_eq!(before.flops_per_token, 174_587_904);

    let h50 = SizeReport::analytic(
        &planned(
            &cfg,
            &Rule {
                heads_ratio: 0.5,
                ..Rule::default()
            },
        ),
        true,
    );
    assert_eq!(h50.heads_per_layer.iter().sum::<usize>(), 72);
    assert_eq!(h50.params.total, 114_175_488);
    assert_eq!(h50.flops_per_token, 143_917_056);

    let both = planned(
        &cfg,
        &Rule {
            heads_ratio: 0.5,
            ffn_ratio: 0.5,
            ..Rule::default()
        },
    );
    let hf = SizeReport::analytic(&both, true);
    assert_eq!(hf.ffn_sizes.iter().sum::<usize>(), 18_432);
    assert_eq!(hf.params.total, 85_845_504);
    assert_eq!(hf.params.encoder, 42_554_880);
    assert_eq!(hf.flops_per_token, 87_293_952);

    let r1 = sekator_surgery::size::ratios(&before, &h50);
    let r2 = sekator_surgery::size::ratios(&before, &hf);
    println!(
        "LaBSE-shaped: params {} -> heads50 {} ({:.4}x) -> heads50+ffn50 {} ({:.4}x); encoder {:.4}x; \
         FLOPs/token@128 {} -> {} ({:.4}x) -> {} ({:.4}x)",
        before.params.total, h50.params.total, r1.params_total, hf.params.total, r2.params_total,
        r2.params_encoder, before.flops_per_token, h50.flops_per_token, r1.flops_per_token,
        hf.flops_per_token, r2.flops_per_token
    );
    assert!((r1.params_total - 1.1241).abs() < 1e-4);
    assert!((r2.params_total - 1.4951).abs() < 1e-4);
    assert_eq!(r2.flops_per_token, 2.0);
    // Layer dropping to 6 of 12 layers halves encoder FLOPs as well: the baseline to beat.
    let six = sekator_surgery::layers::config_keeping(&cfg, &[0, 2, 4, 6, 8, 10]);
    assert_eq!(flops_per_token(&six, 128) * 2, before.flops_per_token);
}

/// A uniform FFN cut keeps widths equal, so `intermediate_size` itself changes (transformers loads it as is).
#[test]
fn uniform_ffn_updates_intermediate_size() {
    let cfg = labse_shaped();
    let c = planned(
        &cfg,
        &Rule {
            heads_ratio: 0.0,
            ffn_ratio: 0.5,
            ffn_uniform: true,
            ..Rule::default()
        },
    );
    assert_eq!(
        (c.intermediate_size, c.intermediate_sizes.clone()),
        (1536, None)
    );
    assert_eq!(c.kept_ffn(3).len(), 1536);
    assert!(c.pruned_heads.is_empty());
}
