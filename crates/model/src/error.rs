//! Errors of the model crate. Every variant names the file or tensor at fault and, where there is one, the fix.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {}", path.display(), if *missing { "not found (is --model a Hugging Face model directory? `just fetch-model minilm` fetches one)" } else { "not a directory" })]
    NotAModelDir { path: PathBuf, missing: bool },
    #[error("{}: invalid config: {msg}", path.display())]
    Config { path: PathBuf, msg: String },
    #[error("{}: corrupt safetensors file: {msg}", path.display())]
    Safetensors { path: PathBuf, msg: String },
    #[error("{}: tensor `{name}` has unsupported dtype {dtype} (supported: F32, F16, BF16)", path.display())]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("{}: tensor `{name}` is missing", path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("{}: tensor `{name}` has shape {found:?}, config.json implies {expected:?}", path.display())]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{}: tokenizer: {msg}", path.display())]
    Tokenizer { path: PathBuf, msg: String },
    #[error("{0}")]
    Other(String),
}

impl ModelError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
