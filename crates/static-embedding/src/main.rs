//! `static-embedding`: see `static-embedding --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sekator_model::DeviceKind;
use sekator_static::{build, Options};

/// Build a static-embedding baseline (model2vec-style) from a teacher: every vocabulary token's vector
/// (`[CLS] token [SEP]` through the teacher, pooled its way), reduced by PCA to --dim, each row weighted by
/// SIF `a / (a + p(token))` with token frequencies from --corpus. A sentence vector is the mean of its
/// tokens' rows (no special tokens): no encoder runs. The output is a model directory that `embed` and
/// `encodechka-eval --model` take like any other, and that sentence-transformers loads as a
/// `StaticEmbedding` (`SentenceTransformer(OUT)`).
#[derive(Parser, Debug)]
#[command(name = "static-embedding", version)]
struct Args {
    /// The teacher (Hugging Face model directory).
    #[arg(long, value_name = "DIR")]
    teacher: PathBuf,
    /// Text files for the token frequencies (one text per line; each tab-separated column counts as a
    /// text, so the en-ru pairs file works as it is). Comma-separated or repeated.
    #[arg(long, value_name = "FILE", value_delimiter = ',', required = true)]
    corpus: Vec<PathBuf>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Dimensions kept by PCA (at most the teacher's hidden size).
    #[arg(long, default_value_t = 256)]
    dim: usize,
    /// SIF's `a`: smaller down-weights frequent tokens more.
    #[arg(long, default_value_t = 1e-3)]
    sif_a: f64,
    /// Tokens per teacher forward pass.
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
    /// Replace OUT if it exists.
    #[arg(long)]
    overwrite: bool,
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    sekator_model::logging::init("warn");
    let a = Args::parse();
    let opts = Options {
        teacher: a.teacher,
        corpus: a.corpus,
        out: a.out,
        dim: a.dim,
        sif_a: a.sif_a,
        batch_size: a.batch_size,
        device: a.device,
        overwrite: a.overwrite,
        progress: !a.quiet,
    };
    match build(&opts) {
        Ok(info) => {
            println!(
                "wrote {}: {} tokens x {} dims ({:.1}% of the teacher vectors' variance), SIF a = {} over {} corpus tokens",
                opts.out.display(),
                info.vocab_size,
                info.dim,
                info.explained_variance * 100.0,
                info.sif_a,
                info.corpus_tokens
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
