//! How big and how slow a checkpoint is: parameter counts, file size, analytic FLOPs, measured CPU time.
//!
//! Counts are computed from config.json alone ([`analytic_params`]), so the size of a plan is known before a
//! single weight is cut (`--dry-run`, LaBSE-sized configs in tests); [`file_params`] counts the values actually
//! stored in the safetensors files, and the two must agree for every checkpoint surgery writes.

use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::Backend;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use sekator_model::{BertConfig, Encoder, TokenBatch};

use crate::error::SurgeryError;

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

/// Sums tensor sizes over every `model*.safetensors` file of `dir` (header only, no weights read).
pub fn file_params(dir: &Path) -> Result<FileStats, SurgeryError> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| SurgeryError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            n.starts_with("model") && n.ends_with(".safetensors")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(SurgeryError::Other(format!(
            "{}: no model*.safetensors file",
            dir.display()
        )));
    }
    let mut stats = FileStats {
        params: 0,
        bytes: 0,
    };
    for path in files {
        use std::io::Read;
        let mut f = std::fs::File::open(&path).map_err(|e| SurgeryError::io(&path, e))?;
        let bad = |m: String| SurgeryError::Other(format!("{}: {m}", path.display()));
        let mut len = [0u8; 8];
        f.read_exact(&mut len)
            .map_err(|e| SurgeryError::io(&path, e))?;
        let n = u64::from_le_bytes(len);
        if n > 100 << 20 {
            return Err(bad(format!(
                "safetensors header of {n} bytes is implausible"
            )));
        }
        let mut header = vec![0u8; n as usize];
        f.read_exact(&mut header)
            .map_err(|e| SurgeryError::io(&path, e))?;
        let v: serde_json::Value =
            serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
        for (name, info) in v
            .as_object()
            .ok_or_else(|| bad("header is not an object".into()))?
        {
            if name == "__metadata__" {
                continue;
            }
            let dtype = info["dtype"].as_str().unwrap_or("");
            if !matches!(dtype, "F32" | "F16" | "BF16" | "F64") {
                continue;
            }
            let shape = info["shape"]
                .as_array()
                .ok_or_else(|| bad(format!("tensor `{name}` has no shape")))?;
            stats.params += shape
                .iter()
                .map(|d| d.as_u64().unwrap_or(0) as usize)
                .product::<usize>();
        }
        stats.bytes += std::fs::metadata(&path)
            .map_err(|e| SurgeryError::io(&path, e))?
            .len();
    }
    Ok(stats)
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

    /// Analytic counts plus the file statistics of the checkpoint in `dir`.
    pub fn of_dir(dir: &Path, cfg: &BertConfig, pooler: bool) -> Result<Self, SurgeryError> {
        Ok(Self {
            file: Some(file_params(dir)?),
            ..Self::analytic(cfg, pooler)
        })
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
        }
    }

    /// The report as a table: one row per model (before, after) and one of ratios.
    pub fn table(&self) -> PolarsResult<DataFrame> {
        let rows = [&self.before, &self.after];
        let f = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let ra = &self.ratios;
        df!(
            "model" => ["before", "after", "before/after"],
            "layers" => [self.before.layers as f64, self.after.layers as f64, f64::NAN],
            "heads" => [
                self.before.heads_per_layer.iter().sum::<usize>() as f64,
                self.after.heads_per_layer.iter().sum::<usize>() as f64,
                self.before.heads_per_layer.iter().sum::<usize>() as f64
                    / self.after.heads_per_layer.iter().sum::<usize>().max(1) as f64,
            ],
            "params_M" => [rows[0].params.total as f64 / 1e6, rows[1].params.total as f64 / 1e6, ra.params_total],
            "encoder_M" => [rows[0].params.encoder as f64 / 1e6, rows[1].params.encoder as f64 / 1e6, ra.params_encoder],
            "embeddings_M" => [
                rows[0].params.embeddings as f64 / 1e6,
                rows[1].params.embeddings as f64 / 1e6,
                rows[0].params.embeddings as f64 / rows[1].params.embeddings.max(1) as f64,
            ],
            "file_MB" => [
                f(rows[0].file.map(|s| s.bytes as f64 / 1e6)),
                f(rows[1].file.map(|s| s.bytes as f64 / 1e6)),
                f(ra.file_bytes),
            ],
            "MFLOPs_per_token" => [
                rows[0].flops_per_token as f64 / 1e6,
                rows[1].flops_per_token as f64 / 1e6,
                ra.flops_per_token,
            ],
            "cpu_ms_per_text" => [f(rows[0].ms_per_text), f(rows[1].ms_per_text), f(ra.speedup)],
        )
    }

    /// The table as text (the binary sets polars' `POLARS_FMT_*` variables at start-up), falling back to JSON if polars cannot build it.
    pub fn table_string(&self) -> String {
        match self.table() {
            Ok(df) => format!("{df}"),
            Err(e) => format!(
                "(table unavailable: {e})\n{}",
                serde_json::to_string_pretty(self).unwrap_or_default()
            ),
        }
    }
}

