//! What the stages of a sekator run share: the run config (`configs/*.toml`), the stages and their
//! directories, manifests (settings, input hashes and code fingerprints, so a rerun skips what is still
//! valid), the run-directory lock, and the en-ru pair data.
//!
//! The stages still talk only through files; the typed ones ([`artifacts`]) are defined here, each with one
//! writer (its stage) and one reader. The `report` binary (the last stage) and the time estimate live here
//! too: they only read what the stages wrote.

pub mod artifacts;
pub mod comparison;
pub mod config;
pub mod lock;
pub mod manifest;
pub mod pairs;
pub mod report;
pub mod sections;
pub mod stage;
pub mod stats;
pub mod tables;

pub use config::{flag, parse_stage_args, RunConfig, RunSection};
pub use lock::{lock_stage, RunLock};
pub use manifest::{freshness, Manifest};
pub use pairs::{Pair, PairData};
pub use stage::Stage;
