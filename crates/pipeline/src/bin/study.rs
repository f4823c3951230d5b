//! `study`: the study of cuts at one FLOPs target (see `study --help`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use sekator_pipeline::comparison::{report, PlanRun, StudyConfig};
use sekator_pipeline::sections::{parse_work, EvalWork};
use sekator_pipeline::{RunConfig, RunLock, Stage};

const AFTER_HELP: &str = "\
STUDY CONFIG (configs/study.toml)
  [study]
  name = \"study\"                 runs go to <runs_dir>/study/<plan>/, the report to <runs_dir>/study/report/
  base = \"configs/default.toml\"  the pipeline config every plan starts from
  seeds = [43, 44]               more distillation seeds for the FIRST plan: the report's spread
  [study.importance]             [importance] keys set for every plan (e.g. loss = \"ranking\")
  [study.surgery]                [surgery] keys set for every plan (e.g. no_onnx = true)
  [study.distill]                [distill] keys set for every plan (the study's budget), e.g. steps = 128
  [[plan]]                       one per plan, in report order; the first is the reference
  name = \"taylor\"
  about = \"...\"                  one line for the report
  [plan.importance]              keys on top of the base's and the study's [importance] (optional)
  [plan.surgery]                 the plan's cut: the base's cut keys (heads_ratio, heads_per_layer, ffn_ratio,
                                 ffn_uniform, hidden_ratio, keep_layers, steps, random) are dropped, its
                                 other keys kept
  [plan.distill]                 keys on top of the base's and the study's [distill] (optional)

WHAT RUNS
  Each plan (and the first plan once per extra seed) becomes a pipeline config in
  <runs_dir>/<study>/configs/<run>.toml; the stages importance, surgery and distill run on it as under
  `just pipeline`, then encodechka-eval scores its distilled model (--name <run>). The teacher is scored
  once (<runs_dir>/<study>/teacher/eval); encodechka vectors are cached in <runs_dir>/encodechka-cache and
  the teacher's distillation vectors in <runs_dir>/teacher-cache, shared with `just pipeline`. Every stage
  skips itself when its manifest matches, so an interrupted study continues where it stopped; a changed
  plan reruns only what it changes. A generated config reruns one stage by hand:
    target/release/distill --config runs/study/configs/taylor.toml

OUTPUT (<runs_dir>/<study>/report/)
  study.md              per plan: every task, Mean S (mean ± SD over seeds where there are several), its
                        change against the teacher, params, FLOPs per token, CPU ms/text, dev MSE, the
                        --validate Spearman of the importance used; per-task changes; ranking; stage times
  study.csv             one row per run
  mean_s_vs_cpu_ms.png  Mean S against CPU ms per text, a point per run";

/// Run the study of cuts: several student plans at one FLOPs target, each pruned, distilled with the same
/// budget, data and seed, and scored on encodechka, then one report side by side.
#[derive(Parser, Debug)]
#[command(name = "study", version, after_help = AFTER_HELP)]
struct Args {
    /// Study config.
    #[arg(long, value_name = "FILE", default_value = "configs/study.toml")]
    config: PathBuf,
    /// Only these runs (plan names, `taylor-seed43`, or `teacher`), comma-separated; the report then names
    /// the runs still missing.
    #[arg(long, value_delimiter = ',', value_name = "RUN,...")]
    only: Vec<String>,
    /// Write the generated configs and list the runs; run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Only rebuild the report from what the runs wrote (also while the study runs: runs not evaluated yet
    /// are named).
    #[arg(long, conflicts_with_all = ["only", "dry_run"])]
    report_only: bool,
}

/// Runs `bin` (a sibling of this executable) with `args`; an error names the command and how to resume.
fn stage(bin: &str, args: &[String], what: &str) -> Result<()> {
    let exe = std::env::current_exe().context("locating the study binary")?;
    let path = exe.with_file_name(bin);
    if !path.is_file() {
        bail!(
            "{} not found: build the stage binaries first (`just build`)",
            path.display()
        );
    }
    let t0 = Instant::now();
    let status = Command::new(&path)
        .args(args)
        .status()
        .with_context(|| format!("starting {}", path.display()))?;
    if !status.success() {
        bail!(
            "{what}: `{} {}` failed ({status}); fix it and rerun the study: finished stages are skipped",
            path.display(),
            args.join(" ")
        );
    }
    eprintln!("  {what}: {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Flags of `encodechka-eval` for `model` named `name` into `out`, with the base's `[eval]` task choice.
fn eval_args(
    rc: &RunConfig,
    cache: &Path,
    model: &Path,
    name: &str,
    out: &Path,
) -> Result<Vec<String>> {
    let work: EvalWork = parse_work(rc, Stage::Eval.name(), &[])?;
    let mut a: Vec<String> = [
        "--model",
        &model.display().to_string(),
        "--name",
        name,
        "--out",
        &out.display().to_string(),
        "--data",
        &rc.run.encodechka.display().to_string(),
        "--cache",
        &cache.display().to_string(),
        "--device",
        &rc.run.device.to_string(),
    ]
    .map(String::from)
    .to_vec();
    if !work.tasks.is_empty() {
        a.extend(["--tasks".into(), work.tasks.join(",")]);
    }
    if work.no_speed {
        a.push("--no-speed".into());
    }
    Ok(a)
}

fn run_plan(study: &StudyConfig, r: &PlanRun) -> Result<()> {
    let cfg = vec!["--config".to_string(), r.config.path.display().to_string()];
    for s in [Stage::Importance, Stage::Surgery, Stage::Distill] {
        stage(s.binary(), &cfg, &format!("{} {}", r.name, s.name()))?;
    }
    let rc = &r.config;
    let model = rc
        .stage_dir(Stage::Distill)
        .join(sekator_pipeline::stage::DISTILLED_MODEL);
    let args = eval_args(
        rc,
        &study.eval_cache(),
        &model,
        &r.name,
        &rc.stage_dir(Stage::Eval),
    )?;
    stage(Stage::Eval.binary(), &args, &format!("{} eval", r.name))
}

fn run(a: Args) -> Result<()> {
    let study = StudyConfig::load(&a.config)?;
    let runs = study.runs()?;
    for o in &a.only {
        if o != report::TEACHER && !runs.iter().any(|r| &r.name == o) {
            bail!("--only {o}: no such run (runs: {})", names(&runs));
        }
    }
    if a.dry_run {
        for r in &runs {
            println!("{}: {}", r.name, r.config.path.display());
        }
        return Ok(());
    }
    let dir = study.dir();
    // the report only reads, so it may look at a study still running
    let _lock = match a.report_only {
        true => None,
        false => Some(RunLock::acquire(&dir, "study")?),
    };
    let t0 = Instant::now();
    if !a.report_only {
        let base = &study.base;
        let teacher_out = dir.join(report::TEACHER).join(Stage::Eval.dir());
        if a.only.is_empty() || a.only.iter().any(|o| o == report::TEACHER) {
            eprintln!("[teacher] encodechka");
            let args = eval_args(
                base,
                &study.eval_cache(),
                &base.run.model,
                report::TEACHER,
                &teacher_out,
            )?;
            stage(Stage::Eval.binary(), &args, "teacher eval")?;
        }
        for (i, r) in runs.iter().enumerate() {
            if !a.only.is_empty() && !a.only.contains(&r.name) {
                continue;
            }
            eprintln!(
                "[{}/{}] {} ({:.0} min so far)",
                i + 1,
                runs.len(),
                r.name,
                t0.elapsed().as_secs_f64() / 60.0
            );
            run_plan(&study, r).with_context(|| format!("study run `{}`", r.name))?;
        }
    }
    let rep = report::gather(&study, &runs)?;
    let out = dir.join("report");
    let (md, plotted) = report::write(&rep, &out)?;
    println!("{md}");
    println!(
        "wrote {}/study.md, study.csv{} ({:.1} min)",
        out.display(),
        if plotted {
            " and mean_s_vs_cpu_ms.png"
        } else {
            " (no plot: no run has a CPU ms/text)"
        },
        t0.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

fn names(runs: &[PlanRun]) -> String {
    runs.iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
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
