//! `importance/`: importance scores (written by the importance stage, read by surgery and by importance
//! itself to tell whether a rerun is needed).
//!
//! - `importance.safetensors`: F32 `heads` `[layers, num_attention_heads]` in ORIGINAL head index space
//!   (pruned heads hold 0.0), `head_present` (same shape, 1.0/0.0), `ffn.{l}` `[current FFN width of l]`
//!   in current neuron order (original indices: `config.kept_ffn(l)`).
//! - `importance.json`: [`ImportanceMeta`] (hashes, settings, timing, validation).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use sekator_model::{write_atomic, ModelError, Pooling};

pub const SCORES_FILE: &str = "importance.safetensors";
pub const META_FILE: &str = "importance.json";

/// Which loss is differentiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// In-batch en-ru translation ranking (symmetric softmax cross-entropy over scaled cosine similarities).
    #[default]
    Ranking,
    /// MSE of the pooled embeddings to a teacher checkpoint's (`--teacher`), e.g. re-scoring a pruned model.
    Teacher,
    /// In-batch contrastive loss against the teacher's embeddings (`--teacher`, default: the model itself,
    /// unmasked): each sentence's vector should be nearer its own teacher vector than the batch's other
    /// sentences', in both languages. Not at its minimum when nothing is masked, and it asks nothing of
    /// cross-lingual alignment, so it is meaningful for a monolingual teacher.
    Contrastive,
}

/// How a unit's score is computed: accumulated batch gradients of its mask, or its weights alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Criterion {
    /// Sum over batches of |dL/dξ| (first-order Taylor estimate).
    #[default]
    Taylor,
    /// Sum over batches of (dL/dξ)² (empirical Fisher).
    Fisher,
    /// L2 norm of the unit's own weights (a head's query/key/value rows and biases and its columns of the
    /// attention output projection; an FFN neuron's intermediate row and bias and its output column): the
    /// data-free baseline the gradient criteria are compared against. Needs no data and no gradients.
    Magnitude,
}

/// How accumulated scores are normalised before they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    /// Each layer's head vector (and FFN vector) divided by its L2 norm.
    #[default]
    Layer,
    /// All head scores divided by their joint L2 norm; all FFN scores likewise.
    Global,
    /// Raw accumulated sums.
    None,
}

impl LossKind {
    pub fn name(&self) -> &'static str {
        match self {
            LossKind::Ranking => "ranking",
            LossKind::Teacher => "teacher",
            LossKind::Contrastive => "contrastive",
        }
    }
}
impl Criterion {
    pub fn name(&self) -> &'static str {
        match self {
            Criterion::Taylor => "taylor",
            Criterion::Fisher => "fisher",
            Criterion::Magnitude => "magnitude",
        }
    }
}
impl Normalize {
    pub fn name(&self) -> &'static str {
        match self {
            Normalize::Layer => "layer",
            Normalize::Global => "global",
            Normalize::None => "none",
        }
    }
}

/// One head of the `--validate` check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ValidatedHead {
    pub layer: usize,
    /// Original head index.
    pub head: usize,
    /// The written (normalised) score.
    pub score: f64,
    /// The accumulated score before normalisation.
    pub raw_score: f64,
    /// Mean loss with this head alone masked to 0, minus the unmasked mean loss (same batches).
    pub loss_increase: f64,
}

/// Result of `--validate K`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Validation {
    pub k: usize,
    /// Mean loss of the unmasked model over the scoring batches.
    pub base_loss: f64,
    /// Spearman correlation of the written score with the measured loss increase.
    pub spearman: f64,
    /// The same for the raw (un-normalised) score.
    pub spearman_raw: f64,
    pub heads: Vec<ValidatedHead>,
    pub seconds: f64,
}

