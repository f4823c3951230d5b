//! Cutting heads and FFN neurons out of the weight matrices.
//!
//! For a removed head `h` of layer `l` (original index), the `head_dim` rows of the query, key and value
//! weights and biases that belong to it go, and the same `head_dim` columns of `attention.output.dense`.
//! For a removed FFN neuron, its row of `intermediate.dense` (and bias entry) and its column of `output.dense`
//! go. Nothing else changes (LayerNorms, output biases, embeddings, pooler), so the pruned model computes
//! exactly what the original computes with those units' outputs multiplied by zero.
//!
//! Indices are ORIGINAL ones; on a checkpoint pruned before they are mapped to weight rows through
//! `config.kept_heads(l)` / `config.kept_ffn(l)`, and the config records the union of old and new removals.

use sekator_model::BertConfig;

use crate::checkpoint::{select_cols, select_rows, Checkpoint};
use crate::error::SurgeryError;
use crate::layers;
use crate::plan::Resolved;

/// Positions (current weight order) of the units of `kept` (original indices, ascending) that survive.
fn surviving_positions(kept: &[usize], removed: &[usize]) -> Vec<usize> {
    kept.iter()
        .enumerate()
        .filter(|(_, u)| !removed.contains(u))
        .map(|(p, _)| p)
        .collect()
}

/// The config after `plan` (heads and neurons, then layer dropping), without touching weights: what
/// `--dry-run` reports and what [`apply`] writes.
pub fn planned_config(cfg: &BertConfig, plan: &Resolved) -> BertConfig {
    let mut c = cfg.clone();
    let mut widths = c.ffn_sizes();
    for (l, width) in widths.iter_mut().enumerate() {
        if !plan.heads[l].is_empty() {
            c.add_pruned_heads(l, &plan.heads[l]);
        }
        if !plan.ffn[l].is_empty() {
            c.add_pruned_ffn(l, &plan.ffn[l]);
            *width -= plan.ffn[l].len();
        }
    }
    c.set_ffn_sizes(widths);
    if !plan.hidden.is_empty() {
        c.add_pruned_hidden(&plan.hidden);
    }
    if let Some(keep) = &plan.keep_layers {
        c = layers::config_keeping(&c, keep);
    }
    c
}

/// Removes the planned heads and neurons from `ck` (weights and config), then the planned residual-stream
/// dimensions ([`crate::width`]), then drops layers if planned.
/// `plan` must come from [`crate::plan::Plan::resolve`] against `ck.config`.
pub fn apply(ck: &mut Checkpoint, plan: &Resolved) -> Result<(), SurgeryError> {
    ck.check_shapes()?;
    let cfg = ck.config.clone();
    let hd = cfg.head_dim();
    for l in 0..cfg.num_hidden_layers {
        if !plan.heads[l].is_empty() {
            let keep = surviving_positions(&cfg.kept_heads(l), &plan.heads[l]);
            let rows: Vec<usize> = keep.iter().flat_map(|&p| p * hd..(p + 1) * hd).collect();
            let a = format!("encoder.layer.{l}.attention");
            for m in ["query", "key", "value"] {
                select_rows(ck.get_mut(&format!("{a}.self.{m}.weight"))?, &rows);
                select_rows(ck.get_mut(&format!("{a}.self.{m}.bias"))?, &rows);
            }
            select_cols(ck.get_mut(&format!("{a}.output.dense.weight"))?, &rows);
        }
        if !plan.ffn[l].is_empty() {
            let keep = surviving_positions(&cfg.kept_ffn(l), &plan.ffn[l]);
            let p = format!("encoder.layer.{l}");
            select_rows(
                ck.get_mut(&format!("{p}.intermediate.dense.weight"))?,
                &keep,
            );
            select_rows(ck.get_mut(&format!("{p}.intermediate.dense.bias"))?, &keep);
            select_cols(ck.get_mut(&format!("{p}.output.dense.weight"))?, &keep);
        }
    }
    let units_only = Resolved {
        hidden: Vec::new(),
        keep_layers: None,
        ..plan.clone()
    };
    ck.config = planned_config(&cfg, &units_only);
    ck.check_shapes()?;
    crate::width::cut(ck, &plan.hidden)?;
    if let Some(keep) = &plan.keep_layers {
        layers::drop_layers(ck, keep)?;
    }
    ck.config
        .validate()
        .map_err(|m| SurgeryError::Other(format!("pruned config is invalid: {m}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_current_weight_order() {
        // Layer already lost original heads 1 and 2: rows hold heads [0, 3, 4, 5].
        assert_eq!(surviving_positions(&[0, 3, 4, 5], &[3, 5]), vec![0, 2]);
        assert_eq!(surviving_positions(&[0, 1, 2], &[]), vec![0, 1, 2]);
    }
}
