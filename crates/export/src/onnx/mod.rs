//! ONNX export: `DIR/onnx/model.onnx` (f32) and `DIR/onnx/model_qint8.onnx` (dynamic int8), the layout
//! sentence-transformers' `backend="onnx"` and text-embeddings-inference load.
//!
//! The protobuf is written directly (prost, hand-declared messages in [`proto`]); opset 17, IR version 8,
//! standard ops only. Inputs `input_ids`, `attention_mask`, `token_type_ids` (int64 `[batch_size,
//! sequence_length]`); outputs `last_hidden_state` (float `[batch_size, sequence_length, hidden]`) and,
//! when the checkpoint has a pooler, `pooler_output` (`[batch_size, hidden]`).

mod bert;
mod check;
mod graph;
pub mod proto;
mod quant;
mod write;

use std::path::{Path, PathBuf};

use sekator_model::weights::WeightSource;
use sekator_model::{read_config, BertConfig, SafetensorsWeights};

pub use bert::{ATTENTION_MASK, INPUT_IDS, LAST_HIDDEN_STATE, POOLER_OUTPUT, TOKEN_TYPE_IDS};
pub use check::check_model;
pub use write::PROTOBUF_LIMIT;

use crate::error::ExportError;
use proto::{ModelProto, OperatorSetIdProto};

/// The subdirectory of the model directory that holds the exported files (sentence-transformers' name).
pub const ONNX_DIR: &str = "onnx";
/// opset 17: the first with `LayerNormalization`, so LayerNorm stays one node.
pub const OPSET_VERSION: i64 = 17;
/// IR version 8 (ONNX 1.10+), what onnxruntime >= 1.10 reads.
pub const IR_VERSION: i64 = 8;

/// How the Linear layers (Q/K/V, attention output, FFN, pooler) compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// int8 weights per output channel, activations quantized at run time: the layout of onnxruntime's
    /// `quantize_dynamic(per_channel=True)`. Embeddings, LayerNorm and attention scores stay f32.
    Int8,
}

impl Precision {
    /// File name inside [`ONNX_DIR`]. The int8 name follows sentence-transformers' `model_qint8_<cpu>.onnx`
    /// pattern without a CPU suffix: the graph is not tuned for one instruction set.
    pub fn file_name(self) -> &'static str {
        match self {
            Precision::F32 => "model.onnx",
            Precision::Int8 => "model_qint8.onnx",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxOptions {
    /// Also write the int8 variant.
    pub int8: bool,
    /// Replace an existing `onnx/` directory (all of it, so no stale variant survives).
    pub overwrite: bool,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        Self {
            int8: true,
            overwrite: false,
        }
    }
}

/// One written `.onnx` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxFile {
    /// Final path, `DIR/onnx/<file>`.
    pub path: PathBuf,
    pub precision: Precision,
    pub bytes: u64,
    pub nodes: usize,
    pub initializers: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxReport {
    /// `DIR/onnx`.
    pub dir: PathBuf,
    pub f32: OnnxFile,
    pub int8: Option<OnnxFile>,
    /// Whether the graphs have a `pooler_output`.
    pub pooler: bool,
}

/// The ONNX model of a checkpoint with config `cfg` and weights `weights` (HF names, checked against
/// the shapes `cfg` implies), in memory.
pub fn build_model(
    cfg: &BertConfig,
    weights: &mut dyn WeightSource,
    precision: Precision,
) -> Result<ModelProto, ExportError> {
    let graph = bert::build_graph(cfg, weights, precision)?;
    Ok(ModelProto {
        ir_version: IR_VERSION,
        producer_name: "sekator-export".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "BERT encoder ({precision:?}); heads per layer {:?}, FFN widths {:?}, hidden_act {}",
            cfg.heads_per_layer(),
            cfg.ffn_sizes(),
            cfg.hidden_act
        ),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET_VERSION,
        }],
        ..Default::default()
    })
}

/// Exports the model directory `model_dir` (config.json + model.safetensors) into `model_dir/onnx/`.
///
/// All files are assembled in a hidden sibling directory, fsynced and renamed into place: `onnx/` is
/// either the old one or the complete new one. An existing `onnx/` is an error unless `opts.overwrite`.
pub fn export_dir(model_dir: &Path, opts: &OnnxOptions) -> Result<OnnxReport, ExportError> {
    let cfg = read_config(model_dir)?;
    let dest = model_dir.join(ONNX_DIR);
    if dest.exists() && !opts.overwrite {
        return Err(ExportError::Exists { path: dest });
    }
    let mut weights = SafetensorsWeights::open_dir(model_dir)?;
    let pooler = weights.has("pooler.dense.weight");
    let staging = write::Staging::new(&dest)?;
    let mut precisions = vec![Precision::F32];
    if opts.int8 {
        precisions.push(Precision::Int8);
    }
    let mut files = Vec::new();
    for precision in precisions {
        let model = build_model(&cfg, &mut weights, precision)?;
        check_model(&model).map_err(ExportError::Invalid)?;
        let name = precision.file_name();
        let bytes = write::write_model_file(&staging.path().join(name), &model)?;
        let graph = model.graph.as_ref().expect("build_model sets the graph");
        tracing::info!(file = name, bytes, nodes = graph.node.len(), "wrote");
        files.push(OnnxFile {
            path: dest.join(name),
            precision,
            bytes,
            nodes: graph.node.len(),
            initializers: graph.initializer.len(),
        });
    }
    staging.commit(opts.overwrite)?;
    let mut files = files.into_iter();
    Ok(OnnxReport {
        dir: dest,
        f32: files.next().expect("the f32 model is always written"),
        int8: files.next(),
        pooler,
    })
}
