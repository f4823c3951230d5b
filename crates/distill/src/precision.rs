//! Training precision: which float dtype the student trains in, and the check that picks it.
//!
//! burn 0.21 stores a default float dtype per device; every parameter, activation and optimizer moment
//! created afterwards takes it. `f32` is the reference. `bf16` and `f16` put everything in that dtype
//! (burn-flex and CUDA); CUDA also has `flex32` (cubecl's relaxed f32: f32 in memory, kernels free to compute
//! in anything from f16 to f32 precision). `bf16-mixed` keeps every tensor f32 and multiplies in the Linear
//! layers in bf16, as PyTorch's autocast does (`sekator_model::mixed_precision`). The loss, its MSE targets
//! and the dev metrics are always computed in f32 (the pooled embeddings are cast), so loss curves of
//! different precisions are comparable, and the teacher targets always come from an f32 process.
//!
//! A cheaper dtype is only worth having if training still follows the f32 run. [`check`] measures that:
//! it trains the first `precision_check_steps` steps of the real run (same initial weights, batches and
//! learning-rate schedule) once per candidate dtype, compares each loss curve with f32's and picks the
//! fastest candidate within `precision_tolerance`. Each candidate runs in its own process (this binary with
//! `--precision-probe`), because a device's default dtype can be set only once per process.
//! `precision = "auto"` runs the check on CUDA and keeps its verdict in `<out>/precision.json` (reused by
//! resumed runs); on the CPU it means f32 (burn-flex's half-precision kernels are slower than its f32 ones,
//! see BENCHMARKS.md; `distill --check-precision` measures it).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{get_device_settings, set_default_dtypes, Element, FloatDType, IntDType};
use serde::{Deserialize, Serialize};

use sekator_model::{write_atomic, DeviceKind};

use crate::config::DistillConfig;
use crate::error::{DistillError, Result};

/// The float dtype the student trains in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// CUDA: the fastest precision that passes the loss-curve check; CPU: f32.
    #[default]
    Auto,
    F32,
    /// CUDA only: f32 in memory, arithmetic relaxed down to f16 precision where kernels gain from it.
    Flex32,
    /// f32 weights, activations and gradients; the Linear layers multiply in bf16 (autocast-style, see
    /// `sekator_model::mixed_precision`).
    #[serde(rename = "bf16-mixed")]
    #[value(name = "bf16-mixed")]
    Bf16Mixed,
    /// Everything in bf16: weights, activations, gradients, Adam moments.
    Bf16,
    /// Everything in f16.
    F16,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Flex32 => "flex32",
            Precision::Bf16Mixed => "bf16-mixed",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}

impl Precision {
    /// The dtype tensors are created in (the device default); `None` for `auto`, which must be resolved first.
    pub fn dtype(self) -> Option<FloatDType> {
        match self {
            Precision::Auto => None,
            Precision::F32 | Precision::Bf16Mixed => Some(FloatDType::F32),
            Precision::Flex32 => Some(FloatDType::Flex32),
            Precision::Bf16 => Some(FloatDType::BF16),
            Precision::F16 => Some(FloatDType::F16),
        }
    }

    /// The dtype the Linear layers multiply in, when it differs from [`Precision::dtype`].
    pub fn matmul_dtype(self) -> Option<FloatDType> {
        match self {
            Precision::Bf16Mixed => Some(FloatDType::BF16),
            _ => None,
        }
    }

    /// What the check tries on a device (f32 first: it is the reference).
    pub fn candidates(device: DeviceKind) -> &'static [Precision] {
        match device {
            DeviceKind::Cuda => &[
                Precision::F32,
                Precision::Flex32,
                Precision::Bf16Mixed,
                Precision::Bf16,
                Precision::F16,
            ],
            _ => &[
                Precision::F32,
                Precision::Bf16Mixed,
                Precision::Bf16,
                Precision::F16,
            ],
        }
    }
}

