//! Settings of a distillation run: a TOML file (unknown keys are errors that name the key), every key
//! optional with the default documented here, command-line flags on top.
//!
//! The same struct is written into `state.json` of every checkpoint and into `manifest.json`, so a resumed
//! run can refuse settings that would make it a different run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use sekator_model::{DeviceKind, Pooling};

use crate::error::{DistillError, Result};
use crate::precision::Precision;

/// Learning-rate decay after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Linear from `lr` down to `lr * min_lr_ratio` at the last step (BERT / sentence-transformers default).
    #[default]
    Linear,
    /// Half a cosine from `lr` down to `lr * min_lr_ratio`.
    Cosine,
    /// `lr` held after the warm-up.
    Constant,
}

/// Every setting of `distill`. Paths in a config file are relative to the current directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistillConfig {
    /// Teacher checkpoint (Hugging Face dir), frozen. Required.
    pub teacher: Option<PathBuf>,
    /// Student checkpoint (Hugging Face dir, usually the surgery output); the weights trained. Required.
    pub student: Option<PathBuf>,
    /// Training pairs, `en<TAB>ru` per line (header `en\tru` optional). Required.
    pub data: Option<PathBuf>,
    /// Dev pairs for evaluation. Default: `pairs_dev.tsv` beside `data` when it exists, else no evaluation.
    pub dev_data: Option<PathBuf>,
    /// Output directory: `checkpoints/`, `final/`, `metrics.jsonl`, `loss.png`, `manifest.json`.
    pub out: PathBuf,
    /// Teacher-embedding cache. Default: `<out>/teacher-cache`; point several runs at one dir to share it.
    pub cache_dir: Option<PathBuf>,

    /// Use a seeded sample of this many pairs of `data` (default: all). The teacher embeds only those, and
    /// runs with the same sample share its cache whatever their step count.
    pub max_pairs: Option<usize>,
    /// Optimizer steps in all. Default: `epochs` passes over the data.
    pub steps: Option<usize>,
    /// Passes over the data when `steps` is unset (fractions allowed).
    pub epochs: f64,
    /// Pairs per step (each gives an en and a ru text to the student).
    pub batch_size: usize,
    /// Tokens per text, `[CLS]`/`[SEP]` included (teacher and student).
    pub max_length: usize,

    /// Peak learning rate.
    pub lr: f64,
    pub schedule: ScheduleKind,
    /// Linear warm-up steps from ~0 to `lr`. Default: `warmup_ratio * steps`.
    pub warmup_steps: Option<usize>,
    pub warmup_ratio: f64,
    /// Final learning rate as a fraction of `lr` (linear and cosine decay).
    pub min_lr_ratio: f64,
    /// Decoupled (AdamW) weight decay; biases and LayerNorm parameters are never decayed.
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    /// Clip the global L2 norm of all gradients to this (0 disables).
    pub max_grad_norm: f64,

    /// Weight of MSE(s(en), t(en)) + MSE(s(ru), t(ru)).
    pub w_mse: f64,
    /// Weight of MSE(s(ru), t(en)) (Reimers & Gurevych 2020).
    pub w_cross: f64,
    /// Weight of the symmetric in-batch ranking loss R(s(en), s(ru)).
    pub w_rank: f64,
    /// Cosine-similarity scale inside R.
    pub rank_scale: f64,
    /// Weight of the token-level term: MSE of the student's and the teacher's last hidden states over the
    /// non-padding tokens, en and ru. Above 0 the teacher is loaded and run every step (slower).
    pub w_tokens: f64,
    /// Micro-batches each batch runs as on the CPU, in flight on their own threads, gradients summed in a
    /// fixed order (`micro.rs`): the same gradient up to float rounding, and the same bits on every run
    /// and any core count. 1: one graph. GPUs and `w_tokens > 0` always use one graph.
    pub micro_batches: usize,
    /// Sentence pooling of teacher and student. Default: the teacher checkpoint's own.
    pub pooling: Option<Pooling>,
    /// L2-normalise both embeddings before the MSE terms (R always uses cosines).
    pub normalize: bool,

    /// Seed of the per-epoch shuffles.
    pub seed: u64,
    /// Evaluate on the dev pairs every N steps (also before the first and after the last step; 0: only those).
    pub eval_every: usize,
    /// Dev pairs used (the first N of the file).
    pub eval_pairs: usize,
    /// Texts per forward pass in evaluation and when filling the teacher cache.
    pub eval_batch_size: usize,
    /// Write a checkpoint every N steps (0: only the last step).
    pub checkpoint_every: usize,
    /// Checkpoints kept (older ones are deleted once a newer one is complete).
    pub keep_checkpoints: usize,
    /// Log (tracing and metrics.jsonl) the mean training loss every N steps.
    pub log_every: usize,
    /// Rows per teacher-cache shard file.
    pub cache_shard_rows: usize,
    pub device: DeviceKind,
    /// Float dtype the student trains in (see `precision.rs`): `auto` checks on CUDA, f32 on the CPU.
    pub precision: Precision,
    /// Steps the precision check trains per candidate dtype (the first steps of this very run).
    pub precision_check_steps: usize,
    /// Largest mean (and end-of-window) relative deviation from the f32 loss curve a dtype may show.
    pub precision_tolerance: f64,
    /// Export `final/` to `final/onnx/model.onnx` (ONNX opset 17, f32).
    pub onnx: bool,
    /// With `onnx`, also `final/onnx/model_qint8.onnx` (int8 weights per channel, dynamic activations).
    pub onnx_int8: bool,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            teacher: None,
            student: None,
            data: None,
            dev_data: None,
            out: PathBuf::from("distill-out"),
            cache_dir: None,
            max_pairs: None,
            steps: None,
            epochs: 1.0,
            batch_size: 32,
            max_length: 128,
            lr: 1e-4,
            schedule: ScheduleKind::Linear,
            warmup_steps: None,
            warmup_ratio: 0.1,
            min_lr_ratio: 0.0,
            weight_decay: 0.01,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-6,
            max_grad_norm: 1.0,
            w_mse: 1.0,
            w_cross: 1.0,
            w_rank: 0.1,
            rank_scale: 20.0,
            w_tokens: 0.0,
            micro_batches: 2,
            pooling: None,
            normalize: false,
            seed: 42,
            eval_every: 500,
            eval_pairs: 1000,
            eval_batch_size: 64,
            checkpoint_every: 1000,
            keep_checkpoints: 3,
            log_every: 10,
            cache_shard_rows: 16384,
            device: DeviceKind::Auto,
            precision: Precision::Auto,
            precision_check_steps: 50,
            precision_tolerance: 0.02,
            onnx: true,
            onnx_int8: true,
        }
    }
}

