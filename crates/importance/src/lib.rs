//! Importance of every attention head and FFN neuron of a BERT checkpoint, by accumulated mask gradients.
//!
//! Every head and FFN neuron gets a multiplicative mask ξ = 1 ([`sekator_model::UnitMasks`]). The loss
//! change when a unit is removed is estimated to first order by `|dL/dξ|` (Michel et al. 2019, "Are Sixteen
//! Heads Really Better than One?"); it is accumulated over batches (`taylor`: sum of `|g_batch|`, `fisher`:
//! sum of `g_batch²`) and normalised (`layer`: each layer's vector divided by its L2 norm, as in the paper;
//! `global`; `none`). Only the masks require gradients: the model's parameters are frozen (`no_grad`).
//! The baseline `magnitude` ([`magnitude`]) scores each unit by the L2 norm of its own weights instead:
//! no data (unless `--validate` asks for the ablation check), no forward pass.
//!
//! Library entry point: [`score`] (load, sample, accumulate, optionally validate) returns [`Scores`], which
//! [`Scores::write`] / [`Scores::read`] store in the directory layout that `surgery` reads. The lower-level
//! pieces ([`loss::mask_gradients`], [`loss::batch_loss`], [`accumulate`], [`validate_heads`]) are public
//! for tests and for callers that already hold a model.

pub mod loss;
pub mod magnitude;
pub mod scores;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use sekator_model::backend::{self, AutodiffTask, DeviceKind};
use sekator_model::rng::SplitMix64;
use sekator_model::{
    checkpoint_hash, file_hash, BertConfig, BertModel, Encoder, ModelError, Pooling, UnitMasks,
};

pub use loss::{LossSpec, PreparedBatch};
pub use scores::{ImportanceMeta, Scores, ValidatedHead, Validation};

#[derive(Debug, thiserror::Error)]
pub enum ImportanceError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A user mistake in options or data, with the numbers.
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Other(String),
}

impl ImportanceError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ImportanceError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub use sekator_pipeline::artifacts::importance::{Criterion, LossKind, Normalize};

/// Options of [`score`]; `Default` gives the CLI defaults (data `data/en-ru/pairs.tsv`).
#[derive(Debug, Clone)]
pub struct ImportanceOptions {
    /// TSV of `en<TAB>ru` pairs.
    pub data: PathBuf,
    pub loss: LossKind,
    /// Teacher checkpoint (required by, and only used with, `LossKind::Teacher`).
    pub teacher: Option<PathBuf>,
    /// Cosine-similarity scale of the ranking loss.
    pub scale: f32,
    /// Pooling; `None`: the checkpoint's default.
    pub pooling: Option<Pooling>,
    pub criterion: Criterion,
    pub normalize: Normalize,
    /// Pairs sampled (seeded) from the data; only whole batches are used.
    pub samples: usize,
    pub batch_size: usize,
    pub max_length: usize,
    pub seed: u64,
    /// Number of heads for the ablation check (0: none).
    pub validate: usize,
    /// Score the residual-stream dimensions too (width pruning).
    pub hidden: bool,
    /// Show progress bars on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
}

impl Default for ImportanceOptions {
    fn default() -> Self {
        Self {
            data: PathBuf::from("data/en-ru/pairs.tsv"),
            loss: LossKind::Ranking,
            teacher: None,
            scale: 20.0,
            pooling: None,
            criterion: Criterion::Taylor,
            normalize: Normalize::Layer,
            samples: 2048,
            batch_size: 32,
            max_length: 128,
            seed: 0,
            validate: 0,
            hidden: false,
            progress: true,
        }
    }
}

impl ImportanceOptions {
    /// Whether [`score`] reads the pairs: the gradient criteria always, `magnitude` only for `--validate`.
    pub fn needs_data(&self) -> bool {
        self.criterion != Criterion::Magnitude || self.validate > 0
    }

