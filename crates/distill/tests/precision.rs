//! Training precision: the check trains each dtype the device offers and compares its loss curve with
//! f32's; an explicit reduced precision really trains in that dtype and is recorded for resume.
//!
//! Both go through the binary: a device's default dtype is set once per process, so a bf16 run cannot
//! share the test process with the f32 tests.

mod common;

use std::process::Command;

use common::Fixture;
use sekator_distill::precision::{Precision, PrecisionCheck};

fn distill(
    fx: &Fixture,
    name: &str,
    cfg: &sekator_distill::DistillConfig,
    extra: &[&str],
) -> (bool, String) {
    let toml_path = fx.dir.path().join(format!("{name}.toml"));
    std::fs::write(&toml_path, cfg.to_toml()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["--config", toml_path.to_str().unwrap()])
        .args(extra)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), log)
}

#[test]
fn check_precision_trains_each_cpu_dtype_and_compares_with_f32() {
    let fx = Fixture::new();
    let mut cfg = fx.config("check");
    cfg.precision_check_steps = 8;
    let (ok, log) = distill(&fx, "check", &cfg, &["--check-precision"]);
    assert!(ok, "{log}");
    let c = PrecisionCheck::read(&cfg.out).expect("precision.json written");
    assert_eq!(c.steps, 8);
    let names: Vec<Precision> = c.candidates.iter().map(|c| c.precision).collect();
    assert_eq!(
        names,
        [
            Precision::F32,
            Precision::Bf16Mixed,
            Precision::Bf16,
            Precision::F16
        ]
    );
    for cand in &c.candidates {
        assert!(cand.error.is_none(), "{cand:?}\n{log}");
        assert_eq!(cand.losses.len(), 8, "{cand:?}");
        assert!(cand.losses.iter().all(|l| l.is_finite()), "{cand:?}");
        assert!(cand.pairs_per_s > 0.0, "{cand:?}");
    }
    let f32c = &c.candidates[0];
    assert!(f32c.passed && f32c.mean_rel_dev == 0.0, "{f32c:?}");
    // The reduced dtypes really computed in reduced precision: their curves are not f32's bit for bit.
    // bf16-mixed (f32 weights, bf16 products) and, on this tiny model with its large lr, even pure bf16
    // (f32's exponent range; ~1% mean deviation) follow f32; pure f16 (5-bit
    // exponent, everything in it: weights, activations, gradients, Adam moments) does not: its loss rises
    // from the first steps. Catching that is what the check is for.
    for cand in &c.candidates[1..] {
        assert!(cand.mean_rel_dev > 0.0, "{cand:?}");
        let within = cand.mean_rel_dev <= c.tolerance && cand.end_rel_dev <= c.tolerance;
        assert_eq!(cand.passed, within, "{cand:?}");
    }
    let mixed = &c.candidates[1];
    assert!(mixed.passed, "{mixed:?}");
    let bf16 = &c.candidates[2];
    assert!(bf16.passed, "{bf16:?}");
    let f16 = &c.candidates[3];
    assert!(!f16.passed && f16.end_rel_dev > 0.1, "{f16:?}");
    assert!(c
        .candidates
        .iter()
        .any(|x| x.precision == c.chosen && x.passed));
    assert_ne!(c.chosen, Precision::F16);
    assert!(log.contains("pass"), "{log}");
    // the probes wrote nothing into the run directory but the verdict
    let mut entries: Vec<String> = std::fs::read_dir(&cfg.out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    entries.sort();
    assert_eq!(entries, ["precision.json"]);
}

#[test]
fn bf16_training_is_recorded_and_a_resume_in_another_precision_is_refused() {
    let fx = Fixture::new();
    let mut cfg = fx.config("bf16");
    cfg.precision = Precision::Bf16;
    cfg.steps = Some(4);
    let (ok, log) = distill(&fx, "bf16", &cfg, &[]);
    assert!(ok, "{log}");
    assert!(log.contains("precision bf16"), "{log}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cfg.out.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["results"]["precision"], "bf16");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cfg.out.join("checkpoints/step-4/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["precision"], "bf16");
    // its teacher targets are the f32 teacher's, computed in a child process (this one is set to bf16)
    assert!(
        log.contains("computing them in a child process (precision f32)"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_dir(&fx.cache).unwrap().count(),
        2,
        "train + dev caches"
    );

    // The same run in f32 uses those targets and ends with close but other weights.
    let mut f32cfg = fx.config("f32");
    f32cfg.steps = Some(4);
    f32cfg.precision = Precision::F32;
    let (ok, log) = distill(&fx, "f32", &f32cfg, &[]);
    assert!(ok, "{log}");
    assert!(
        log.contains("teacher cache hit") && !log.contains("teacher cache miss"),
        "{log}"
    );
    let d = common::max_abs_diff(&cfg.out.join("final"), &f32cfg.out.join("final"));
    assert!(d > 0.0 && d < 0.05, "bf16 vs f32 weights differ by {d}");

    // Continuing the bf16 run's checkpoint in f32 is refused, naming the setting.
    cfg.steps = Some(4);
    cfg.precision = Precision::F32;
    let (ok, log) = distill(&fx, "bf16-as-f32", &cfg, &["--resume"]);
    assert!(!ok, "{log}");
    assert!(log.contains("precision"), "{log}");
}

#[test]
fn flex32_on_the_cpu_is_a_clear_error() {
    let fx = Fixture::new();
    let mut cfg = fx.config("flex");
    cfg.precision = Precision::Flex32;
    cfg.steps = Some(1);
    let (ok, log) = distill(&fx, "flex", &cfg, &[]);
    assert!(!ok, "{log}");
    assert!(log.contains("precision = \"flex32\""), "{log}");
    assert!(log.contains("cpu: f32, bf16, f16"), "{log}");
}
