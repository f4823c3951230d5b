//! Acceptance 1: an interrupted and resumed run ends with the same weights as an uninterrupted one.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{max_abs_diff, Fixture};
use sekator_distill::metrics::{MetricsLog, Record};
use sekator_distill::{checkpoint, run, TrainOptions};

fn train_losses(out: &std::path::Path) -> Vec<(usize, f32)> {
    MetricsLog::resume(out, usize::MAX)
        .unwrap()
        .train()
        .map(|r| (r.step, r.loss.total))
        .collect()
}

#[test]
fn stopped_and_resumed_run_equals_uninterrupted_run() {
    let fx = Fixture::new();
    let full = run(&fx.config("full"), &TrainOptions::default()).unwrap();
    assert!(full.finished);
    assert_eq!(full.step, 12);

    // Stop after 6 steps: the checkpoint at step 4 survives, steps 5-6 are lost work.
    let cfg = fx.config("cut");
    let first = run(
        &cfg,
        &TrainOptions {
            max_steps_this_run: Some(6),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!first.finished);
    assert_eq!(first.step, 6);
    assert!(!cfg.out.join("final").exists());
    assert_eq!(checkpoint::list(&cfg.out).last().unwrap().0, 4);

    // Without --resume the earlier run is protected.
    let err = run(&cfg, &TrainOptions::default()).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");

    let second = run(
        &cfg,
        &TrainOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(second.resumed_from, Some(4));
    assert_eq!(second.steps_this_run, 8);
    assert!(second.finished);

    let d = max_abs_diff(&fx.dir.path().join("full/final"), &cfg.out.join("final"));
    assert!(
        d <= 1e-5,
        "resumed weights differ from the uninterrupted run by {d}"
    );
    // The loss curve is the same trajectory too (metrics after the checkpoint were rewritten).
    assert_eq!(
        train_losses(&fx.dir.path().join("full")),
        train_losses(&cfg.out)
    );
    // Only the newest `keep_checkpoints` = 2 remain: steps 8 and 12.
    let kept: Vec<usize> = checkpoint::list(&cfg.out)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(kept, vec![8, 12]);
    // Evaluations before and after training are in the log, and the manifest was written.
    let log = MetricsLog::resume(&cfg.out, usize::MAX).unwrap();
    let evals: Vec<usize> = log
        .records
        .iter()
        .filter(|&r| matches!(r, Record::Eval(_)))
        .map(|r| r.step())
        .collect();
    assert_eq!(evals, vec![0, 6, 12]);
    assert!(cfg.out.join("manifest.json").exists());
}

#[test]
fn resume_with_changed_settings_is_refused() {
    let fx = Fixture::new();
    let cfg = fx.config("a");
    run(
        &cfg,
        &TrainOptions {
            max_steps_this_run: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    let mut changed = cfg.clone();
    changed.lr = 5e-4;
    let err = run(
        &changed,
        &TrainOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("lr"), "{err}");
}

/// The same with a real interruption: the `distill` binary is killed once its first checkpoint appears.
#[test]
fn killed_binary_resumes_to_the_same_weights() {
    let fx = Fixture::new();
    let reference = run(&fx.config("full"), &TrainOptions::default()).unwrap();
    assert!(reference.finished);

    let cfg = fx.config("killed");
    let toml_path = fx.dir.path().join("killed.toml");
    std::fs::write(&toml_path, cfg.to_toml()).unwrap();
    let bin = env!("CARGO_BIN_EXE_distill");
    let mut child = Command::new(bin)
        .args([
            "--config",
            toml_path.to_str().unwrap(),
            "--step-delay-ms",
            "150",
        ])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let first_ckpt = checkpoint::checkpoint_dir(&cfg.out, 4).join(checkpoint::STATE_FILE);
    let t0 = Instant::now();
    while !first_ckpt.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "distill exited before its first checkpoint"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !cfg.out.join("final").exists(),
        "the run finished before it could be killed"
    );

    let status = Command::new(bin)
        .args(["--config", toml_path.to_str().unwrap(), "--resume"])
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    let d = max_abs_diff(&fx.dir.path().join("full/final"), &cfg.out.join("final"));
    assert!(d <= 1e-5, "killed+resumed weights differ by {d}");
}
