//! Layer dropping (`--keep-layers 0,2,4`): the baseline to beat at equal FLOPs.
//!
//! The kept layers are renumbered `0..k` in their original order; `num_hidden_layers`, `pruned_heads`,
//! `pruned_ffn` and the per-layer FFN widths follow them. `kept_layers` in config.json records, for every
//! layer of the result, its index in the checkpoint the layer first came from (composed over repeated drops);
//! transformers ignores the key.

use std::collections::BTreeMap;

use sekator_model::BertConfig;

use crate::checkpoint::Checkpoint;
use crate::error::SurgeryError;

/// config.json key listing, per layer, its original layer index.
pub const KEPT_LAYERS_KEY: &str = "kept_layers";

/// `keep` must be non-empty, strictly ascending and name existing layers.
pub fn validate_keep_layers(keep: &[usize], num_layers: usize) -> Result<Vec<usize>, SurgeryError> {
    if keep.is_empty() {
        return Err(SurgeryError::Plan(
            "--keep-layers is empty; keep at least one layer".into(),
        ));
    }
    if let Some(&l) = keep.iter().find(|&&l| l >= num_layers) {
        return Err(SurgeryError::Plan(format!(
            "--keep-layers names layer {l}, the model has {num_layers} layers (0..{})",
            num_layers - 1
        )));
    }
    if keep.windows(2).any(|w| w[0] >= w[1]) {
        return Err(SurgeryError::Plan(format!(
            "--keep-layers {keep:?} must be strictly ascending (layers keep their order; no repeats)"
        )));
    }
    Ok(keep.to_vec())
}

/// Original layer indices of the layers of `cfg` (identity unless layers were dropped before).
pub fn original_layers(cfg: &BertConfig) -> Vec<usize> {
    cfg.extra
        .get(KEPT_LAYERS_KEY)
        .and_then(|v| serde_json::from_value::<Vec<usize>>(v.clone()).ok())
        .filter(|v| v.len() == cfg.num_hidden_layers)
        .unwrap_or_else(|| (0..cfg.num_hidden_layers).collect())
}

/// The config of `cfg` with only the layers `keep` (validated), renumbered.
pub fn config_keeping(cfg: &BertConfig, keep: &[usize]) -> BertConfig {
    let mut c = cfg.clone();
    let remap = |m: &BTreeMap<String, Vec<usize>>| -> BTreeMap<String, Vec<usize>> {
        keep.iter()
            .enumerate()
            .filter_map(|(new, old)| {
                m.get(&old.to_string())
                    .map(|v| (new.to_string(), v.clone()))
            })
            .collect()
    };
    c.pruned_heads = remap(&cfg.pruned_heads);
    c.pruned_ffn = remap(&cfg.pruned_ffn);
    let widths = cfg.ffn_sizes();
    c.num_hidden_layers = keep.len();
    c.intermediate_sizes = None;
    c.set_ffn_sizes(keep.iter().map(|&l| widths[l]).collect());
    let orig = original_layers(cfg);
    c.extra.insert(
        KEPT_LAYERS_KEY.into(),
        serde_json::to_value(keep.iter().map(|&l| orig[l]).collect::<Vec<_>>())
            .expect("list serialises"),
    );
    c
}

/// Keeps the layers `keep` of `ck` (tensors renamed to `encoder.layer.{new}`), updating the config.
pub fn drop_layers(ck: &mut Checkpoint, keep: &[usize]) -> Result<(), SurgeryError> {
    let keep = validate_keep_layers(keep, ck.config.num_hidden_layers)?;
    let new_of: BTreeMap<usize, usize> = keep.iter().enumerate().map(|(n, &o)| (o, n)).collect();
    let mut tensors = Vec::with_capacity(ck.tensors.len());
    for mut t in std::mem::take(&mut ck.tensors) {
        if let Some(rest) = t.name.strip_prefix("encoder.layer.") {
            let (idx, tail) = rest.split_once('.').unwrap_or((rest, ""));
            let old: usize = idx.parse().map_err(|_| SurgeryError::Tensor {
                name: t.name.clone(),
                msg: "layer index is not a number".into(),
            })?;
            match new_of.get(&old) {
                Some(n) => t.name = format!("encoder.layer.{n}.{tail}"),
                None => continue,
            }
        }
        tensors.push(t);
    }
    ck.tensors = tensors;
    ck.config = config_keeping(&ck.config, &keep);
    ck.check_shapes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sekator_model::testing::tiny_config;

    #[test]
    fn config_follows_the_kept_layers() {
        let mut c = tiny_config(4);
        c.add_pruned_heads(2, &[1]);
        c.add_pruned_ffn(3, &[0, 1]);
        c.set_ffn_sizes(vec![64, 64, 40, 62]);
        let k = config_keeping(&c, &[0, 2, 3]);
        assert_eq!(k.num_hidden_layers, 3);
        assert_eq!(k.heads_per_layer(), vec![4, 3, 4]);
        assert_eq!(k.ffn_sizes(), vec![64, 40, 62]);
        assert_eq!(k.pruned_ffn["2"], vec![0, 1]);
        assert_eq!(k.kept_ffn(2).len(), 62);
        assert_eq!(original_layers(&k), vec![0, 2, 3]);
        // a second drop composes with the first
        let k2 = config_keeping(&k, &[1, 2]);
        assert_eq!(original_layers(&k2), vec![2, 3]);
        assert_eq!(k2.pruned_heads["0"], vec![1]);
        // equal widths collapse back into intermediate_size
        let k3 = config_keeping(&c, &[0, 1]);
        assert_eq!(
            (k3.intermediate_size, k3.intermediate_sizes.clone()),
            (64, None)
        );
    }

    #[test]
    fn bad_keep_lists_are_refused() {
        assert!(validate_keep_layers(&[], 6).is_err());
        assert!(validate_keep_layers(&[0, 6], 6)
            .unwrap_err()
            .to_string()
            .contains("layer 6"));
        assert!(validate_keep_layers(&[2, 1], 6)
            .unwrap_err()
            .to_string()
            .contains("ascending"));
        assert!(validate_keep_layers(&[1, 1], 6).is_err());
        assert_eq!(validate_keep_layers(&[0, 2, 4], 6).unwrap(), vec![0, 2, 4]);
    }
}
