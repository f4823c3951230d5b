//! Export of sekator checkpoints to formats other runtimes load. Written from Rust, without Python:
//! pruned models (a head count and FFN width per layer) export exactly as they are.

pub mod card;
pub mod error;
pub mod onnx;

pub use error::ExportError;
