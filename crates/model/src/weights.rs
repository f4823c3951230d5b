//! Where a model's parameters come from: a safetensors checkpoint or a seeded random initialiser.
//!
//! Modules are built straight from named tensors (HF names, HF `[out, in]` layout) instead of being
//! initialised and then overwritten, so a missing or mis-shaped tensor is caught with its name.

use crate::error::ModelError;
use crate::rng::SplitMix64;

/// A provider of named f32 tensors in Hugging Face layout.
pub trait WeightSource {
    /// The tensor `name` (without any `bert.` prefix) as row-major f32 data of exactly `shape`.
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError>;
    /// Whether `name` exists (used for optional modules such as the pooler).
    fn has(&self, name: &str) -> bool;
}

/// Deterministic pseudo-random weights for tests and benchmarks: no download, identical on every platform
/// for a given seed.
pub struct RandomWeights {
    rng: SplitMix64,
    /// Standard deviation of matrices; LayerNorm weights are drawn around 1 and biases around 0.
    pub std: f32,
    pub with_pooler: bool,
}

impl RandomWeights {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            std: 0.1,
            with_pooler: true,
        }
    }
}

impl WeightSource for RandomWeights {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let n: usize = shape.iter().product();
        let is_ln = name.contains("LayerNorm");
        let (mean, std) = match (is_ln, name.ends_with(".weight")) {
            (true, true) => (1.0, 0.1),
            (true, false) | (false, false) => (0.0, 0.05),
            (false, true) => (0.0, self.std),
        };
        Ok((0..n).map(|_| mean + std * self.rng.normal()).collect())
    }

    fn has(&self, name: &str) -> bool {
        self.with_pooler || !name.starts_with("pooler.")
    }
}
