//! Errors of the surgery library: each names the file, layer or tensor at fault.

use std::path::{Path, PathBuf};

use sekator_model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum SurgeryError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A plan that cannot be applied (unknown layer or unit, a layer left empty, a bad ratio).
    #[error("plan: {0}")]
    Plan(String),
    /// Importance scores that do not fit the model.
    #[error("{}: {msg}", path.display())]
    Importance { path: PathBuf, msg: String },
    /// A tensor of the checkpoint whose shape disagrees with config.json.
    #[error("tensor `{name}`: {msg}")]
    Tensor { name: String, msg: String },
    /// The card or ONNX export of the written checkpoint.
    #[error(transparent)]
    Export(#[from] sekator_export::ExportError),
    #[error("{0}")]
    Other(String),
}

impl SurgeryError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        SurgeryError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
