//! The training loop: inputs checked, teacher cache filled or opened, then student steps with periodic
//! logging, evaluation and checkpoints, and the final model, manifest and loss plot.
//!
//! What makes a resumed run bit-identical to an uninterrupted one: the weights (f32 safetensors), the AdamW
//! moments and update count (`optimizer.safetensors`, `state.json`), the schedule (a function of the step),
//! the data order (a function of seed and epoch) and position (a function of the step), and the teacher
//! targets (read from the same cache). There is no other randomness: the model has no dropout.
//!
//! `--resume` takes the newest checkpoint whose files match the hashes in its `state.json` (damaged ones
//! are skipped with a warning and set aside). A resume may make the run longer (or shorter, down to the
//! checkpoint's step): the schedule is then recomputed for the new length, so such a run is *not* the same
//! as one trained at the new length from the start (see `resumed_warmup`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use sekator_model::backend::{self, AutodiffTask};
use sekator_model::pooling::{self, default_pooling};
use sekator_model::DeviceKind;
use sekator_model::{
    checkpoint_hash, file_hash, read_config, BertConfig, BertModel, Encoder, Pooling,
    SafetensorsWeights, TextTokenizer, TokenBatch,
};
use sekator_pipeline::artifacts::distill::{DistillSummary, DISTILL_SUMMARY_FILE};
use sekator_pipeline::{Manifest, Pair, PairData};

use crate::checkpoint::{self, TrainState};
use crate::config::{trajectory_differences, DistillConfig};
use crate::data::{DataPosition, TrainData};
use crate::error::{DistillError, Result};
use crate::eval::{self, DevSet, EvalMetrics};
use crate::loss::{distill_loss, masked_token_mse, LossParts, LossValues, LossWeights};
use crate::metrics::{MetricsLog, Record, TrainRecord};
use crate::micro;
use crate::optim::{param_paths, AdamW, AdamWSettings};
use crate::precision::{self, Precision, PrecisionCheck, ProbeReport};
use crate::schedule::LrSchedule;
use crate::target_dims::TargetDims;
use crate::teacher_cache::{CacheKey, CacheSource, Side, TeacherEmbeddings};

/// How this invocation runs (not part of the run's identity).
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from the newest checkpoint in `out` whose files verify (a fresh start when there is none);
    /// the run may be made longer than the checkpoint's (`steps`/`epochs`), not shorter than its step.
    pub resume: bool,
    /// Delete an earlier run's checkpoints, final model and metrics in `out` and start over.
    pub overwrite: bool,
    /// Stop after this many steps of this invocation, writing nothing more (simulates an interruption).
    pub max_steps_this_run: Option<usize>,
    /// Sleep this long after every step (test hook: makes a run slow enough to be killed mid-way).
    pub step_delay_ms: u64,
    /// Show progress bars (they are hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// The `distill` binary, which the precision check runs once per candidate dtype (`precision = "auto"`
    /// on CUDA); without it `auto` means f32.
    pub exe: Option<PathBuf>,
    /// Run as a precision probe: the first steps in one dtype, their losses and times written to a report,
    /// nothing written into `out`.
    pub probe: Option<Probe>,
    /// Fill the teacher caches (training and dev pairs, in f32) and stop.
    pub fill_cache_only: bool,
}

/// A precision probe (see [`crate::precision::check`]).
#[derive(Debug, Clone)]
pub struct Probe {
    pub precision: Precision,
    pub report: PathBuf,
}

/// What a run did; also written to `manifest.json` under `results`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub out: PathBuf,
    pub total_steps: usize,
    /// Steps done when this invocation ended.
    pub step: usize,
    pub steps_this_run: usize,
    pub resumed_from: Option<usize>,
    pub finished: bool,
    pub final_dir: Option<PathBuf>,
    pub pooling: Pooling,
    /// The float dtype the student trained in.
    pub precision: Precision,
    pub train_pairs: usize,
    pub skipped_lines: usize,
    /// The first malformed lines: (1-based line number, reason).
    pub first_bad_lines: Vec<(usize, String)>,
    pub teacher_cache: PathBuf,
    pub teacher_cache_hit: bool,
    /// Teacher forward passes (batches) run by this invocation.
    pub teacher_forward_batches: u64,
    /// Pairs per second of the training steps of this invocation (evaluation and checkpoints excluded).
    pub pairs_per_s: f64,
    pub first_loss: Option<LossValues>,
    pub last_loss: Option<LossValues>,
    pub eval_first: Option<EvalMetrics>,
    pub eval_last: Option<EvalMetrics>,
    /// The teacher's own dev retrieval accuracy (en->ru, ru->en).
    pub teacher_acc: Option<(f32, f32)>,
    pub loss_plot: Option<PathBuf>,
    /// Steps of the checkpoints `--resume` passed over because they did not verify (newest first); each
    /// was logged and moved to a hidden `.step-N.damaged` sibling.
    #[serde(default)]
    pub skipped_checkpoints: Vec<usize>,
}

/// The manifest a finished run of `cfg` writes (settings and input hashes), to tell whether `cfg.out`
/// already holds this very run.
pub fn expected_manifest(cfg: &DistillConfig) -> Result<Manifest> {
    let hashes = InputHashes {
        teacher: checkpoint_hash(cfg.teacher()?)?,
        student: checkpoint_hash(cfg.student()?)?,
        data: file_hash(cfg.data()?)?,
        dev: cfg.dev_data().map(|p| file_hash(&p)).transpose()?,
    };
    Ok(distill_manifest(cfg, hashes.manifest_inputs()))
}

/// The hashes of a run's inputs: checked on resume, recorded in the manifest.
struct InputHashes {
    teacher: String,
    student: String,
    data: String,
    /// Of the dev file, when the run evaluates on one.
    dev: Option<String>,
}

impl InputHashes {
    /// The manifest's `inputs` (what `expected_manifest` compares).
    fn manifest_inputs(&self) -> BTreeMap<String, String> {
        let mut inputs = BTreeMap::new();
        inputs.insert("teacher".to_string(), self.teacher.clone());
        inputs.insert("student".to_string(), self.student.clone());
        inputs.insert("data".to_string(), self.data.clone());
        if let Some(h) = &self.dev {
            inputs.insert("dev_data".to_string(), h.clone());
        }
        inputs
    }
}

/// The manifest of `cfg` with input hashes `inputs`, and the code lineage of the student's stage.
fn distill_manifest(cfg: &DistillConfig, inputs: BTreeMap<String, String>) -> Manifest {
    let mut m = Manifest::new(
        sekator_pipeline::Stage::Distill.name(),
        serde_json::to_value(cfg).unwrap_or_default(),
        inputs,
        env!("SEKATOR_CODE"),
    );
    if let Some(student) = &cfg.student {
        m.record_upstream(student);
    }
    m
}

