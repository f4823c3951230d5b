//! Command line: load the data once, evaluate every model (one failing does not stop the others), write the
//! tables.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::Backend;
use clap::Parser;
use sekator_model::backend::{self, BackendTask};
use sekator_model::{checkpoint_hash, file_hash, DeviceKind};
use sekator_pipeline::Manifest;

use crate::benchmark::{evaluate, EvalOptions, ModelReport};
use crate::model_embedder::ModelEmbedder;
use crate::npy_embedder::NpyEmbedder;
use crate::report;
use crate::static_embedder::StaticEmbedder;
use crate::tasks::{missing_files, TaskId, TaskInput, SPEED_FILE};
use sekator_pipeline::sections::EvalWork;
use sekator_pipeline::tables::{parse_published, PUBLISHED_CSV};

/// encodechka, the Russian sentence-encoder benchmark, reproduced exactly (scikit-learn parity).
///
/// Each task's score is the maximum over embedding variants (cls, mean, their L2-normalised versions, pooler
/// ones when the model has a pooler) and classifiers, as in avidale/encodechka. Writes scores.csv,
/// summary.csv, timings.csv and summary.md to --out.
#[derive(Parser, Debug)]
#[command(name = "encodechka-eval", version)]
pub struct Cli {
    /// Pipeline config (configs/*.toml): evaluates the run's teacher, pruned and distilled models
    /// (runs/NAME/{pruned,distill/final}) on [run].encodechka into runs/NAME/eval; other flags come from its
    /// [eval] section (keys = flag names with `_`), flags given here too override the config.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Hugging Face model directory (config.json, *.safetensors, tokenizer.json), or a static-embedding
    /// model (`static-embedding`'s output); repeatable.
    #[arg(long = "model", value_name = "DIR")]
    pub models: Vec<PathBuf>,
    /// Vectors exported by scripts/reference/encodechka_reference.py --export; scored without a model
    /// (the parity check). Repeatable.
    #[arg(long = "npy", value_name = "DIR")]
    pub npy: Vec<PathBuf>,
    /// Directory with the encodechka data files (`just fetch-data` puts them in data/encodechka).
    #[arg(long, value_name = "DIR", default_value = "data/encodechka")]
    pub data: PathBuf,
    /// Output directory for the tables (and the embedding cache, unless --cache says otherwise).
    #[arg(long, value_name = "DIR", default_value = "runs/encodechka")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    pub device: DeviceKind,
    /// Show the published leaderboard rows beside the measured ones (optionally from another CSV).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "")]
    pub published: Option<PathBuf>,
    #[command(flatten)]
    pub work: EvalWork,
    /// Texts per forward pass when embedding task data.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long)]
    pub no_progress: bool,
    /// Names of the --model directories in the tables, in the same order (default: the directory names).
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Evaluate even when --out/manifest.json shows the same models, data and settings.
    #[arg(long)]
    pub force: bool,
}

