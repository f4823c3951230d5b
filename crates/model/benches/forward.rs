//! `cargo bench -p sekator-model --bench forward`: divan timings of one encoder forward pass on the CPU
//! backend (tokenisation excluded), for profiling changes to the model code.
//!
//! MiniLM (`just fetch-model minilm`) at batch 1 and 32 over the first texts of encodechka's
//! `sentences_sample.txt` (max length 128), plus a tiny random BERT that needs no files. Throughput against
//! PyTorch is the other bench, `embed_throughput`, which `scripts/bench.sh` runs beside PyTorch.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sekator_model::testing::{tiny_config, write_random_model};
use sekator_model::{Cpu, Encoder, TokenBatch};

fn main() {
    divan::main();
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// MiniLM and its texts, loaded once; `None` (benches skipped) when `just setup` has not run.
fn minilm() -> Option<&'static (Encoder<Cpu>, Vec<String>)> {
    static CELL: OnceLock<Option<(Encoder<Cpu>, Vec<String>)>> = OnceLock::new();
    CELL.get_or_init(|| {
        let model = root().join("data/models/all-MiniLM-L6-v2");
        let texts =
            std::fs::read_to_string(root().join("data/encodechka/sentences_sample.txt")).ok()?;
        let enc = Encoder::<Cpu>::load(&model, &Default::default()).ok()?;
        Some((enc, texts.lines().map(String::from).collect()))
    })
    .as_ref()
}

fn batch_of(enc: &Encoder<Cpu>, texts: &[String]) -> TokenBatch {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens = enc.tokenize(&refs, 128).unwrap();
    TokenBatch::new(&tokens.iter().collect::<Vec<_>>(), enc.tokenizer.pad_id)
}

#[divan::bench(args = [1, 32])]
fn minilm_forward(bencher: divan::Bencher, batch: usize) {
    let Some((enc, texts)) = minilm() else {
        eprintln!("skipping minilm_forward: run `just setup` first");
        return;
    };
    let batch = batch_of(enc, &texts[..batch]);
    bencher.bench(|| enc.forward(divan::black_box(&batch), None).0.into_data());
}

#[divan::bench]
fn tiny_forward(bencher: divan::Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let dev = Default::default();
    write_random_model::<Cpu>(dir.path(), &tiny_config(2), 7, &dev).unwrap();
    let enc = Encoder::<Cpu>::load(dir.path(), &dev).unwrap();
    let texts: Vec<String> = (0..8)
        .map(|i| format!("text number {i} with words"))
        .collect();
    let batch = batch_of(&enc, &texts);
    bencher.bench(|| enc.forward(divan::black_box(&batch), None).0.into_data());
}