/// Runs (or resumes) a distillation on the backend `cfg.device` selects.
pub fn run(cfg: &DistillConfig, opts: &TrainOptions) -> Result<Summary> {
    cfg.validate()?;
    let device = backend::resolve(cfg.device)?;
    let precision = resolve_precision(cfg, device, opts)?;
    tracing::info!(
        "device: {}, precision {precision}",
        backend::describe(cfg.device)
    );
    let task = || Task {
        cfg,
        opts,
        precision,
    };
    match backend::run_autodiff(cfg.device, task())? {
        Err(DistillError::TeacherCacheMissing { dir }) if opts.exe.is_some() => {
            // a reduced-precision process cannot run the teacher in f32: a child process does
            tracing::info!(
                "{}: no f32 teacher targets yet; computing them in a child process (precision f32)",
                dir.display()
            );
            fill_cache_in_child(cfg, opts.exe.as_deref().expect("checked"))?;
            backend::run_autodiff(cfg.device, task())?
        }
        r => r,
    }
}

/// Runs `exe --fill-teacher-cache` on `cfg` (whose own process may be set to a reduced precision).
fn fill_cache_in_child(cfg: &DistillConfig, exe: &Path) -> Result<()> {
    let scratch = sekator_model::hidden_sibling(&cfg.out.join("teacher-fill"), "config");
    std::fs::create_dir_all(&scratch).map_err(|e| DistillError::io(&scratch, e))?;
    let cfg_path = scratch.join("config.toml");
    std::fs::write(&cfg_path, cfg.to_toml()).map_err(|e| DistillError::io(&cfg_path, e))?;
    let status = std::process::Command::new(exe)
        .arg("--config")
        .arg(&cfg_path)
        .arg("--fill-teacher-cache")
        .status()
        .map_err(|e| DistillError::io(exe, e))?;
    std::fs::remove_dir_all(&scratch).map_err(|e| DistillError::io(&scratch, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(DistillError::Input(format!(
            "filling the teacher cache in f32 failed ({status}); see the log above"
        )))
    }
}

/// The identity of the precision check's verdict for `cfg` on `device`.
fn precision_key(cfg: &DistillConfig, device: DeviceKind) -> Result<serde_json::Value> {
    Ok(precision::check_key(
        cfg,
        device,
        [
            &checkpoint_hash(cfg.teacher()?)?,
            &checkpoint_hash(cfg.student()?)?,
            &file_hash(cfg.data()?)?,
        ],
    ))
}

/// Runs the precision check for `cfg` with the `distill` binary `exe` on any device and keeps its verdict
/// in `<out>/precision.json` (what `distill --check-precision` does).
pub fn check_precision(cfg: &DistillConfig, exe: &Path) -> Result<PrecisionCheck> {
    cfg.validate()?;
    let device = backend::resolve(cfg.device)?;
    let result = precision::check(cfg, exe, device, precision_key(cfg, device)?)?;
    result.write(&cfg.out)?;
    Ok(result)
}

/// `precision = "auto"`: the verdict of an earlier check of this very run, else a new check on CUDA, else
/// f32; an explicit precision as given.
fn resolve_precision(
    cfg: &DistillConfig,
    device: DeviceKind,
    opts: &TrainOptions,
) -> Result<Precision> {
    if let Some(p) = &opts.probe {
        return Ok(p.precision);
    }
    if opts.fill_cache_only {
        return Ok(Precision::F32);
    }
    if cfg.precision != Precision::Auto {
        return Ok(cfg.precision);
    }
    if device != DeviceKind::Cuda {
        return Ok(Precision::F32);
    }
    let key = precision_key(cfg, device)?;
    if let Some(c) = PrecisionCheck::read(&cfg.out).filter(|c| c.key == key) {
        tracing::info!(
            "precision {} (checked before: {})",
            c.chosen,
            cfg.out.join(precision::CHECK_FILE).display()
        );
        return Ok(c.chosen);
    }
    let Some(exe) = &opts.exe else {
        tracing::warn!("precision auto: no distill binary to run the check with; training in f32");
        return Ok(Precision::F32);
    };
    std::fs::create_dir_all(&cfg.out).map_err(|e| DistillError::io(&cfg.out, e))?;
    let result = precision::check(cfg, exe, device, key)?;
    tracing::info!("{}", result.table());
    result.write(&cfg.out)?;
    Ok(result.chosen)
}

struct Task<'a> {
    cfg: &'a DistillConfig,
    opts: &'a TrainOptions,
    precision: Precision,
}

impl AutodiffTask for Task<'_> {
    type Output = Result<Summary>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        precision::apply::<B>(&device, self.precision)?;
        train::<B>(self.cfg, self.opts, self.precision, &device)
    }
}

fn has_pooler(dir: &Path) -> Result<bool> {
    Ok(SafetensorsWeights::open_dir(dir)?
        .names()
        .iter()
        .any(|n| n == "pooler.dense.weight"))
}

fn to_tensor<B: Backend>(flat: Vec<f32>, dim: usize, device: &B::Device) -> Tensor<B, 2> {
    let rows = flat.len() / dim;
    // f32 whatever the training dtype: the loss is computed in f32 (see `precision.rs`)
    Tensor::from_data(TensorData::new(flat, [rows, dim]), (device, DType::F32))
}

/// `t` in f32 (the loss is computed in f32 whatever the training dtype; see `precision.rs`).
fn in_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(FloatDType::F32)
    }
}

/// One side (the en or the ru texts) of a batch through the student: one forward pass serves both the
/// sentence terms (`pooled`) and the token term (`hidden`, `mask`), all f32, gradients flowing.
struct StudentSide<B: Backend> {
    pooled: Tensor<B, 2>,
    hidden: Tensor<B, 3>,
    mask: Tensor<B, 2>,
}

fn student_forward<B: AutodiffBackend>(
    model: &BertModel<B>,
    batch: &TokenBatch,
    pooling: Pooling,
    device: &B::Device,
) -> StudentSide<B> {
    let (ids, mask) = batch.tensors::<B>(device);
    let hidden = model.forward(ids, mask.clone(), None);
    let pooled =
        pooling::pool(model, &hidden, &mask, pooling).expect("pooler presence checked at start");
    StudentSide {
        pooled: in_f32(pooled),
        hidden: in_f32(hidden),
        mask: in_f32(mask),
    }
}

