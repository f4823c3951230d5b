//! Running the loaded tasks against one embedder: embed what the cache lacks, score, time both, measure
//! speed. Embedding and classifier time are kept apart so a slow model and a slow classifier are told apart.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cache::{key_of, CacheShelf, Key};
use crate::embedder::{word_list_key, SentenceStore, TextEmbedder, Variant, WordStore};
use crate::tasks::{TaskId, TaskInput, TaskOutcome};

pub struct EvalOptions {
    /// Cache root; `None` disables the cache.
    pub cache_root: Option<PathBuf>,
    pub progress: bool,
    /// Texts per `embed` call (the embedder batches inside; this bounds progress granularity).
    pub chunk: usize,
    /// `sentences_sample.txt` lines, for the speed columns; `None` skips speed.
    pub speed_texts: Option<Vec<String>>,
}

/// One task's result and cost.
#[derive(Clone, Debug)]
pub struct TaskRun {
    pub outcome: TaskOutcome,
    /// Distinct texts (sentences, or NER texts) the task needs.
    pub n_texts: usize,
    /// How many of those had to be embedded now (the rest came from the cache or an earlier task).
    pub embedded: usize,
    pub embed_s: f64,
    pub classify_s: f64,
}

#[derive(Clone, Debug)]
pub struct Speed {
    /// Milliseconds per text, texts embedded one at a time (encodechka's CPU/GPU columns).
    pub ms_per_text: f64,
    /// Texts per second when all sample texts go in one call (batched).
    pub batched_texts_per_s: f64,
}

/// Everything measured for one model.
#[derive(Clone, Debug)]
pub struct ModelReport {
    pub name: String,
    pub dim: usize,
    pub size_mb: Option<f64>,
    /// "cpu (...)" or "cuda (...)": which speed column the measurement belongs to.
    pub device: String,
    pub tasks: Vec<TaskRun>,
    pub speed: Option<Speed>,
    /// Set when the model failed (to load, or part-way); tasks finished before the failure are kept.
    pub error: Option<String>,
}

impl ModelReport {
    pub fn failed(name: &str, device: &str, error: String) -> Self {
        Self {
            name: name.into(),
            dim: 0,
            size_mb: None,
            device: device.into(),
            tasks: vec![],
            speed: None,
            error: Some(error),
        }
    }

    pub fn score(&self, task: TaskId) -> Option<f64> {
        self.tasks
            .iter()
            .find(|t| t.outcome.task == task)
            .map(|t| t.outcome.score())
    }

    pub fn is_cpu(&self) -> bool {
        self.device.starts_with("cpu")
    }
}

fn bar(opts: &EvalOptions, len: usize, prefix: String) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64).with_prefix(prefix);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb
}

/// Evaluates `embedder` on `inputs` (already loaded). Never panics on a model error: the error is recorded in
/// the report together with the tasks that finished.
pub fn evaluate(
    embedder: &mut dyn TextEmbedder,
    device: &str,
    inputs: &[(TaskId, TaskInput)],
    opts: &EvalOptions,
) -> ModelReport {
    let mut report = ModelReport {
        name: embedder.name().to_string(),
        dim: embedder.dim(),
        size_mb: embedder.size_mb(),
        device: device.to_string(),
        tasks: vec![],
        speed: None,
        error: None,
    };
    if let Err(e) = run_tasks(embedder, inputs, opts, &mut report) {
        report.error = Some(format!("{e:#}"));
        return report;
    }
    if let Some(texts) = &opts.speed_texts {
        if embedder.measures_speed() {
            match measure_speed(embedder, texts, opts) {
                Ok(s) => report.speed = Some(s),
                Err(e) => report.error = Some(format!("speed: {e:#}")),
            }
        }
    }
    report
}