/// Makes `precision` the default float dtype of `device` for this process. Must run before any tensor is
/// created there; fails with the reason when the device cannot hold the dtype or was already set otherwise.
pub fn apply<B: Backend>(device: &B::Device, precision: Precision) -> Result<()> {
    let Some(dtype) = precision.dtype() else {
        return Err(DistillError::Config(
            "precision `auto` must be resolved before training".into(),
        ));
    };
    // the integer default stays the backend's own
    let int: IntDType = <B::IntElem as Element>::dtype().into();
    sekator_model::mixed_precision::set_matmul_dtype(precision.matmul_dtype());
    match set_default_dtypes::<B>(device, dtype, int) {
        Ok(()) => Ok(()),
        Err(_) if get_device_settings::<B>(device).float_dtype == dtype => Ok(()),
        Err(e) => Err(DistillError::Config(format!(
            "`precision = \"{precision}\"` on {}: {e}. Use a precision the device supports (cpu: f32, bf16, \
             f16, bf16-mixed; cuda: also flex32); in one process every run must use the same precision",
            B::name(device)
        ))),
    }
}

/// What one probe (the first steps of the run in one precision) measured; written by `--precision-probe`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeReport {
    pub precision: Precision,
    pub batch_size: usize,
    /// Total loss of every step, in order.
    pub losses: Vec<f32>,
    /// Wall-clock seconds of every step (forward, backward, update).
    pub step_seconds: Vec<f64>,
}

impl ProbeReport {
    /// Steps left out of the speed: the first ones compile kernels (CUDA) and warm caches.
    pub fn warmup_steps(&self) -> usize {
        (self.step_seconds.len() / 5).max(1)
    }

    /// Training pairs per second after the warm-up steps.
    pub fn pairs_per_s(&self) -> f64 {
        let timed = self.step_seconds.get(self.warmup_steps()..).unwrap_or(&[]);
        let timed = if timed.is_empty() {
            &self.step_seconds[..]
        } else {
            timed
        };
        let secs: f64 = timed.iter().sum();
        if secs > 0.0 {
            (timed.len() * self.batch_size) as f64 / secs
        } else {
            0.0
        }
    }
}

/// One candidate's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Candidate {
    pub precision: Precision,
    /// Why it has no measurement (the probe failed), if so.
    pub error: Option<String>,
    pub pairs_per_s: f64,
    /// Mean over steps of |loss - loss_f32| / |loss_f32|.
    pub mean_rel_dev: f64,
    /// |mean of the last quarter of the losses - the same for f32| / the f32 mean: where training got to.
    pub end_rel_dev: f64,
    pub passed: bool,
    pub losses: Vec<f32>,
}

/// Compares a candidate's loss curve with the f32 reference on the same steps.
pub fn compare(reference: &ProbeReport, cand: &ProbeReport, tolerance: f64) -> Candidate {
    let n = reference.losses.len().min(cand.losses.len());
    let finite = cand.losses.iter().all(|l| l.is_finite()) && cand.losses.len() == n;
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
    let mean_rel_dev = if n == 0 {
        f64::INFINITY
    } else {
        (0..n)
            .map(|i| rel(cand.losses[i] as f64, reference.losses[i] as f64))
            .sum::<f64>()
            / n as f64
    };
    let tail = |l: &[f32]| {
        let k = (n / 4).max(1).min(n.max(1));
        l[n.saturating_sub(k)..n]
            .iter()
            .map(|&x| x as f64)
            .sum::<f64>()
            / k as f64
    };
    let end_rel_dev = if n == 0 {
        f64::INFINITY
    } else {
        rel(tail(&cand.losses), tail(&reference.losses))
    };
    let mean_rel_dev = if finite { mean_rel_dev } else { f64::INFINITY };
    let end_rel_dev = if finite { end_rel_dev } else { f64::INFINITY };
    Candidate {
        precision: cand.precision,
        error: None,
        pairs_per_s: cand.pairs_per_s(),
        mean_rel_dev,
        end_rel_dev,
        passed: finite && mean_rel_dev <= tolerance && end_rel_dev <= tolerance,
        losses: cand.losses.clone(),
    }
}