/// The token term of one side: the student's hidden states against the teacher's on the very same token
/// batch (the student is a pruned copy and shares the tokenizer). The teacher runs on the inner backend:
/// no autodiff graph, nothing to backpropagate into it.
fn token_term<B: AutodiffBackend>(
    teacher: &BertModel<B::InnerBackend>,
    batch: &TokenBatch,
    side: &StudentSide<B>,
    device: &B::Device,
) -> Tensor<B, 1> {
    let (ids, mask) = batch.tensors::<B::InnerBackend>(device);
    let t_hidden = Tensor::<B, 3>::from_inner(in_f32(teacher.forward(ids, mask, None)));
    masked_token_mse(side.hidden.clone(), t_hidden, side.mask.clone())
}

/// The teacher model for the token term, loaded once; `None` (nothing loaded) when `w_tokens` is 0.
/// It runs in the process's dtype: f32 unless the run trains in a reduced precision.
fn load_token_teacher<B: Backend>(
    cfg: &DistillConfig,
    device: &B::Device,
) -> Result<Option<BertModel<B>>> {
    if cfg.w_tokens == 0.0 {
        return Ok(None);
    }
    let dir = cfg.teacher()?;
    let teacher = Encoder::<B>::load(dir, device)
        .map_err(|e| DistillError::Input(format!("teacher checkpoint: {e}")))?;
    tracing::info!(
        "w_tokens = {}: teacher {} loaded for the token term (run every step)",
        cfg.w_tokens,
        dir.display()
    );
    Ok(Some(teacher.model))
}

/// Warm-up steps of a fresh run of `total` steps: `warmup_steps`, else `warmup_ratio * total`.
fn configured_warmup(cfg: &DistillConfig, total: usize) -> usize {
    cfg.warmup_steps
        .unwrap_or((cfg.warmup_ratio * total as f64).round() as usize)
        .min(total)
}

/// Warm-up steps of a run resumed from checkpoint `st` and now `total` steps long.
///
/// The warm-up the run was trained with is kept (the one recorded in the checkpoint, else the one its
/// own length gave), even when `warmup_ratio` would give another for the new length: the warm-up steps
/// that already happened are not redone or stretched, and a checkpoint taken during the warm-up
/// continues it at the same slope. Only the decay after it is recomputed for `total`. Hence a 40-step
/// run extended to 60 differs from a 60-step run in its first 40 steps (the decay was shorter) and,
/// with a derived warm-up, in the warm-up too; from the resume point on it follows the schedule of a
/// 60-step run with that warm-up.
fn resumed_warmup(cfg: &DistillConfig, st: &TrainState, total: usize) -> usize {
    st.warmup_steps
        .unwrap_or_else(|| configured_warmup(cfg, st.total_steps))
        .min(total)
}

fn prepare_out(out: &Path, opts: &TrainOptions) -> Result<()> {
    let ours = [
        checkpoint::checkpoints_dir(out),
        out.join(sekator_pipeline::stage::DISTILLED_MODEL),
        out.join(crate::metrics::METRICS_FILE),
        out.join("manifest.json"),
        out.join(DISTILL_SUMMARY_FILE),
    ];
    if opts.overwrite {
        for p in &ours {
            let r = if p.is_dir() {
                std::fs::remove_dir_all(p)
            } else if p.exists() {
                std::fs::remove_file(p)
            } else {
                Ok(())
            };
            r.map_err(|e| DistillError::io(p, e))?;
        }
    } else if !opts.resume && ours[..2].iter().any(|p| p.exists()) {
        return Err(DistillError::Input(format!(
            "{}: holds an earlier run (checkpoints/ or final/); pass --resume to continue it or --overwrite to start over",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| DistillError::io(out, e))
}

/// Prepares the inputs, then trains (or probes), then finishes the run.
fn train<B: AutodiffBackend>(
    cfg: &DistillConfig,
    opts: &TrainOptions,
    precision: Precision,
    device: &B::Device,
) -> Result<Summary> {
    let started = Instant::now();
    let (inputs, model) = prepare::<B>(cfg, opts, precision, device)?;
    if opts.fill_cache_only {
        return Ok(inputs.summary);
    }
    let teacher = load_token_teacher::<B::InnerBackend>(cfg, device)?;
    let mut run = Run::start(cfg, opts, precision, device, inputs, (model, teacher))?;
    match &opts.probe {
        Some(p) => run.probe(p),
        None => {
            run.train()?;
            run.finish(started)
        }
    }
}

/// The student as loaded, with what both checkpoints' configs allow.
struct Student<B: AutodiffBackend> {
    model: BertModel<B>,
    tokenizer: TextTokenizer,
    config: BertConfig,
    pooling: Pooling,
    max_length: usize,
    /// The teacher's dimensions the student is trained to match (all, unless width-pruned).
    dims: TargetDims,
}

/// Reads both checkpoints' configs and loads the student, refusing pairs distill cannot train.
fn load_student<B: AutodiffBackend>(
    cfg: &DistillConfig,
    teacher_dir: &Path,
    student_dir: &Path,
    device: &B::Device,
) -> Result<Student<B>> {
    let teacher_cfg = read_config(teacher_dir)
        .map_err(|e| DistillError::Input(format!("teacher checkpoint: {e}")))?;
    let student_cfg = read_config(student_dir)
        .map_err(|e| DistillError::Input(format!("student checkpoint: {e}")))?;
    if cfg.w_tokens > 0.0 && teacher_cfg.vocab_size != student_cfg.vocab_size {
        return Err(DistillError::Input(format!(
            "w_tokens > 0 compares token by token, but the student's vocabulary ({} ids, {}) is not the \
             teacher's ({} ids, {}); the token term needs a student pruned from this teacher",
            student_cfg.vocab_size,
            student_dir.display(),
            teacher_cfg.vocab_size,
            teacher_dir.display()
        )));
    }
    let dims = TargetDims::of(&teacher_cfg, &student_cfg).map_err(|m| {
        DistillError::Input(format!(
            "{m} ({} vs teacher {})",
            student_dir.display(),
            teacher_dir.display()
        ))
    })?;
    if cfg.w_tokens > 0.0 && dims.keep.is_some() {
        return Err(DistillError::Input(format!(
            "w_tokens > 0 compares token states, but the student ({}) is width-pruned ({} of the teacher's {} \
             dimensions); set w_tokens = 0 for a width-pruned student",
            student_dir.display(),
            dims.dim(),
            dims.teacher
        )));
    }
    let teacher_pooler = has_pooler(teacher_dir)
        .map_err(|e| DistillError::Input(format!("teacher checkpoint: {e}")))?;
    let pooling = cfg
        .pooling
        .unwrap_or_else(|| default_pooling(teacher_dir, teacher_pooler).0);
    let Encoder {
        model, tokenizer, ..
    } = Encoder::<B>::load(student_dir, device)
        .map_err(|e| DistillError::Input(format!("student checkpoint: {e}")))?;
    if pooling == Pooling::Pooler && !(teacher_pooler && model.pooler.is_some()) {
        return Err(DistillError::Input(format!(
            "pooling = \"pooler\", but the {} has no pooler weights (use cls or mean)",
            if teacher_pooler { "student" } else { "teacher" }
        )));
    }
    let max_length = cfg
        .max_length
        .min(student_cfg.max_position_embeddings)
        .min(teacher_cfg.max_position_embeddings);
    Ok(Student {
        model,
        tokenizer,
        config: student_cfg,
        pooling,
        max_length,
        dims,
    })
}

/// Where and how the teacher's targets are cached; the training and the dev pairs differ only in their
/// pairs and the data hash that names them.
struct TeacherTargets<'a> {
    cache_dir: PathBuf,
    teacher_dir: &'a Path,
    teacher_hash: String,
    pooling: Pooling,
    max_length: usize,
    dim: usize,
    batch_size: usize,
    shard_rows: usize,
    /// The teacher runs in the process's dtype, so only an f32 process computes targets.
    may_build: bool,
}

impl TeacherTargets<'_> {
    /// The targets of `pairs` (named by `data_hash` in the cache key), opened or computed.
    fn open<B: Backend>(
        &self,
        data_hash: String,
        pairs: &[Pair],
        device: &B::Device,
    ) -> Result<TeacherEmbeddings> {
        let key = CacheKey {
            teacher_hash: self.teacher_hash.clone(),
            data_hash,
            pooling: self.pooling,
            max_length: self.max_length,
        };
        let src = CacheSource {
            teacher_dir: self.teacher_dir,
            pairs,
            batch_size: self.batch_size,
            shard_rows: self.shard_rows,
            dim: self.dim,
            may_build: self.may_build,
        };
        TeacherEmbeddings::open_or_build::<B>(&self.cache_dir, &key, src, device)
    }
}

/// What a run reads before its first step.
struct Inputs<'a> {
    student_dir: &'a Path,
    student_cfg: BertConfig,
    tokenizer: TextTokenizer,
    pooling: Pooling,
    max_length: usize,
    data: TrainData,
    cache: TeacherEmbeddings,
    /// The teacher dimensions the loss compares (the cache holds whole teacher vectors).
    dims: TargetDims,
    dev: Option<DevSet>,
    hashes: InputHashes,
    /// What every summary says of the inputs (its training fields empty).
    summary: Summary,
}

