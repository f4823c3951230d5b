//! sekator's one BERT definition: config, checkpoint load/save, tokenizer, pooling, backend choice.
//!
//! Module and weight names follow Hugging Face's `modeling_bert.py` (`encoder.layer.{i}.attention.self.query`,
//! ...), so the code reads beside it. Unlike transformers, every layer has its own head count and FFN width:
//! a pruned checkpoint is a first-class model, not a masked one.

pub mod alloc;
pub mod attention;
pub mod backend;
pub mod bert;
pub mod config;
pub mod cpu_amx;
pub mod cpu_attend;
pub mod cpu_attention;
pub mod cpu_encoder;
mod cpu_gemm;
pub mod cpu_kernels;
pub mod cpu_layer_norm;
pub mod cpu_linear;
pub mod cpu_optim;
pub mod embeddings;
pub mod error;
pub mod feed_forward;
pub mod fsio;
pub mod header_order;
pub mod layers;
pub mod loader;
pub mod logging;
pub mod losses;
pub mod masks;
pub mod mixed_precision;
pub mod npy;
pub mod pooling;
pub mod portable;
pub mod rng;
pub mod static_model;
pub mod testing;
pub mod text_encoder;
pub mod tokenizer;
pub mod weights;

pub use backend::{AutodiffTask, BackendTask, Cpu, CpuAutodiff, DeviceKind};
pub use bert::BertModel;
pub use config::BertConfig;
pub use error::ModelError;
pub use fsio::{hidden_sibling, publish_dir, sync_parent, sync_tree, write_atomic};
pub use layers::NamedTensor;
pub use loader::{checkpoint_hash, file_hash, read_config, write_model_dir, SafetensorsWeights};
pub use masks::UnitMasks;
pub use pooling::Pooling;
pub use static_model::StaticModel;
pub use text_encoder::{EmbedOptions, Encoder, TokenBatch, Variants, WordEncoding};
pub use tokenizer::{TextTokenizer, Tokens};