    /// Rejects option combinations that cannot work, with the numbers.
    pub fn check(&self) -> Result<(), ImportanceError> {
        let bad = |m: String| Err(ImportanceError::Input(m));
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
        }
        if self.loss == LossKind::Ranking && self.batch_size < 2 {
            return bad(format!(
                "--batch-size {}: the ranking loss needs at least 2 pairs per batch (in-batch negatives)",
                self.batch_size
            ));
        }
        if self.max_length < 2 {
            return bad(format!(
                "--max-length {}: needs room for [CLS] and [SEP]",
                self.max_length
            ));
        }
        if self.samples == 0 {
            return bad("--samples must be at least 1".into());
        }
        if self.hidden && self.criterion == Criterion::Magnitude {
            return bad(
                "--hidden scores dimensions by their gradients: use --criterion taylor or fisher"
                    .into(),
            );
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return bad(format!("--scale {}: must be a positive number", self.scale));
        }
        match (self.loss, &self.teacher) {
            (LossKind::Teacher, None) => {
                bad("--loss teacher needs --teacher DIR (the checkpoint to match)".into())
            }
            (LossKind::Ranking, Some(t)) => bad(format!(
                "--teacher {} is only used with --loss teacher or contrastive",
                t.display()
            )),
            _ => Ok(()),
        }
    }
}

/// Accumulated, un-normalised scores in current unit order, from [`accumulate`].
#[derive(Debug, Clone)]
pub struct Accumulated {
    /// `[layer][current head]`.
    pub heads: Vec<Vec<f64>>,
    /// `[layer][current neuron]`.
    pub ffn: Vec<Vec<f64>>,
    /// `[current residual-stream dimension]`; empty unless scored.
    pub hidden: Vec<f64>,
    pub mean_loss: f64,
    pub batches: usize,
    pub seconds: f64,
    /// Seconds of the first batch (warm-up included).
    pub first_batch_seconds: f64,
}

/// Sums `|g|` (taylor) or `g²` (fisher) of the mask gradients over `batches`, in order, in f64; with
/// `hidden`, of the residual-stream mask too. `progress` gets the number of pairs done after each batch.
///
/// Panics with `Criterion::Magnitude`, which takes no gradients ([`magnitude::magnitudes`]).
pub fn accumulate<B: AutodiffBackend>(
    model: &BertModel<B>,
    batches: &[PreparedBatch],
    spec: &LossSpec,
    criterion: Criterion,
    hidden: bool,
    device: &B::Device,
    mut progress: impl FnMut(usize),
) -> Accumulated {
    assert_ne!(
        criterion,
        Criterion::Magnitude,
        "magnitude takes no gradients"
    );
    let mut heads: Vec<Vec<f64>> = model.num_heads().iter().map(|&n| vec![0.0; n]).collect();
    let mut ffn: Vec<Vec<f64>> = model.ffn_sizes().iter().map(|&n| vec![0.0; n]).collect();
    let width = model.embeddings.word_embeddings.weight.dims()[1];
    let mut dims = vec![0.0; if hidden { width } else { 0 }];
    let f = |g: f32| match criterion {
        Criterion::Taylor => (g as f64).abs(),
        Criterion::Fisher => (g as f64) * (g as f64),
        Criterion::Magnitude => unreachable!(),
    };
    let t0 = Instant::now();
    let mut first = 0.0;
    let mut done = 0;
    // Batches are independent forward + backward passes: several in flight on CPU backends. Their
    // gradients are kept and summed in batch order afterwards, so the scores do not depend on timing.
    let mut grads = vec![None; batches.len()];
    backend::in_flight(
        batches.len(),
        backend::concurrent_batches::<B>(),
        |i| loss::mask_gradients(model, &batches[i], spec, hidden, device),
        |i, g| {
            if done == 0 {
                first = t0.elapsed().as_secs_f64();
            }
            done += batches[i].en.batch;
            grads[i] = Some(g);
            progress(done);
        },
    );
    let mut loss_sum = 0.0;
    for g in grads.into_iter().map(|g| g.expect("every batch ran")) {
        for (acc, grad) in heads
            .iter_mut()
            .zip(&g.heads)
            .chain(ffn.iter_mut().zip(&g.ffn))
            .chain(std::iter::once((&mut dims, &g.hidden)))
        {
            for (a, &x) in acc.iter_mut().zip(grad) {
                *a += f(x);
            }
        }
        loss_sum += g.loss as f64;
    }
    Accumulated {
        heads,
        ffn,
        hidden: dims,
        mean_loss: loss_sum / batches.len().max(1) as f64,
        batches: batches.len(),
        seconds: t0.elapsed().as_secs_f64(),
        first_batch_seconds: first,
    }
}

