//! sekator's static-embedding baseline (model2vec-style, Tulkens & van Dongen 2024): every vocabulary token's
//! vector from the teacher ([`token_vectors`]), reduced by PCA ([`pca`]), weighted by SIF token weights
//! from a corpus ([`sif`]); a sentence vector is the mean of its tokens' rows, zero encoder FLOPs. The
//! written directory is read by `sekator_model::StaticModel` (`embed`, encodechka-eval) and loads in
//! sentence-transformers as a `StaticEmbedding`.

pub mod pca;
pub mod sif;
pub mod token_vectors;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use sekator_model::static_model::{StaticInfo, STATIC_FILE, TABLE};
use sekator_model::{checkpoint_hash, write_atomic, DeviceKind, TextTokenizer};

/// What [`build`] needs; the binary fills it from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub teacher: PathBuf,
    /// Text files (one text per line; a TSV's columns count as texts) for the token frequencies.
    pub corpus: Vec<PathBuf>,
    pub out: PathBuf,
    /// PCA dimensions (at most the teacher's hidden size).
    pub dim: usize,
    /// SIF's `a`.
    pub sif_a: f64,
    pub batch_size: usize,
    pub device: DeviceKind,
    pub overwrite: bool,
    pub progress: bool,
}

/// Teacher files copied beside the table (`tokenizer.json` is written by [`write_tokenizer`]).
const TOKENIZER_FILES: [&str; 3] = [
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
];

/// Builds the static model and writes it to `opts.out` (staged in a hidden sibling, then renamed).
pub fn build(opts: &Options) -> Result<StaticInfo> {
    if opts.out.exists() && !opts.overwrite {
        bail!(
            "{} exists; pass --overwrite to replace it",
            opts.out.display()
        );
    }
    if opts.dim == 0 {
        bail!("--dim must be at least 1");
    }
    let bar = progress(opts.progress);
    bar.set_message("teacher vectors of every token");
    let task = token_vectors::Task {
        teacher: &opts.teacher,
        batch_size: opts.batch_size,
        progress: &bar,
    };
    let tv = sekator_model::backend::run(opts.device, task)??;
    bar.finish_and_clear();
    if opts.dim > tv.dim {
        bail!(
            "--dim {} exceeds the teacher's hidden size {}",
            opts.dim,
            tv.dim
        );
    }
    let pca = pca::Pca::fit(&tv.rows, tv.dim, opts.dim);
    let mut table = pca.project(&tv.rows);
    let tok = TextTokenizer::from_dir(&opts.teacher)?;
    let vocab = tv.rows.len() / tv.dim;
    let counts = sif::count_tokens(&tok, &opts.corpus, vocab)?;
    let w = sif::weights(&counts, opts.sif_a);
    for (row, &w) in table.chunks_mut(opts.dim).zip(&w) {
        row.iter_mut().for_each(|x| *x *= w as f32);
    }
    let info = StaticInfo {
        teacher: opts.teacher.display().to_string(),
        teacher_hash: checkpoint_hash(&opts.teacher)?,
        pooling: tv.pooling.to_string(),
        vocab_size: vocab,
        dim: opts.dim,
        explained_variance: pca.explained,
        sif_a: opts.sif_a,
        corpus: opts
            .corpus
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        corpus_tokens: counts.iter().sum(),
    };
    write(opts, &tok, &table, &info)?;
    Ok(info)
}

fn progress(show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} tokens  eta {eta}")
            .expect("valid template"),
    );
    bar
}

/// The directory: table, tokenizer files, sentence-transformers modules, [`STATIC_FILE`] last.
fn write(opts: &Options, tok: &TextTokenizer, table: &[f32], info: &StaticInfo) -> Result<()> {
    let staged = sekator_model::hidden_sibling(&opts.out, "static");
    if staged.exists() {
        std::fs::remove_dir_all(&staged).with_context(|| format!("{}", staged.display()))?;
    }
    std::fs::create_dir_all(&staged).with_context(|| format!("{}", staged.display()))?;
    let bytes: Vec<u8> = table.iter().flat_map(|x| x.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![info.vocab_size, info.dim], &bytes)?;
    let st = safetensors::tensor::serialize([(TABLE, view)], None)?;
    write_atomic(&staged.join("model.safetensors"), &st)?;
    for f in TOKENIZER_FILES {
        let src = opts.teacher.join(f);
        if !src.exists() {
            continue;
        }
        std::fs::copy(&src, staged.join(f))
            .with_context(|| format!("copying {}", src.display()))?;
    }
    write_tokenizer(tok, &staged.join("tokenizer.json"))?;
    let modules = serde_json::json!([{
        "idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.StaticEmbedding"
    }]);
    write_json(&staged.join("modules.json"), &modules)?;
    write_json(
        &staged.join("config_sentence_transformers.json"),
        &serde_json::json!({"__version__": {"sentence_transformers": "6.2.0"}, "similarity_fn_name": "cosine"}),
    )?;
    write_json(&staged.join(STATIC_FILE), &serde_json::to_value(info)?)?;
    sekator_model::publish_dir(&staged, &opts.out)?;
    Ok(())
}

/// `tokenizer.json` for sentence-transformers' `StaticEmbedding`, which applies the file's own padding and
/// truncation: written from the teacher's tokenizer as sekator loads it (from `tokenizer.json` or
/// `vocab.txt`, padding off: a `[PAD]` id would be averaged in), with truncation at [`STATIC_MAX_TOKENS`]
/// text tokens, what `embed` keeps by default. sekator's own reader ignores both settings.
fn write_tokenizer(tok: &TextTokenizer, dst: &Path) -> Result<()> {
    let text = tok
        .inner()
        .to_string(false)
        .map_err(|e| anyhow::anyhow!("serialising the teacher's tokenizer: {e}"))?;
    let mut t: serde_json::Value = serde_json::from_str(&text)?;
    t["padding"] = serde_json::Value::Null;
    t["truncation"] = serde_json::json!({
        "direction": "Right", "max_length": STATIC_MAX_TOKENS, "strategy": "LongestFirst", "stride": 0
    });
    write_json(dst, &t)
}

/// Text tokens a static model averages at most (encodechka's 128 minus `[CLS]` and `[SEP]`).
pub const STATIC_MAX_TOKENS: usize = 126;

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v)? + "\n";
    write_atomic(path, text.as_bytes())?;
    Ok(())
}
