//! `importance`: which attention heads and FFN neurons of a BERT checkpoint can go?

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use sekator_importance::{score, Criterion, ImportanceOptions, LossKind, Normalize, Scores};
use sekator_model::backend::DeviceKind;
use sekator_model::Pooling;
use sekator_pipeline::sections::ImportanceWork;
use sekator_pipeline::{flag, freshness, lock_stage, parse_stage_args, Stage};

/// Score every attention head and FFN neuron of a BERT checkpoint by accumulated mask gradients.
///
/// Each head and FFN neuron is multiplied by a mask ξ = 1; the first-order Taylor estimate of the loss
/// change when a unit is removed is |dL/dξ| (Michel et al. 2019). Gradients are accumulated over seeded
/// batches of en-ru pairs and normalised. The baseline `--criterion magnitude` scores each unit by the L2
/// norm of its own weights instead (no data, no forward pass). The scores are written to OUT:
///
///   importance.safetensors  `heads` [layers, heads] (original head indices, pruned heads 0) and
///                           `head_present`, `ffn.{l}` [FFN width of layer l] (current neuron order)
///   importance.json         hashes of checkpoint and data, settings, mean loss, time, pairs/s, --validate
///   heads.csv, heads.png    head scores as a table and a heat map; ffn.png: sorted FFN scores per layer
///   manifest.json           what ran; a rerun with the same inputs and settings is skipped (--force reruns)
///
/// The same inputs give identical scores.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Pipeline config (configs/*.toml): --model, --out and --data come from its [run] section and run
    /// directory, the other flags from its [importance] section (keys = flag names with `_`); flags given
    /// here too override the config.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Model directory (Hugging Face layout: config.json, model.safetensors, tokenizer).
    #[arg(long)]
    model: PathBuf,
    /// Output directory (created; files in it are replaced).
    #[arg(long)]
    out: PathBuf,
    /// TSV of en<TAB>ru pairs (header `en<TAB>ru` optional; malformed lines are skipped and counted); not
    /// read by `--criterion magnitude` without --validate.
    #[arg(long, default_value = "data/en-ru/pairs.tsv")]
    data: PathBuf,
    /// Loss whose gradient is taken.
    #[arg(long, value_enum, default_value_t = LossKind::Ranking)]
    loss: LossKind,
    /// Teacher checkpoint for `--loss teacher` (required) or `--loss contrastive` (default: the model
    /// itself); same tokenizer and hidden size.
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Scale of the cosine similarities in the ranking and contrastive losses.
    #[arg(long, default_value_t = 20.0)]
    scale: f32,
    /// Sentence pooling; default: the checkpoint's own (sentence-transformers config, else pooler, else cls).
    #[arg(long, value_enum)]
    pooling: Option<Pooling>,
    /// Score: taylor = sum of |batch gradient|, fisher = sum of squared batch gradients, magnitude = L2
    /// norm of the unit's own weights (head: its Q/K/V rows and biases and attention-output columns; FFN
    /// neuron: its intermediate row and bias and output column), a baseline that needs no data or gradients.
    #[arg(long, value_enum, default_value_t = Criterion::Taylor)]
    criterion: Criterion,
    /// Normalisation: layer = L2 per layer (heads and FFN separately), global = one L2 norm, none = raw.
    #[arg(long, value_enum, default_value_t = Normalize::Layer)]
    normalize: Normalize,
    #[command(flatten)]
    work: ImportanceWork,
    /// Seed of the data sample and of the --validate head sample.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
    /// Rerun even when OUT/manifest.json says the outputs are up to date.
    #[arg(long)]
    force: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

fn run(a: Args) -> Result<()> {
    let opts = ImportanceOptions {
        data: a.data.clone(),
        loss: a.loss,
        teacher: a.teacher.clone(),
        scale: a.scale,
        pooling: a.pooling,
        criterion: a.criterion,
        normalize: a.normalize,
        samples: a.work.samples,
        batch_size: a.work.batch_size,
        max_length: a.work.max_length,
        seed: a.seed,
        validate: a.work.validate,
        hidden: a.work.hidden,
        progress: !a.quiet,
    };
    opts.check()?;
    if !a.force {
        if let Some(want) = sekator_importance::expected_manifest(&a.model, &opts) {
            match freshness(&a.out, &want) {
                Ok(()) if Scores::read(&a.out).is_ok() => {
                    eprintln!(
                        "{}: up to date (same code, checkpoint, data and settings); --force to rerun",
                        a.out.display()
                    );
                    return Ok(());
                }
                Ok(()) => eprintln!("{}: running: the scores are unreadable", a.out.display()),
                Err(why) => eprintln!("{}: running: {why}", a.out.display()),
            }
        }
    }
    let scores = score(&a.model, &opts, a.device)
        .with_context(|| format!("scoring {}", a.model.display()))?;
    sekator_importance::scores::write(&scores, &a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;

    let m = &scores.meta;
    if m.criterion == Criterion::Magnitude {
        println!(
            "{}: weight magnitudes (no gradient pass), {:.1} s",
            a.out.display(),
            m.seconds
        );
    } else {
        println!(
            "{}: {} pairs ({} batches of {}, max_length {}), loss {} mean {:.4}, {:.1} pairs/s on {}, {:.1} s",
            a.out.display(),
            m.samples,
            m.batches,
            m.batch_size,
            m.max_length,
            m.loss.name(),
            m.mean_loss,
            m.pairs_per_s,
            m.device,
            m.seconds
        );
    }
    let top: Vec<String> = scores
        .ranked_heads()
        .iter()
        .take(5)
        .map(|(l, h, s)| format!("L{l}H{h} {s:.3}"))
        .collect();
    let bottom: Vec<String> = scores
        .ranked_heads()
        .iter()
        .rev()
        .take(5)
        .map(|(l, h, s)| format!("L{l}H{h} {s:.3}"))
        .collect();
    println!(
        "top heads: {}; bottom: {}",
        top.join(", "),
        bottom.join(", ")
    );
    if let Some(v) = &m.validate {
        println!(
            "validate {} heads: Spearman(score, loss increase) = {:.3} (raw scores {:.3}), base loss {:.4}",
            v.heads.len(),
            v.spearman,
            v.spearman_raw,
            v.base_loss
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    sekator_model::logging::init("warn");
    let parsed = parse_stage_args::<Args>(Stage::Importance.name(), |c| {
        let r = &c.run;
        let mut derived = vec![];
        derived.extend(flag("model", r.model.display()));
        derived.extend(flag("out", c.stage_dir(Stage::Importance).display()));
        derived.extend(flag("data", r.pairs.display()));
        let mut defaults = vec![];
        defaults.extend(flag("seed", r.seed));
        defaults.extend(flag("device", r.device));
        (derived, defaults)
    });
    let locked = parsed.and_then(|(a, rc)| {
        let lock = lock_stage(
            rc.map(|c| c.run_dir()).as_deref(),
            &a.out,
            Stage::Importance,
        )?;
        Ok((a, lock))
    });
    let (args, _lock) = match locked {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