/// Checks and loads the inputs and fills or opens the teacher caches (train and dev); also returns the
/// student model, which the run then owns.
fn prepare<'a, B: AutodiffBackend>(
    cfg: &'a DistillConfig,
    opts: &TrainOptions,
    precision: Precision,
    device: &B::Device,
) -> Result<(Inputs<'a>, BertModel<B>)> {
    let (teacher_dir, student_dir, data_path) = (cfg.teacher()?, cfg.student()?, cfg.data()?);
    let student = load_student::<B>(cfg, teacher_dir, student_dir, device)?;
    let (pooling, max_length) = (student.pooling, student.max_length);
    let dims = student.dims.clone();
    let dim = dims.teacher;
    let mut data = TrainData::read(data_path, cfg.batch_size, cfg.seed)?;
    tracing::info!(
        "{}: {} pairs ({} malformed lines skipped); pooling {pooling}, max_length {max_length}",
        data_path.display(),
        data.len(),
        data.skipped
    );
    let dev_path = cfg.dev_data();
    if let Some(p) = cfg.dev_data.as_ref().filter(|p| !p.exists()) {
        return Err(DistillError::Input(format!(
            "{}: dev_data not found",
            p.display()
        )));
    }
    let mut hashes = InputHashes {
        teacher: checkpoint_hash(teacher_dir)?,
        student: checkpoint_hash(student_dir)?,
        data: file_hash(data_path)?,
        dev: None,
    };
    // `max_pairs`: train on (and cache the teacher for) a seeded sample only; the cache key names it, so
    // runs with any step count share the cache.
    let mut cache_data_hash = hashes.data.clone();
    if let Some(m) = cfg.max_pairs.filter(|&m| m < data.len()) {
        data.keep_first_visited(m);
        cache_data_hash = format!("{}:sample:{}:{m}", hashes.data, cfg.seed);
        tracing::info!("max_pairs = {m}: training on a seeded sample of {m} pairs");
    }
    let targets = TeacherTargets {
        cache_dir: cfg.cache_dir(),
        teacher_dir,
        teacher_hash: hashes.teacher.clone(),
        pooling,
        max_length,
        dim,
        batch_size: cfg.eval_batch_size,
        shard_rows: cfg.cache_shard_rows,
        may_build: precision == Precision::F32,
    };
    let cache = targets.open::<B::InnerBackend>(cache_data_hash, &data.pairs, device)?;
    let (mut cache_hit, mut forward_batches) = (cache.hit, cache.forward_batches);
    // probes train without evaluation: no dev set
    let dev = match dev_path.as_ref().filter(|_| opts.probe.is_none()) {
        Some(p) => {
            let (dev, hash, dev_cache) =
                dev_set::<B::InnerBackend>(cfg, &targets, &dims, p, device)?;
            cache_hit &= dev_cache.hit;
            forward_batches += dev_cache.forward_batches;
            hashes.dev = Some(hash);
            Some(dev)
        }
        None => {
            if opts.probe.is_none() {
                tracing::warn!("no dev data (set dev_data): training without evaluation");
            }
            None
        }
    };
    let summary = Summary {
        teacher_cache: cache.dir.clone(),
        teacher_cache_hit: cache_hit,
        teacher_forward_batches: forward_batches,
        ..Summary::of_inputs(cfg, pooling, precision, &data)
    };
    let inputs = Inputs {
        student_dir,
        student_cfg: student.config,
        tokenizer: student.tokenizer,
        pooling,
        max_length,
        data,
        cache,
        dims,
        dev,
        hashes,
        summary,
    };
    Ok((inputs, student.model))
}