/// Mean loss over `batches` under `masks` (forward only).
pub fn mean_loss<B: Backend>(
    model: &BertModel<B>,
    batches: &[PreparedBatch],
    spec: &LossSpec,
    masks: Option<&UnitMasks<B>>,
    device: &B::Device,
) -> f64 {
    let sum: f64 = batches
        .iter()
        .map(|b| loss::host(loss::batch_loss(model, b, spec, masks, device))[0] as f64)
        .sum();
    sum / batches.len().max(1) as f64
}

/// For each `(layer, current head index)`: mean loss with that head alone masked to 0, minus the unmasked
/// mean loss. Returns `(base_loss, increases)`. `progress` gets the number of heads done.
pub fn validate_heads<B: Backend>(
    model: &BertModel<B>,
    batches: &[PreparedBatch],
    spec: &LossSpec,
    heads: &[(usize, usize)],
    device: &B::Device,
    mut progress: impl FnMut(usize),
) -> (f64, Vec<f64>) {
    let base = mean_loss(model, batches, spec, None, device);
    let layers = model.num_heads();
    let mut increases = vec![0.0; heads.len()];
    let mut done = 0;
    // one masked evaluation per head, several in flight on CPU backends (independent forward passes)
    backend::in_flight(
        heads.len(),
        backend::concurrent_batches::<B>(),
        |i| {
            let (l, h) = heads[i];
            let mut hv: Vec<Vec<f32>> = vec![Vec::new(); layers.len()];
            hv[l] = vec![1.0; layers[l]];
            hv[l][h] = 0.0;
            let masks = UnitMasks::<B>::from_values(&hv, &vec![Vec::new(); layers.len()], device);
            mean_loss(model, batches, spec, Some(&masks), device)
        },
        |i, loss| {
            increases[i] = loss - base;
            done += 1;
            progress(done);
        },
    );
    (base, increases)
}

pub use sekator_pipeline::stats::spearman;

/// `k` present heads `(layer, original head)` chosen with `seed`, in a stable order.
pub fn sample_heads(cfg: &BertConfig, k: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut all: Vec<(usize, usize)> = (0..cfg.num_hidden_layers)
        .flat_map(|l| cfg.kept_heads(l).into_iter().map(move |h| (l, h)))
        .collect();
    SplitMix64::new(seed ^ 0x7661_6c69_6461_7465).shuffle(&mut all);
    all.truncate(k);
    all.sort_unstable();
    all
}

fn progress_bar(show: bool, len: u64, unit: &str, msg: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let tpl = format!("{{msg}} {{bar:30}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}");
    bar.set_style(indicatif::ProgressStyle::with_template(&tpl).expect("valid template"));
    bar.set_message(msg.to_string());
    bar
}

/// What the backend-generic part hands back.
struct TaskOutput {
    config: BertConfig,
    pooling: Pooling,
    acc: Accumulated,
    validation: Option<ValidationOutput>,
}

/// Ablation check results: base loss, the (layer, head) sample, their loss increases, seconds.
type ValidationOutput = (f64, Vec<(usize, usize)>, Vec<f64>, f64);

struct ScoreTask<'a> {
    model_dir: &'a Path,
    opts: &'a ImportanceOptions,
    pairs: Vec<sekator_pipeline::Pair>,
}

impl AutodiffTask for ScoreTask<'_> {
    type Output = Result<TaskOutput, ImportanceError>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let o = self.opts;
        let mut enc = Encoder::<B>::load(self.model_dir, &device)?;
        // Only the masks need gradients; freezing the parameters keeps the backward pass small.
        enc.model = enc.model.clone().no_grad();
        let pooling = o.pooling.unwrap_or(enc.pooling);
        if pooling == Pooling::Pooler && !enc.has_pooler() {
            return Err(ImportanceError::Input(format!(
                "{}: --pooling pooler, but the checkpoint has no pooler weights (use cls or mean)",
                self.model_dir.display()
            )));
        }
        let spec = LossSpec {
            kind: o.loss,
            scale: o.scale,
            pooling,
        };
        let mut batches = loss::prepare_batches(&enc, &self.pairs, o.batch_size, o.max_length)?;
        let teacher_dir = match o.loss {
            LossKind::Ranking => None,
            LossKind::Teacher => o.teacher.as_deref(),
            // without --teacher: the model's own unmasked vectors
            LossKind::Contrastive => Some(o.teacher.as_deref().unwrap_or(self.model_dir)),
        };
        if let Some(tdir) = teacher_dir {
            add_teacher::<B>(tdir, &enc, pooling, &mut batches, &device)?;
        }

        // magnitude reads the data only for --validate: no gradient pass
        let acc = if o.criterion == Criterion::Magnitude {
            magnitude_acc(self.model_dir, &enc.config)?
        } else {
            let bar = progress_bar(o.progress, self.pairs.len() as u64, "pairs", "gradients");
            let acc = accumulate(
                &enc.model,
                &batches,
                &spec,
                o.criterion,
                o.hidden,
                &device,
                |n| bar.set_position(n as u64),
            );
            bar.finish_and_clear();
            acc
        };
        let validation = (o.validate > 0)
            .then(|| run_validation(&enc.model.valid(), &enc.config, &batches, &spec, o, &device));
        Ok(TaskOutput {
            config: enc.config.clone(),
            pooling,
            acc,
            validation,
        })
    }
}

