//! `distill`: command-line front end of [`sekator_distill::run`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use sekator_distill::config::{ScheduleKind, EXAMPLE_TOML};
use sekator_distill::train::Probe;
use sekator_distill::{DistillConfig, DistillError, Precision, TrainOptions};
use sekator_model::{DeviceKind, Pooling};
use sekator_pipeline::{freshness, Stage};

const AFTER_HELP: &str = "\
Settings come from --config (TOML; every key optional, unknown keys are errors), then the flags above \
override them. A pipeline config (configs/*.toml, with a [run] section) works too: teacher = run.model, \
student = runs/NAME/pruned, out = runs/NAME/distill, the rest from its [distill] section; such a run is skipped \
when finished with the same code, inputs and settings, continued when interrupted or when only steps/epochs grew, restarted when other settings changed. `--print-config` shows the resolved settings. Outputs in --out: checkpoints/step-N/ (HF model \
dir + optimizer.safetensors + state.json + model card; last keep_checkpoints kept), final/ (HF model dir with its model card \
README.md and, for uneven layers, remote code for transformers' trust_remote_code=True; final/onnx/model.onnx and \
model_qint8.onnx unless onnx = false), metrics.jsonl, \
loss.png, manifest.json, precision.json (the precision check's verdict). Teacher embeddings are cached under cache_dir, keyed by (teacher hash, data hash, \
pooling, max_length); a second run does no teacher forward passes. Precision: `auto` trains in f32 on CPU; on CUDA it first trains the run's first precision_check_steps steps in f32, flex32, bf16-mixed, bf16 and f16 (a process each), keeps the fastest whose loss curve stays within precision_tolerance of f32's and records the verdict in precision.json (reused on resume); --check-precision runs that check alone, on any device.";