fn run_tasks(
    embedder: &mut dyn TextEmbedder,
    inputs: &[(TaskId, TaskInput)],
    opts: &EvalOptions,
    report: &mut ModelReport,
) -> Result<()> {
    let dim = embedder.dim();
    let has_pooler = embedder.has_pooler();
    let variants = Variant::all(has_pooler);
    let mut sentences = SentenceStore::new(dim, has_pooler);
    let mut words = WordStore::new(dim);

    let shelves = match (&opts.cache_root, embedder.cacheable()) {
        (Some(root), true) => {
            let fp = embedder.fingerprint().to_string();
            let kinds = if has_pooler {
                "cls.mean.pooler"
            } else {
                "cls.mean"
            };
            let s = CacheShelf::open(root, &fp, &format!("sentences-len128-{kinds}-d{dim}"), dim)?;
            let w = CacheShelf::open(root, &fp, &format!("words-tokenizer-limit-d{dim}"), dim)?;
            let t0 = Instant::now();
            let (mut n_s, mut n_w) = (0, 0);
            for (k, rec) in s.load()? {
                sentences.insert_record(k, &rec);
                n_s += 1;
            }
            for (k, rec) in w.load()? {
                words.insert_record(k, &rec);
                n_w += 1;
            }
            if n_s + n_w > 0 {
                tracing::info!(
                    "{}: {n_s} sentence and {n_w} word-list vectors from the cache ({:.1} s)",
                    report.name,
                    t0.elapsed().as_secs_f64()
                );
            }
            Some((s, w))
        }
        _ => None,
    };

    for (task, input) in inputs {
        let t0 = Instant::now();
        let mut fresh: Vec<(Key, Vec<f32>)> = vec![];
        let mut fresh_words: Vec<(Key, Vec<f32>)> = vec![];

        let mut missing: Vec<String> = input
            .sentence_texts()
            .into_iter()
            .filter(|t| !sentences.contains(t))
            .collect();
        // similar lengths in one call keep padding small
        missing.sort_by_key(|t| t.chars().count());
        let word_lists: Vec<Vec<String>> = input
            .word_lists()
            .into_iter()
            .filter(|w| !words.contains(w))
            .collect();
        let pb = bar(
            opts,
            missing.len() + word_lists.len(),
            format!("{} embed", task.code()),
        );
        for chunk in missing.chunks(opts.chunk.max(1)) {
            let v = embedder
                .embed(chunk)
                .with_context(|| format!("{}: embedding", task.code()))?;
            v.validate(chunk.len(), has_pooler)?;
            for (i, text) in chunk.iter().enumerate() {
                let pooler = v.pooler.as_ref().map(|p| &p[i * dim..(i + 1) * dim]);
                sentences.insert(
                    text,
                    &v.cls[i * dim..(i + 1) * dim],
                    &v.mean[i * dim..(i + 1) * dim],
                    pooler,
                );
                if shelves.is_some() {
                    fresh.push((key_of(text), sentences.record(text).expect("just inserted")));
                }
            }
            pb.inc(chunk.len() as u64);
        }
        for chunk in word_lists.chunks(opts.chunk.max(1)) {
            let vs = embedder
                .word_vectors_many(chunk)
                .with_context(|| format!("{}: word vectors", task.code()))?;
            for (ws, v) in chunk.iter().zip(vs) {
                words.insert(ws, &v)?;
                if shelves.is_some() {
                    fresh_words.push((key_of(&word_list_key(ws)), v));
                }
            }
            pb.inc(chunk.len() as u64);
        }
        pb.finish_and_clear();
        if let Some((s, w)) = &shelves {
            s.append(&fresh)?;
            w.append(&fresh_words)?;
        }
        let embed_s = t0.elapsed().as_secs_f64();
        let embedded = missing.len() + word_lists.len();

        let t1 = Instant::now();
        let outcome = input
            .evaluate(*task, &sentences, &words, &variants)
            .with_context(|| format!("{}: scoring", task.code()))?;
        let classify_s = t1.elapsed().as_secs_f64();
        let best = outcome
            .best()
            .map(|b| format!("{}/{}", b.variant, b.classifier))
            .unwrap_or_default();
        tracing::info!(
            "{}: {:<4} {:.4} ({best})  embed {embed_s:.1} s ({embedded} new of {}), classify {classify_s:.1} s",
            report.name,
            task.code(),
            outcome.score(),
            input.n_texts()
        );
        report.tasks.push(TaskRun {
            outcome,
            n_texts: input.n_texts(),
            embedded,
            embed_s,
            classify_s,
        });
    }
    Ok(())
}

/// encodechka's speed task: every sample text embedded on its own (after one warm-up call), then all of them
/// in one call for the batched throughput.
fn measure_speed(
    embedder: &mut dyn TextEmbedder,
    texts: &[String],
    opts: &EvalOptions,
) -> Result<Speed> {
    if texts.is_empty() {
        anyhow::bail!("no speed texts");
    }
    embedder.embed(&texts[..1])?;
    let pb = bar(opts, texts.len(), "speed".into());
    let t0 = Instant::now();
    for t in texts {
        embedder.embed(std::slice::from_ref(t))?;
        pb.inc(1);
    }
    let ms_per_text = t0.elapsed().as_secs_f64() * 1000.0 / texts.len() as f64;
    pb.finish_and_clear();
    let t1 = Instant::now();
    embedder.embed(texts)?;
    let batched_texts_per_s = texts.len() as f64 / t1.elapsed().as_secs_f64();
    tracing::info!(
        "speed: {ms_per_text:.2} ms/text one at a time, {batched_texts_per_s:.0} texts/s batched"
    );
    Ok(Speed {
        ms_per_text,
        batched_texts_per_s,
    })
}