/// Loads the teacher in `tdir` and stores its vectors of every batch as the loss targets.
fn add_teacher<B: AutodiffBackend>(
    tdir: &Path,
    enc: &Encoder<B>,
    pooling: Pooling,
    batches: &mut [PreparedBatch],
    device: &B::Device,
) -> Result<(), ImportanceError> {
    let teacher = Encoder::<B::InnerBackend>::load(tdir, device)?;
    if teacher.config.hidden_size != enc.config.hidden_size {
        return Err(ImportanceError::Input(format!(
            "{}: teacher hidden size {} differs from the model's {}",
            tdir.display(),
            teacher.config.hidden_size,
            enc.config.hidden_size
        )));
    }
    if pooling == Pooling::Pooler && !teacher.has_pooler() {
        return Err(ImportanceError::Input(format!(
            "{}: teacher has no pooler weights",
            tdir.display()
        )));
    }
    loss::add_teacher_targets(&teacher, batches, pooling);
    Ok(())
}

/// The `--validate` ablation check on `opts.validate` seeded heads (forward passes only).
fn run_validation<B: Backend>(
    model: &BertModel<B>,
    cfg: &BertConfig,
    batches: &[PreparedBatch],
    spec: &LossSpec,
    opts: &ImportanceOptions,
    device: &B::Device,
) -> ValidationOutput {
    let t0 = Instant::now();
    let chosen = sample_heads(cfg, opts.validate, opts.seed);
    // (layer, original head) -> current index in that layer
    let current: Vec<(usize, usize)> = chosen
        .iter()
        .map(|&(l, h)| {
            let kept = cfg.kept_heads(l);
            (l, kept.iter().position(|&k| k == h).expect("kept head"))
        })
        .collect();
    let bar = progress_bar(opts.progress, current.len() as u64, "heads", "validate");
    let (base, inc) = validate_heads(model, batches, spec, &current, device, |n| {
        bar.set_position(n as u64)
    });
    bar.finish_and_clear();
    (base, chosen, inc, t0.elapsed().as_secs_f64())
}

/// [`magnitude::magnitudes`] as an [`Accumulated`] of no batches: there is no loss, and no pass to time.
fn magnitude_acc(model_dir: &Path, cfg: &BertConfig) -> Result<Accumulated, ImportanceError> {
    let (heads, ffn) = magnitude::magnitudes(model_dir, cfg)?;
    Ok(Accumulated {
        heads,
        ffn,
        hidden: Vec::new(),
        mean_loss: 0.0,
        batches: 0,
        seconds: 0.0,
        first_batch_seconds: 0.0,
    })
}

/// `magnitude` without `--validate`: the weights alone, read on the host (no backend, no data).
fn magnitude_only(
    model_dir: &Path,
    opts: &ImportanceOptions,
) -> Result<TaskOutput, ImportanceError> {
    let config = sekator_model::read_config(model_dir)?;
    Ok(TaskOutput {
        pooling: resolve_pooling(model_dir, opts.pooling)?,
        acc: magnitude_acc(model_dir, &config)?,
        config,
        validation: None,
    })
}

/// The pooling [`score`] records: `pooling` if given, else the checkpoint's default as [`Encoder::load`]
/// picks it (without loading the model).
fn resolve_pooling(model_dir: &Path, pooling: Option<Pooling>) -> Result<Pooling, ModelError> {
    if let Some(p) = pooling {
        return Ok(p);
    }
    let has_pooler = sekator_model::SafetensorsWeights::open_dir(model_dir)?
        .shape("pooler.dense.weight")
        .is_some();
    Ok(sekator_model::pooling::default_pooling(model_dir, has_pooler).0)
}