/// The manifest of an evaluation: checkpoint hashes of the models, hashes of the data files, settings.
fn manifest_for(cli: &Cli, tasks: &[TaskId]) -> Result<Manifest> {
    let mut inputs = BTreeMap::new();
    for (i, dir) in cli.models.iter().enumerate() {
        let name = cli
            .names
            .get(i)
            .cloned()
            .unwrap_or_else(|| dir.display().to_string());
        inputs.insert(format!("model:{name}"), checkpoint_hash(dir)?);
    }
    for dir in &cli.npy {
        inputs.insert(format!("npy:{}", dir.display()), dir.display().to_string());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cli.data)
        .with_context(|| format!("reading {}", cli.data.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for f in files {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        inputs.insert(format!("data:{name}"), file_hash(&f)?);
    }
    let config = serde_json::json!({
        "tasks": tasks.iter().map(|t| t.code()).collect::<Vec<_>>(),
        "names": cli.names,
        "speed": !cli.work.no_speed,
        "device": cli.device.to_string(),
        "published": cli.published.as_ref().map(|p| p.display().to_string()),
    });
    let mut m = Manifest::new(
        sekator_pipeline::Stage::Eval.name(),
        config,
        inputs,
        env!("SEKATOR_CODE"),
    );
    for dir in &cli.models {
        m.record_upstream(dir);
    }
    Ok(m)
}

/// The per-model work, instantiated for the backend the user chose.
struct EvalModel<'a> {
    dir: &'a Path,
    device: &'a str,
    batch_size: usize,
    inputs: &'a [(TaskId, TaskInput)],
    opts: &'a EvalOptions,
}

impl BackendTask for EvalModel<'_> {
    type Output = ModelReport;
    fn run<B: Backend>(self, device: B::Device) -> ModelReport {
        match ModelEmbedder::<B>::load(self.dir, &device, self.batch_size) {
            Ok(mut e) => evaluate(&mut e, self.device, self.inputs, self.opts),
            Err(e) => ModelReport::failed(
                &self.dir.display().to_string(),
                self.device,
                format!("{e:#}"),
            ),
        }
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

fn read_speed_texts(dir: &Path) -> Result<Vec<String>> {
    let path = crate::data::require(dir, SPEED_FILE)?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    // the original: [line.strip() for line in f.readlines()]
    Ok(text.lines().map(|l| l.trim().to_string()).collect())
}

/// Runs the benchmark; `Ok(true)` when every model was evaluated.
pub fn run(cli: Cli) -> Result<bool> {
    if cli.models.is_empty() && cli.npy.is_empty() {
        bail!("nothing to evaluate: pass --model DIR (or --npy DIR)");
    }
    let tasks: Vec<TaskId> = if cli.work.tasks.is_empty() {
        TaskId::ALL.to_vec()
    } else {
        let mut t = cli
            .work
            .tasks
            .iter()
            .map(|s| TaskId::parse(s))
            .collect::<Result<Vec<_>>>()?;
        t.sort();
        t.dedup();
        t
    };
    let missing = missing_files(&cli.data, &tasks, !cli.work.no_speed);
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|e| e.to_string()).collect();
        bail!("{}", list.join("\n"));
    }
    if !cli.names.is_empty() && cli.names.len() != cli.models.len() {
        bail!(
            "{} --name for {} --model: give one name per model, in the same order",
            cli.names.len(),
            cli.models.len()
        );
    }
    // Models that fail to load are reported per model below; only a full set can be skipped.
    let manifest = manifest_for(&cli, &tasks).ok();
    if let (false, Some(want)) = (cli.force, &manifest) {
        let summary = cli.out.join("summary.md");
        let fresh = sekator_pipeline::freshness(&cli.out, want);
        if let Err(why) = &fresh {
            tracing::info!("{}: evaluating: {why}", cli.out.display());
        }
        if fresh.is_ok() && summary.is_file() {
            println!("{}", std::fs::read_to_string(&summary).unwrap_or_default());
            println!(
                "{}: up to date (same code, models, data and settings); --force to re-evaluate",
                cli.out.display()
            );
            return Ok(true);
        }
    }
    let t0 = Instant::now();
    let inputs: Vec<(TaskId, TaskInput)> = tasks
        .iter()
        .map(|&t| Ok((t, TaskInput::load(t, &cli.data)?)))
        .collect::<Result<_>>()?;
    tracing::info!(
        "loaded {} tasks from {} in {:.1} s",
        inputs.len(),
        cli.data.display(),
        t0.elapsed().as_secs_f64()
    );

    let opts = EvalOptions {
        cache_root: (!cli.work.no_cache).then(|| {
            cli.work
                .cache
                .clone()
                .unwrap_or_else(|| cli.out.join("cache"))
        }),
        progress: !cli.no_progress,
        chunk: 512,
        speed_texts: if cli.work.no_speed {
            None
        } else {
            Some(read_speed_texts(&cli.data)?)
        },
    };

    let mut reports = Vec::new();
    for dir in &cli.npy {
        let r = match NpyEmbedder::open(dir) {
            Ok(mut e) => evaluate(&mut e, "cpu (python export)", &inputs, &opts),
            Err(e) => ModelReport::failed(&dir.display().to_string(), "-", format!("{e:#}")),
        };
        reports.push(r);
    }
    let device = backend::describe(cli.device);
    for dir in &cli.models {
        if sekator_model::StaticModel::is_static(dir) {
            tracing::info!("static model {} (table look-ups on the cpu)", dir.display());
            let mut r = match StaticEmbedder::load(dir) {
                Ok(mut e) => evaluate(&mut e, "cpu (look-up)", &inputs, &opts),
                Err(e) => ModelReport::failed(&dir.display().to_string(), "cpu", format!("{e:#}")),
            };
            if let Some(name) = cli.names.get(reports.len() - cli.npy.len()) {
                r.name = name.clone();
            }
            reports.push(r);
            continue;
        }
        tracing::info!("model {} on {device}", dir.display());
        let task = EvalModel {
            dir,
            device: &device,
            batch_size: cli.batch_size,
            inputs: &inputs,
            opts: &opts,
        };
        let mut r = match catch_unwind(AssertUnwindSafe(|| backend::run(cli.device, task))) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => ModelReport::failed(&dir.display().to_string(), &device, e.to_string()),
            Err(p) => ModelReport::failed(
                &dir.display().to_string(),
                &device,
                format!("panicked: {}", panic_message(p)),
            ),
        };
        if let Some(name) = cli.names.get(reports.len() - cli.npy.len()) {
            r.name = name.clone();
        }
        reports.push(r);
    }
    for r in reports.iter().filter(|r| r.error.is_some()) {
        tracing::error!(
            "{} failed: {}",
            r.name,
            r.error.as_deref().unwrap_or_default()
        );
    }

    let published = match &cli.published {
        None => vec![],
        Some(p) if p.as_os_str().is_empty() => parse_published(PUBLISHED_CSV)?,
        Some(p) => parse_published(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?,
    };
    let md = report::write_all(&cli.out, &reports, &published)?;
    println!("{md}");
    println!("tables written to {}", cli.out.display());
    let ok = reports.iter().all(|r| r.error.is_none());
    if let (true, Some(mut m)) = (ok, manifest) {
        m.seconds = t0.elapsed().as_secs_f64();
        m.write(&cli.out)?;
    }
    Ok(ok)
}
