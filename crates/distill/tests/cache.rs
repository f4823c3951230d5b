//! Acceptance 3: the teacher-embedding cache is used on a second run (no teacher forward passes).

mod common;

use std::process::Command;

use common::Fixture;
use sekator_distill::{run, TrainOptions};

#[test]
fn second_run_does_no_teacher_forward_passes() {
    let fx = Fixture::new();
    let mut cfg = fx.config("one");
    cfg.steps = Some(2);
    let first = run(&cfg, &TrainOptions::default()).unwrap();
    assert!(!first.teacher_cache_hit);
    assert!(first.teacher_forward_batches > 0);
    // 40 pairs in shards of 16 rows: 3 shards per side, plus the dev cache.
    let shards = std::fs::read_dir(&first.teacher_cache)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".npy")
        })
        .count();
    assert_eq!(shards, 6);

    // Different training settings, same teacher/data/pooling/max_length: the cache is hit.
    let mut again = fx.config("two");
    again.steps = Some(3);
    again.lr = 5e-4;
    let second = run(&again, &TrainOptions::default()).unwrap();
    assert!(second.teacher_cache_hit);
    assert_eq!(second.teacher_forward_batches, 0);
    assert_eq!(second.teacher_cache, first.teacher_cache);

    // A different max_length is a different key.
    let mut other = fx.config("three");
    other.steps = Some(1);
    other.max_length = 12;
    let third = run(&other, &TrainOptions::default()).unwrap();
    assert!(!third.teacher_cache_hit);
    assert_ne!(third.teacher_cache, first.teacher_cache);

    // The binary says so in its log.
    let mut cli = fx.config("four");
    cli.steps = Some(1);
    let toml_path = fx.dir.path().join("four.toml");
    std::fs::write(&toml_path, cli.to_toml()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["--config", toml_path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("teacher cache hit"), "{log}");
    assert!(!log.contains("teacher cache miss"), "{log}");
}

#[test]
fn interrupted_cache_fill_keeps_finished_shards() {
    let fx = Fixture::new();
    let mut cfg = fx.config("one");
    cfg.steps = Some(1);
    let first = run(&cfg, &TrainOptions::default()).unwrap();
    // Drop the completion marker and one shard: only that shard is recomputed.
    std::fs::remove_file(first.teacher_cache.join("cache.json")).unwrap();
    std::fs::remove_file(first.teacher_cache.join("ru-00002.npy")).unwrap();
    let mut again = fx.config("two");
    again.steps = Some(1);
    let second = run(&again, &TrainOptions::default()).unwrap();
    assert!(!second.teacher_cache_hit);
    // 8 leftover ru rows at batch size 64 = one forward pass.
    assert_eq!(second.teacher_forward_batches, 1);
}