/// Distil a pruned student back towards its teacher on en<TAB>ru pairs.
///
/// Loss: w_mse*[MSE(s(en),t(en)) + MSE(s(ru),t(ru))] + w_cross*MSE(s(ru),t(en)) + w_rank*R(s(en),s(ru)) +
/// w_tokens*[TMSE(en) + TMSE(ru)], R = symmetric in-batch ranking loss on scaled cosine similarities,
/// TMSE = MSE of student and teacher last hidden states over the non-padding tokens (teacher run online). AdamW (no decay on biases/LayerNorm),
/// linear warm-up then linear/cosine decay, global gradient-norm clipping. Weights and optimizer state are
/// checkpointed so that `--resume` continues bit-identically.
#[derive(Parser, Debug)]
#[command(version, about, long_about, after_help = AFTER_HELP, after_long_help = format!("{AFTER_HELP}\n\nExample config (all defaults):\n\n{EXAMPLE_TOML}"))]
struct Args {
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue from the newest checkpoint in --out that verifies (damaged ones are set aside with a
    /// warning); a larger --steps/--epochs than the checkpoint's run extends it.
    #[arg(long)]
    resume: bool,
    /// Delete an earlier run's checkpoints/final/metrics in --out and start over.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Print the resolved settings as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Start over even when --out holds a finished run of the same settings (implies --overwrite).
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Stop after N steps of this invocation without writing anything more (simulates an interruption).
    #[arg(long, value_name = "N")]
    max_steps_this_run: Option<usize>,
    /// Sleep after every step (test hook).
    #[arg(long, hide = true, default_value_t = 0)]
    step_delay_ms: u64,
    /// Run the precision check (the first precision_check_steps steps in each dtype the device offers,
    /// loss curves against f32, speeds), write <out>/precision.json, print the table and exit.
    #[arg(long, conflicts_with_all = ["resume", "print_config"])]
    check_precision: bool,
    /// Internal: one candidate of the precision check (what `--check-precision` runs per dtype).
    #[arg(long, hide = true, value_enum, requires = "probe_report")]
    precision_probe: Option<Precision>,
    /// Internal: where `--precision-probe` writes its losses and step times.
    #[arg(long, hide = true)]
    probe_report: Option<PathBuf>,
    /// Compute the teacher cache (training and dev pairs, in f32) and exit; a reduced-precision run
    /// does this in a child process when the cache is missing.
    #[arg(long, conflicts_with_all = ["check_precision", "precision_probe", "resume"])]
    fill_teacher_cache: bool,

    /// Teacher checkpoint (HF dir). [config: teacher]
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Student checkpoint (HF dir). [config: student]
    #[arg(long)]
    student: Option<PathBuf>,
    /// Training pairs TSV. [config: data]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Dev pairs TSV. [config: dev_data; default: pairs_dev.tsv beside data]
    #[arg(long)]
    dev_data: Option<PathBuf>,
    /// Output directory. [config: out; default: distill-out]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Teacher-embedding cache directory. [config: cache_dir; default: <out>/teacher-cache]
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Total optimizer steps. [config: steps; default: epochs * batches per epoch]
    #[arg(long)]
    steps: Option<usize>,
    /// Train on a seeded sample of N pairs only (the teacher embeds just those). [config: max_pairs]
    #[arg(long, value_name = "N")]
    max_pairs: Option<usize>,
    /// Passes over the data when --steps is unset. [config: epochs; default 1]
    #[arg(long)]
    epochs: Option<f64>,
    /// [config: batch_size; default 32]
    #[arg(long)]
    batch_size: Option<usize>,
    /// [config: max_length; default 128]
    #[arg(long)]
    max_length: Option<usize>,
    /// Peak learning rate. [config: lr; default 1e-4]
    #[arg(long)]
    lr: Option<f64>,
    /// [config: schedule; default linear]
    #[arg(long, value_enum)]
    schedule: Option<ScheduleKind>,
    /// [config: warmup_steps; default warmup_ratio (0.1) * steps]
    #[arg(long)]
    warmup_steps: Option<usize>,
    /// [config: weight_decay; default 0.01]
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Global gradient-norm clip, 0 disables. [config: max_grad_norm; default 1]
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// [config: w_mse; default 1]
    #[arg(long)]
    w_mse: Option<f64>,
    /// [config: w_cross; default 1]
    #[arg(long)]
    w_cross: Option<f64>,
    /// [config: w_rank; default 0.1]
    #[arg(long)]
    w_rank: Option<f64>,
    /// [config: rank_scale; default 20]
    #[arg(long)]
    rank_scale: Option<f64>,
    /// Token-level hidden-state MSE; > 0 runs the teacher every step. [config: w_tokens; default 0]
    #[arg(long)]
    w_tokens: Option<f64>,
    /// CPU: run each batch as N micro-batches on their own threads (the loss stays the whole batch's;
    /// same gradient up to rounding, deterministic); 1: one graph. [config: micro_batches; default 2]
    #[arg(long)]
    micro_batches: Option<usize>,
    /// [config: pooling; default: the teacher's own]
    #[arg(long, value_enum)]
    pooling: Option<Pooling>,
    /// [config: seed; default 42]
    #[arg(long)]
    seed: Option<u64>,
    /// [config: eval_every; default 500]
    #[arg(long)]
    eval_every: Option<usize>,
    /// [config: eval_pairs; default 1000]
    #[arg(long)]
    eval_pairs: Option<usize>,
    /// [config: checkpoint_every; default 1000]
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// [config: keep_checkpoints; default 3]
    #[arg(long)]
    keep_checkpoints: Option<usize>,
    /// [config: log_every; default 10]
    #[arg(long)]
    log_every: Option<usize>,
    /// [config: device; default auto]
    #[arg(long, value_enum)]
    device: Option<DeviceKind>,
    /// Training dtype; auto = checked on CUDA, f32 on CPU. [config: precision; default auto]
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Steps per dtype in the precision check. [config: precision_check_steps; default 50]
    #[arg(long)]
    precision_check_steps: Option<usize>,
    /// Largest relative deviation from the f32 loss curve. [config: precision_tolerance; default 0.02]
    #[arg(long)]
    precision_tolerance: Option<f64>,
    /// Do not export final/onnx/ (`export --model OUT/final` does it later). [config: onnx = false]
    #[arg(long)]
    no_onnx: bool,
    /// Export the f32 ONNX model only, no model_qint8.onnx. [config: onnx_int8 = false]
    #[arg(long)]
    no_int8: bool,
}

/// A pipeline config (configs/*.toml) has a `[run]` section; distill's own config files do not.
fn is_pipeline_config(p: &Path) -> bool {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("run"))
}

/// The resolved settings, and whether they came from a pipeline config.
fn resolve(a: &Args) -> Result<(DistillConfig, bool)> {
    let (mut c, pipeline) = match &a.config {
        Some(p) if is_pipeline_config(p) => (
            DistillConfig::from_pipeline(&sekator_pipeline::RunConfig::load(p)?)?,
            true,
        ),
        Some(p) => (DistillConfig::load(p)?, false),
        None => (DistillConfig::default(), false),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { c.$f = v.into(); } )* };
    }
    set!(
        epochs,
        batch_size,
        max_length,
        lr,
        schedule,
        weight_decay,
        max_grad_norm,
        w_mse,
        w_cross,
        w_rank,
        rank_scale,
        w_tokens,
        micro_batches,
        seed
    );
    set!(
        eval_every,
        eval_pairs,
        checkpoint_every,
        keep_checkpoints,
        log_every,
        device,
        out,
        precision,
        precision_check_steps,
        precision_tolerance
    );
    macro_rules! set_opt {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { c.$f = Some(v); } )* };
    }
    set_opt!(
        teacher,
        student,
        data,
        dev_data,
        cache_dir,
        steps,
        max_pairs,
        warmup_steps,
        pooling
    );
    c.onnx &= !a.no_onnx;
    c.onnx_int8 &= !a.no_int8;
    Ok((c, pipeline))
}

