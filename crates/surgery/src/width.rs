//! Width pruning: cutting residual-stream dimensions out of every tensor that reads or writes the stream.
//!
//! One set of dimensions goes from the whole model, since every layer adds into the same stream: the
//! columns of the three embedding tables, the entries of every LayerNorm, the columns of every matrix that
//! reads the stream (Q/K/V, `intermediate.dense`, the pooler) and the rows and bias entries of every matrix
//! that writes it (`attention.output.dense`, `output.dense`, the pooler). Head size and FFN width stay.
//! The cut model equals the original run under a 0/1 hidden mask ([`sekator_model::masks`]), whose
//! LayerNorms take their statistics over the kept dimensions only.

use crate::checkpoint::{select_cols, select_rows, Checkpoint};
use crate::error::SurgeryError;

/// Which axes of a `BertModel` tensor run along the residual stream: `(rows, columns)` in HF `[out, in]`
/// layout, or `None` for a name this module does not know (refused rather than guessed).
fn stream_axes(name: &str) -> Option<(bool, bool)> {
    let reads = [
        ".self.query.weight",
        ".self.key.weight",
        ".self.value.weight",
        ".intermediate.dense.weight",
    ];
    let inner_bias = [
        ".self.query.bias",
        ".self.key.bias",
        ".self.value.bias",
        ".intermediate.dense.bias",
    ];
    Some(match name {
        "pooler.dense.weight" => (true, true),
        "pooler.dense.bias" => (true, false),
        n if n.starts_with("embeddings.") && n.ends_with("_embeddings.weight") => (false, true),
        n if n.ends_with("LayerNorm.weight") || n.ends_with("LayerNorm.bias") => (true, false),
        n if n.ends_with("output.dense.weight") || n.ends_with("output.dense.bias") => {
            (true, false)
        }
        n if reads.iter().any(|s| n.ends_with(s)) => (false, true),
        n if inner_bias.iter().any(|s| n.ends_with(s)) => (false, false),
        _ => return None,
    })
}

/// Removes the residual-stream dimensions `removed` (original indices, none pruned before) from every
/// tensor of `ck` and records them in its config (`hidden_size`, `head_dim`, `pruned_hidden`).
pub fn cut(ck: &mut Checkpoint, removed: &[usize]) -> Result<(), SurgeryError> {
    if removed.is_empty() {
        return Ok(());
    }
    let keep: Vec<usize> = ck
        .config
        .kept_hidden()
        .iter()
        .enumerate()
        .filter(|(_, d)| !removed.contains(d))
        .map(|(p, _)| p)
        .collect();
    for t in &mut ck.tensors {
        let (rows, cols) = stream_axes(&t.name).ok_or_else(|| SurgeryError::Tensor {
            name: t.name.clone(),
            msg: "width pruning does not know which axes of this tensor run along the residual stream"
                .into(),
        })?;
        if rows {
            select_rows(t, &keep);
        }
        if cols {
            select_cols(t, &keep);
        }
    }
    ck.config.add_pruned_hidden(removed);
    ck.check_shapes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bert_tensor_has_known_stream_axes() {
        let cases = [
            ("embeddings.word_embeddings.weight", Some((false, true))),
            (
                "embeddings.token_type_embeddings.weight",
                Some((false, true)),
            ),
            ("embeddings.LayerNorm.bias", Some((true, false))),
            (
                "encoder.layer.3.attention.self.key.weight",
                Some((false, true)),
            ),
            (
                "encoder.layer.3.attention.self.key.bias",
                Some((false, false)),
            ),
            (
                "encoder.layer.3.attention.output.dense.weight",
                Some((true, false)),
            ),
            (
                "encoder.layer.3.attention.output.LayerNorm.weight",
                Some((true, false)),
            ),
            (
                "encoder.layer.3.intermediate.dense.weight",
                Some((false, true)),
            ),
            (
                "encoder.layer.3.intermediate.dense.bias",
                Some((false, false)),
            ),
            ("encoder.layer.3.output.dense.bias", Some((true, false))),
            ("pooler.dense.weight", Some((true, true))),
            ("encoder.layer.3.attention.self.rotary.weight", None),
        ];
        for (name, want) in cases {
            assert_eq!(stream_axes(name), want, "{name}");
        }
    }
}