/// The first `eval_pairs` dev pairs of `path` with their teacher targets; also the file's hash and the
/// targets' cache (for its hit and forward-pass counts).
fn dev_set<B: Backend>(
    cfg: &DistillConfig,
    targets: &TeacherTargets<'_>,
    dims: &TargetDims,
    path: &Path,
    device: &B::Device,
) -> Result<(DevSet, String, TeacherEmbeddings)> {
    let mut d = PairData::read(path)?;
    let hash = file_hash(path)?;
    // only the first eval_pairs are evaluated: embed just those with the teacher
    let used = cfg.eval_pairs.min(d.pairs.len());
    d.pairs.truncate(used);
    let cache = targets.open::<B>(format!("{hash}:first:{used}"), &d.pairs, device)?;
    let idx: Vec<usize> = (0..used).collect();
    let dev = DevSet {
        t_en: dims.select(cache.gather(Side::En, &idx)),
        t_ru: dims.select(cache.gather(Side::Ru, &idx)),
        pairs: d.pairs,
        dim: dims.dim(),
    };
    Ok((dev, hash, cache))
}

impl Summary {
    /// A summary of the inputs only: the training fields (and the teacher cache's) empty.
    fn of_inputs(
        cfg: &DistillConfig,
        pooling: Pooling,
        precision: Precision,
        data: &TrainData,
    ) -> Summary {
        Summary {
            out: cfg.out.clone(),
            total_steps: 0,
            step: 0,
            steps_this_run: 0,
            resumed_from: None,
            finished: false,
            final_dir: None,
            pooling,
            precision,
            train_pairs: data.len(),
            skipped_lines: data.skipped,
            first_bad_lines: data.first_bad.clone(),
            teacher_cache: PathBuf::new(),
            teacher_cache_hit: false,
            teacher_forward_batches: 0,
            pairs_per_s: 0.0,
            first_loss: None,
            last_loss: None,
            eval_first: None,
            eval_last: None,
            teacher_acc: None,
            loss_plot: None,
            skipped_checkpoints: Vec::new(),
        }
    }
}

/// Losses and seconds of the steps since the last log line.
#[derive(Default)]
struct LossWindow {
    sum: LossValues,
    steps: usize,
    seconds: f64,
}

impl LossWindow {
    fn add(&mut self, v: &LossValues, secs: f64) {
        self.sum.total += v.total;
        self.sum.mse_en += v.mse_en;
        self.sum.mse_ru += v.mse_ru;
        self.sum.cross += v.cross;
        self.sum.rank += v.rank;
        self.sum.tokens += v.tokens;
        self.steps += 1;
        self.seconds += secs;
    }

    /// The mean losses and the pairs/s (`batch_size` pairs a step) of the window, which is emptied.
    fn take(&mut self, batch_size: usize) -> (LossValues, f64) {
        let k = self.steps as f32;
        let mean = LossValues {
            total: self.sum.total / k,
            mse_en: self.sum.mse_en / k,
            mse_ru: self.sum.mse_ru / k,
            cross: self.sum.cross / k,
            rank: self.sum.rank / k,
            tokens: self.sum.tokens / k,
        };
        let pairs_per_s = (self.steps * batch_size) as f64 / self.seconds.max(1e-9);
        *self = Self::default();
        (mean, pairs_per_s)
    }
}

/// What one optimizer step did.
struct StepDone {
    /// Where its batch came from.
    pos: DataPosition,
    pairs: usize,
    values: LossValues,
    lr: f64,
    grad_norm: f32,
    secs: f64,
}

/// One invocation's training: the student and its optimizer, where the run stands and what it logged.
struct Run<'a, B: AutodiffBackend> {
    cfg: &'a DistillConfig,
    opts: &'a TrainOptions,
    precision: Precision,
    device: &'a B::Device,
    inputs: Inputs<'a>,
    /// `None` only inside [`Run::step`], while the optimizer updates it.
    model: Option<BertModel<B>>,
    /// The frozen teacher for the token term (`None` when `w_tokens` is 0).
    teacher: Option<BertModel<B::InnerBackend>>,
    optim: AdamW<B::InnerBackend>,
    loss_weights: LossWeights,
    trajectory: serde_json::Value,
    total_steps: usize,
    warmup: usize,
    /// Steps done.
    step: usize,
    steps_this_run: usize,
    resumed_from: Option<usize>,
    /// Training seconds of the invocations before this one (from the checkpoint resumed).
    train_seconds_before: f64,
    train_seconds: f64,
    skipped_checkpoints: Vec<usize>,
    teacher_acc: Option<(f32, f32)>,
    metrics: MetricsLog,
    /// The newest checkpoint, named when a non-finite loss stops the run.
    latest_ckpt: Option<PathBuf>,
    first_loss: Option<LossValues>,
    last_loss: Option<LossValues>,
    window: LossWindow,
    bar: ProgressBar,
}

const STUDENT: &str = "the student is in place between steps";

impl<'a, B: AutodiffBackend> Run<'a, B> {
    /// A fresh run of `inputs` (or, with `--resume`, the newest verified checkpoint's). A probe writes
    /// nothing into `out` and always starts at step 0.
    fn start(
        cfg: &'a DistillConfig,
        opts: &'a TrainOptions,
        precision: Precision,
        device: &'a B::Device,
        inputs: Inputs<'a>,
        (model, teacher): (BertModel<B>, Option<BertModel<B::InnerBackend>>),
    ) -> Result<Self> {
        let teacher_acc = inputs
            .dev
            .as_ref()
            .map(|d| eval::teacher_accuracy::<B::InnerBackend>(d, device));
        if let Some((a, b)) = teacher_acc {
            tracing::info!("teacher dev retrieval acc@1: en->ru {a:.4}, ru->en {b:.4}");
        }
        let total_steps = cfg.steps.unwrap_or_else(|| {
            ((cfg.epochs * inputs.data.batches_per_epoch() as f64).ceil() as usize).max(1)
        });
        let mut run = Run {
            cfg,
            opts,
            precision,
            device,
            inputs,
            model: Some(model),
            teacher,
            optim: AdamW::new(AdamWSettings {
                beta1: cfg.adam_beta1,
                beta2: cfg.adam_beta2,
                eps: cfg.adam_eps,
                weight_decay: cfg.weight_decay,
                max_grad_norm: cfg.max_grad_norm,
            }),
            loss_weights: LossWeights {
                mse: cfg.w_mse,
                cross: cfg.w_cross,
                rank: cfg.w_rank,
                rank_scale: cfg.rank_scale,
                tokens: cfg.w_tokens,
                normalize: cfg.normalize,
            },
            trajectory: cfg.trajectory_key(),
            total_steps,
            warmup: configured_warmup(cfg, total_steps),
            step: 0,
            steps_this_run: 0,
            resumed_from: None,
            train_seconds_before: 0.0,
            train_seconds: 0.0,
            skipped_checkpoints: Vec::new(),
            teacher_acc,
            metrics: MetricsLog::discard(),
            latest_ckpt: None,
            first_loss: None,
            last_loss: None,
            window: LossWindow::default(),
            bar: ProgressBar::hidden(),
        };
        if opts.probe.is_none() {
            prepare_out(&cfg.out, opts)?;
            if opts.resume {
                run.restore()?;
            }
            run.metrics = match run.resumed_from {
                Some(_) => MetricsLog::resume(&cfg.out, run.step)?,
                None => MetricsLog::create(&cfg.out)?,
            };
        }
        Ok(run)
    }