/// The pairs [`score`] uses: a seeded sample cut to whole batches, with the file's hash and bad lines.
struct Sample {
    pairs: Vec<sekator_pipeline::Pair>,
    hash: String,
    skipped: usize,
}

fn sample_pairs(opts: &ImportanceOptions) -> Result<Sample, ImportanceError> {
    let data = sekator_pipeline::PairData::read(&opts.data)?;
    let hash = file_hash(&opts.data)?;
    let mut pairs = data.sample(opts.samples, opts.seed);
    let n_batches = pairs.len() / opts.batch_size;
    if n_batches == 0 {
        return Err(ImportanceError::Input(format!(
            "{}: only {} pairs to score (file has {} valid pairs, --samples {}), fewer than one batch of --batch-size {}",
            opts.data.display(),
            pairs.len(),
            data.pairs.len(),
            opts.samples,
            opts.batch_size
        )));
    }
    if pairs.len() % opts.batch_size != 0 {
        tracing::warn!(
            "using {} of {} sampled pairs (whole batches of {} only)",
            n_batches * opts.batch_size,
            pairs.len(),
            opts.batch_size
        );
    }
    pairs.truncate(n_batches * opts.batch_size);
    Ok(Sample {
        pairs,
        hash,
        skipped: data.skipped,
    })
}

/// Normalised scores in original head index space (pruned heads 0, not present), plus the raw head
/// scores in the same space for `--validate`.
struct Placed {
    heads: Vec<Vec<f32>>,
    head_present: Vec<Vec<bool>>,
    heads_raw: Vec<Vec<f64>>,
    ffn: Vec<Vec<f32>>,
    hidden: Vec<f32>,
}

fn place(cfg: &BertConfig, acc: &Accumulated, how: Normalize) -> Placed {
    let mut heads_norm = acc.heads.clone();
    let mut ffn_norm = acc.ffn.clone();
    scores::normalize(&mut heads_norm, how);
    scores::normalize(&mut ffn_norm, how);
    // one vector shared by all layers: normalised on its own (as one layer)
    let mut hidden_norm = vec![acc.hidden.clone()];
    scores::normalize(&mut hidden_norm, how);
    let (layers, nh) = (cfg.num_hidden_layers, cfg.num_attention_heads);
    let mut p = Placed {
        heads: vec![vec![0.0; nh]; layers],
        head_present: vec![vec![false; nh]; layers],
        heads_raw: vec![vec![0.0; nh]; layers],
        ffn: ffn_norm
            .iter()
            .map(|v| v.iter().map(|&x| x as f32).collect())
            .collect(),
        hidden: hidden_norm[0].iter().map(|&x| x as f32).collect(),
    };
    for (l, (norm, raw)) in heads_norm.iter().zip(&acc.heads).enumerate() {
        for (i, h) in cfg.kept_heads(l).into_iter().enumerate() {
            p.heads[l][h] = norm[i] as f32;
            p.head_present[l][h] = true;
            p.heads_raw[l][h] = raw[i];
        }
    }
    p
}

/// The `--validate` record: each sampled head's written and raw score beside its loss increase.
fn validation_record(v: ValidationOutput, placed: &Placed, k: usize) -> Validation {
    let (base, chosen, inc, secs) = v;
    let heads: Vec<ValidatedHead> = chosen
        .iter()
        .zip(&inc)
        .map(|(&(l, h), &d)| ValidatedHead {
            layer: l,
            head: h,
            score: placed.heads[l][h] as f64,
            raw_score: placed.heads_raw[l][h],
            loss_increase: d,
        })
        .collect();
    let s: Vec<f64> = heads.iter().map(|v| v.score).collect();
    let r: Vec<f64> = heads.iter().map(|v| v.raw_score).collect();
    Validation {
        k,
        base_loss: base,
        spearman: spearman(&s, &inc),
        spearman_raw: spearman(&r, &inc),
        heads,
        seconds: secs,
    }
}

