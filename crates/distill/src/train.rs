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
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use sekator_model::backend::{self, AutodiffTask};
use sekator_model::pooling::{self, default_pooling};
use sekator_model::DeviceKind;
use sekator_model::{
    checkpoint_hash, file_hash, read_config, BertModel, Encoder, Pooling, SafetensorsWeights,
    TextTokenizer, TokenBatch,
};
use sekator_pipeline::{Manifest, PairData};

use crate::checkpoint::{self, TrainState};
use crate::config::{trajectory_differences, DistillConfig};
use crate::data::TrainData;
use crate::error::{DistillError, Result};
use crate::eval::{self, DevSet, EvalMetrics};
use crate::loss::{distill_loss, LossValues, LossWeights};
use crate::metrics::{MetricsLog, Record, TrainRecord};
use crate::optim::{param_paths, AdamW, AdamWSettings};
use crate::precision::{self, Precision, PrecisionCheck, ProbeReport};
use crate::schedule::LrSchedule;
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
    let mut inputs = BTreeMap::new();
    inputs.insert("teacher".to_string(), checkpoint_hash(cfg.teacher()?)?);
    inputs.insert("student".to_string(), checkpoint_hash(cfg.student()?)?);
    inputs.insert("data".to_string(), file_hash(cfg.data()?)?);
    if let Some(p) = cfg.dev_data() {
        inputs.insert("dev_data".to_string(), file_hash(&p)?);
    }
    Ok(distill_manifest(cfg, inputs))
}