    fn model(&self) -> &BertModel<B> {
        self.model.as_ref().expect(STUDENT)
    }

    fn schedule(&self) -> LrSchedule {
        LrSchedule {
            peak: self.cfg.lr,
            warmup: self.warmup,
            total: self.total_steps,
            kind: self.cfg.schedule,
            min_ratio: self.cfg.min_lr_ratio,
        }
    }

    /// `--resume`: continues from the newest checkpoint that verifies (newer damaged ones are set aside),
    /// refusing one made by another run; none at all is a fresh start.
    fn restore(&mut self) -> Result<()> {
        let out = self.cfg.out.as_path();
        let found = checkpoint::newest_verified(out);
        for sk in &found.skipped {
            let aside = checkpoint::set_aside(&sk.dir)?;
            tracing::warn!(
                "{}: set aside as {} (not resumed from, not counted among the kept checkpoints)",
                sk.dir.display(),
                aside.display()
            );
            self.skipped_checkpoints.push(sk.step);
        }
        let Some((dir, st)) = found.good else {
            if found.skipped.is_empty() {
                tracing::info!(
                    "--resume: no checkpoint in {}; starting fresh",
                    checkpoint::checkpoints_dir(out).display()
                );
            } else {
                tracing::warn!(
                    "--resume: all {} checkpoints in {} were damaged; starting fresh",
                    found.skipped.len(),
                    checkpoint::checkpoints_dir(out).display()
                );
            }
            return Ok(());
        };
        self.check_resumable(&dir, &st)?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let total_steps = self.total_steps;
        self.warmup = resumed_warmup(self.cfg, &st, total_steps);
        if total_steps != st.total_steps {
            tracing::info!(
                "resuming {name} of a {}-step run as a {total_steps}-step run: the schedule is recomputed for \
                 {total_steps} steps (warm-up {} steps, as trained)",
                st.total_steps,
                self.warmup
            );
        }
        let code = env!("SEKATOR_CODE");
        if let Some(then) = st.code.as_deref().filter(|&c| c != code) {
            tracing::warn!(
                "checkpoint {name} was written by other code (fingerprint {then}, now {code}); continuing with \
                 the current code"
            );
        }
        let model = Encoder::<B>::load(&dir, self.device)?.model;
        self.optim.load(
            &dir.join(checkpoint::OPTIMIZER_FILE),
            st.optimizer_step,
            &param_paths::<B, _>(&model),
            self.device,
        )?;
        self.model = Some(model);
        self.step = st.step;
        self.train_seconds_before = st.train_seconds;
        self.resumed_from = Some(st.step);
        tracing::info!(
            "resuming from {} (step {} of {})",
            dir.display(),
            st.step,
            total_steps
        );
        Ok(())
    }

    /// Refuses checkpoint `dir` (state `st`) unless this very run made it: same settings, inputs,
    /// precision and data position, and no more steps done than this run has.
    fn check_resumable(&self, dir: &Path, st: &TrainState) -> Result<()> {
        let mismatch = |what: &str| {
            DistillError::Resume(format!(
                "{}: was made with a different {what}; start over with --overwrite or restore it",
                dir.display()
            ))
        };
        let differs = trajectory_differences(&st.trajectory, &self.trajectory);
        if !differs.is_empty() {
            return Err(mismatch(&format!("config (keys: {})", differs.join(", "))));
        }
        let h = &self.inputs.hashes;
        if st.teacher_hash != h.teacher {
            return Err(mismatch("teacher"));
        }
        if st.student_hash != h.student {
            return Err(mismatch("student"));
        }
        if st.data_hash != h.data {
            return Err(mismatch("data file"));
        }
        if st.precision.is_some_and(|p| p != self.precision) {
            return Err(mismatch(
                "precision (the checkpoint's is in its state.json)",
            ));
        }
        if st.position != self.inputs.data.position_of(st.step) {
            return Err(mismatch("data position (batch size or pair count)"));
        }
        if self.total_steps < st.step {
            return Err(DistillError::Resume(format!(
                "{}: has done {} steps, more than this {}-step run (steps/epochs) has; set steps to at \
                 least {} to continue it, or start over with --overwrite",
                dir.display(),
                st.step,
                self.total_steps,
                st.step
            )));
        }
        Ok(())
    }

    /// The progress bar of `len` steps (hidden unless `progress`), at the step the run stands at.
    fn progress_bar(&self, len: usize) -> ProgressBar {
        let bar = if self.opts.progress {
            ProgressBar::new(len as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  eta {eta}")
                .expect("valid template"),
        );
        bar.set_position(self.step as u64);
        bar
    }

    /// Whether this invocation has done the steps `max_steps_this_run` allows it.
    fn stopped(&self) -> bool {
        self.opts
            .max_steps_this_run
            .is_some_and(|m| self.steps_this_run >= m)
    }

    /// The student on the dev pairs (`None` without them).
    fn evaluate(&self, step: usize) -> Result<Option<EvalMetrics>> {
        let inp = &self.inputs;
        let Some(dev) = &inp.dev else { return Ok(None) };
        let m = eval::evaluate::<B::InnerBackend>(
            &self.model().valid(),
            &inp.tokenizer,
            dev,
            inp.pooling,
            self.cfg.normalize,
            inp.max_length,
            self.cfg.eval_batch_size,
            step,
            self.device,
        )?;
        tracing::info!(
            "eval step {step}: mse {:.6} (en {:.6}, ru {:.6}, ru->t(en) {:.6}), acc@1 en->ru {:.4} ru->en {:.4}",
            m.mse,
            m.mse_en,
            m.mse_ru,
            m.mse_cross,
            m.acc_en_ru,
            m.acc_ru_en
        );
        Ok(Some(m))
    }

    /// The loss of the batch of pairs `idx`: each side through the student once, the token term (and
    /// its teacher forward passes) only when `w_tokens` > 0, so runs without it are as before.
    /// The token batches of the en and the ru texts of pairs `idx`.
    fn encode(&self, idx: &[usize]) -> Result<(TokenBatch, TokenBatch)> {
        let inp = &self.inputs;
        let encode = |text: fn(&Pair) -> &str| -> Result<TokenBatch> {
            let texts: Vec<&str> = idx.iter().map(|&i| text(&inp.data.pairs[i])).collect();
            let tokens = inp.tokenizer.encode(&texts, inp.max_length)?;
            let refs: Vec<_> = tokens.iter().collect();
            Ok(TokenBatch::new(&refs, inp.tokenizer.pad_id))
        };
        Ok((encode(|p| &p.en)?, encode(|p| &p.ru)?))
    }

    /// The teacher's cached embeddings of pairs `idx` (en, ru), at the student's dimensions.
    fn targets(&self, idx: &[usize]) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let (device, inp) = (self.device, &self.inputs);
        let target = |side| {
            to_tensor::<B>(
                inp.dims.select(inp.cache.gather(side, idx)),
                inp.dims.dim(),
                device,
            )
        };
        (target(Side::En), target(Side::Ru))
    }

