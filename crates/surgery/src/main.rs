//! `surgery`: cut attention heads, FFN neurons or whole layers out of a BERT checkpoint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use sekator_importance::{ImportanceOptions, Scores};
use sekator_model::DeviceKind;
use sekator_pipeline::sections::SurgeryWork;
use sekator_pipeline::{flag, lock_stage, parse_stage_args, Stage};
use sekator_surgery::{run, BenchOptions, Limits, Options, PlanSource, Rule};

const AFTER_HELP: &str = "\
PLANS
  A plan lists, per layer, the ORIGINAL indices of the heads and FFN neurons to remove, in the Hugging Face
  `pruned_heads` convention:   {\"heads\": {\"0\": [0, 3]}, \"ffn\": {\"2\": [17, 255]}, \"keep_layers\": [0, 2, 4]}
  (`ffn` and `keep_layers` optional). Indices stay those of the original checkpoint even when --model was
  pruned before; units already gone are skipped. Every run saves the plan it applied as OUT/plan.json, which
  reproduces the result with `--plan` on the same input model.

  With --importance, the plan is built from the importance stage's scores:
    --heads-ratio R      remove the fraction R of all heads present, least important first, across layers
                         (default 0.5, the original study's setting; 0 keeps every head)
    --heads-per-layer N  instead: keep the N most important heads in every layer
    --ffn-ratio R        remove the fraction R of FFN neurons, least important across layers (default 0)
    --ffn-uniform        take the fraction R of every layer's neurons instead
    --random SEED        the control plan: remove exactly as many heads and neurons per layer as the rules
                         above, but WHICH ones by a seeded uniform choice among those present (not with
                         --steps K > 1); does importance beat chance?
  Every layer keeps at least --min-heads heads and --min-ffn neurons; an explicit plan that would leave less
  is refused with the layer named. Whole layers go with --keep-layers (the layer-dropping baseline).

VOCABULARY (--vocab-from FILE,...; independent of the cuts above, combines with them)
  The files (one text per line) are tokenised by the model's own tokenizer. Kept: the special and added
  tokens, every single character the corpus's tokens contain (as a word-initial piece and as ##piece), and
  the corpus's tokens, most frequent first, down to --min-count K and up to --vocab-size N in all. Kept
  tokens keep their original order; the word-embedding rows are sliced to match and tokenizer.json,
  vocab.txt and config.json (vocab_size, pad_token_id) are rewritten with the new ids. A text whose tokens
  all survive embeds exactly as before. Any other word is re-spelled with the kept pieces (WordPiece's
  greedy longest match, e.g. `playing` = play ##i ##n ##g once ##ing is gone); a word with a character
  outside the kept ones becomes [UNK]. size.json records the vocabulary before and after and the share of
  corpus tokens the kept ones cover.

OUTPUT (written to a temporary sibling of OUT, then renamed into place)
  OUT/config.json, model.safetensors   the smaller checkpoint (pruned_heads merged, intermediate_size[s])
  OUT/<tokenizer files>                copied from --model, with the sentence-transformers files
                                       (tokenizer.json, vocab.txt rebuilt for the new ids with --vocab-from)
  OUT/configuration_sekator_bert.py,   remote code + config.json auto_map when layers differ in heads or FFN
  OUT/modeling_sekator_bert.py         width (load with trust_remote_code=True); a plain BertModel otherwise
  OUT/README.md, sekator_card.json     the model card: base model, plan per layer, sizes, how to load it
  OUT/onnx/model.onnx, model_qint8.onnx  ONNX (opset 17) f32 and dynamic int8 (unless --no-onnx/--no-int8)
  OUT/plan.json                        the applied plan (all steps merged), original indices
  OUT/size.json                        params total / encoder / embeddings, file size, FLOPs per token at
                                       sequence length 128, measured CPU ms/text; before, after and ratios;
                                       the vocabulary before/after and its corpus coverage (--vocab-from)
  OUT/manifest.json                    settings, input hashes, results
  An existing OUT is replaced only with --overwrite; if its manifest shows the same inputs and settings,
  the run reports it as up to date and exits 0.

EXAMPLES
  surgery --model data/models/all-MiniLM-L6-v2 --importance runs/x/importance --out runs/x/pruned
  surgery --model M --importance I --heads-ratio 0.5 --ffn-ratio 0.5 --out OUT
  surgery --model M --plan my_plan.json --dry-run
  surgery --model M --keep-layers 0,2,4 --out OUT
  surgery --model M --vocab-from texts.txt --vocab-size 8000 --out OUT";

/// Cut attention heads, FFN neurons or whole layers out of a BERT checkpoint and write a smaller Hugging Face
/// checkpoint (loads in transformers / sentence-transformers, with its own code when layers are uneven), its
/// ONNX export, a model card and a size report (params, FLOPs, measured CPU speed).
#[derive(Parser, Debug)]
#[command(name = "surgery", version, after_help = AFTER_HELP)]
struct Args {
    /// Pipeline config (configs/*.toml): --model, --importance and --out come from its [run] section and run
    /// directory (runs/NAME/importance -> runs/NAME/pruned), the other flags from its [surgery] section (keys =
    /// flag names with `_`); flags given here too override the config, and --force also rebuilds.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Input Hugging Face model directory (config.json + model.safetensors + tokenizer files).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Output directory of the importance stage (importance.safetensors + importance.json) for --model.
    #[arg(long, value_name = "DIR", conflicts_with = "plan")]
    importance: Option<PathBuf>,
    /// Explicit plan file (see PLANS below).
    #[arg(long, value_name = "FILE.json")]
    plan: Option<PathBuf>,
    #[command(flatten)]
    work: SurgeryWork,
    /// Fewest heads any layer may keep.
    #[arg(long, value_name = "N", default_value_t = 1)]
    min_heads: usize,
    /// Fewest FFN neurons any layer may keep.
    #[arg(long, value_name = "N", default_value_t = 1)]
    min_ffn: usize,
    /// Output directory.
    #[arg(long, value_name = "DIR", required_unless_present = "dry_run")]
    out: Option<PathBuf>,
    /// Print the plan and the resulting sizes; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace an existing --out.
    #[arg(long)]
    overwrite: bool,
    /// Keep an existing --out whose manifest shows the same inputs and settings, replace it otherwise
    /// (what `--config` runs use).
    #[arg(long)]
    update: bool,
    /// Use importance scores computed for a different checkpoint (hash mismatch) anyway.
    #[arg(long)]
    force: bool,
    /// Device of the re-scoring between --steps.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
    /// Texts timed on CPU before and after (0 skips the timing).
    #[arg(long, value_name = "N", default_value_t = 64)]
    bench_texts: usize,
    /// Batch size of the timing.
    #[arg(long, value_name = "N", default_value_t = 16)]
    bench_batch: usize,
    /// Timed passes per model (the median is reported).
    #[arg(long, value_name = "N", default_value_t = 5)]
    bench_repeats: usize,
    /// Token limit of the timing.
    #[arg(long, value_name = "N", default_value_t = 128)]
    bench_max_length: usize,
    /// Print size.json's content as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Do not export OUT/onnx/ (model.onnx f32 and model_qint8.onnx int8; `export --model OUT` does it later).
    #[arg(long)]
    no_onnx: bool,
    /// Export the f32 ONNX model only, no int8 variant.
    #[arg(long)]
    no_int8: bool,
    /// Trim the vocabulary to the tokens these files (one text per line; comma-separated or repeated) need,
    /// see VOCABULARY below.
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    vocab_from: Vec<PathBuf>,
    /// Keep at most N tokens in all (special tokens and single characters included), the most frequent.
    #[arg(long, value_name = "N", requires = "vocab_from")]
    vocab_size: Option<usize>,
    /// Drop corpus tokens seen fewer than K times (special tokens and single characters stay) [default: 1].
    #[arg(long, value_name = "K", requires = "vocab_from")]
    min_count: Option<u64>,
}

fn options(a: &Args) -> Result<Options> {
    let source = match (&a.importance, &a.plan) {
        (Some(dir), None) => PlanSource::Importance {
            dir: dir.clone(),
            rule: Rule {
                heads_ratio: a.work.heads_ratio(),
                heads_per_layer: a.work.heads_per_layer,
                ffn_ratio: a.work.ffn_ratio,
                ffn_uniform: a.work.ffn_uniform,
                hidden_ratio: a.work.hidden_ratio,
                limits: Limits {
                    min_heads: a.min_heads,
                    min_ffn: a.min_ffn,
                },
                random: a.work.random,
            },
        },
        (None, Some(p)) => PlanSource::File(p.clone()),
        (None, None) if a.work.keep_layers.is_some() || !a.vocab_from.is_empty() => PlanSource::None,
        (None, None) => bail!(
            "nothing to cut: give --importance DIR, --plan FILE.json, --keep-layers or --vocab-from \
             (see --help)"
        ),
        (Some(_), Some(_)) => unreachable!("clap rejects --importance with --plan"),
    };
    if a.work.steps == 0 {
        bail!("--steps must be at least 1");
    }
    if let PlanSource::Importance { rule, .. } = &source {
        // before the re-scorer reads anything
        rule.check_steps(a.work.steps)?;
    }
    Ok(Options {
        model: a.model.clone(),
        source,
        keep_layers: a.work.keep_layers.clone(),
        limits: Limits {
            min_heads: a.min_heads,
            min_ffn: a.min_ffn,
        },
        out: a.out.clone(),
        dry_run: a.dry_run,
        overwrite: a.overwrite,
        update: a.update,
        force: a.force,
        steps: a.work.steps,
        bench: (a.bench_texts > 0).then_some(BenchOptions {
            texts: a.bench_texts,
            batch_size: a.bench_batch,
            max_length: a.bench_max_length,
            repeats: a.bench_repeats,
        }),
        export: sekator_surgery::ExportOptions {
            onnx: !a.no_onnx,
            int8: !a.no_int8,
        },
        vocab: (!a.vocab_from.is_empty()).then(|| sekator_surgery::VocabOptions {
            from: a.vocab_from.clone(),
            size: a.vocab_size,
            min_count: a.min_count.unwrap_or(1),
        }),
    })
}

fn real_main() -> Result<()> {
    let (args, rc) = parse_stage_args::<Args>(Stage::Surgery.name(), |c| {
        let mut derived = vec![];
        derived.extend(flag("model", c.run.model.display()));
        derived.extend(flag("importance", c.stage_dir(Stage::Importance).display()));
        derived.extend(flag("out", c.stage_dir(Stage::Surgery).display()));
        derived.push("--update".into());
        if std::env::args().any(|a| a == "--force") {
            derived.push("--overwrite".into());
        }
        (derived, flag("device", c.run.device).to_vec())
    })?;
    let _lock = match &args.out {
        Some(out) if !args.dry_run => Some(lock_stage(
            rc.map(|c| c.run_dir()).as_deref(),
            out,
            Stage::Surgery,
        )?),
        _ => None,
    };
    let opts = options(&args)?;
    let mut rescorer = sekator_surgery_rescorer(&args)?;
    let outcome = run(
        &opts,
        rescorer
            .as_mut()
            .map(|r| &mut **r as &mut dyn sekator_surgery::Rescorer),
    )
    .with_context(|| format!("surgery on {}", args.model.display()))?;
    let r = &outcome.report;
    if args.json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    if outcome.up_to_date {
        println!(
            "{}: up to date (same inputs and settings); nothing written",
            outcome.out.as_ref().unwrap().display()
        );
    }
    if args.dry_run {
        println!(
            "plan (original indices):\n{}",
            outcome.plan.to_json().trim_end()
        );
    }
    println!(
        "heads per layer: {:?} -> {:?}\nFFN widths:      {:?} -> {:?}",
        r.before.heads_per_layer, r.after.heads_per_layer, r.before.ffn_sizes, r.after.ffn_sizes
    );
    println!("{}", sekator_surgery::size::table_string(r));
    if let Some(f) = r.after.file {
        println!(
            "parameters in the written safetensors: {} (analytic {})",
            f.params, r.after.params.total
        );
    }
    println!(
        "FLOPs per token at seq {}: {} -> {} ({:.3}x fewer); params {} -> {} ({:.3}x fewer)",
        r.before.flops_seq_len,
        r.before.flops_per_token,
        r.after.flops_per_token,
        r.ratios.flops_per_token,
        r.before.params.total,
        r.after.params.total,
        r.ratios.params_total
    );
    if let Some(v) = &r.vocab {
        println!(
            "vocabulary: {} -> {} tokens ({} special, {} single-character pieces); the kept tokens cover \
             {:.2}% of the corpus's {} tokens ({} texts, {} distinct tokens)",
            v.before,
            v.after,
            v.special,
            v.alphabet,
            100.0 * v.coverage,
            v.corpus_tokens,
            v.texts,
            v.distinct
        );
    }
    if let (Some(s), Some(b)) = (r.ratios.speedup, &r.bench) {
        println!(
            "CPU: {:.2} -> {:.2} ms/text, {:.2}x faster ({} texts, batch {}, {} threads)",
            r.before.ms_per_text.unwrap_or(f64::NAN),
            r.after.ms_per_text.unwrap_or(f64::NAN),
            s,
            b.options.texts,
            b.options.batch_size,
            b.threads
        );
    }
    if let (Some(out), false) = (&outcome.out, outcome.up_to_date) {
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// The importance crate as a library, for `--steps K > 1`: every intermediate model is scored with the
/// settings recorded in the first importance directory (same data, loss, criterion, samples, seed).
fn sekator_surgery_rescorer(args: &Args) -> Result<Option<Box<dyn sekator_surgery::Rescorer>>> {
    if args.work.steps <= 1 {
        return Ok(None);
    }
    let Some(dir) = &args.importance else {
        bail!(
            "--steps {} needs --importance DIR (its settings are reused to re-score)",
            args.work.steps
        );
    };
    let meta = Scores::read(dir)
        .with_context(|| format!("reading {} for --steps", dir.display()))?
        .meta;
    let opts = ImportanceOptions {
        data: meta.data.into(),
        loss: meta.loss,
        teacher: meta.teacher.map(Into::into),
        scale: meta.scale,
        pooling: Some(meta.pooling),
        criterion: meta.criterion,
        normalize: meta.normalize,
        samples: meta.samples_requested,
        batch_size: meta.batch_size,
        max_length: meta.max_length,
        seed: meta.seed,
        validate: 0,
        hidden: meta.hidden,
        progress: true,
    };
    Ok(Some(Box::new(Rescore {
        opts,
        device: args.device,
    })))
}

struct Rescore {
    opts: ImportanceOptions,
    device: DeviceKind,
}

impl sekator_surgery::Rescorer for Rescore {
    fn rescore(
        &mut self,
        model_dir: &Path,
        step: usize,
        steps: usize,
    ) -> Result<sekator_surgery::importance::Importance, sekator_surgery::SurgeryError> {
        let other = |e: String| sekator_surgery::SurgeryError::Other(e);
        eprintln!("step {step}/{steps}: re-scoring the partly pruned model");
        let scores = sekator_importance::score(model_dir, &self.opts, self.device)
            .map_err(|e| other(format!("re-scoring {}: {e}", model_dir.display())))?;
        let dir = model_dir.with_extension("importance");
        sekator_importance::scores::write(&scores, &dir)
            .map_err(|e| other(format!("writing {}: {e}", dir.display())))?;
        let cfg = sekator_model::read_config(model_dir)?;
        sekator_surgery::importance::read(&dir, &cfg)
    }
}

fn main() -> ExitCode {
    // polars reads its table layout from the environment; set it before any thread starts.
    std::env::set_var("POLARS_FMT_TABLE_HIDE_DATAFRAME_SHAPE_INFORMATION", "1");
    std::env::set_var("POLARS_FMT_TABLE_HIDE_COLUMN_DATA_TYPES", "1");
    std::env::set_var("POLARS_FMT_MAX_COLS", "20");
    std::env::set_var("POLARS_FMT_TABLE_ROUNDED_CORNERS", "1");
    // wide enough that no header or value is wrapped mid-word
    std::env::set_var("POLARS_TABLE_WIDTH", "250");
    sekator_model::logging::init("warn,sekator_surgery=info");
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
