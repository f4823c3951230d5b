//! `report`: the pipeline's final tables (see `report --help`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use sekator_pipeline::report::{estimate, study};
use sekator_pipeline::{RunConfig, Stage};

/// Teacher vs pruned (before distillation) vs distilled, beside published encodechka rows.
///
/// Joins what the stages of a run wrote (runs/NAME/eval/summary.json, runs/NAME/pruned/size.json,
/// runs/NAME/distill/summary.json, the stage manifests) into runs/NAME/report/: report.md (table, headline ratios, stage times), report.csv and
/// quality_vs_speed.png. Every encodechka task, Mean S, Mean S+W, parameters, FLOPs per token, safetensors MB,
/// CPU ms per text and batched throughput; Mean S change against the teacher in %. The [report] section of
/// the config may set `published = ["cointegrated/LaBSE-en-ru", ...]` (names as in
/// data/published/encodechka_leaderboard.csv).
#[derive(Parser, Debug)]
#[command(name = "report", version)]
struct Args {
    /// Pipeline config (configs/*.toml) of the run to report on.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Output directory (default: runs/NAME/report).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Accepted for symmetry with the other stages (`just pipeline ... --force`); the report is always
    /// rebuilt, it only reads files.
    #[arg(long)]
    force: bool,
    /// Print the estimated minutes of each stage of the run (from rates measured on 2 CPU cores, scaled
    /// by model size) and exit; `just pipeline` runs this first.
    #[arg(long)]
    estimate: bool,
}

fn run(a: Args) -> Result<()> {
    let rc = RunConfig::load(&a.config)?;
    if a.estimate {
        println!("{}", estimate::estimate(&rc)?);
        return Ok(());
    }
    let out = a.out.unwrap_or_else(|| rc.stage_dir(Stage::Report));
    let _lock = sekator_pipeline::RunLock::acquire(&rc.run_dir(), Stage::Report.name())?;
    let s = study::gather(&rc).with_context(|| format!("run `{}`", rc.run.name))?;
    let (md, png) = study::write(&s, &out)?;
    for dir in study::update_cards(&s, &rc)? {
        tracing::info!("{}/README.md: encodechka scores added", dir.display());
    }
    println!("{md}");
    println!(
        "wrote {}/report.md, report.csv and {}",
        out.display(),
        png.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    sekator_model::logging::init("warn");
    std::env::set_var("POLARS_FMT_MAX_COLS", "30");
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