    fn batch_loss(&self, idx: &[usize]) -> Result<LossParts<B>> {
        let (device, inp) = (self.device, &self.inputs);
        let model = self.model();
        let (en, ru) = self.encode(idx)?;
        let s_en = student_forward(model, &en, inp.pooling, device);
        let s_ru = student_forward(model, &ru, inp.pooling, device);
        let tokens = self
            .teacher
            .as_ref()
            .map(|t| token_term(t, &en, &s_en, device) + token_term(t, &ru, &s_ru, device));
        let (t_en, t_ru) = self.targets(idx);
        let w = &self.loss_weights;
        let parts = distill_loss(s_en.pooled, s_ru.pooled, t_en, t_ru, w);
        Ok(match tokens {
            Some(t) => parts.with_tokens(t, w.tokens),
            None => parts,
        })
    }

    /// How many micro-batches a batch runs as ([`micro`]): the config's `micro_batches` on CPU backends,
    /// 1 (one graph) on GPUs, whose kernels are parallel already, and with the token term, whose
    /// per-token mean couples the rows' hidden states.
    fn micro_batches(&self) -> usize {
        if backend::is_cpu::<B>() && self.teacher.is_none() {
            self.cfg.micro_batches.max(1)
        } else {
            1
        }
    }

    /// The loss values and parameter gradients of the batch `idx`.
    fn batch_gradients(&self, idx: &[usize]) -> Result<(LossValues, GradientsParams)> {
        let micro = self.micro_batches();
        if micro <= 1 {
            let parts = self.batch_loss(idx)?;
            let values = parts.values();
            return Ok((
                values,
                GradientsParams::from_grads(parts.total.backward(), self.model()),
            ));
        }
        let (device, pooling) = (self.device, self.inputs.pooling);
        let forward = |model: &BertModel<B>, rows: &[usize]| -> Result<micro::Pooled<B>> {
            let (en, ru) = self.encode(rows)?;
            Ok(micro::Pooled {
                en: student_forward(model, &en, pooling, device).pooled,
                ru: student_forward(model, &ru, pooling, device).pooled,
            })
        };
        let (t_en, t_ru) = self.targets(idx);
        let w = &self.loss_weights;
        micro::step(self.model(), idx, micro, forward, |s_en, s_ru| {
            distill_loss(s_en, s_ru, t_en, t_ru, w)
        })
    }

    /// One optimizer step on the next batch. A non-finite loss stops the run before the update when
    /// `fail_on_non_finite` (a probe records it instead: that is its verdict).
    fn step(&mut self, fail_on_non_finite: bool) -> Result<StepDone> {
        let t0 = Instant::now();
        let pos = self.inputs.data.position_of(self.step);
        let idx = self.inputs.data.batch(pos);
        let (values, grads) = self.batch_gradients(&idx)?;
        if !values.total.is_finite() && fail_on_non_finite {
            self.bar.abandon();
            return Err(DistillError::NonFinite {
                step: self.step + 1,
                value: values.total,
                checkpoint: self.latest_ckpt.clone(),
            });
        }
        let lr = self.schedule().lr(self.step);
        let model = self.model.take().expect(STUDENT);
        let (updated, grad_norm) = self.optim.step::<B, _>(model, grads, lr);
        self.model = Some(updated);
        self.step += 1;
        self.steps_this_run += 1;
        let secs = t0.elapsed().as_secs_f64();
        self.train_seconds += secs;
        Ok(StepDone {
            pos,
            pairs: idx.len(),
            values,
            lr,
            grad_norm,
            secs,
        })
    }

    /// The steps of this invocation, each followed by the logging, evaluation and checkpoint due.
    fn train(&mut self) -> Result<()> {
        if self.resumed_from.is_none() {
            if let Some(m) = self.evaluate(0)? {
                self.metrics.push(Record::Eval(m))?;
            }
        }
        self.bar = self.progress_bar(self.total_steps);
        self.latest_ckpt = checkpoint::list(&self.cfg.out).pop().map(|(_, p)| p);
        while self.step < self.total_steps && !self.stopped() {
            let done = self.step(true)?;
            self.after_step(&done)?;
        }
        self.bar.finish_and_clear();
        Ok(())
    }

