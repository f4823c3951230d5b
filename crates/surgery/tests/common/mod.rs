//! Helpers shared by the integration tests: tiny random checkpoints, masked reference runs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sekator_model::{BertConfig, Cpu, Encoder, TokenBatch, UnitMasks};
use sekator_surgery::{Limits, Options, Plan, PlanSource};

pub type B = Cpu;

pub const TEXTS: [&str; 3] = [
    "привет мир",
    "a much longer english sentence with many words in it",
    "короткий",
];

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Last hidden states of `TEXTS` (padded batch), flattened, padding rows zeroed (real tokens only).
pub fn hidden(enc: &Encoder<B>, masks: Option<&UnitMasks<B>>) -> Vec<f32> {
    let toks = enc.tokenize(&TEXTS, 64).unwrap();
    let batch = TokenBatch::new(&toks.iter().collect::<Vec<_>>(), enc.tokenizer.pad_id);
    let (h, mask) = enc.forward(&batch, masks);
    sekator_model::testing::real_token_states(&h, &mask)
}

/// 0/1 masks over the CURRENT units of `cfg` that zero the units named (original indices) by `plan`.
pub fn masks_for(cfg: &BertConfig, plan: &Plan) -> UnitMasks<B> {
    let mut heads = Vec::new();
    let mut ffn = Vec::new();
    for l in 0..cfg.num_hidden_layers {
        let gone_h = plan.heads.get(&l.to_string()).cloned().unwrap_or_default();
        heads.push(
            cfg.kept_heads(l)
                .iter()
                .map(|h| if gone_h.contains(h) { 0.0 } else { 1.0 })
                .collect::<Vec<f32>>(),
        );
        let gone_f = plan.ffn.get(&l.to_string()).cloned().unwrap_or_default();
        ffn.push(
            cfg.kept_ffn(l)
                .iter()
                .map(|u| if gone_f.contains(u) { 0.0 } else { 1.0 })
                .collect::<Vec<f32>>(),
        );
    }
    UnitMasks::from_values(&heads, &ffn, &Default::default())
}

pub fn tiny_model(dir: &Path, cfg: &BertConfig, seed: u64) {
    sekator_model::testing::write_random_model::<B>(dir, cfg, seed, &Default::default()).unwrap();
}

pub fn plan_from_json(s: &str) -> Plan {
    serde_json::from_str(s).unwrap()
}

pub fn write_plan(dir: &Path, name: &str, plan: &Plan) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, plan.to_json()).unwrap();
    p
}

pub fn opts(model: &Path, source: PlanSource, out: &Path) -> Options {
    Options {
        model: model.to_path_buf(),
        source,
        keep_layers: None,
        limits: Limits::default(),
        out: Some(out.to_path_buf()),
        dry_run: false,
        overwrite: false,
        update: false,
        force: false,
        steps: 1,
        bench: None,
        export: Default::default(),
        vocab: None,
    }
}

/// Importance files for `model` from weight magnitudes (no gradients), recorded as scores of `hash_of`.
pub fn stand_in_importance(model: &Path, out: &Path, hash_of: &Path) {
    let ck = sekator_surgery::Checkpoint::read(model).unwrap();
    let s = sekator_surgery::importance::magnitude_scores(&ck).unwrap();
    sekator_surgery::importance::write(
        out,
        &ck.config,
        &s,
        &sekator_model::checkpoint_hash(hash_of).unwrap(),
    )
    .unwrap();
}

/// The real all-MiniLM-L6-v2, when fetched (`python3 scripts/fetch_model.py minilm`).
pub fn minilm() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/models/all-MiniLM-L6-v2");
    dir.join("model.safetensors").exists().then_some(dir)
}
