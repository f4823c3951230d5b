//! `random-model`: write a seeded random BERT checkpoint of any shape (tests, benchmarks, GPU checks).
//!
//! With `--tokenizer-from DIR` the tokenizer files of a real model are copied, so the result embeds real
//! text (ids beyond that vocabulary are simply never used); otherwise a tiny Latin+Cyrillic WordPiece
//! vocabulary is written.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use sekator_model::testing::write_random_model;
use sekator_model::{BertConfig, Cpu};

/// Write a random BERT checkpoint (Hugging Face layout). Defaults give a LaBSE-en-ru-shaped model.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Output directory (replaced if it exists).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 55083)]
    vocab_size: usize,
    #[arg(long, default_value_t = 768)]
    hidden: usize,
    #[arg(long, default_value_t = 12)]
    layers: usize,
    #[arg(long, default_value_t = 12)]
    heads: usize,
    #[arg(long, default_value_t = 3072)]
    ffn: usize,
    #[arg(long, default_value_t = 512)]
    max_position: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Copy tokenizer files from this model directory instead of writing a tiny vocabulary.
    #[arg(long)]
    tokenizer_from: Option<PathBuf>,
}

fn run(a: Args) -> Result<()> {
    let mut cfg = BertConfig::new(a.vocab_size, a.hidden, a.layers, a.heads, a.ffn);
    cfg.max_position_embeddings = a.max_position;
    cfg.extra.insert("model_type".into(), "bert".into());
    cfg.validate().map_err(anyhow::Error::msg)?;
    write_random_model::<Cpu>(&a.out, &cfg, a.seed, &Default::default())?;
    if let Some(src) = a.tokenizer_from {
        std::fs::remove_file(a.out.join("vocab.txt")).ok();
        std::fs::remove_file(a.out.join("tokenizer_config.json")).ok();
        for f in [
            "tokenizer.json",
            "vocab.txt",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ] {
            if src.join(f).exists() {
                std::fs::copy(src.join(f), a.out.join(f))
                    .with_context(|| format!("{}", src.join(f).display()))?;
            }
        }
    }
    println!("{}", a.out.display());
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