/// Scores every head and FFN neuron of the checkpoint in `model_dir` (see the crate docs).
///
/// Errors: unreadable checkpoint or data, fewer sampled pairs than one batch, inconsistent options.
/// The same inputs give bit-identical scores. `magnitude` reads data only for `--validate`.
pub fn score(
    model_dir: &Path,
    opts: &ImportanceOptions,
    device: DeviceKind,
) -> Result<Scores, ImportanceError> {
    let t0 = Instant::now();
    opts.check()?;
    sekator_model::read_config(model_dir)?;
    let ckpt_hash = checkpoint_hash(model_dir)?;
    let teacher_hash = opts.teacher.as_deref().map(checkpoint_hash).transpose()?;
    let mut sample = opts.needs_data().then(|| sample_pairs(opts)).transpose()?;
    let samples = sample.as_ref().map_or(0, |s| s.pairs.len());
    let (out, device_name) = match sample.as_mut() {
        Some(s) => {
            let pairs = std::mem::take(&mut s.pairs);
            let task = ScoreTask {
                model_dir,
                opts,
                pairs,
            };
            (
                backend::run_autodiff(device, task)??,
                backend::describe(device),
            )
        }
        None => (magnitude_only(model_dir, opts)?, "none".to_string()),
    };
    let cfg = &out.config;
    let placed = place(cfg, &out.acc, opts.normalize);
    let validate = out
        .validation
        .map(|v| validation_record(v, &placed, opts.validate));

    let acc = &out.acc;
    let meta = ImportanceMeta {
        checkpoint: model_dir.display().to_string(),
        checkpoint_hash: ckpt_hash,
        data: match sample {
            Some(_) => opts.data.display().to_string(),
            None => String::new(),
        },
        data_hash: sample.as_ref().map(|s| s.hash.clone()).unwrap_or_default(),
        teacher: opts.teacher.as_ref().map(|t| t.display().to_string()),
        teacher_hash,
        loss: opts.loss,
        scale: opts.scale,
        pooling: out.pooling,
        criterion: opts.criterion,
        normalize: opts.normalize,
        samples,
        samples_requested: opts.samples,
        batch_size: opts.batch_size,
        batches: samples / opts.batch_size,
        max_length: opts.max_length,
        seed: opts.seed,
        skipped_lines: sample.as_ref().map_or(0, |s| s.skipped),
        num_hidden_layers: cfg.num_hidden_layers,
        num_attention_heads: cfg.num_attention_heads,
        ffn_sizes: cfg.ffn_sizes(),
        hidden: opts.hidden,
        mean_loss: acc.mean_loss,
        seconds: t0.elapsed().as_secs_f64(),
        grad_seconds: acc.seconds,
        // no gradient pass (magnitude): no throughput to report
        pairs_per_s: match acc.batches {
            0 => 0.0,
            _ => samples as f64 / acc.seconds.max(1e-9),
        },
        pairs_per_s_after_first: (acc.batches > 1).then(|| {
            (samples - samples / acc.batches) as f64
                / (acc.seconds - acc.first_batch_seconds).max(1e-9)
        }),
        device: device_name,
        validate,
    };
    Ok(Scores {
        heads: placed.heads,
        head_present: placed.head_present,
        ffn: placed.ffn,
        hidden: placed.hidden,
        meta,
    })
}

/// The manifest a run with these inputs would write, for skipping up-to-date work; `None` when an input
/// cannot be hashed (the run itself will report it). The pooling is resolved as [`score`] resolves it, and
/// the data counts only where [`score`] reads it.
pub fn expected_manifest(
    model_dir: &Path,
    opts: &ImportanceOptions,
) -> Option<sekator_pipeline::Manifest> {
    let pooling = resolve_pooling(model_dir, opts.pooling).ok()?;
    let settings = serde_json::json!({
        "loss": opts.loss, "scale": opts.scale, "pooling": pooling, "criterion": opts.criterion,
        "normalize": opts.normalize, "samples": opts.samples, "batch_size": opts.batch_size,
        "max_length": opts.max_length, "seed": opts.seed, "validate": opts.validate,
        "hidden": opts.hidden,
    });
    let mut inputs = std::collections::BTreeMap::new();
    inputs.insert("checkpoint".to_string(), checkpoint_hash(model_dir).ok()?);
    if opts.needs_data() {
        inputs.insert("data".to_string(), file_hash(&opts.data).ok()?);
    }
    if let Some(t) = &opts.teacher {
        inputs.insert("teacher".to_string(), checkpoint_hash(t).ok()?);
    }
    Some(sekator_pipeline::Manifest::new(
        scores::STAGE,
        settings,
        inputs,
        env!("SEKATOR_CODE"),
    ))
}
