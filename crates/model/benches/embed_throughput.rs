//! `cargo bench -p sekator-model`: MiniLM embedding throughput on the CPU backend, batch 1 and 32, max length
//! 128, over encodechka's `sentences_sample.txt` (the same texts as `scripts/reference/bench_embed_torch.py`).
//!
//! A plain harness rather than criterion: the quantity of interest is sentences per second over a fixed
//! corpus, which is what PyTorch is compared on. Prints one JSON line per batch size.

use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::Backend;
use sekator_model::{Cpu, EmbedOptions, Encoder, Pooling};

fn main() {
    // as every sekator binary does at start (logging::init)
    sekator_model::alloc::tune();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = std::env::var("SEKATOR_BENCH_MODEL")
        .map(Into::into)
        .unwrap_or_else(|_| root.join("data/models/all-MiniLM-L6-v2"));
    let texts_path = std::env::var("SEKATOR_BENCH_TEXTS")
        .map(Into::into)
        .unwrap_or_else(|_| root.join("data/encodechka/sentences_sample.txt"));
    let Ok(text) = std::fs::read_to_string(&texts_path) else {
        eprintln!(
            "skipping: {} not found (run `just setup`)",
            texts_path.display()
        );
        return;
    };
    let texts: Vec<String> = text.lines().map(String::from).collect();
    // `SEKATOR_BENCH_BACKENDS=flex` (or `ndarray`) runs one of them, e.g. under a profiler.
    let which = std::env::var("SEKATOR_BENCH_BACKENDS").unwrap_or_else(|_| "flex,ndarray".into());
    if which.split(',').any(|b| b == "flex") {
        run::<Cpu>("flex", &model, &texts);
    }
    // burn-ndarray beside it: the CPU backend choice in BENCHMARKS.md rests on this pair.
    if which.split(',').any(|b| b == "ndarray") {
        run::<burn::backend::NdArray>("ndarray", &model, &texts);
    }
}

fn run<B: Backend>(name: &str, model: &Path, texts: &[String]) {
    let enc =
        Encoder::<B>::load(model, &Default::default()).expect("model loads (run `just setup`)");
    // `SEKATOR_BENCH_BATCHES=32` (comma-separated) picks the batch sizes; default 1 and 32.
    let sizes: Vec<usize> = std::env::var("SEKATOR_BENCH_BATCHES")
        .unwrap_or_else(|_| "1,32".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for batch_size in sizes {
        let opts = EmbedOptions {
            pooling: Pooling::Mean,
            normalize: false,
            batch_size,
            max_length: 128,
        };
        enc.embed(&texts[..batch_size.max(8)], &opts, |_| {})
            .unwrap(); // warm-up
        let start = Instant::now();
        let out = enc.embed(texts, &opts, |_| {}).unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{{\"backend\": \"{name}\", \"batch_size\": {batch_size}, \"texts\": {}, \"seconds\": {secs:.3}, \"sent_per_s\": {:.1}}}",
            out.len(),
            out.len() as f64 / secs
        );
    }
}
