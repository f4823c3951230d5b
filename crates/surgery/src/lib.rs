//! sekator's `surgery` stage: cut attention heads, FFN neurons or whole layers out of a BERT checkpoint and
//! write a physically smaller, standard Hugging Face checkpoint (transformers loads it through
//! `pruned_heads`; equal FFN widths update `intermediate_size`).
//!
//! - [`plan`]: what to cut ([`plan::Plan`], HF convention, original indices) and rules that build plans from
//!   importance scores;
//! - [`importance`]: reading the importance stage's output;
//! - [`slice`]: cutting rows and columns; [`layers`]: dropping layers;
//! - [`size`]: parameters, file size, FLOPs per token and measured CPU time, before and after;
//! - [`width`]: width pruning (residual-stream dimensions, from every tensor that touches the stream);
//! - [`vocab`]: vocabulary trimming (`--vocab-from`): the tokens a corpus needs, the tokenizer rebuilt;
//! - [`run`]: the whole stage (plan, cut, write atomically with `plan.json`, `size.json`, `manifest.json`).

pub mod card;
pub mod checkpoint;
pub mod error;
pub mod importance;
pub mod layers;
pub mod plan;
pub mod size;
pub mod slice;
pub mod vocab;
pub mod width;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use sekator_model::{checkpoint_hash, file_hash, read_config, write_atomic, Cpu, Encoder};
use sekator_pipeline::Manifest;

pub use checkpoint::Checkpoint;
pub use error::SurgeryError;
pub use plan::{Count, Limits, Plan, Resolved, Rule, Scores, Targets};
pub use size::{BenchOptions, Report, SizeReport};
pub use vocab::VocabOptions;

pub const PLAN_FILE: &str = "plan.json";
pub use size::SIZE_FILE;
pub const STAGE: &str = sekator_pipeline::Stage::Surgery.name();

/// Where the plan comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanSource {
    /// Scores of the importance stage, turned into a plan by `rule`.
    Importance { dir: PathBuf, rule: Rule },
    /// An explicit plan file (HF convention, original indices).
    File(PathBuf),
    /// No head/FFN plan (layer dropping only).
    None,
}

/// Re-scores a partly pruned model between the steps of iterative pruning (`--steps K`).
pub trait Rescorer {
    /// Scores the model in `model_dir` (step `step` of `steps`, 1-based) and returns its importance,
    /// written by the importance stage's rules (original index space).
    fn rescore(
        &mut self,
        model_dir: &Path,
        step: usize,
        steps: usize,
    ) -> Result<importance::Importance, SurgeryError>;
}

/// Everything the stage needs; the binary fills it from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub model: PathBuf,
    pub source: PlanSource,
    pub keep_layers: Option<Vec<usize>>,
    pub limits: Limits,
    /// `None` with `dry_run`.
    pub out: Option<PathBuf>,
    pub dry_run: bool,
    pub overwrite: bool,
    /// Keep an existing OUT whose manifest matches, replace it when stale (the pipeline's mode).
    pub update: bool,
    /// Use importance scores of another checkpoint (hash mismatch) anyway.
    pub force: bool,
    /// Reach the target in this many equal steps, re-scoring in between (needs a [`Rescorer`]).
    pub steps: usize,
    /// CPU timing of the model before and after; `None` skips it.
    pub bench: Option<BenchOptions>,
    /// What is exported beside the checkpoint (ONNX f32 / int8).
    pub export: ExportOptions,
    /// Trim the vocabulary to what this corpus needs (independent of the head/FFN/layer cuts).
    pub vocab: Option<VocabOptions>,
}

/// The portable files written beside the cut checkpoint (the model card and remote code always are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportOptions {
    /// `OUT/onnx/model.onnx`.
    pub onnx: bool,
    /// `OUT/onnx/model_qint8.onnx` too.
    pub int8: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            onnx: true,
            int8: true,
        }
    }
}

/// What [`run`] did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The applied plan (all steps merged), original indices.
    pub plan: Plan,
    /// Plans of the individual steps (one entry without `--steps`).
    pub step_plans: Vec<Plan>,
    pub report: Report,
    /// Output directory written, `None` for a dry run.
    pub out: Option<PathBuf>,
    /// The output already held this exact result (matching manifest): nothing was written.
    pub up_to_date: bool,
}

/// The settings section of the manifest: what makes two runs produce the same output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct StageConfig {
    source: String,
    rule: Option<Rule>,
    keep_layers: Option<Vec<usize>>,
    limits: Limits,
    steps: usize,
    force: bool,
    #[serde(default)]
    export: ExportOptions,
    /// Absent without `--vocab-from`, so manifests of untrimmed runs stay as they were; the corpus files
    /// themselves are inputs (`vocab_from:PATH` -> content hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vocab: Option<VocabSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct VocabSettings {
    vocab_size: Option<usize>,
    min_count: u64,
}

