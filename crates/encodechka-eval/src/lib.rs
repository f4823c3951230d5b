//! encodechka-eval: the Russian sentence-encoder benchmark (avidale/encodechka) reproduced in Rust.
//!
//! The point is parity: the same splits, seeds, classifiers and quirks as the original Python evaluator,
//! so scores can stand beside the published leaderboard. `encodechka-eval --help` describes the binary;
//! `scripts/reference/encodechka_reference.py` is the scikit-learn replica it is checked against.

pub mod benchmark;
pub mod cache;
pub mod cli;
pub mod data;
pub mod embedder;
pub mod float32;
pub mod knn;
pub mod lbfgsb;
pub mod logreg;
pub mod matrix;
pub mod metrics;
pub mod model_embedder;
pub mod npy_embedder;
pub mod numpy_rng;
pub mod report;
pub mod sgd;
pub mod splits;
pub mod static_embedder;
pub mod tasks;
pub mod words;
