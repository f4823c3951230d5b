//! `pruned/size.json`: how big and how slow a checkpoint was before and after surgery (written by surgery,
//! read by the report), and the analytic counts behind it: parameters and FLOPs from config.json alone, so
//! the size of a plan is known before a single weight is cut, and the estimate uses the same formula.

use std::path::Path;

use serde::{Deserialize, Serialize};

use sekator_model::{BertConfig, ModelError};

use crate::Stage;

pub const SIZE_FILE: &str = "size.json";

/// Sequence length at which FLOPs per token are reported.
pub const FLOPS_SEQ_LEN: usize = 128;

/// Parameter counts of a BERT encoder, split as the report prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCounts {
    pub total: usize,
    /// Word, position and token-type embeddings plus their LayerNorm.
    pub embeddings: usize,
    /// The transformer layers only (what head/FFN pruning and layer dropping shrink).
    pub encoder: usize,
    /// `pooler.dense` (0 when the checkpoint has none).
    pub pooler: usize,
}

/// Parameters implied by `cfg` (per-layer heads and FFN widths honoured), with or without a pooler.
///
/// Per layer with `a = heads_kept * head_dim` and FFN width `f`:
/// Q, K, V `3 (h a + a)`, attention output `a h + h`, two LayerNorms `4 h`, FFN `h f + f + f h + h`.
pub fn analytic_params(cfg: &BertConfig, pooler: bool) -> ParamCounts {
    let h = cfg.hidden_size;
    let embeddings =
        (cfg.vocab_size + cfg.max_position_embeddings + cfg.type_vocab_size) * h + 2 * h;
    let widths = cfg.ffn_sizes();
    let encoder: usize = (0..cfg.num_hidden_layers)
        .map(|l| {
            let a = cfg.kept_heads(l).len() * cfg.head_dim();
            let f = widths[l];
            3 * (h * a + a) + (a * h + h) + 4 * h + (h * f + f) + (f * h + h)
        })
        .sum();
    let pooler = if pooler { h * h + h } else { 0 };
    ParamCounts {
        total: embeddings + encoder + pooler,
        embeddings,
        encoder,
        pooler,
    }
}

/// Analytic forward FLOPs per token of the encoder layers at sequence length `seq` (a multiply-add counts 2).
///
/// Only matrix products are counted (LayerNorm, softmax, GELU, biases and embedding look-ups are
/// comparatively negligible). With hidden size `h`, `nh` heads kept of size `hd` and FFN width `f`,
/// each layer costs per token
///
/// ```text
///   2 * h * (3 * nh * hd)     Q, K, V projections
/// + 2 * nh * hd * h           attention output projection
/// + 2 * 2 * seq * nh * hd     attention scores Q K^T and context P V
/// + 2 * 2 * h * f             FFN in and out
/// ```
///
/// The pooler (`2 h^2` per sequence, not per token) is left out; see [`pooler_flops_per_sequence`].
pub fn flops_per_token(cfg: &BertConfig, seq: usize) -> u64 {
    let h = cfg.hidden_size as u64;
    let hd = cfg.head_dim() as u64;
    let s = seq as u64;
    let widths = cfg.ffn_sizes();
    (0..cfg.num_hidden_layers)
        .map(|l| {
            let nh = cfg.kept_heads(l).len() as u64;
            let f = widths[l] as u64;
            2 * h * (3 * nh * hd) + 2 * nh * hd * h + 2 * 2 * s * nh * hd + 2 * 2 * h * f
        })
        .sum()
}

/// FLOPs of the pooler for one sequence (dense `h x h` on the first token).
pub fn pooler_flops_per_sequence(cfg: &BertConfig) -> u64 {
    2 * (cfg.hidden_size as u64).pow(2)
}

/// Values stored in a checkpoint's safetensors files, read from their headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStats {
    /// Elements of floating-point tensors (integer buffers such as `position_ids` are not parameters).
    pub params: usize,
    /// Bytes of the safetensors files on disk.
    pub bytes: u64,
}

/// One column of the size report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeReport {
    pub params: ParamCounts,
    /// From the safetensors headers; `None` for a plan not written yet (`--dry-run`).
    pub file: Option<FileStats>,
    /// Encoder FLOPs per token at [`FLOPS_SEQ_LEN`] ([`flops_per_token`]).
    pub flops_per_token: u64,
    pub flops_seq_len: usize,
    pub pooler_flops_per_sequence: u64,
    pub layers: usize,
    pub heads_per_layer: Vec<usize>,
    pub ffn_sizes: Vec<usize>,
    /// Median measured CPU milliseconds per text ([`measure`]); `None` when not measured.
    pub ms_per_text: Option<f64>,
    /// Fastest repeat, less sensitive to other load on the machine.
    pub ms_per_text_min: Option<f64>,
}

