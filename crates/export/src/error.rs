//! Errors of the export crate; each names the file or setting at fault and, where there is one, the fix.

use std::path::{Path, PathBuf};

use sekator_model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Not a model directory, bad `config.json` (e.g. an unsupported `hidden_act`), missing or misshapen
    /// weights: the model crate's error already names the file and key.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{}: already exists (pass --overwrite to replace it)", path.display())]
    Exists { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: the model would be {bytes} bytes, over protobuf's 2 GiB limit (ONNX external data is not supported)",
        path.display()
    )]
    TooLarge { path: PathBuf, bytes: u64 },
    #[error("config.json: unsupported hidden_act {act:?} (ONNX export supports gelu, gelu_new, gelu_pytorch_tanh, relu)")]
    Activation { act: String },
    /// A bug in the graph builder, caught by the self-check before anything was written.
    #[error("internal error: the exported graph failed its self-check: {0}")]
    Invalid(String),
}

impl ExportError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ExportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