/// The fastest candidate that passed (f32, the reference, always passes).
pub fn select(candidates: &[Candidate]) -> Precision {
    candidates
        .iter()
        .filter(|c| c.passed)
        .max_by(|a, b| a.pairs_per_s.total_cmp(&b.pairs_per_s))
        .map(|c| c.precision)
        .unwrap_or(Precision::F32)
}

/// The file the check writes into the run's output directory.
pub const CHECK_FILE: &str = "precision.json";

/// The outcome of [`check`], kept in `<out>/precision.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrecisionCheck {
    /// What the verdict holds for: device, trajectory settings and input hashes.
    pub key: serde_json::Value,
    pub steps: usize,
    pub tolerance: f64,
    pub candidates: Vec<Candidate>,
    pub chosen: Precision,
}

impl PrecisionCheck {
    pub fn read(out: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(out.join(CHECK_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write(&self, out: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("serialisable");
        Ok(write_atomic(&out.join(CHECK_FILE), text.as_bytes())?)
    }

    /// A table for the log: one line a candidate.
    pub fn table(&self) -> String {
        let mut s = format!(
            "precision check: first {} steps, tolerance {:.1}%\n  precision  pairs/s  mean dev  end dev  verdict",
            self.steps,
            self.tolerance * 100.0
        );
        for c in &self.candidates {
            let verdict = match (&c.error, c.passed) {
                (Some(e), _) => format!("failed: {e}"),
                (None, true) if c.precision == self.chosen => "pass, chosen".into(),
                (None, true) => "pass".into(),
                (None, false) => "off the f32 curve".into(),
            };
            s.push_str(&format!(
                "\n  {:<9} {:>8.1} {:>8.3}% {:>7.3}%  {verdict}",
                c.precision.to_string(),
                c.pairs_per_s,
                c.mean_rel_dev * 100.0,
                c.end_rel_dev * 100.0
            ));
        }
        s
    }
}

/// The identity a check's verdict is valid for.
pub fn check_key(cfg: &DistillConfig, device: DeviceKind, hashes: [&str; 3]) -> serde_json::Value {
    serde_json::json!({
        "device": device.to_string(),
        "trajectory": cfg.trajectory_key(),
        "teacher": hashes[0],
        "student": hashes[1],
        "data": hashes[2],
    })
}

/// Runs one probe per candidate precision with `exe` (the `distill` binary) and compares them with f32.
///
/// The probes share the run's teacher cache (the f32 probe fills it when missing, in f32) and write
/// nothing else into `cfg.out` but a scratch directory that is removed afterwards.
pub fn check(
    cfg: &DistillConfig,
    exe: &Path,
    device: DeviceKind,
    key: serde_json::Value,
) -> Result<PrecisionCheck> {
    let scratch = sekator_model::hidden_sibling(&cfg.out.join("precision"), "check");
    if scratch.exists() {
        // left by an interrupted check: its reports may be partial
        std::fs::remove_dir_all(&scratch).map_err(|e| DistillError::io(&scratch, e))?;
    }
    std::fs::create_dir_all(&scratch).map_err(|e| DistillError::io(&scratch, e))?;
    let cfg_path = scratch.join("config.toml");
    let mut probe_cfg = cfg.clone();
    probe_cfg.device = device;
    std::fs::write(&cfg_path, probe_cfg.to_toml()).map_err(|e| DistillError::io(&cfg_path, e))?;
    let mut reports: Vec<(Precision, std::result::Result<ProbeReport, String>)> = Vec::new();
    for &p in Precision::candidates(device) {
        let report_path: PathBuf = scratch.join(format!("{p}.json"));
        tracing::info!("precision check: {p}, {} steps", cfg.precision_check_steps);
        let status = std::process::Command::new(exe)
            .arg("--config")
            .arg(&cfg_path)
            .arg("--precision-probe")
            .arg(p.to_string())
            .arg("--probe-report")
            .arg(&report_path)
            .status()
            .map_err(|e| DistillError::io(exe, e))?;
        let report = if status.success() {
            std::fs::read_to_string(&report_path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<ProbeReport>(&t).map_err(|e| e.to_string()))
        } else {
            Err(format!("probe exited with {status}"))
        };
        if p == Precision::F32 {
            if let Err(e) = &report {
                return Err(DistillError::Input(format!(
                    "precision check: the f32 reference probe failed ({e}); see the log above"
                )));
            }
        }
        reports.push((p, report));
    }
    let reference = reports[0].1.clone().expect("f32 checked above");
    let candidates: Vec<Candidate> = reports
        .iter()
        .map(|(p, r)| match r {
            Ok(r) => compare(&reference, r, cfg.precision_tolerance),
            Err(e) => Candidate {
                precision: *p,
                error: Some(e.clone()),
                pairs_per_s: 0.0,
                mean_rel_dev: f64::INFINITY,
                end_rel_dev: f64::INFINITY,
                passed: false,
                losses: Vec::new(),
            },
        })
        .collect();
    let result = PrecisionCheck {
        key,
        steps: reference.losses.len(),
        tolerance: cfg.precision_tolerance,
        chosen: select(&candidates),
        candidates,
    };
    std::fs::remove_dir_all(&scratch).map_err(|e| DistillError::io(&scratch, e))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(p: Precision, losses: &[f32], secs: f64) -> ProbeReport {
        ProbeReport {
            precision: p,
            batch_size: 8,
            losses: losses.to_vec(),
            step_seconds: vec![secs; losses.len()],
        }
    }

    fn curve(scale: f32) -> Vec<f32> {
        (0..20).map(|i| scale * (1.0 / (1.0 + i as f32))).collect()
    }

    #[test]
    fn a_curve_within_tolerance_passes_and_a_drifting_one_does_not() {
        let f32r = report(Precision::F32, &curve(1.0), 1.0);
        let close = compare(&f32r, &report(Precision::Bf16, &curve(1.005), 0.5), 0.01);
        assert!(close.passed, "{close:?}");
        assert!((close.mean_rel_dev - 0.005).abs() < 1e-6, "{close:?}");
        assert!((close.end_rel_dev - 0.005).abs() < 1e-6, "{close:?}");
        assert!((close.pairs_per_s - 16.0).abs() < 1e-9);

        // same start, but stops learning half-way (updates lost to rounding): ends far off
        let mut stalled = curve(1.0);
        for i in 10..20 {
            stalled[i] = stalled[9];
        }
        let c = compare(&f32r, &report(Precision::F16, &stalled, 0.5), 0.01);
        assert!(!c.passed && c.end_rel_dev > 0.5, "{c:?}");

        let mut nan = curve(1.0);
        nan[7] = f32::NAN;
        let c = compare(&f32r, &report(Precision::F16, &nan, 0.5), 0.01);
        assert!(!c.passed && c.mean_rel_dev.is_infinite(), "{c:?}");

        let same = compare(&f32r, &f32r, 0.0);
        assert!(same.passed && same.mean_rel_dev == 0.0);
    }

    #[test]
    fn the_fastest_passing_candidate_is_chosen() {
        let f32r = report(Precision::F32, &curve(1.0), 1.0);
        let cands = vec![
            compare(&f32r, &f32r, 0.01),
            compare(&f32r, &report(Precision::Flex32, &curve(1.001), 0.5), 0.01),
            compare(&f32r, &report(Precision::Bf16, &curve(1.2), 0.25), 0.01),
        ];
        assert_eq!(select(&cands), Precision::Flex32);
        assert_eq!(select(&cands[2..]), Precision::F32, "none passed");
    }

    #[test]
    fn warm_up_steps_are_left_out_of_the_speed() {
        let mut r = report(Precision::F32, &curve(1.0), 0.1);
        r.step_seconds[0] = 100.0; // kernel compilation
        assert!((r.pairs_per_s() - 80.0).abs() < 1e-6, "{}", r.pairs_per_s());
    }
}