/// Removes a temporary directory unless disarmed (failed runs leave nothing behind).
struct TempDir(Option<PathBuf>);

impl TempDir {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("temp dir present")
    }
    fn keep(mut self) -> PathBuf {
        self.0.take().expect("temp dir present")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

fn sibling(out: &Path, tag: &str) -> PathBuf {
    sekator_model::hidden_sibling(out, &format!("{tag}-{}", std::process::id()))
}

/// Moves the finished `tmp` directory to `out`; an existing `out` (allowed by `--overwrite`) is moved aside
/// first and deleted only once the new one is in place.
fn publish(tmp: TempDir, out: &Path) -> Result<(), SurgeryError> {
    let src = tmp.keep();
    sekator_model::publish_dir(&src, out).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&src);
    })?;
    Ok(())
}

/// Runs the stage: resolve the plan, check it, cut (in `steps` steps), write the output atomically with
/// `plan.json`, `size.json` and `manifest.json`, and report sizes before and after.
pub fn run(opts: &Options, rescorer: Option<&mut dyn Rescorer>) -> Result<Outcome, SurgeryError> {
    let t0 = Instant::now();
    let cfg = read_config(&opts.model)?;
    let steps = opts.steps.max(1);
    if !opts.dry_run && opts.out.is_none() {
        return Err(SurgeryError::Other(
            "--out is required (or pass --dry-run)".into(),
        ));
    }

    // 1. The first (or only) plan, and the stage's identity for the manifest.
    let mut inputs = BTreeMap::new();
    let model_hash = checkpoint_hash(&opts.model)?;
    inputs.insert("model".to_string(), model_hash.clone());
    let (first_plan, rule, targets) = match &opts.source {
        PlanSource::Importance { dir, rule } => {
            rule.check_steps(steps)?;
            let imp = importance::read(dir, &cfg)?;
            importance::check_hash(&imp, &opts.model, opts.force)?;
            inputs.insert("importance".into(), file_hash(&imp.scores_path)?);
            let targets = rule.targets(&imp.scores)?;
            let first = rule.plan_counts(&imp.scores, &first_step(&targets, steps, &cfg));
            (first, Some(rule.clone()), Some((targets, imp.scores)))
        }
        PlanSource::File(path) => {
            if steps > 1 {
                return Err(SurgeryError::Other(
                    "--steps needs --importance (an explicit --plan is applied in one step)".into(),
                ));
            }
            inputs.insert("plan".into(), file_hash(path)?);
            (Plan::read(path)?, None, None)
        }
        PlanSource::None => {
            if steps > 1 {
                return Err(SurgeryError::Other("--steps needs --importance".into()));
            }
            (Plan::default(), None, None)
        }
    };
    for f in opts.vocab.iter().flat_map(|v| &v.from) {
        inputs.insert(format!("vocab_from:{}", f.display()), file_hash(f)?);
    }
    if first_plan.keep_layers.is_some() && opts.keep_layers.is_some() {
        return Err(SurgeryError::Plan(
            "keep_layers is given both in the plan file and by --keep-layers".into(),
        ));
    }
    let keep_layers = opts
        .keep_layers
        .clone()
        .or_else(|| first_plan.keep_layers.clone());
    if steps > 1 && rescorer.is_none() {
        return Err(SurgeryError::Other(
            "--steps K > 1 re-scores importance between steps, which this build cannot do yet"
                .into(),
        ));
    }
    let stage_cfg = StageConfig {
        source: match &opts.source {
            PlanSource::Importance { .. } => "importance".into(),
            PlanSource::File(_) => "plan".into(),
            PlanSource::None => "none".into(),
        },
        rule: rule.clone(),
        keep_layers: keep_layers.clone(),
        limits: opts.limits,
        steps,
        force: opts.force,
        export: opts.export,
        vocab: opts.vocab.as_ref().map(|v| VocabSettings {
            vocab_size: v.size,
            min_count: v.min_count,
        }),
    };
    let mut manifest = Manifest::new(
        STAGE,
        serde_json::to_value(&stage_cfg).map_err(|e| SurgeryError::Other(e.to_string()))?,
        inputs,
        env!("SEKATOR_CODE"),
    );
    if let PlanSource::Importance { dir, .. } = &opts.source {
        manifest.record_upstream(dir);
    }

    // 2. Validate the whole first plan (with layer dropping when there is a single step).
    let mut plan1 = first_plan.clone();
    plan1.keep_layers = if steps == 1 {
        keep_layers.clone()
    } else {
        None
    };
    let resolved = plan1.resolve(&cfg, opts.limits)?;
    let has_pooler = sekator_model::SafetensorsWeights::open_dir(&opts.model)?
        .shape("pooler.dense.weight")
        .is_some();
    let before = size::of_dir(&opts.model, &cfg, has_pooler)?;
    // Tokenising the corpus takes a while: not before an up-to-date output is recognised.
    let choose_vocab = || {
        opts.vocab
            .as_ref()
            .map(|v| vocab::choose(&opts.model, &cfg, v))
            .transpose()
    };

    if opts.dry_run {
        let trim = choose_vocab()?;
        if steps > 1 {
            tracing::info!("--dry-run with --steps {steps}: showing the first step's plan only");
        }
        let mut planned = slice::planned_config(&cfg, &resolved);
        if let Some(t) = &trim {
            planned.vocab_size = t.kept.len();
        }
        let after = SizeReport::analytic(&planned, has_pooler);
        let plan = resolved.to_plan();
        let mut report = Report::new(before, after, None);
        report.vocab = trim.map(|t| t.report);
        return Ok(Outcome {
            plan: plan.clone(),
            step_plans: vec![plan],
            report,
            out: None,
            up_to_date: false,
        });
    }
    let out = opts.out.clone().expect("checked above");
    if out.exists() {
        if !opts.overwrite {
            let fresh = sekator_pipeline::freshness(&out, &manifest);
            if fresh.is_ok() && out.join(SIZE_FILE).exists() {
                let report = Report::read(&out)?;
                let plan = Plan::read(&out.join(PLAN_FILE))?;
                return Ok(Outcome {
                    plan: plan.clone(),
                    step_plans: vec![plan],
                    report,
                    out: Some(out),
                    up_to_date: true,
                });
            }
            if !opts.update {
                return Err(SurgeryError::Other(format!(
                    "{}: already exists (pass --overwrite to replace it)",
                    out.display()
                )));
            }
            tracing::info!(
                "{}: replacing it: {}",
                out.display(),
                fresh.err().unwrap_or_else(|| "size.json is missing".into())
            );
        }
        if out.canonicalize().ok() == opts.model.canonicalize().ok() {
            return Err(SurgeryError::Other(format!(
                "{}: --out is the input model directory",
                out.display()
            )));
        }
    }

    let trim = choose_vocab()?;

    // 3. Cut, step by step.
    let tmp = TempDir(Some(sibling(&out, "surgery")));
    if tmp.path().exists() {
        std::fs::remove_dir_all(tmp.path()).map_err(|e| SurgeryError::io(tmp.path(), e))?;
    }
    let mut ck = Checkpoint::read(&opts.model)?;
    slice::apply(&mut ck, &resolved)?;
    let mut step_plans = vec![resolved.to_plan()];
    let mut total = resolved.to_plan();
    total.keep_layers = None;
    if steps > 1 {
        let (targets, _) = targets.as_ref().expect("steps need importance");
        let rule = rule.as_ref().expect("steps need a rule");
        let rescorer = rescorer.expect("checked above");
        let work = TempDir(Some(sibling(&out, "steps")));
        for step in 2..=steps {
            let model_dir = work.path().join(format!("step{}", step - 1));
            ck.write(&model_dir, Some(&opts.model), true)?;
            let imp = rescorer.rescore(&model_dir, step, steps)?;
            let done = Targets {
                heads: targets.heads.done_by(&removed_heads(&ck.config, &cfg)),
                ffn: targets.ffn.done_by(&removed_ffn(&ck.config, &cfg)),
                hidden: Count::Global(cfg.hidden_size - ck.config.hidden_size),
            };
            let want = Targets {
                heads: targets.heads.step(step, steps, &done.heads),
                ffn: targets.ffn.step(step, steps, &done.ffn),
                hidden: targets.hidden.step(step, steps, &done.hidden),
            };
            let mut p = rule.plan_counts(&imp.scores, &want);
            if step == steps {
                p.keep_layers = keep_layers.clone();
            }
            let r = p.resolve(&ck.config, opts.limits)?;
            slice::apply(&mut ck, &r)?;
            let mut p = r.to_plan();
            step_plans.push(p.clone());
            p.keep_layers = None;
            total.merge(&p);
            let _ = std::fs::remove_dir_all(&model_dir);
        }
    }
    total.keep_layers = keep_layers.clone();
    if let Some(t) = &trim {
        vocab::apply(&mut ck, t)?;
    }
    ck.write(tmp.path(), Some(&opts.model), true)?;
    if let Some(t) = &trim {
        vocab::write_tokenizer(&opts.model, tmp.path(), t)?;
    }

    // 4. Sizes (and timing) before and after, from the written files.
    let after_cfg = read_config(tmp.path())?;
    let mut after = size::of_dir(tmp.path(), &after_cfg, ck.has_pooler())?;
    let mut before = before;
    let bench = match &opts.bench {
        Some(b) if b.texts > 0 => {
            let device = Default::default();
            let enc_before = Encoder::<Cpu>::load(&opts.model, &device)?;
            let enc_after = Encoder::<Cpu>::load(tmp.path(), &device)?;
            let t = size::measure(&[&enc_before, &enc_after], b)?;
            before.ms_per_text = Some(t[0].0);
            before.ms_per_text_min = Some(t[0].1);
            after.ms_per_text = Some(t[1].0);
            after.ms_per_text_min = Some(t[1].1);
            Some(size::BenchInfo {
                options: b.clone(),
                backend: "cpu (burn-flex)".into(),
                threads: size::cpu_threads(),
            })
        }
        _ => None,
    };
    let mut report = Report::new(before, after, bench);
    report.vocab = trim.map(|t| t.report);
    write_atomic(&tmp.path().join(PLAN_FILE), total.to_json().as_bytes())?;
    report.write(tmp.path())?;
    manifest.seconds = t0.elapsed().as_secs_f64();
    manifest.results = serde_json::json!({
        "ratios": report.ratios,
        "params_before": report.before.params.total,
        "params_after": report.after.params.total,
        "heads_removed": count_units(&total.heads),
        "ffn_removed": count_units(&total.ffn),
        "hidden_removed": total.hidden.len(),
        "step_plans": step_plans,
        "skipped_tensors": ck.skipped,
        "vocab": report.vocab,
    });
    card::write(tmp.path(), &opts.model, &cfg, &report, &total)?;
    if opts.export.onnx {
        let o = sekator_export::onnx::OnnxOptions {
            int8: opts.export.int8,
            overwrite: true,
        };
        let written = sekator_export::onnx::export_dir(tmp.path(), &o)?;
        tracing::info!("exported {}", written.dir.display());
    }
    manifest.write(tmp.path())?;
    publish(tmp, &out)?;
    Ok(Outcome {
        plan: total,
        step_plans,
        report,
        out: Some(out),
        up_to_date: false,
    })
}