/// A commented example config with every key at its default (printed by `distill --help`).
pub const EXAMPLE_TOML: &str = r#"# distill config: every key is optional except teacher, student and data.
teacher = "data/models/all-MiniLM-L6-v2"
student = "runs/minilm-50/pruned"
data = "../shared/data/en-ru/pairs.tsv"
# dev_data = "../shared/data/en-ru/pairs_dev.tsv"   # default: pairs_dev.tsv beside data
out = "runs/minilm-50/distill"
# cache_dir = "runs/teacher-cache"                  # default: <out>/teacher-cache

# max_pairs = 20000       # default: every pair of `data`
# steps = 3000            # default: epochs * ceil(pairs / batch_size)
epochs = 1.0
batch_size = 32
max_length = 128

lr = 1e-4
schedule = "linear"       # linear | cosine | constant
# warmup_steps = 300      # default: warmup_ratio * steps
warmup_ratio = 0.1
min_lr_ratio = 0.0
weight_decay = 0.01       # not applied to biases and LayerNorm
adam_beta1 = 0.9
adam_beta2 = 0.999
adam_eps = 1e-6
max_grad_norm = 1.0       # global L2 norm; 0 disables

w_mse = 1.0               # MSE(s(en),t(en)) + MSE(s(ru),t(ru))
w_cross = 1.0             # MSE(s(ru),t(en))
w_rank = 0.1              # symmetric in-batch ranking loss on s(en), s(ru)
rank_scale = 20.0
w_tokens = 0.0            # last hidden states, non-padding tokens, en and ru; > 0 runs the teacher each step
micro_batches = 2         # CPU: rows of a batch in 2 graphs on their own threads (1: one graph; GPU: always 1)
# pooling = "mean"        # cls | mean | pooler; default: the teacher's own
normalize = false