fn main() -> ExitCode {
    sekator_model::logging::init("info");
    match real_main(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(args: Args) -> Result<()> {
    let (cfg, pipeline) = resolve(&args)?;
    if args.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    // (precision probes and the teacher-cache fill are this run's children, under its lock)
    let run_dir = cfg.out.parent().filter(|_| pipeline);
    let _lock = sekator_pipeline::lock_stage(run_dir, &cfg.out, Stage::Distill)?;
    let exe = std::env::current_exe().context("locating the distill binary")?;
    if args.check_precision {
        let c = sekator_distill::train::check_precision(&cfg, &exe).context("distill")?;
        println!("{}", c.table());
        let check = cfg.out.join(sekator_distill::precision::CHECK_FILE);
        println!("{}", check.display());
        return Ok(());
    }
    let probe = match (args.precision_probe, &args.probe_report) {
        (Some(precision), Some(report)) => Some(Probe {
            precision,
            report: report.clone(),
        }),
        _ => None,
    };
    let mut opts = TrainOptions {
        resume: args.resume,
        overwrite: args.overwrite || args.force,
        max_steps_this_run: args.max_steps_this_run,
        step_delay_ms: args.step_delay_ms,
        progress: true,
        exe: Some(exe),
        probe,
        fill_cache_only: args.fill_teacher_cache,
    };
    if opts.fill_cache_only {
        let s = sekator_distill::run(&cfg, &opts).context("distill --fill-teacher-cache")?;
        println!("{}", s.teacher_cache.display());
        return Ok(());
    }
    if let Some(p) = &opts.probe {
        sekator_distill::run(&cfg, &opts).context("distill precision probe")?;
        tracing::info!("probe {} -> {}", p.precision, p.report.display());
        return Ok(());
    }
    if pipeline && !opts.overwrite {
        if up_to_date(&cfg) {
            return Ok(());
        }
        opts.resume = true;
    }
    let s = match sekator_distill::run(&cfg, &opts) {
        Err(DistillError::Resume(why)) if pipeline && !opts.overwrite => {
            tracing::warn!("{why}; the config changed, so the run starts over");
            opts.resume = false;
            opts.overwrite = true;
            sekator_distill::run(&cfg, &opts)
        }
        r => r,
    }
    .context("distill")?;
    log_outcome(&s);
    Ok(())
}

/// Under a pipeline config the stage looks after itself: a finished identical run is kept (true), an
/// interrupted or lengthened one continues from its newest checkpoint, one with other settings starts over.
fn up_to_date(cfg: &DistillConfig) -> bool {
    // (a missing input is left to `run`, whose errors name it and the fix)
    let fresh = match sekator_distill::expected_manifest(cfg) {
        Ok(want) => freshness(&cfg.out, &want),
        Err(e) => Err(e.to_string()),
    };
    match fresh {
        Ok(())
            if cfg
                .out
                .join(sekator_pipeline::stage::DISTILLED_MODEL)
                .is_dir() =>
        {
            println!(
                "{}: up to date (same code, teacher, student, data and settings); --force to rerun",
                cfg.out.display()
            );
            true
        }
        Ok(()) => false,
        Err(why) => {
            tracing::info!("{}: running: {why}", cfg.out.display());
            false
        }
    }
}

fn log_outcome(s: &sekator_distill::Summary) {
    if !s.finished {
        tracing::info!(
            "stopped at step {} of {} (continue with --resume)",
            s.step,
            s.total_steps
        );
        return;
    }
    let ev = match (s.eval_first, s.eval_last) {
        (Some(a), Some(b)) => format!(
            "; dev mse {:.6} -> {:.6}, acc@1 en->ru {:.4} -> {:.4}",
            a.mse, b.mse, a.acc_en_ru, b.acc_en_ru
        ),
        _ => String::new(),
    };
    let final_dir = s.final_dir.as_deref().map(|p| p.display().to_string());
    tracing::info!(
        "done: {} steps, {:.1} pairs/s{ev}; final model {}",
        s.total_steps,
        s.pairs_per_s,
        final_dir.unwrap_or_default()
    );
}
