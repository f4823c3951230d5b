//! `distill`: trains a pruned student back towards its teacher on en-ru translation pairs.
//!
//! Loss (see [`loss`]): `w_mse [MSE(s(en),t(en)) + MSE(s(ru),t(ru))] + w_cross MSE(s(ru),t(en)) +
//! w_rank R(s(en),s(ru)) + w_tokens [TMSE(en) + TMSE(ru)]` (TMSE: last hidden states over the non-padding
//! tokens, teacher run online), teacher embeddings from an on-disk cache ([`teacher_cache`]), AdamW with
//! warm-up/decay and global-norm clipping ([`optim`], [`schedule`]), exact resume from checkpoints
//! ([`checkpoint`]), dev evaluation ([`eval`]). [`train::run`] is the whole stage; `main.rs` is its CLI.

pub mod card;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod loss;
pub mod metrics;
pub mod micro;
pub mod optim;
pub mod plot;
pub mod precision;
pub mod schedule;
pub mod target_dims;
pub mod teacher_cache;
pub mod train;

pub use config::DistillConfig;
pub use error::DistillError;
pub use precision::Precision;
pub use train::{expected_manifest, run, Summary, TrainOptions};