    /// Books step `d` (losses, progress) and does what falls due on it: log line, evaluation, checkpoint.
    fn after_step(&mut self, d: &StepDone) -> Result<()> {
        let (cfg, step) = (self.cfg, self.step);
        self.first_loss.get_or_insert(d.values);
        self.last_loss = Some(d.values);
        self.window.add(&d.values, d.secs);
        let pps = d.pairs as f64 / d.secs.max(1e-9);
        self.bar.set_position(step as u64);
        self.bar
            .set_message(format!("loss {:.5}  {:.1} pairs/s", d.values.total, pps));
        let last = step == self.total_steps;
        if step % cfg.log_every == 0 || last {
            self.log_window(d)?;
        }
        let mut eval = None;
        if cfg.eval_every > 0 && step % cfg.eval_every == 0 || last {
            if let Some(m) = self.bar.suspend(|| self.evaluate(step))? {
                self.metrics.push(Record::Eval(m))?;
                eval = Some(m);
            }
        }
        if cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 || last {
            self.save_checkpoint(d, eval)?;
        }
        if self.opts.step_delay_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(self.opts.step_delay_ms));
        }
        Ok(())
    }

    /// Logs and records the mean losses since the last log line (`d` is the step just done).
    fn log_window(&mut self, d: &StepDone) -> Result<()> {
        let (step, total_steps) = (self.step, self.total_steps);
        let (mean, pairs_per_s) = self.window.take(self.cfg.batch_size);
        // the token part only when the run has one: log lines of other runs stay as they were
        let tokens_part = match self.teacher {
            Some(_) => format!(", tokens {:.6}", mean.tokens),
            None => String::new(),
        };
        let rec = TrainRecord {
            step,
            epoch: d.pos.epoch,
            loss: mean,
            lr: d.lr,
            grad_norm: d.grad_norm,
            pairs_per_s,
        };
        self.bar.suspend(|| {
            tracing::info!(
                "step {step}/{total_steps} epoch {}: loss {:.6} (mse en {:.6} ru {:.6}, cross {:.6}, rank {:.4}{}) lr {:.3e} |g| {:.3} {:.1} pairs/s",
                d.pos.epoch,
                mean.total,
                mean.mse_en,
                mean.mse_ru,
                mean.cross,
                mean.rank,
                tokens_part,
                d.lr,
                d.grad_norm,
                rec.pairs_per_s
            )
        });
        self.metrics.push(Record::Train(rec))
    }

    /// Writes checkpoint `step-N` after step `d` (with its evaluation `eval`, if one fell on it).
    fn save_checkpoint(&mut self, d: &StepDone, eval: Option<EvalMetrics>) -> Result<()> {
        let (cfg, inp, step) = (self.cfg, &self.inputs, self.step);
        let state = TrainState {
            precision: Some(self.precision),
            step,
            total_steps: self.total_steps,
            position: inp.data.position_of(step),
            seed: cfg.seed,
            optimizer_step: self.optim.step,
            trajectory: self.trajectory.clone(),
            teacher_hash: inp.hashes.teacher.clone(),
            student_hash: inp.hashes.student.clone(),
            data_hash: inp.hashes.data.clone(),
            train_seconds: self.train_seconds_before + self.train_seconds,
            metrics: serde_json::json!({ "loss": d.values, "grad_norm": d.grad_norm, "eval": eval }),
            warmup_steps: Some(self.warmup),
            weights_sha256: None,
            optimizer_sha256: None,
            code: Some(env!("SEKATOR_CODE").to_string()),
        };
        let tensors = self.model().export();
        let (student_dir, student_cfg) = (inp.student_dir, &inp.student_cfg);
        let card = crate::card::facts(
            cfg,
            student_dir,
            student_cfg,
            &tensors,
            step,
            state.total_steps,
        )?;
        let dir = checkpoint::save(
            &cfg.out,
            student_cfg,
            &tensors,
            student_dir,
            &card,
            &self.optim,
            &state,
            cfg.keep_checkpoints,
        )?;
        tracing::debug!("checkpoint {}", dir.display());
        self.latest_ckpt = Some(dir);
        Ok(())
    }

    /// A precision probe: the first `precision_check_steps` steps in this process's dtype, their losses
    /// and times written to `probe.report`; nothing else is written, the run is not finished.
    fn probe(mut self, probe: &Probe) -> Result<Summary> {
        let mut report = ProbeReport {
            precision: probe.precision,
            batch_size: self.cfg.batch_size,
            losses: Vec::new(),
            step_seconds: Vec::new(),
        };
        let steps = self.cfg.precision_check_steps;
        self.bar = self.progress_bar(steps.min(self.total_steps));
        while self.step < self.total_steps && !self.stopped() && self.steps_this_run < steps {
            let d = self.step(false)?;
            report.losses.push(d.values.total);
            report.step_seconds.push(d.secs);
            if !d.values.total.is_finite() {
                break;
            }
        }
        self.bar.finish_and_clear();
        let text = serde_json::to_string_pretty(&report).expect("serialisable");
        sekator_model::write_atomic(&probe.report, text.as_bytes())?;
        Ok(self.summary(false, None, None))
    }

    /// Ends the invocation. A complete run also writes its final model (with the ONNX export), loss plot,
    /// `summary.json` and, last, `manifest.json` (what marks the run done).
    fn finish(self, started: Instant) -> Result<Summary> {
        if self.step != self.total_steps {
            return Ok(self.summary(false, None, None));
        }
        let (cfg, inp, out) = (self.cfg, &self.inputs, self.cfg.out.as_path());
        let dir = out.join(sekator_pipeline::stage::DISTILLED_MODEL);
        let tensors = self.model().export();
        let card = crate::card::facts(
            cfg,
            inp.student_dir,
            &inp.student_cfg,
            &tensors,
            self.step,
            self.total_steps,
        )?;
        checkpoint::write_clean_model_dir(
            &dir,
            &inp.student_cfg,
            &tensors,
            inp.student_dir,
            &card,
            |p| crate::card::export_onnx(cfg, p),
        )?;
        let loss_plot = crate::plot::loss_curve(out, &self.metrics);
        let summary = self.summary(true, Some(dir), loss_plot);
        DistillSummary {
            total_steps: summary.total_steps,
            train_pairs: summary.train_pairs,
            pairs_per_s: summary.pairs_per_s,
            precision: summary.precision.to_string(),
            eval_first: summary.eval_first,
            eval_last: summary.eval_last,
            teacher_acc: summary.teacher_acc,
        }
        .write(out)?;
        let mut manifest = distill_manifest(cfg, inp.hashes.manifest_inputs());
        manifest.seconds = started.elapsed().as_secs_f64();
        manifest.results = serde_json::to_value(&summary).unwrap_or_default();
        manifest.write(out)?;
        Ok(summary)
    }

    /// What the run did so far, on top of the inputs' summary.
    fn summary(
        &self,
        finished: bool,
        final_dir: Option<PathBuf>,
        loss_plot: Option<PathBuf>,
    ) -> Summary {
        let evals: Vec<&EvalMetrics> = self.metrics.evals().collect();
        Summary {
            total_steps: self.total_steps,
            step: self.step,
            steps_this_run: self.steps_this_run,
            resumed_from: self.resumed_from,
            finished,
            final_dir,
            pairs_per_s: if self.train_seconds > 0.0 {
                (self.steps_this_run * self.cfg.batch_size) as f64 / self.train_seconds
            } else {
                0.0
            },
            first_loss: self.first_loss,
            last_loss: self.last_loss,
            eval_first: evals.first().map(|e| **e),
            eval_last: evals.last().map(|e| **e),
            teacher_acc: self.teacher_acc,
            loss_plot,
            skipped_checkpoints: self.skipped_checkpoints.clone(),
            ..self.inputs.summary.clone()
        }
    }
}
