//! Writing models to disk: streamed protobuf encoding and an atomic swap of the `onnx/` directory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

use super::proto::{GraphProto, ModelProto, TensorProto};
use crate::error::ExportError;

/// Protobuf messages (and so `.onnx` files without external data) cannot exceed 2 GiB - 1 bytes.
pub const PROTOBUF_LIMIT: u64 = i32::MAX as u64;

/// `ModelProto.graph` and `GraphProto.initializer` / `TensorProto.raw_data` field numbers.
const MODEL_GRAPH: u32 = 7;
const GRAPH_INITIALIZER: u32 = 5;
const TENSOR_RAW_DATA: u32 = 9;

/// Writes `model` to `path` and fsyncs it; returns the file size.
///
/// The bytes decode to exactly `model`, but are streamed: weights go from their initializers straight to
/// the file instead of through one buffer of the whole model (LaBSE would need another 500 MB).
/// Protobuf allows any field order, so the graph and the raw data are simply written last.
pub(crate) fn write_model_file(path: &Path, model: &ModelProto) -> Result<u64, ExportError> {
    let len = model.encoded_len() as u64;
    if len > PROTOBUF_LIMIT {
        return Err(ExportError::TooLarge {
            path: path.to_path_buf(),
            bytes: len,
        });
    }
    let io = |e| ExportError::io(path, e);
    let file = File::create(path).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    encode_model(model, &mut w).map_err(io)?;
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(len)
}

fn encode_model(model: &ModelProto, w: &mut impl Write) -> std::io::Result<()> {
    let header = ModelProto {
        graph: None,
        opset_import: model.opset_import.clone(),
        producer_name: model.producer_name.clone(),
        producer_version: model.producer_version.clone(),
        domain: model.domain.clone(),
        doc_string: model.doc_string.clone(),
        ir_version: model.ir_version,
        model_version: model.model_version,
    };
    w.write_all(&header.encode_to_vec())?;
    let Some(graph) = &model.graph else {
        return Ok(());
    };
    let shell = GraphProto {
        node: graph.node.clone(),
        name: graph.name.clone(),
        initializer: Vec::new(),
        doc_string: graph.doc_string.clone(),
        input: graph.input.clone(),
        output: graph.output.clone(),
    };
    let mut buf = Vec::new();
    encode_key(MODEL_GRAPH, WireType::LengthDelimited, &mut buf);
    encode_varint(graph.encoded_len() as u64, &mut buf);
    w.write_all(&buf)?;
    w.write_all(&shell.encode_to_vec())?;
    for t in &graph.initializer {
        encode_initializer(t, w)?;
    }
    Ok(())
}

/// One `GraphProto.initializer` field, its raw data written from the tensor's own buffer.
fn encode_initializer(t: &TensorProto, w: &mut impl Write) -> std::io::Result<()> {
    let shell = TensorProto {
        dims: t.dims.clone(),
        data_type: t.data_type,
        name: t.name.clone(),
        raw_data: Vec::new(),
    };
    let mut buf = Vec::new();
    encode_key(GRAPH_INITIALIZER, WireType::LengthDelimited, &mut buf);
    encode_varint(t.encoded_len() as u64, &mut buf);
    shell.encode(&mut buf).expect("a Vec grows as needed");
    if !t.raw_data.is_empty() {
        encode_key(TENSOR_RAW_DATA, WireType::LengthDelimited, &mut buf);
        encode_varint(t.raw_data.len() as u64, &mut buf);
    }
    w.write_all(&buf)?;
    w.write_all(&t.raw_data)
}

/// A hidden directory beside the destination where the files are assembled, then renamed into place, so
/// readers never see a half-written `onnx/` and an interrupted export leaves the old one intact.
pub(crate) struct Staging {
    dir: tempfile::TempDir,
    dest: PathBuf,
}

impl Staging {
    pub fn new(dest: &Path) -> Result<Self, ExportError> {
        let parent = dest.parent().unwrap_or(Path::new("."));
        let dir = tempfile::Builder::new()
            .prefix(".onnx.tmp-")
            .tempdir_in(parent)
            .map_err(|e| ExportError::io(parent, e))?;
        Ok(Self {
            dir,
            dest: dest.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Moves the staged directory to the destination, replacing an existing one only if `overwrite`.
    pub fn commit(self, overwrite: bool) -> Result<(), ExportError> {
        let dest = &self.dest;
        if dest.exists() && !overwrite {
            return Err(ExportError::Exists { path: dest.clone() });
        }
        let staged = self.dir.keep();
        let result = sekator_model::publish_dir(&staged, dest).map_err(ExportError::from);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staged);
        }
        result
    }
}
