//! `config.json` of a Hugging Face BERT checkpoint, plus sekator's per-layer FFN widths.
//!
//! Pruned heads follow the Hugging Face convention: `pruned_heads` maps a layer index (as a string) to the
//! *original* indices of the heads removed from it; the weights then hold only the remaining heads, in their
//! original order. FFN widths that differ per layer are stored under our own `intermediate_sizes` key.
//! Width pruning (residual-stream dimensions cut) shrinks `hidden_size` and records the removed original
//! dimensions under `pruned_hidden`; the head size then no longer follows from `hidden_size /
//! num_attention_heads` and is written as `head_dim` (the key newer transformers architectures use).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// The fields of a BERT `config.json` that the model needs; every other key is kept verbatim in `extra`
/// so a checkpoint we rewrite still loads in transformers with its original settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    /// Layer index (string, as in transformers) -> original indices of the removed heads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pruned_heads: BTreeMap<String, Vec<usize>>,
    /// Per-layer FFN width when it differs from `intermediate_size` (written by `surgery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_sizes: Option<Vec<usize>>,
    /// sekator's analogue of `pruned_heads` for FFN neurons: layer -> original indices removed. Lets plans
    /// and importance scores of a re-pruned model speak in the original model's neuron indices.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pruned_ffn: BTreeMap<String, Vec<usize>>,
    /// Size of one attention head when it is not `hidden_size / num_attention_heads` (after width pruning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Original residual-stream dimensions removed by width pruning, ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned_hidden: Vec<usize>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_max_pos() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// A config with every key set explicitly; used by tests and by random-model builders.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
    ) -> Self {
        Self {
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            hidden_act: default_act(),
            max_position_embeddings: default_max_pos(),
            type_vocab_size: default_type_vocab(),
            layer_norm_eps: default_eps(),
            pad_token_id: 0,
            pruned_heads: BTreeMap::new(),
            intermediate_sizes: None,
            pruned_ffn: BTreeMap::new(),
            head_dim: None,
            pruned_hidden: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// Reads and validates `config.json`.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let cfg: BertConfig = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        cfg.validate().map_err(|msg| ModelError::Config {
            path: path.to_path_buf(),
            msg,
        })?;
        Ok(cfg)
    }

    /// Checks the invariants the model relies on; returns a message naming the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.hidden_size == 0 {
            return Err("hidden_size is 0".into());
        }
        if self.head_dim == Some(0) {
            return Err("head_dim is 0".into());
        }
        if self.num_attention_heads == 0
            || (self.head_dim.is_none()
                && !self.hidden_size.is_multiple_of(self.num_attention_heads))
        {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !matches!(
            self.hidden_act.as_str(),
            "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "relu"
        ) {
            return Err(format!("unsupported hidden_act {:?}", self.hidden_act));
        }
        for (layer, heads) in &self.pruned_heads {
            let l: usize = layer
                .parse()
                .map_err(|_| format!("pruned_heads key {layer:?} is not a layer index"))?;
            if l >= self.num_hidden_layers {
                return Err(format!(
                    "pruned_heads names layer {l}, model has {}",
                    self.num_hidden_layers
                ));
            }
            if let Some(h) = heads.iter().find(|&&h| h >= self.num_attention_heads) {
                return Err(format!(
                    "pruned_heads[{l}] names head {h}, model has {}",
                    self.num_attention_heads
                ));
            }
            if self.kept_heads(l).is_empty() {
                return Err(format!(
                    "pruned_heads removes every head of layer {l}; sekator needs at least one"
                ));
            }
        }
        let original = self.original_hidden_size();
        if let Some(d) = self.pruned_hidden.iter().find(|&&d| d >= original) {
            return Err(format!(
                "pruned_hidden names dimension {d}, the original width is {original}"
            ));
        }
        if !self.pruned_hidden.windows(2).all(|w| w[0] < w[1]) {
            return Err("pruned_hidden must be ascending without repeats".into());
        }
        if let Some(sizes) = &self.intermediate_sizes {
            if sizes.len() != self.num_hidden_layers {
                return Err(format!(
                    "intermediate_sizes has {} entries, num_hidden_layers is {}",
                    sizes.len(),
                    self.num_hidden_layers
                ));
            }
            if sizes.contains(&0) {
                return Err("intermediate_sizes has a zero-width layer".into());
            }
        }
        Ok(())
    }

    /// Size of one attention head; pruning never changes it.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// Residual-stream width before any width pruning.
    pub fn original_hidden_size(&self) -> usize {
        self.hidden_size + self.pruned_hidden.len()
    }

    /// Original indices of the residual-stream dimensions still present, ascending (the weights' order).
    pub fn kept_hidden(&self) -> Vec<usize> {
        (0..self.original_hidden_size())
            .filter(|d| self.pruned_hidden.binary_search(d).is_err())
            .collect()
    }

    /// Records residual-stream dimensions (original indices) as removed and shrinks `hidden_size`, pinning
    /// `head_dim` so heads keep their size.
    pub fn add_pruned_hidden(&mut self, dims: &[usize]) {
        let head_dim = self.head_dim();
        let before = self.pruned_hidden.len();
        self.pruned_hidden.extend_from_slice(dims);
        self.pruned_hidden.sort_unstable();
        self.pruned_hidden.dedup();
        self.hidden_size -= self.pruned_hidden.len() - before;
        self.head_dim = Some(head_dim);
    }

    /// Original indices of the heads still present in `layer`, ascending (the order of the weight rows).
    pub fn kept_heads(&self, layer: usize) -> Vec<usize> {
        let pruned = self.pruned_heads.get(&layer.to_string());
        (0..self.num_attention_heads)
            .filter(|h| pruned.is_none_or(|p| !p.contains(h)))
            .collect()
    }

    /// Number of heads per layer after pruning.
    pub fn heads_per_layer(&self) -> Vec<usize> {
        (0..self.num_hidden_layers)
            .map(|l| self.kept_heads(l).len())
            .collect()
    }

    /// FFN width per layer.
    pub fn ffn_sizes(&self) -> Vec<usize> {
        self.intermediate_sizes
            .clone()
            .unwrap_or_else(|| vec![self.intermediate_size; self.num_hidden_layers])
    }

    /// Sets per-layer FFN widths, keeping `intermediate_size` meaningful for transformers when all agree.
    pub fn set_ffn_sizes(&mut self, sizes: Vec<usize>) {
        if sizes.iter().all(|&s| s == sizes[0]) {
            self.intermediate_size = sizes[0];
            self.intermediate_sizes = None;
        } else {
            self.intermediate_sizes = Some(sizes);
        }
    }

    /// Original indices of the FFN neurons still present in `layer`, ascending.
    pub fn kept_ffn(&self, layer: usize) -> Vec<usize> {
        let pruned = self
            .pruned_ffn
            .get(&layer.to_string())
            .cloned()
            .unwrap_or_default();
        let original = self.ffn_sizes()[layer] + pruned.len();
        (0..original).filter(|i| !pruned.contains(i)).collect()
    }

    /// Records FFN neurons (original indices) of `layer` as pruned; the caller updates the widths.
    pub fn add_pruned_ffn(&mut self, layer: usize, neurons: &[usize]) {
        let entry = self.pruned_ffn.entry(layer.to_string()).or_default();
        entry.extend_from_slice(neurons);
        entry.sort_unstable();
        entry.dedup();
    }

    /// Records `heads` (original indices) of `layer` as pruned, merged with any already there.
    pub fn add_pruned_heads(&mut self, layer: usize, heads: &[usize]) {
        let entry = self.pruned_heads.entry(layer.to_string()).or_default();
        entry.extend_from_slice(heads);
        entry.sort_unstable();
        entry.dedup();
    }
}