/// The manifest of `cfg` with input hashes `inputs`, and the code lineage of the student's stage.
fn distill_manifest(cfg: &DistillConfig, inputs: BTreeMap<String, String>) -> Manifest {
    let mut m = Manifest::new(
        "distill",
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

fn to_tensor<B: burn::tensor::backend::Backend>(
    flat: Vec<f32>,
    dim: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let rows = flat.len() / dim;
    // f32 whatever the training dtype: the loss is computed in f32 (see `precision.rs`)
    Tensor::from_data(TensorData::new(flat, [rows, dim]), (device, DType::F32))
}

/// Student sentence embeddings of `texts` (one padded batch; gradients flow).
fn student_embed<B: AutodiffBackend>(
    model: &BertModel<B>,
    tokenizer: &TextTokenizer,
    texts: &[&str],
    pooling: Pooling,
    max_length: usize,
    device: &B::Device,
) -> Result<Tensor<B, 2>> {
    let tokens = tokenizer.encode(texts, max_length)?;
    let batch = TokenBatch::new(&tokens.iter().collect::<Vec<_>>(), tokenizer.pad_id);
    let (ids, mask) = batch.tensors::<B>(device);
    let hidden = model.forward(ids, mask.clone(), None);
    let pooled =
        pooling::pool(model, &hidden, &mask, pooling).expect("pooler presence checked at start");
    Ok(if pooled.dtype() == DType::F32 {
        pooled
    } else {
        pooled.cast(FloatDType::F32)
    })
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
        out.join("final"),
        out.join(crate::metrics::METRICS_FILE),
        out.join("manifest.json"),
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

fn train<B: AutodiffBackend>(
    cfg: &DistillConfig,
    opts: &TrainOptions,
    precision: Precision,
    device: &B::Device,
) -> Result<Summary> {
    let probe = opts.probe.as_ref();
    let started = Instant::now();
    let (teacher_dir, student_dir, data_path) = (cfg.teacher()?, cfg.student()?, cfg.data()?);

    // --- inputs -----------------------------------------------------------------------------------
    let teacher_cfg = read_config(teacher_dir)
        .map_err(|e| DistillError::Input(format!("teacher checkpoint: {e}")))?;
    let student_cfg = read_config(student_dir)
        .map_err(|e| DistillError::Input(format!("student checkpoint: {e}")))?;
    if teacher_cfg.hidden_size != student_cfg.hidden_size {
        return Err(DistillError::Input(format!(
            "student hidden size {} ({}) differs from the teacher's {} ({}); the MSE targets need equal sizes and \
             distill has no projection layer. Distil into a student with the teacher's hidden size (pruning heads \
             and FFN neurons keeps it)",
            student_cfg.hidden_size,
            student_dir.display(),
            teacher_cfg.hidden_size,
            teacher_dir.display()
        )));
    }
    let teacher_pooler = has_pooler(teacher_dir)
        .map_err(|e| DistillError::Input(format!("teacher checkpoint: {e}")))?;
    let pooling = cfg
        .pooling
        .unwrap_or_else(|| default_pooling(teacher_dir, teacher_pooler).0);
    let Encoder {
        model: student_model,
        tokenizer,
        ..
    } = Encoder::<B>::load(student_dir, device)
        .map_err(|e| DistillError::Input(format!("student checkpoint: {e}")))?;
    if pooling == Pooling::Pooler && !(teacher_pooler && student_model.pooler.is_some()) {
        return Err(DistillError::Input(format!(
            "pooling = \"pooler\", but the {} has no pooler weights (use cls or mean)",
            if teacher_pooler { "student" } else { "teacher" }
        )));
    }
    let max_length = cfg
        .max_length
        .min(student_cfg.max_position_embeddings)
        .min(teacher_cfg.max_position_embeddings);
    let mut data = TrainData::read(data_path, cfg.batch_size, cfg.seed)?;
    tracing::info!(
        "{}: {} pairs ({} malformed lines skipped); pooling {pooling}, max_length {max_length}",
        data_path.display(),
        data.len(),
        data.skipped
    );
    let dev_path = cfg.dev_data();
    if let Some(p) = &cfg.dev_data {
        if !p.exists() {
            return Err(DistillError::Input(format!(
                "{}: dev_data not found",
                p.display()
            )));
        }
    }

    let teacher_hash = checkpoint_hash(teacher_dir)?;
    let student_hash = checkpoint_hash(student_dir)?;
    let data_hash = file_hash(data_path)?;
    // `max_pairs`: train on (and cache the teacher for) a seeded sample only; the cache key names it, so
    // runs with any step count share the cache.
    let mut cache_data_hash = data_hash.clone();
    if let Some(m) = cfg.max_pairs.filter(|&m| m < data.len()) {
        data.keep_first_visited(m);
        cache_data_hash = format!("{data_hash}:sample:{}:{m}", cfg.seed);
        tracing::info!("max_pairs = {m}: training on a seeded sample of {m} pairs");
    }
    let cache_dir = cfg.cache_dir();
    let dim = teacher_cfg.hidden_size;
    // The teacher runs in the process's dtype, so only an f32 process computes targets (see `may_build`).
    let may_build = precision == Precision::F32;
    let key = CacheKey {
        teacher_hash: teacher_hash.clone(),
        data_hash: cache_data_hash,
        pooling,
        max_length,
    };
    let cache = TeacherEmbeddings::open_or_build::<B::InnerBackend>(
        &cache_dir,
        &key,
        CacheSource {
            teacher_dir,
            pairs: &data.pairs,
            batch_size: cfg.eval_batch_size,
            shard_rows: cfg.cache_shard_rows,
            dim,
            may_build,
        },
        device,
    )?;
    let mut cache_hit = cache.hit;
    let mut forward_batches = cache.forward_batches;
    let mut dev_hash = None;
    // probes train without evaluation: no dev set
    let dev = match dev_path.as_ref().filter(|_| probe.is_none()) {
        Some(p) => {
            let mut d = PairData::read(p)?;
            let h = file_hash(p)?;
            // only the first eval_pairs are evaluated: embed just those with the teacher
            let used = cfg.eval_pairs.min(d.pairs.len());
            d.pairs.truncate(used);
            let dkey = CacheKey {
                teacher_hash: teacher_hash.clone(),
                data_hash: format!("{h}:first:{used}"),
                pooling,
                max_length,
            };
            let dc = TeacherEmbeddings::open_or_build::<B::InnerBackend>(
                &cache_dir,
                &dkey,
                CacheSource {
                    teacher_dir,
                    pairs: &d.pairs,
                    batch_size: cfg.eval_batch_size,
                    shard_rows: cfg.cache_shard_rows,
                    dim,
                    may_build,
                },
                device,
            )?;
            cache_hit &= dc.hit;
            forward_batches += dc.forward_batches;
            dev_hash = Some(h);
            let n = cfg.eval_pairs.min(d.pairs.len());
            let idx: Vec<usize> = (0..n).collect();
            Some(DevSet {
                pairs: d.pairs[..n].to_vec(),
                t_en: dc.gather(Side::En, &idx),
                t_ru: dc.gather(Side::Ru, &idx),
                dim,
            })
        }
        None => {
            if probe.is_none() {
                tracing::warn!("no dev data (set dev_data): training without evaluation");
            }
            None
        }
    };
    // what every summary says of the inputs; the training fields start empty
    let inputs_summary = Summary {
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
        teacher_cache: cache.dir.clone(),
        teacher_cache_hit: cache_hit,
        teacher_forward_batches: forward_batches,
        pairs_per_s: 0.0,
        first_loss: None,
        last_loss: None,
        eval_first: None,
        eval_last: None,
        teacher_acc: None,
        loss_plot: None,
        skipped_checkpoints: Vec::new(),
    };
    if opts.fill_cache_only {
        return Ok(inputs_summary);
    }
    let teacher_acc = dev
        .as_ref()
        .map(|d| eval::teacher_accuracy::<B::InnerBackend>(d, device));
    if let Some((a, b)) = teacher_acc {
        tracing::info!("teacher dev retrieval acc@1: en->ru {a:.4}, ru->en {b:.4}");
    }

    // --- run state --------------------------------------------------------------------------------
    let out = cfg.out.as_path();
    if probe.is_none() {
        prepare_out(out, opts)?;
    }
    let total_steps = cfg
        .steps
        .unwrap_or_else(|| ((cfg.epochs * data.batches_per_epoch() as f64).ceil() as usize).max(1));
    let mut warmup = configured_warmup(cfg, total_steps);
    let weights = LossWeights {
        mse: cfg.w_mse,
        cross: cfg.w_cross,
        rank: cfg.w_rank,
        rank_scale: cfg.rank_scale,
        normalize: cfg.normalize,
    };
    let mut optim = AdamW::<B::InnerBackend>::new(AdamWSettings {
        beta1: cfg.adam_beta1,
        beta2: cfg.adam_beta2,
        eps: cfg.adam_eps,
        weight_decay: cfg.weight_decay,
        max_grad_norm: cfg.max_grad_norm,
    });
    let trajectory = cfg.trajectory_key();
    let mut start_step = 0;
    let mut train_seconds_before = 0.0;
    let mut resumed_from = None;
    let mut model = student_model;
    let mut skipped_checkpoints = Vec::new();
    if opts.resume && probe.is_none() {
        let found = checkpoint::newest_verified(out);
        for sk in &found.skipped {
            let aside = checkpoint::set_aside(&sk.dir)?;
            tracing::warn!(
                "{}: set aside as {} (not resumed from, not counted among the kept checkpoints)",
                sk.dir.display(),
                aside.display()
            );
            skipped_checkpoints.push(sk.step);
        }
        if let Some((dir, st)) = found.good {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let mismatch = |what: &str| {
                DistillError::Resume(format!("{}: was made with a different {what}; start over with --overwrite or restore it", dir.display()))
            };
            let differs = trajectory_differences(&st.trajectory, &trajectory);
            if !differs.is_empty() {
                return Err(mismatch(&format!("config (keys: {})", differs.join(", "))));
            }
            if st.teacher_hash != teacher_hash {
                return Err(mismatch("teacher"));
            }
            if st.student_hash != student_hash {
                return Err(mismatch("student"));
            }
            if st.data_hash != data_hash {
                return Err(mismatch("data file"));
            }
            if st.precision.is_some_and(|p| p != precision) {
                return Err(mismatch(
                    "precision (the checkpoint's is in its state.json)",
                ));
            }
            if st.position != data.position_of(st.step) {
                return Err(mismatch("data position (batch size or pair count)"));
            }
            if total_steps < st.step {
                return Err(DistillError::Resume(format!(
                    "{}: has done {} steps, more than this {total_steps}-step run (steps/epochs) has; set steps to at \
                     least {} to continue it, or start over with --overwrite",
                    dir.display(),
                    st.step,
                    st.step
                )));
            }
            warmup = resumed_warmup(cfg, &st, total_steps);
            if total_steps != st.total_steps {
                tracing::info!(
                    "resuming {name} of a {}-step run as a {total_steps}-step run: the schedule is recomputed for \
                     {total_steps} steps (warm-up {warmup} steps, as trained)",
                    st.total_steps
                );
            }
            let code = env!("SEKATOR_CODE");
            if let Some(then) = st.code.as_deref().filter(|&c| c != code) {
                tracing::warn!(
                    "checkpoint {name} was written by other code (fingerprint {then}, now {code}); continuing with \
                     the current code"
                );
            }
            let restored = Encoder::<B>::load(&dir, device)?;
            model = restored.model;
            optim.load(
                &dir.join(checkpoint::OPTIMIZER_FILE),
                st.optimizer_step,
                &param_paths::<B, _>(&model),
                device,
            )?;
            start_step = st.step;
            train_seconds_before = st.train_seconds;
            resumed_from = Some(st.step);
            tracing::info!(
                "resuming from {} (step {} of {})",
                dir.display(),
                st.step,
                total_steps
            );
        } else if !found.skipped.is_empty() {
            tracing::warn!(
                "--resume: all {} checkpoints in {} were damaged; starting fresh",
                found.skipped.len(),
                checkpoint::checkpoints_dir(out).display()
            );
        } else {
            tracing::info!(
                "--resume: no checkpoint in {}; starting fresh",
                checkpoint::checkpoints_dir(out).display()
            );
        }
    }
    let schedule = LrSchedule {
        peak: cfg.lr,
        warmup,
        total: total_steps,
        kind: cfg.schedule,
        min_ratio: cfg.min_lr_ratio,
    };
    let mut metrics = if probe.is_some() {
        MetricsLog::discard()
    } else if resumed_from.is_some() {
        MetricsLog::resume(out, start_step)?
    } else {
        MetricsLog::create(out)?
    };

    let evaluate = |model: &BertModel<B>, step: usize| -> Result<Option<EvalMetrics>> {
        let Some(dev) = &dev else { return Ok(None) };
        let m = eval::evaluate::<B::InnerBackend>(
            &model.valid(),
            &tokenizer,
            dev,
            pooling,
            cfg.normalize,
            max_length,
            cfg.eval_batch_size,
            step,
            device,
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
    };
    if resumed_from.is_none() {
        if let Some(m) = evaluate(&model, 0)? {
            metrics.push(Record::Eval(m))?;
        }
    }

    // --- steps ------------------------------------------------------------------------------------
    let bar = if opts.progress {
        ProgressBar::new(match probe {
            Some(_) => cfg.precision_check_steps.min(total_steps) as u64,
            None => total_steps as u64,
        })
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  eta {eta}")
            .expect("valid template"),
    );
    bar.set_position(start_step as u64);
    let mut train_seconds = 0.0f64;
    let mut first_loss = None;
    let mut last_loss = None;
    let mut window = (LossValues::default(), 0usize, 0.0f64); // (sum, steps, seconds)
    let mut steps_this_run = 0;
    let mut step = start_step;
    let mut latest_ckpt = checkpoint::list(out).pop().map(|(_, p)| p);
    let mut probe_report = probe.map(|p| ProbeReport {
        precision: p.precision,
        batch_size: cfg.batch_size,
        losses: Vec::new(),
        step_seconds: Vec::new(),
    });
    while step < total_steps {
        if opts.max_steps_this_run.is_some_and(|m| steps_this_run >= m) {
            break;
        }
        if probe.is_some() && steps_this_run >= cfg.precision_check_steps {
            break;
        }
        let t0 = Instant::now();
        let pos = data.position_of(step);
        let idx = data.batch(pos);
        let en: Vec<&str> = idx.iter().map(|&i| data.pairs[i].en.as_str()).collect();
        let ru: Vec<&str> = idx.iter().map(|&i| data.pairs[i].ru.as_str()).collect();
        let s_en = student_embed(&model, &tokenizer, &en, pooling, max_length, device)?;
        let s_ru = student_embed(&model, &tokenizer, &ru, pooling, max_length, device)?;
        let t_en = to_tensor::<B>(cache.gather(Side::En, &idx), dim, device);
        let t_ru = to_tensor::<B>(cache.gather(Side::Ru, &idx), dim, device);
        let parts = distill_loss(s_en, s_ru, t_en, t_ru, &weights);
        let values = parts.values();
        if !values.total.is_finite() && probe.is_none() {
            bar.abandon();
            return Err(DistillError::NonFinite {
                step: step + 1,
                value: values.total,
                checkpoint: latest_ckpt,
            });
        }
        let grads = GradientsParams::from_grads(parts.total.backward(), &model);
        let lr = schedule.lr(step);
        let (updated, grad_norm) = optim.step::<B, _>(model, grads, lr);
        model = updated;
        step += 1;
        steps_this_run += 1;
        let secs = t0.elapsed().as_secs_f64();
        train_seconds += secs;
        if let Some(r) = &mut probe_report {
            r.losses.push(values.total);
            r.step_seconds.push(secs);
            if !values.total.is_finite() {
                break;
            }
            continue;
        }
        first_loss.get_or_insert(values);
        last_loss = Some(values);
        window.0.total += values.total;
        window.0.mse_en += values.mse_en;
        window.0.mse_ru += values.mse_ru;
        window.0.cross += values.cross;
        window.0.rank += values.rank;
        window.1 += 1;
        window.2 += secs;
        let pps = idx.len() as f64 / secs.max(1e-9);
        bar.set_position(step as u64);
        bar.set_message(format!("loss {:.5}  {:.1} pairs/s", values.total, pps));

        if step % cfg.log_every == 0 || step == total_steps {
            let k = window.1 as f32;
            let mean = LossValues {
                total: window.0.total / k,
                mse_en: window.0.mse_en / k,
                mse_ru: window.0.mse_ru / k,
                cross: window.0.cross / k,
                rank: window.0.rank / k,
            };
            let rec = TrainRecord {
                step,
                epoch: pos.epoch,
                loss: mean,
                lr,
                grad_norm,
                pairs_per_s: (window.1 * cfg.batch_size) as f64 / window.2.max(1e-9),
            };
            bar.suspend(|| {
                tracing::info!(
                    "step {step}/{total_steps} epoch {}: loss {:.6} (mse en {:.6} ru {:.6}, cross {:.6}, rank {:.4}) lr {:.3e} |g| {:.3} {:.1} pairs/s",
                    pos.epoch,
                    mean.total,
                    mean.mse_en,
                    mean.mse_ru,
                    mean.cross,
                    mean.rank,
                    lr,
                    grad_norm,
                    rec.pairs_per_s
                )
            });
            metrics.push(Record::Train(rec))?;
            window = (LossValues::default(), 0, 0.0);
        }
        let mut last_eval = None;
        if cfg.eval_every > 0 && step % cfg.eval_every == 0 || step == total_steps {
            if let Some(m) = bar.suspend(|| evaluate(&model, step))? {
                metrics.push(Record::Eval(m))?;
                last_eval = Some(m);
            }
        }
        if cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 || step == total_steps {
            let state = TrainState {
                precision: Some(precision),
                step,
                total_steps,
                position: data.position_of(step),
                seed: cfg.seed,
                optimizer_step: optim.step,
                trajectory: trajectory.clone(),
                teacher_hash: teacher_hash.clone(),
                student_hash: student_hash.clone(),
                data_hash: data_hash.clone(),
                train_seconds: train_seconds_before + train_seconds,
                metrics: serde_json::json!({ "loss": values, "grad_norm": grad_norm, "eval": last_eval }),
                warmup_steps: Some(warmup),
                weights_sha256: None,
                optimizer_sha256: None,
                code: Some(env!("SEKATOR_CODE").to_string()),
            };
            let tensors = model.export();
            let card =
                crate::card::facts(cfg, student_dir, &student_cfg, &tensors, step, total_steps)?;
            let dir = checkpoint::save(
                out,
                &student_cfg,
                &tensors,
                student_dir,
                &card,
                &optim,
                &state,
                cfg.keep_checkpoints,
            )?;
            tracing::debug!("checkpoint {}", dir.display());
            latest_ckpt = Some(dir);
        }
        if opts.step_delay_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(opts.step_delay_ms));
        }
    }
    bar.finish_and_clear();
    if let (Some(p), Some(r)) = (probe, &probe_report) {
        let text = serde_json::to_string_pretty(r).expect("serialisable");
        sekator_model::write_atomic(&p.report, text.as_bytes())?;
    }

    // --- end --------------------------------------------------------------------------------------
    let finished = step == total_steps && probe.is_none();
    let mut final_dir = None;
    let mut loss_plot = None;
    if finished {
        let dir = out.join("final");
        let tensors = model.export();
        let card = crate::card::facts(cfg, student_dir, &student_cfg, &tensors, step, total_steps)?;
        checkpoint::write_clean_model_dir(&dir, &student_cfg, &tensors, student_dir, &card, |p| {
            crate::card::export_onnx(cfg, p)
        })?;
        final_dir = Some(dir);
        loss_plot = crate::plot::loss_curve(out, &metrics);
    }
    let evals: Vec<&EvalMetrics> = metrics.evals().collect();
    let eval_first = evals.first().map(|e| **e);
    let eval_last = evals.last().map(|e| **e);
    let summary = Summary {
        total_steps,
        step,
        steps_this_run,
        resumed_from,
        finished,
        final_dir,
        pairs_per_s: if train_seconds > 0.0 {
            (steps_this_run * cfg.batch_size) as f64 / train_seconds
        } else {
            0.0
        },
        first_loss,
        last_loss,
        eval_first,
        eval_last,
        teacher_acc,
        loss_plot,
        skipped_checkpoints,
        ..inputs_summary
    };
    if finished {
        let mut inputs = BTreeMap::new();
        inputs.insert("teacher".to_string(), teacher_hash);
        inputs.insert("student".to_string(), student_hash);
        inputs.insert("data".to_string(), data_hash);
        if let Some(h) = dev_hash {
            inputs.insert("dev_data".to_string(), h);
        }
        let mut manifest = distill_manifest(cfg, inputs);
        manifest.seconds = started.elapsed().as_secs_f64();
        manifest.results = serde_json::to_value(&summary).unwrap_or_default();
        manifest.write(out)?;
    }
    Ok(summary)
}