/// `importance.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImportanceMeta {
    pub checkpoint: String,
    pub checkpoint_hash: String,
    /// The pairs file; empty when none was read (`magnitude` without `--validate`).
    pub data: String,
    /// Its hash; empty when none was read.
    pub data_hash: String,
    #[serde(default)]
    pub teacher: Option<String>,
    #[serde(default)]
    pub teacher_hash: Option<String>,
    pub loss: LossKind,
    pub scale: f32,
    /// The pooling used (resolved: the checkpoint default unless `--pooling` was given).
    pub pooling: Pooling,
    pub criterion: Criterion,
    pub normalize: Normalize,
    /// Pairs that contributed (whole batches only): to the gradients, or for `magnitude` to `--validate`
    /// alone (0 without it).
    pub samples: usize,
    /// `--samples` as requested.
    pub samples_requested: usize,
    pub batch_size: usize,
    pub batches: usize,
    pub max_length: usize,
    pub seed: u64,
    /// Malformed lines skipped in the data file.
    pub skipped_lines: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub ffn_sizes: Vec<usize>,
    /// Whether the residual-stream dimensions were scored too (`--hidden`; the `hidden` tensor).
    #[serde(default)]
    pub hidden: bool,
    /// Mean loss of the unmasked model over the batches (from the gradient pass). `magnitude` makes no
    /// such pass: this, `grad_seconds` and `pairs_per_s` are 0 and `pairs_per_s_after_first` is null.
    pub mean_loss: f64,
    /// Total wall-clock seconds (loading, data, gradients, validation).
    pub seconds: f64,
    /// Seconds of the forward+backward loop alone.
    pub grad_seconds: f64,
    /// `samples / grad_seconds`.
    pub pairs_per_s: f64,
    /// The same without the first (warm-up) batch; `null` with a single batch.
    pub pairs_per_s_after_first: Option<f64>,
    /// The compute device; `none` when no model was run (`magnitude` without `--validate`).
    pub device: String,
    pub validate: Option<Validation>,
}

impl ImportanceMeta {
    /// The record of scores that did not come from the importance stage (surgery's weight-magnitude
    /// stand-in): `data` says so, no pairs were seen, the settings are the defaults.
    pub fn stand_in(cfg: &sekator_model::BertConfig, checkpoint_hash: &str) -> Self {
        Self {
            checkpoint: String::new(),
            checkpoint_hash: checkpoint_hash.to_string(),
            data: "(weight magnitudes, no data)".into(),
            data_hash: String::new(),
            teacher: None,
            teacher_hash: None,
            loss: LossKind::default(),
            scale: 0.0,
            pooling: Pooling::Mean,
            criterion: Criterion::default(),
            normalize: Normalize::Layer,
            samples: 0,
            samples_requested: 0,
            batch_size: 0,
            batches: 0,
            max_length: 0,
            seed: 0,
            skipped_lines: 0,
            num_hidden_layers: cfg.num_hidden_layers,
            num_attention_heads: cfg.num_attention_heads,
            ffn_sizes: cfg.ffn_sizes(),
            hidden: true,
            mean_loss: 0.0,
            seconds: 0.0,
            grad_seconds: 0.0,
            pairs_per_s: 0.0,
            pairs_per_s_after_first: None,
            device: "none".into(),
            validate: None,
        }
    }

    /// The settings a rerun must share for these scores to be reused (the manifest's `config`).
    pub fn settings(&self, validate_k: usize) -> serde_json::Value {
        serde_json::json!({
            "loss": self.loss, "scale": self.scale, "pooling": self.pooling, "criterion": self.criterion,
            "normalize": self.normalize, "samples": self.samples_requested, "batch_size": self.batch_size,
            "max_length": self.max_length, "seed": self.seed, "validate": validate_k,
            "hidden": self.hidden,
        })
    }

    pub fn inputs(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("checkpoint".into(), self.checkpoint_hash.clone());
        // scores that read no data do not depend on it
        if !self.data_hash.is_empty() {
            m.insert("data".into(), self.data_hash.clone());
        }
        if let Some(t) = &self.teacher_hash {
            m.insert("teacher".into(), t.clone());
        }
        m
    }
}

