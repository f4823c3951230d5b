//! One process per run directory: a second stage on a run in progress is refused at once, naming the
//! holder; a holder killed with SIGKILL leaves nothing that blocks the next run.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Fixture;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A pipeline config for run `t` under `runs` whose student (`runs/t/pruned`) is the fixture's.
fn pipeline_config(fx: &Fixture) -> std::path::PathBuf {
    let runs = fx.dir.path().join("runs");
    copy_dir(&fx.student, &runs.join("t/pruned"));
    let dev = fx.data.with_file_name("pairs_dev.tsv");
    let text = format!(
        "[run]\nname = \"t\"\nmodel = {:?}\npairs = {:?}\ndev_pairs = {:?}\nruns_dir = {:?}\ndevice = \"cpu\"\n\n\
         [distill]\nsteps = 12\nbatch_size = 4\nmax_length = 16\nlr = 1e-3\nwarmup_steps = 3\neval_every = 6\n\
         eval_pairs = 16\ncheckpoint_every = 4\ncache_shard_rows = 16\nonnx = false\n",
        fx.teacher, fx.data, dev, runs
    );
    let path = fx.dir.path().join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_second_process_is_refused_and_a_killed_holder_does_not_block() {
    let fx = Fixture::new();
    let config = pipeline_config(&fx);
    let bin = env!("CARGO_BIN_EXE_distill");
    let distill = |extra: &[&str]| {
        let mut c = Command::new(bin);
        c.arg("--config")
            .arg(&config)
            .args(extra)
            .env("RUST_LOG", "warn");
        c
    };
    let mut first = distill(&["--step-delay-ms", "500"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = fx.dir.path().join("runs/t/.sekator.lock");
    let t0 = Instant::now();
    let holder = format!("PID {} (distill)", first.id());
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&holder)) {
        assert!(t0.elapsed() < Duration::from_secs(60), "no lock taken");
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended early"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let t1 = Instant::now();
    let second = distill(&[]).output().unwrap();
    let took = t1.elapsed();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(err.contains("in use by") && err.contains(&holder), "{err}");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run was disturbed"
    );

    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert!(lock.exists(), "the lock file stays behind");
    let third = distill(&[]).output().unwrap();
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert!(fx.dir.path().join("runs/t/distill/final").is_dir());
}
