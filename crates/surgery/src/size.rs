//! How big and how slow a checkpoint is: the analytic counts and `size.json` types come from
//! `sekator_pipeline::artifacts::size` (one definition for surgery, the report and the estimate); this module
//! adds what needs the weights or a backend: [`file_params`] counts the values actually stored in the
//! safetensors files (they must agree with the analytic counts for every checkpoint surgery writes), and
//! [`measure`] times the CPU forward pass.

use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::Backend;
use polars::prelude::*;

use sekator_model::{BertConfig, Encoder, TokenBatch};
pub use sekator_pipeline::artifacts::size::*;

use crate::error::SurgeryError;

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

/// Analytic counts plus the file statistics of the checkpoint in `dir`.
pub fn of_dir(dir: &Path, cfg: &BertConfig, pooler: bool) -> Result<SizeReport, SurgeryError> {
    Ok(SizeReport {
        file: Some(file_params(dir)?),
        ..SizeReport::analytic(cfg, pooler)
    })
}

/// The report as a table: one row per model (before, after) and one of ratios.
pub fn table(r: &Report) -> PolarsResult<DataFrame> {
    let rows = [&r.before, &r.after];
    let f = |v: Option<f64>| v.unwrap_or(f64::NAN);
    let ra = &r.ratios;
    df!(
        "model" => ["before", "after", "before/after"],
        "layers" => [r.before.layers as f64, r.after.layers as f64, f64::NAN],
        "heads" => [
            r.before.heads_per_layer.iter().sum::<usize>() as f64,
            r.after.heads_per_layer.iter().sum::<usize>() as f64,
            r.before.heads_per_layer.iter().sum::<usize>() as f64
                / r.after.heads_per_layer.iter().sum::<usize>().max(1) as f64,
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
pub fn table_string(r: &Report) -> String {
    match table(r) {
        Ok(df) => format!("{df}"),
        Err(e) => format!(
            "(table unavailable: {e})\n{}",
            serde_json::to_string_pretty(r).unwrap_or_default()
        ),
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
