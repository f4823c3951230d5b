//! Acceptance 1: an interrupted and resumed run ends with the same weights as an uninterrupted one.
//! Also: `--resume` skips checkpoints whose files no longer match their recorded hashes, and continues a
//! run (even a finished one) that was made longer.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{edit_state, flip_byte, max_abs_diff, train_losses, truncate_half, with_log, Fixture};
use sekator_distill::metrics::{MetricsLog, Record};
use sekator_distill::{checkpoint, run, TrainOptions};
use sekator_pipeline::artifacts::distill::DistillSummary;

fn resume() -> TrainOptions {
    TrainOptions {
        resume: true,
        ..Default::default()
    }
}

fn stop_after(n: usize) -> TrainOptions {
    TrainOptions {
        max_steps_this_run: Some(n),
        ..Default::default()
    }
}

fn resume_stopping_after(n: usize) -> TrainOptions {
    TrainOptions {
        resume: true,
        max_steps_this_run: Some(n),
        ..Default::default()
    }
}

fn kept_steps(out: &std::path::Path) -> Vec<usize> {
    checkpoint::list(out).into_iter().map(|(s, _)| s).collect()
}

fn train_lrs(out: &std::path::Path) -> Vec<(usize, f64)> {
    MetricsLog::resume(out, usize::MAX)
        .unwrap()
        .train()
        .map(|r| (r.step, r.lr))
        .collect()
}

