//! `static-embedding`: see `static-embedding --help`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use sekator_model::{checkpoint_hash, file_hash, DeviceKind};
use sekator_pipeline::config::STATIC_SECTION;
use sekator_pipeline::sections::StaticWork;
use sekator_pipeline::{Manifest, RunConfig};
use sekator_static::{build, Options};

/// Build a static-embedding baseline (model2vec-style) from a teacher: every vocabulary token's vector
/// (`[CLS] token [SEP]` through the teacher, pooled its way), reduced by PCA to --dim, each row weighted by
/// SIF `a / (a + p(token))` with token frequencies from --corpus. A sentence vector is the mean of its
/// tokens' rows (no special tokens): no encoder runs. The output is a model directory that `embed` and
/// `encodechka-eval --model` take like any other, and that sentence-transformers loads as a
/// `StaticEmbedding` (`SentenceTransformer(OUT)`).
///
/// With --config, a pipeline config's `[static]` section (keys dim, sif_a, batch_size) builds the run's
/// baseline from [run].model with [run].pairs as the corpus into <runs_dir>/<name>/static, which the eval
/// stage then scores as `static`; a config without `[static]` builds nothing, and an output whose
/// manifest matches is kept.
#[derive(Parser, Debug)]
#[command(name = "static-embedding", version)]
struct Args {
    /// Pipeline config (configs/*.toml) with a `[static]` section; replaces the flags below.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["teacher", "corpus", "out"])]
    config: Option<PathBuf>,
    /// The teacher (Hugging Face model directory).
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    teacher: Option<PathBuf>,
    /// Text files for the token frequencies (one text per line; each tab-separated column counts as a
    /// text, so the en-ru pairs file works as it is). Comma-separated or repeated.
    #[arg(
        long,
        value_name = "FILE",
        value_delimiter = ',',
        required_unless_present = "config"
    )]
    corpus: Vec<PathBuf>,
    /// Output directory.
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    out: Option<PathBuf>,
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
    /// Replace OUT if it exists (with --config: rebuild even when up to date).
    #[arg(long)]
    overwrite: bool,
    #[arg(long)]
    quiet: bool,
}

/// What the output's manifest records: settings, the teacher's and the corpus's hashes, this code.
fn manifest(o: &Options) -> Result<Manifest> {
    let mut inputs = BTreeMap::new();
    inputs.insert("teacher".to_string(), checkpoint_hash(&o.teacher)?);
    for (i, c) in o.corpus.iter().enumerate() {
        inputs.insert(
            format!("corpus:{i}"),
            file_hash(c).with_context(|| c.display().to_string())?,
        );
    }
    let settings = serde_json::json!({"dim": o.dim, "sif_a": o.sif_a});
    Ok(Manifest::new(
        STATIC_SECTION,
        settings,
        inputs,
        env!("SEKATOR_CODE"),
    ))
}

fn run(a: Args) -> Result<()> {
    let progress = !a.quiet;
    let opts = match &a.config {
        Some(path) => {
            let rc = RunConfig::load(path)?;
            if !rc.has_section(STATIC_SECTION) {
                println!(
                    "{}: no [{STATIC_SECTION}] section: no static baseline to build",
                    path.display()
                );
                return Ok(());
            }
            let w: StaticWork = rc.section(STATIC_SECTION)?;
            Options {
                teacher: rc.run.model.clone(),
                corpus: vec![rc.run.pairs.clone()],
                out: rc.run_dir().join(sekator_pipeline::stage::STATIC_MODEL),
                dim: w.dim,
                sif_a: w.sif_a,
                batch_size: w.batch_size,
                device: rc.run.device,
                overwrite: true,
                progress,
            }
        }
        None => Options {
            teacher: a.teacher.clone().expect("clap requires it"),
            corpus: a.corpus.clone(),
            out: a.out.clone().expect("clap requires it"),
            dim: a.dim,
            sif_a: a.sif_a,
            batch_size: a.batch_size,
            device: a.device,
            overwrite: a.overwrite,
            progress,
        },
    };
    let want = manifest(&opts)?;
    if a.config.is_some() && !a.overwrite {
        match Manifest::read(&opts.out) {
            Some(old) if want.matches(&old) => {
                println!("{}: up to date; --overwrite to rebuild", opts.out.display());
                return Ok(());
            }
            Some(old) => eprintln!(
                "{}: building: {}",
                opts.out.display(),
                want.rerun_reason(&old).unwrap_or_default()
            ),
            None => {}
        }
    }
    if opts.corpus.is_empty() {
        bail!("--corpus: give at least one text file");
    }
    let t0 = std::time::Instant::now();
    let info = build(&opts)?;
    let mut m = want;
    m.seconds = t0.elapsed().as_secs_f64();
    m.results = serde_json::to_value(&info)?;
    m.write(&opts.out)?;
    println!(
        "wrote {}: {} tokens x {} dims ({:.1}% of the teacher vectors' variance), SIF a = {} over {} corpus tokens, {:.0} s",
        opts.out.display(),
        info.vocab_size,
        info.dim,
        info.explained_variance * 100.0,
        info.sif_a,
        info.corpus_tokens,
        m.seconds
    );
    Ok(())
}

fn main() -> ExitCode {
    sekator_model::logging::init("warn");
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