seed = 42
eval_every = 500
eval_pairs = 1000
eval_batch_size = 64
checkpoint_every = 1000
keep_checkpoints = 3
log_every = 10
cache_shard_rows = 16384
device = "auto"           # auto | cpu | cuda
precision = "auto"        # auto | f32 | flex32 | bf16-mixed | bf16 | f16; auto: checked on CUDA, f32 on CPU
precision_check_steps = 50
precision_tolerance = 0.02 # max relative deviation from the f32 loss curve
onnx = true               # export final/ to final/onnx/model.onnx (opset 17)
onnx_int8 = true          # and final/onnx/model_qint8.onnx (int8 weights, dynamic activations)
"#;

impl DistillConfig {
    /// Reads a TOML config; unknown keys and wrong types are errors naming the key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DistillError::io(path, e))?;
        Self::parse(&text).map_err(|msg| DistillError::ConfigFile {
            path: path.to_path_buf(),
            msg,
        })
    }

    /// Settings from a pipeline config (`configs/*.toml` with a `[run]` section): teacher = `run.model`,
    /// student = `runs/NAME/pruned`, data and dev data from `[run]`, out = `runs/NAME/distill`, the teacher
    /// cache shared by every run under `runs/teacher-cache`; `[distill]` sets the rest (`seed` and `device`
    /// default to `[run]`'s). Keys the pipeline sets itself are refused, unknown keys name themselves.
    pub fn from_pipeline(rc: &sekator_pipeline::RunConfig) -> Result<Self> {
        const RESERVED: [&str; 5] = ["teacher", "student", "data", "dev_data", "out"];
        let section = rc.section_json(sekator_pipeline::Stage::Distill.name());
        if let Some(k) = section
            .as_object()
            .and_then(|o| o.keys().find(|k| RESERVED.contains(&k.as_str())))
        {
            return Err(DistillError::ConfigFile {
                path: rc.path.clone(),
                msg: format!("[distill] key `{k}` is set by the pipeline itself (from [run] and the run directory); remove it"),
            });
        }
        let has = |k: &str| section.get(k).is_some();
        let mut c: DistillConfig = rc
            .section(sekator_pipeline::Stage::Distill.name())
            .map_err(|e| DistillError::ConfigFile {
                path: rc.path.clone(),
                msg: e.to_string(),
            })?;
        c.teacher = Some(rc.run.model.clone());
        c.student = Some(rc.stage_dir(sekator_pipeline::Stage::Surgery));
        c.data = Some(rc.run.pairs.clone());
        c.dev_data = Some(rc.run.dev_pairs.clone());
        c.out = rc.stage_dir(sekator_pipeline::Stage::Distill);
        if !has("cache_dir") {
            c.cache_dir = Some(rc.run.runs_dir.join("teacher-cache"));
        }
        if !has("seed") {
            c.seed = rc.run.seed;
        }
        if !has("device") {
            c.device = rc.run.device;
        }
        Ok(c)
    }

    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn teacher(&self) -> Result<&Path> {
        self.teacher.as_deref().ok_or_else(|| {
            DistillError::Config("no teacher (set `teacher` or pass --teacher)".into())
        })
    }

    pub fn student(&self) -> Result<&Path> {
        self.student.as_deref().ok_or_else(|| {
            DistillError::Config("no student (set `student` or pass --student)".into())
        })
    }

    pub fn data(&self) -> Result<&Path> {
        self.data.as_deref().ok_or_else(|| {
            DistillError::Config("no training data (set `data` or pass --data)".into())
        })
    }

    /// The dev file actually used: the configured one, else `pairs_dev.tsv` beside the training data.
    pub fn dev_data(&self) -> Option<PathBuf> {
        if let Some(d) = &self.dev_data {
            return Some(d.clone());
        }
        let beside = self.data.as_ref()?.parent()?.join("pairs_dev.tsv");
        beside.exists().then_some(beside)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.out.join("teacher-cache"))
    }

    /// Checks ranges; each message names the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(DistillError::Config(format!("`{key}` {why}")));
        self.teacher()?;
        self.student()?;
        self.data()?;
        if self.batch_size < 2 {
            return bad(
                "batch_size",
                "must be at least 2 (the ranking loss needs in-batch negatives)",
            );
        }
        if self.max_length < 2 {
            return bad("max_length", "must be at least 2 ([CLS] and [SEP])");
        }
        if self.steps == Some(0) {
            return bad("steps", "must be positive");
        }
        if self.steps.is_none() && !(self.epochs > 0.0 && self.epochs.is_finite()) {
            return bad("epochs", "must be positive");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", "must be positive");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio", "must be in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("min_lr_ratio", "must be in [0, 1]");
        }
        for (k, v) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&v) {
                return bad(k, "must be in [0, 1)");
            }
        }
        if self.adam_eps.is_nan() || self.adam_eps <= 0.0 {
            return bad("adam_eps", "must be positive");
        }
        for (k, v) in [
            ("weight_decay", self.weight_decay),
            ("max_grad_norm", self.max_grad_norm),
            ("w_mse", self.w_mse),
            ("w_cross", self.w_cross),
            ("w_rank", self.w_rank),
            ("rank_scale", self.rank_scale),
            ("w_tokens", self.w_tokens),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(k, "must be a finite number >= 0");
            }
        }
        if self.w_mse + self.w_cross + self.w_rank + self.w_tokens == 0.0 {
            return bad(
                "w_mse",
                "w_mse, w_cross, w_rank and w_tokens are all 0: nothing to train",
            );
        }
        if self.micro_batches == 0 {
            return bad(
                "micro_batches",
                "must be at least 1 (1: the batch as one graph)",
            );
        }
        if self.keep_checkpoints == 0 {
            return bad("keep_checkpoints", "must be at least 1 (resume needs one)");
        }
        if self.log_every == 0 {
            return bad("log_every", "must be at least 1");
        }
        if self.precision_check_steps < 4 {
            return bad(
                "precision_check_steps",
                "must be at least 4 (a curve to compare and steps to time)",
            );
        }
        if !(self.precision_tolerance >= 0.0 && self.precision_tolerance.is_finite()) {
            return bad("precision_tolerance", "must be a finite number >= 0");
        }
        if self.eval_batch_size == 0 || self.cache_shard_rows == 0 {
            return bad("eval_batch_size", "and cache_shard_rows must be positive");
        }
        Ok(())
    }

    /// The settings that define the training trajectory; a resume with any of them changed is refused,
    /// except the run length ([`LENGTH_KEYS`]; see [`trajectory_differences`]). `w_tokens = 0` is left
    /// out, so checkpoints written before the key existed still resume.
    pub fn trajectory_key(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            if self.w_tokens == 0.0 {
                m.remove("w_tokens");
            }
            // one graph is the trajectory of checkpoints written before the key existed
            if self.micro_batches <= 1 {
                m.remove("micro_batches");
            }
            for k in [
                "out",
                "cache_dir",
                "dev_data",
                "eval_every",
                "eval_pairs",
                "eval_batch_size",
                "checkpoint_every",
                "keep_checkpoints",
                "log_every",
                "cache_shard_rows",
                "device",
            ] {
                m.remove(k);
            }
        }
        v
    }
}