/// Sentences of everyday length (about 8 to 40 tokens), English and Russian, for the timing.
const BENCH_SENTENCES: [&str; 16] = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner while people walk by.",
    "Scientists have discovered a new species of frog in the rainforests of South America.",
    "Please remember to turn off the lights when you leave the office.",
    "The committee will publish its final report on the state of public transport next spring.",
    "She smiled.",
    "How many languages can a single sentence encoder learn before its quality starts to drop?",
    "Heavy rain caused flooding in several districts, and the schools were closed for two days.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Мужчина играет на гитаре на углу улицы, а мимо проходят люди.",
    "Учёные обнаружили новый вид лягушек в тропических лесах Южной Америки.",
    "Не забудьте выключить свет, когда будете уходить из офиса.",
    "Комиссия опубликует итоговый доклад о состоянии общественного транспорта следующей весной.",
    "Она улыбнулась.",
    "Сколько языков может выучить один кодировщик предложений, прежде чем его качество начнёт падать?",
    "Сильный дождь вызвал наводнения в нескольких районах, и школы закрыли на два дня.",
];

/// `n` benchmark texts (the fixed sentences, cycled).
pub fn bench_texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| BENCH_SENTENCES[i % BENCH_SENTENCES.len()].to_string())
        .collect()
}

/// Threads the CPU backend may use (rayon: `RAYON_NUM_THREADS` or every core).
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

/// Measured milliseconds per text of each encoder over the same texts: tokenised once, then forward passes
/// in length-sorted batches plus the checkpoint's pooling. Repeats alternate between the encoders so slow
/// periods of a shared machine hit all of them alike. Returns `(median, min)` per encoder.
pub fn measure<B: Backend>(
    encoders: &[&Encoder<B>],
    opts: &BenchOptions,
) -> Result<Vec<(f64, f64)>, SurgeryError> {
    let texts = bench_texts(opts.texts.max(1));
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut prepared = Vec::new();
    for enc in encoders {
        let tokens = enc.tokenize(&refs, opts.max_length)?;
        let batches: Vec<TokenBatch> = Encoder::<B>::length_batches(&tokens, opts.batch_size)
            .iter()
            .map(|idx| {
                TokenBatch::new(
                    &idx.iter().map(|&i| &tokens[i]).collect::<Vec<_>>(),
                    enc.tokenizer.pad_id,
                )
            })
            .collect();
        prepared.push(batches);
    }
    let pass = |enc: &Encoder<B>, batches: &[TokenBatch]| -> f64 {
        let t = Instant::now();
        for b in batches {
            let (hidden, mask) = enc.forward(b, None);
            let pooled = sekator_model::pooling::pool(&enc.model, &hidden, &mask, enc.pooling)
                .unwrap_or_else(|| sekator_model::pooling::cls(&hidden));
            // Reading the result back forces the computation to finish on every backend.
            let _ = pooled.into_data();
        }
        t.elapsed().as_secs_f64() * 1e3 / texts.len() as f64
    };
    for (enc, b) in encoders.iter().zip(&prepared) {
        pass(enc, b); // warm-up: allocations, caches, lazy kernels
    }
    let mut times = vec![Vec::new(); encoders.len()];
    for _ in 0..opts.repeats.max(1) {
        for (i, (enc, b)) in encoders.iter().zip(&prepared).enumerate() {
            times[i].push(pass(enc, b));
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            (t[t.len() / 2], t[0])
        })
        .collect())
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
