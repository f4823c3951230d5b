//! `embed`: one text per input line -> one vector per line (.npy float32 [lines, dim] or JSON lines).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::Backend;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use sekator_model::backend::{self, BackendTask, DeviceKind};
use sekator_model::{npy, EmbedOptions, Encoder, Pooling, StaticModel};

/// Embed texts with a BERT checkpoint (Hugging Face directory), one text per input line.
///
/// Output rows are in input order (texts are sorted by length internally for speed). Empty lines are
/// embedded as empty strings, i.e. `[CLS] [SEP]`, so line numbers always match rows.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Model directory: config.json, model.safetensors, tokenizer.json or vocab.txt; or a static-embedding
    /// model (`static-embedding`'s output: the mean of the text's token rows).
    #[arg(long)]
    model: PathBuf,
    /// Input text file, one text per line; `-` reads standard input.
    #[arg(long)]
    input: String,
    /// Output file: `.npy` (float32 [lines, dim]) or `.jsonl` (one JSON array per line).
    #[arg(long)]
    output: PathBuf,
    /// Pooling; default: the checkpoint's own (sentence-transformers config, else pooler, else cls).
    #[arg(long, value_enum)]
    pooling: Option<Pooling>,
    /// L2-normalise the vectors (default: as the checkpoint's sentence-transformers config says).
    #[arg(long)]
    normalize: bool,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Truncate texts to this many tokens, [CLS] and [SEP] included.
    #[arg(long, default_value_t = 128)]
    max_length: usize,
    /// Compute device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
}

struct EmbedTask {
    args: Args,
    texts: Vec<String>,
}

impl BackendTask for EmbedTask {
    type Output = Result<Vec<Vec<f32>>>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let a = &self.args;
        if StaticModel::is_static(&a.model) {
            return embed_static(a, &self.texts);
        }
        let enc = Encoder::<B>::load(&a.model, &device).map_err(anyhow::Error::new)?;
        let opts = EmbedOptions {
            pooling: a.pooling.unwrap_or(enc.pooling),
            normalize: a.normalize || (a.pooling.is_none() && enc.normalize),
            batch_size: a.batch_size.max(1),
            max_length: a.max_length,
        };
        tracing::info!(pooling = %opts.pooling, normalize = opts.normalize, "embedding {} texts", self.texts.len());
        let bar = if self.texts.len() >= 256 {
            let b = ProgressBar::new(self.texts.len() as u64);
            b.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} texts  {per_sec}  eta {eta}")
                    .expect("valid template"),
            );
            b
        } else {
            ProgressBar::hidden()
        };
        let out = enc.embed(&self.texts, &opts, |done| bar.set_position(done as u64))?;
        bar.finish_and_clear();
        Ok(out)
    }
}

/// A static-embedding model: the mean of each text's token rows (at most `max_length - 2` tokens, the room
/// an encoder leaves beside `[CLS]` and `[SEP]`); `--pooling` does not apply.
fn embed_static(a: &Args, texts: &[String]) -> Result<Vec<Vec<f32>>> {
    if a.pooling.is_some() {
        bail!(
            "{}: a static-embedding model has one pooling (the mean of its token rows); drop --pooling",
            a.model.display()
        );
    }
    let m = StaticModel::load(&a.model)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut rows = m.embed(&refs, a.max_length.saturating_sub(2).max(1))?;
    if a.normalize {
        for r in &mut rows {
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            if n > 0.0 {
                r.iter_mut().for_each(|x| *x /= n);
            }
        }
    }
    Ok(rows)
}

fn read_lines(input: &str) -> Result<Vec<String>> {
    let reader: Box<dyn BufRead> = if input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f =
            std::fs::File::open(input).with_context(|| format!("{input}: cannot open input"))?;
        Box::new(std::io::BufReader::new(f))
    };
    let lines: Vec<String> = reader
        .lines()
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("{input}: not valid UTF-8 text"))?;
    if lines.is_empty() {
        bail!("{input}: input is empty (one text per line expected)");
    }
    Ok(lines)
}

fn write_output(path: &Path, rows: &[Vec<f32>], dim: usize) -> Result<()> {
    let mut bytes = vec![];
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => {
            for r in rows {
                serde_json::to_writer(&mut bytes, r)?;
                bytes.push(b'\n');
            }
        }
        Some("npy") => npy::write_f32(&mut bytes, rows, dim)?,
        _ => bail!("{}: output must end in .npy or .jsonl", path.display()),
    }
    sekator_model::write_atomic(path, &bytes)
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn main() -> ExitCode {
    sekator_model::logging::init("warn");
    let args = Args::parse();
    let result = (|| -> Result<()> {
        if !matches!(
            args.output.extension().and_then(|e| e.to_str()),
            Some("npy" | "jsonl")
        ) {
            bail!(
                "{}: output must end in .npy or .jsonl",
                args.output.display()
            );
        }
        let texts = read_lines(&args.input)?;
        let output = args.output.clone();
        let rows = backend::run(args.device, EmbedTask { args, texts })??;
        let dim = rows.first().map(|r| r.len()).unwrap_or(0);
        write_output(&output, &rows, dim)
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