/// Importance scores of one checkpoint (post-normalisation) with their metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// `[layer][original head]`; 0.0 for pruned heads.
    pub heads: Vec<Vec<f32>>,
    /// `[layer][original head]`: whether the head is still in the checkpoint.
    pub head_present: Vec<Vec<bool>>,
    /// `[layer][current neuron]`.
    pub ffn: Vec<Vec<f32>>,
    /// `[current residual-stream dimension]` (`importance --hidden`); empty when not scored. Stored as
    /// tensor `hidden` only when present, so older score files read unchanged.
    pub hidden: Vec<f32>,
    pub meta: ImportanceMeta,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Scores {
    /// `(layer, original head, score)` of every present head, highest score first (ties: lower layer,
    /// then lower head first).
    pub fn ranked_heads(&self) -> Vec<(usize, usize, f32)> {
        let mut v: Vec<(usize, usize, f32)> = self
            .heads
            .iter()
            .enumerate()
            .flat_map(|(l, row)| {
                row.iter()
                    .enumerate()
                    .filter(move |(h, _)| self.head_present[l][*h])
                    .map(move |(h, &s)| (l, h, s))
            })
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        v
    }

    /// Writes `importance.safetensors` and `importance.json` into `dir` (created); the importance stage
    /// writes the rest of its directory around them (`sekator_importance::scores::write`).
    pub fn write_scores(&self, dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let layers = self.heads.len();
        let nh = self.heads.first().map(|r| r.len()).unwrap_or(0);

        // safetensors
        let heads: Vec<f32> = self.heads.iter().flatten().copied().collect();
        let present: Vec<f32> = self
            .head_present
            .iter()
            .flatten()
            .map(|&p| if p { 1.0 } else { 0.0 })
            .collect();
        let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
            ("heads".into(), vec![layers, nh], f32_bytes(&heads)),
            ("head_present".into(), vec![layers, nh], f32_bytes(&present)),
        ];
        for (l, f) in self.ffn.iter().enumerate() {
            buffers.push((format!("ffn.{l}"), vec![f.len()], f32_bytes(f)));
        }
        if !self.hidden.is_empty() {
            let h = &self.hidden;
            buffers.push(("hidden".into(), vec![h.len()], f32_bytes(h)));
        }
        let views: Vec<(String, TensorView)> = buffers
            .iter()
            .map(|(n, s, b)| {
                Ok((
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b)
                        .map_err(|e| ModelError::Other(e.to_string()))?,
                ))
            })
            .collect::<Result<_, ModelError>>()?;
        let mut info = HashMap::new();
        info.insert("format".to_string(), "sekator-importance".to_string());
        info.insert(
            "checkpoint_hash".to_string(),
            self.meta.checkpoint_hash.clone(),
        );
        let mut bytes = safetensors::tensor::serialize(views, Some(info.clone()))
            .map_err(|e| ModelError::Other(e.to_string()))?;
        sekator_model::header_order::sort_metadata(&mut bytes, &info)?;
        write_atomic(&dir.join(SCORES_FILE), &bytes)?;

        // metadata
        let json = serde_json::to_string_pretty(&self.meta)
            .map_err(|e| ModelError::Other(e.to_string()))?;
        write_atomic(&dir.join(META_FILE), (json + "\n").as_bytes())?;

        Ok(())
    }

    /// Reads `importance.safetensors` and `importance.json` of `dir`, checking their shapes agree.
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        let meta_path = dir.join(META_FILE);
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| ModelError::io(&meta_path, e))?;
        let meta: ImportanceMeta = serde_json::from_str(&text).map_err(|e| {
            ModelError::Other(format!(
                "{}: not an importance.json: {e}",
                meta_path.display()
            ))
        })?;
        let path = dir.join(SCORES_FILE);
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        let bad = |msg: String| ModelError::Other(format!("{}: {msg}", path.display()));
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let get = |name: &str| -> Result<(Vec<usize>, Vec<f32>), ModelError> {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("tensor `{name}` is missing")))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor `{name}` is {:?}, expected F32",
                    t.dtype()
                )));
            }
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Ok((t.shape().to_vec(), v))
        };
        let (shape, heads) = get("heads")?;
        let (pshape, present) = get("head_present")?;
        let (layers, nh) = (meta.num_hidden_layers, meta.num_attention_heads);
        if shape != [layers, nh] || pshape != shape {
            return Err(bad(format!(
                "`heads` {shape:?} / `head_present` {pshape:?}, importance.json says [{layers}, {nh}]"
            )));
        }
        let mut ffn = Vec::with_capacity(layers);
        for l in 0..layers {
            let (s, v) = get(&format!("ffn.{l}"))?;
            if meta.ffn_sizes.get(l) != Some(&s[0]) {
                return Err(bad(format!(
                    "`ffn.{l}` has shape {s:?}, importance.json says {:?}",
                    meta.ffn_sizes.get(l)
                )));
            }
            ffn.push(v);
        }
        let hidden = match st.tensor("hidden") {
            Ok(_) => get("hidden")?.1,
            Err(_) => Vec::new(),
        };
        let rows = |v: Vec<f32>| v.chunks(nh.max(1)).map(|c| c.to_vec()).collect::<Vec<_>>();
        let head_present = rows(present)
            .into_iter()
            .map(|r| r.into_iter().map(|x| x != 0.0).collect())
            .collect();
        Ok(Scores {
            heads: rows(heads),
            head_present,
            ffn,
            hidden,
            meta,
        })
    }
}