/// The run in `out` ended with the weights (within 1e-5) and the training-loss curve of the one in `full`.
fn assert_same_run(full: &std::path::Path, out: &std::path::Path) {
    let d = max_abs_diff(&full.join("final"), &out.join("final"));
    assert!(
        d <= 1e-5,
        "resumed weights differ from the uninterrupted run by {d}"
    );
    assert_eq!(train_losses(full), train_losses(out));
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
    assert!(
        DistillSummary::read(&cfg.out).is_err(),
        "only a finished run has a summary"
    );
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

    assert_same_run(&fx.dir.path().join("full"), &cfg.out);
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
    // ... and distill/summary.json, for the report
    let written = DistillSummary::read(&cfg.out).unwrap();
    assert_eq!(written.total_steps, second.total_steps);
    assert_eq!(written.eval_last, second.eval_last);
    assert!(written.eval_last.is_some());
    assert_eq!(written.precision, "f32");
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

#[test]
fn checkpoints_record_the_hashes_of_their_files_and_the_code() {
    let fx = Fixture::new();
    let cfg = fx.config("h");
    run(&cfg, &stop_after(4)).unwrap();
    let dir = checkpoint::checkpoint_dir(&cfg.out, 4);
    let state: checkpoint::TrainState =
        serde_json::from_str(&std::fs::read_to_string(dir.join(checkpoint::STATE_FILE)).unwrap())
            .unwrap();
    assert_eq!(
        state.weights_sha256.as_deref(),
        Some(
            sekator_model::file_hash(&dir.join(checkpoint::WEIGHTS_FILE))
                .unwrap()
                .as_str()
        )
    );
    assert_eq!(
        state.optimizer_sha256.as_deref(),
        Some(
            sekator_model::file_hash(&dir.join(checkpoint::OPTIMIZER_FILE))
                .unwrap()
                .as_str()
        )
    );
    assert!(state.code.as_deref().is_some_and(|c| !c.is_empty()));
    assert_eq!(state.warmup_steps, Some(3));
}

#[test]
fn truncated_newest_checkpoint_is_skipped_and_the_previous_one_resumed() {
    let fx = Fixture::new();
    let full = run(&fx.config("full"), &TrainOptions::default()).unwrap();
    assert!(full.finished);

    // Stop after 10 steps: checkpoints at 4 and 8 (keep_checkpoints = 2).
    let cfg = fx.config("cut");
    run(&cfg, &stop_after(10)).unwrap();
    assert_eq!(kept_steps(&cfg.out), vec![4, 8]);
    let step8 = checkpoint::checkpoint_dir(&cfg.out, 8);
    truncate_half(&step8.join(checkpoint::WEIGHTS_FILE));
    // The older one was written by other code: a warning, not a refusal.
    edit_state(&checkpoint::checkpoint_dir(&cfg.out, 4), |v| {
        v["code"] = serde_json::json!("some-other-code")
    });

    let (second, log) = with_log(|| run(&cfg, &resume()));
    let second = second.unwrap();
    assert!(
        log.contains(
            "step-8: model.safetensors does not match its recorded hash (truncated or damaged?); skipping it"
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "checkpoint step-4 was written by other code (fingerprint some-other-code, now"
        ),
        "{log}"
    );
    assert_eq!(second.resumed_from, Some(4));
    assert_eq!(second.skipped_checkpoints, vec![8]);
    assert_eq!(second.steps_this_run, 8);
    assert!(second.finished);
    assert_same_run(&fx.dir.path().join("full"), &cfg.out);
    // The damaged checkpoint was set aside (kept for inspection, not counted among the kept ones) and
    // step 8 written again.
    assert!(checkpoint::checkpoints_dir(&cfg.out)
        .join(".step-8.damaged")
        .is_dir());
    assert_eq!(kept_steps(&cfg.out), vec![8, 12]);
}

#[test]
fn checkpoints_without_hashes_are_accepted_when_their_files_open() {
    let fx = Fixture::new();
    let full = run(&fx.config("full"), &TrainOptions::default()).unwrap();
    assert!(full.finished);

    let cfg = fx.config("old");
    run(&cfg, &stop_after(10)).unwrap();
    let strip = |v: &mut serde_json::Value| {
        let o = v.as_object_mut().unwrap();
        for k in ["weights_sha256", "optimizer_sha256", "code", "warmup_steps"] {
            o.remove(k);
        }
    };
    // step 8: old format and whole -> resumed from
    edit_state(&checkpoint::checkpoint_dir(&cfg.out, 8), strip);
    let second = run(&cfg, &resume_stopping_after(1)).unwrap();
    assert_eq!(second.resumed_from, Some(8));
    assert!(second.skipped_checkpoints.is_empty());

    // Old format and truncated: its safetensors file does not open -> skipped.
    let cfg = fx.config("old-cut");
    run(&cfg, &stop_after(10)).unwrap();
    let step8 = checkpoint::checkpoint_dir(&cfg.out, 8);
    edit_state(&step8, strip);
    truncate_half(&step8.join(checkpoint::WEIGHTS_FILE));
    let third = run(&cfg, &resume()).unwrap();
    assert_eq!(third.resumed_from, Some(4));
    assert_eq!(third.skipped_checkpoints, vec![8]);
    assert!(third.finished);
    let d = max_abs_diff(&fx.dir.path().join("full/final"), &cfg.out.join("final"));
    assert!(d <= 1e-5, "weights differ by {d}");
}

#[test]
fn all_checkpoints_damaged_starts_fresh() {
    let fx = Fixture::new();
    let full = run(&fx.config("full"), &TrainOptions::default()).unwrap();
    let cfg = fx.config("bad");
    run(&cfg, &stop_after(10)).unwrap();
    truncate_half(&checkpoint::checkpoint_dir(&cfg.out, 8).join(checkpoint::WEIGHTS_FILE));
    flip_byte(&checkpoint::checkpoint_dir(&cfg.out, 4).join(checkpoint::OPTIMIZER_FILE));
    let (second, log) = with_log(|| run(&cfg, &resume()));
    let second = second.unwrap();
    assert!(
        log.contains("optimizer.safetensors does not match its recorded hash"),
        "{log}"
    );
    assert!(log.contains("all 2 checkpoints"), "{log}");
    assert_eq!(second.resumed_from, None);
    assert_eq!(second.skipped_checkpoints, vec![8, 4]);
    assert_eq!(second.steps_this_run, 12);
    assert!(second.finished);
    // a fresh start is the same trajectory as the uninterrupted run
    let d = max_abs_diff(&full.final_dir.unwrap(), &cfg.out.join("final"));
    assert!(d <= 1e-5, "weights differ by {d}");
    assert_eq!(kept_steps(&cfg.out), vec![8, 12]);
}

#[test]
fn finished_run_resumed_with_more_steps_continues() {
    let fx = Fixture::new();
    // 40 pairs / batch 4 = 10 steps an epoch: 40 steps are 4 epochs, 60 are 6.
    let mut cfg = fx.config("long");
    cfg.steps = Some(40);
    cfg.eval_every = 20;
    cfg.checkpoint_every = 8;
    let first = run(&cfg, &TrainOptions::default()).unwrap();
    assert!(first.finished);
    assert_eq!(kept_steps(&cfg.out), vec![32, 40]);
    let lrs_40 = train_lrs(&cfg.out);

    cfg.steps = Some(60);
    let (second, log) = with_log(|| run(&cfg, &resume()));
    let second = second.unwrap();
    assert!(
        log.contains(
            "resuming step-40 of a 40-step run as a 60-step run: the schedule is recomputed for 60 steps"
        ),
        "{log}"
    );
    assert_eq!(second.resumed_from, Some(40));
    assert_eq!(second.steps_this_run, 20);
    assert_eq!(second.total_steps, 60);
    assert!(second.finished);
    let steps: Vec<usize> = train_lrs(&cfg.out).iter().map(|&(s, _)| s).collect();
    assert_eq!(steps, (1..=60).collect::<Vec<_>>());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cfg.out.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["config"]["steps"], 60, "{manifest}");
    assert_eq!(manifest["results"]["total_steps"], 60);
    let written = DistillSummary::read(&cfg.out).unwrap();
    assert_eq!(
        (written.total_steps, written.eval_last),
        (60, second.eval_last)
    );
    assert!(cfg.out.join("final/model.safetensors").is_file());
    assert_eq!(kept_steps(&cfg.out), vec![56, 60]);

    // The weights are NOT meant to equal an uninterrupted 60-step run's: the first 40 steps decayed the
    // learning rate over 40 steps, not 60. What is equal: steps 1-40 kept the 40-step schedule, and
    // steps 41-60 follow the schedule recomputed for 60 steps (the warm-up is explicit, 3 steps, in both).
    let mut fresh = fx.config("fresh60");
    fresh.steps = Some(60);
    fresh.eval_every = 20;
    fresh.checkpoint_every = 8;
    run(&fresh, &TrainOptions::default()).unwrap();
    let (lrs, lrs_fresh) = (train_lrs(&cfg.out), train_lrs(&fresh.out));
    assert_eq!(lrs[..40], lrs_40[..]);
    assert_eq!(lrs[40..], lrs_fresh[40..]);

    // Fewer steps than the checkpoint has done are refused, naming steps.
    cfg.steps = Some(30);
    let err = run(&cfg, &resume()).unwrap_err().to_string();
    assert!(err.contains("steps") && err.contains("60"), "{err}");
}

#[test]
fn interrupted_run_resumed_with_more_steps_keeps_its_derived_warmup() {
    let fx = Fixture::new();
    let mut cfg = fx.config("ratio");
    cfg.warmup_steps = None;
    cfg.warmup_ratio = 0.25; // 12 steps: 3 warm-up steps; 20 steps would give 5
    run(&cfg, &stop_after(6)).unwrap(); // checkpoint at step 4
    cfg.steps = Some(20);
    let s = run(&cfg, &resume()).unwrap();
    assert_eq!(s.resumed_from, Some(4));
    assert!(s.finished);
    assert_eq!((s.step, s.steps_this_run), (20, 16));
    // Step 5 (0-based 4) decays from the peak over the remaining 20 - 3 - 1 = 16 steps: the warm-up stayed
    // the 3 steps it was (with 5 it would still be warming up, at the peak exactly).
    let lrs = train_lrs(&cfg.out);
    assert_eq!(lrs[4].0, 5);
    let want = cfg.lr * (1.0 - 1.0 / 16.0);
    assert!((lrs[4].1 - want).abs() < 1e-12, "{:?}", lrs[4]);
}