/// Keys of [`DistillConfig::trajectory_key`] that only say how long the run is. A resume may change them:
/// the learning-rate schedule is recomputed for the new length (see `train.rs`), and a run shorter than
/// the checkpoint's step count is refused there.
pub const LENGTH_KEYS: [&str; 2] = ["steps", "epochs"];

/// The keys in which two trajectory keys differ (either side may lack a key), [`LENGTH_KEYS`] left aside.
pub fn trajectory_differences(then: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        then.as_object().unwrap_or(&empty),
        now.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !LENGTH_KEYS.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_and_equals_defaults_where_given() {
        let c = DistillConfig::parse(EXAMPLE_TOML).unwrap();
        let d = DistillConfig::default();
        assert_eq!(c.lr, d.lr);
        assert_eq!(c.w_rank, d.w_rank);
        assert_eq!(c.eval_every, d.eval_every);
        assert_eq!(c.schedule, d.schedule);
        assert_eq!(c.cache_shard_rows, d.cache_shard_rows);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = DistillConfig::parse("lr = 1e-4\nlearning_rate = 3\n").unwrap_err();
        assert!(e.contains("learning_rate"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = DistillConfig::parse("batch_size = \"big\"\n").unwrap_err();
        assert!(e.contains("batch_size"), "{e}");
    }

    #[test]
    fn run_length_is_no_trajectory_difference() {
        let a = DistillConfig {
            steps: Some(40),
            ..Default::default()
        };
        let mut b = DistillConfig {
            steps: Some(60),
            epochs: 3.0,
            ..Default::default()
        };
        assert!(trajectory_differences(&a.trajectory_key(), &b.trajectory_key()).is_empty());
        b.lr = 1.0;
        assert_eq!(
            trajectory_differences(&a.trajectory_key(), &b.trajectory_key()),
            vec!["lr".to_string()]
        );
    }

    #[test]
    fn w_tokens_is_in_the_trajectory_only_when_used() {
        let off = DistillConfig::default();
        assert!(off.trajectory_key().get("w_tokens").is_none());
        let on = DistillConfig {
            w_tokens: 1.0,
            ..Default::default()
        };
        assert_eq!(
            trajectory_differences(&off.trajectory_key(), &on.trajectory_key()),
            vec!["w_tokens".to_string()]
        );
        let c = DistillConfig::parse("w_tokens = 0.5\n").unwrap();
        assert_eq!(c.w_tokens, 0.5);
    }

    #[test]
    fn validation_names_key() {
        let mut c = DistillConfig {
            teacher: Some("t".into()),
            student: Some("s".into()),
            data: Some("d".into()),
            ..Default::default()
        };
        c.validate().unwrap();
        c.batch_size = 1;
        assert!(c.validate().unwrap_err().to_string().contains("batch_size"));
        c.batch_size = 4;
        c.warmup_ratio = 1.5;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("warmup_ratio"));
        let none = DistillConfig::default();
        assert!(none.validate().unwrap_err().to_string().contains("teacher"));
    }
}

/// The estimate (`report --estimate`) reads `[distill]` through `sekator_pipeline::sections::DistillWork`,
/// a subset of these settings; it must see the values this stage will run with.
#[cfg(test)]
mod estimate_view {
    use super::*;
    use sekator_pipeline::sections::DistillWork;

    fn view(c: &DistillConfig) -> DistillWork {
        DistillWork {
            max_pairs: c.max_pairs,
            steps: c.steps,
            epochs: c.epochs,
            batch_size: c.batch_size,
            eval_every: c.eval_every,
            eval_pairs: c.eval_pairs,
        }
    }

    #[test]
    fn the_estimates_view_agrees_with_every_shipped_config() {
        assert_eq!(view(&DistillConfig::default()), DistillWork::default());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let scratch = tempfile::tempdir().unwrap();
        // the pipeline configs and every plan the study configs generate
        let configs =
            sekator_pipeline::comparison::plans::shipped_run_configs(&root, scratch.path())
                .unwrap();
        let mut seen = 0;
        for rc in configs {
            let ours = DistillConfig::from_pipeline(&rc).unwrap();
            let theirs: DistillWork = rc.section("distill").unwrap();
            assert_eq!(view(&ours), theirs, "{}", rc.path.display());
            seen += 1;
        }
        assert!(seen >= 15, "configs/ gives {seen} runs");
    }
}