fn count_units(m: &BTreeMap<String, Vec<usize>>) -> usize {
    m.values().map(Vec::len).sum()
}

/// Heads removed per layer in `now` relative to `start` (same layer numbering).
fn removed_heads(now: &sekator_model::BertConfig, start: &sekator_model::BertConfig) -> Vec<usize> {
    (0..start.num_hidden_layers)
        .map(|l| start.kept_heads(l).len() - now.kept_heads(l).len())
        .collect()
}

fn removed_ffn(now: &sekator_model::BertConfig, start: &sekator_model::BertConfig) -> Vec<usize> {
    let (a, b) = (start.ffn_sizes(), now.ffn_sizes());
    a.iter().zip(&b).map(|(x, y)| x - y).collect()
}

/// The share of `t` that the first of `steps` equal steps removes.
fn first_step(t: &Targets, steps: usize, cfg: &sekator_model::BertConfig) -> Targets {
    let zero = vec![0; cfg.num_hidden_layers];
    Targets {
        heads: t.heads.step(1, steps, &t.heads.done_by(&zero)),
        ffn: t.ffn.step(1, steps, &t.ffn.done_by(&zero)),
        hidden: t.hidden.step(1, steps, &Count::Global(0)),
    }
}

/// A [`Rescorer`] that uses [`importance::magnitude_scores`] (tests and the stand-in; no data needed).
pub struct MagnitudeRescorer;

impl Rescorer for MagnitudeRescorer {
    fn rescore(
        &mut self,
        model_dir: &Path,
        _step: usize,
        _steps: usize,
    ) -> Result<importance::Importance, SurgeryError> {
        let ck = Checkpoint::read(model_dir)?;
        let hash = checkpoint_hash(model_dir)?;
        Ok(importance::Importance {
            scores: importance::magnitude_scores(&ck)?,
            meta: sekator_pipeline::artifacts::importance::ImportanceMeta::stand_in(
                &ck.config, &hash,
            ),
            checkpoint_hash: hash,
            scores_path: model_dir.join(sekator_model::loader::WEIGHTS_FILE),
        })
    }
}