impl SizeReport {
    pub fn analytic(cfg: &BertConfig, pooler: bool) -> Self {
        Self {
            params: analytic_params(cfg, pooler),
            file: None,
            flops_per_token: flops_per_token(cfg, FLOPS_SEQ_LEN),
            flops_seq_len: FLOPS_SEQ_LEN,
            pooler_flops_per_sequence: if pooler {
                pooler_flops_per_sequence(cfg)
            } else {
                0
            },
            layers: cfg.num_hidden_layers,
            heads_per_layer: cfg.heads_per_layer(),
            ffn_sizes: cfg.ffn_sizes(),
            ms_per_text: None,
            ms_per_text_min: None,
        }
    }
}

/// `before / after` of the quantities the report compares (> 1 means smaller or faster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    pub params_total: f64,
    pub params_encoder: f64,
    pub flops_per_token: f64,
    pub file_bytes: Option<f64>,
    /// Measured CPU speed-up (median ms/text before over after).
    pub speedup: Option<f64>,
}

pub fn ratios(before: &SizeReport, after: &SizeReport) -> Ratios {
    let r = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    Ratios {
        params_total: r(before.params.total as f64, after.params.total as f64),
        params_encoder: r(before.params.encoder as f64, after.params.encoder as f64),
        flops_per_token: r(before.flops_per_token as f64, after.flops_per_token as f64),
        file_bytes: before
            .file
            .zip(after.file)
            .map(|(a, b)| r(a.bytes as f64, b.bytes as f64)),
        speedup: before
            .ms_per_text
            .zip(after.ms_per_text)
            .map(|(a, b)| r(a, b)),
    }
}

/// How the CPU timing was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchOptions {
    pub texts: usize,
    pub batch_size: usize,
    pub max_length: usize,
    /// Timed passes over all texts per model (after one untimed warm-up pass).
    pub repeats: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            texts: 64,
            batch_size: 16,
            max_length: 128,
            repeats: 5,
        }
    }
}

/// The report written to `size.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub before: SizeReport,
    pub after: SizeReport,
    pub ratios: Ratios,
    /// `None` when timing was skipped (`--bench-texts 0`, `--dry-run`).
    pub bench: Option<BenchInfo>,
    /// The vocabulary trimming (`--vocab-from`); absent when the vocabulary was kept whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<VocabReport>,
}

/// What vocabulary trimming kept, and how much of its corpus the kept tokens cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VocabReport {
    /// Word-embedding rows before and after (`vocab_size` in config.json).
    pub before: usize,
    pub after: usize,
    /// Special and added tokens (always kept).
    pub special: usize,
    /// Single-character pieces kept so that dropped words can be re-spelled (word-initial and `##` forms).
    pub alphabet: usize,
    /// The corpus files (`--vocab-from`), one text per line.
    pub files: Vec<String>,
    /// Non-empty lines read.
    pub texts: usize,
    /// Token occurrences in the corpus (the model's own tokenizer, no special tokens added).
    pub corpus_tokens: u64,
    /// Distinct tokens the corpus produced.
    pub distinct: usize,
    /// Occurrences whose token was kept: texts made only of those embed exactly as before.
    pub covered_tokens: u64,
    /// `covered_tokens / corpus_tokens`.
    pub coverage: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchInfo {
    #[serde(flatten)]
    pub options: BenchOptions,
    /// Backend and thread count the timing ran on.
    pub backend: String,
    pub threads: usize,
}

impl Report {
    pub fn new(before: SizeReport, after: SizeReport, bench: Option<BenchInfo>) -> Self {
        let ratios = ratios(&before, &after);
        Self {
            before,
            after,
            ratios,
            bench,
            vocab: None,
        }
    }
}

impl Report {
    /// Reads `dir/size.json`, naming the file and the stage that writes it when missing or damaged.
    pub fn read(dir: &Path) -> Result<Report, ModelError> {
        super::read_json(dir, SIZE_FILE, Stage::Surgery)
    }

    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        super::write_json(dir, SIZE_FILE, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sekator_model::testing::tiny_config;

    #[test]
    fn tiny_counts_by_hand() {
        // hidden 32, 4 heads of 8, FFN 64, vocab 160, 64 positions, 2 token types.
        let c = tiny_config(1);
        let p = analytic_params(&c, true);
        assert_eq!(p.embeddings, (160 + 64 + 2) * 32 + 64);
        assert_eq!(
            p.encoder,
            3 * (32 * 32 + 32) + (32 * 32 + 32) + 4 * 32 + (32 * 64 + 64) + (64 * 32 + 32)
        );
        assert_eq!(p.pooler, 32 * 32 + 32);
        assert_eq!(p.total, p.embeddings + p.encoder + p.pooler);
        assert_eq!(
            flops_per_token(&c, 128),
            2 * 32 * 96 + 2 * 32 * 32 + 4 * 128 * 32 + 4 * 32 * 64
        );
    }
}
