//! Errors of the distillation stage: each names the file, key or step at fault and, where there is one, the fix.

use std::path::{Path, PathBuf};

use sekator_model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: invalid config: {msg}", path.display())]
    ConfigFile { path: PathBuf, msg: String },
    #[error("invalid settings: {0}")]
    Config(String),
    /// Inputs that cannot be trained on (missing teacher, hidden-size mismatch, ...).
    #[error("{0}")]
    Input(String),
    #[error("non-finite loss ({value}) at step {step}; stopped without saving. {}", match checkpoint {
        Some(p) => format!("Last good checkpoint: {} (lower lr or raise warm-up, then --resume)", p.display()),
        None => "No checkpoint was written yet (lower lr or raise warm-up and start again)".to_string(),
    })]
    NonFinite {
        step: usize,
        value: f32,
        checkpoint: Option<PathBuf>,
    },
    #[error("resume: {0}")]
    Resume(String),
    #[error("teacher cache {}: {msg}", path.display())]
    Cache { path: PathBuf, msg: String },
    /// A reduced-precision run found no f32 teacher targets (the `distill` binary fills them itself).
    #[error("teacher cache {} is missing or incomplete; a reduced-precision run trains against f32 teacher targets              and cannot compute them in its own dtype: fill the cache first with `distill --config ... --fill-teacher-cache`              (the distill binary does this by itself), or train once in f32", dir.display())]
    TeacherCacheMissing { dir: PathBuf },
}

impl DistillError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DistillError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = DistillError> = std::result::Result<T, E>;
