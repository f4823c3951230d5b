//! Manifests notice code changes: a stage whose manifest was written by other code reruns and says so; with
//! the current code's fingerprint it is skipped. (The code is not edited: the manifest is.)

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{pairs, tiny, write_pairs};
use sekator_pipeline::Manifest;

fn importance(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_importance"))
        .arg("--config")
        .arg(config)
        .arg("--quiet")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn a_manifest_from_other_code_reruns_the_stage_and_the_current_one_skips() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path(), "model", 2, 1);
    let data = write_pairs(dir.path(), "pairs.tsv", &pairs(16));
    let config = dir.path().join("run.toml");
    let text = format!(
        "[run]\nname = \"t\"\nmodel = {model:?}\npairs = {data:?}\nruns_dir = {:?}\ndevice = \"cpu\"\n\n\
         [importance]\nsamples = 16\nbatch_size = 8\nmax_length = 16\n",
        dir.path().join("runs")
    );
    std::fs::write(&config, text).unwrap();
    let out = dir.path().join("runs/t/importance");

    let first = stderr(&importance(&config));
    assert!(first.contains("running: no manifest yet"), "{first}");
    let current = Manifest::read(&out).unwrap();
    assert_eq!(current.code.len(), 16, "{}", current.code);
    assert!(stderr(&importance(&config)).contains("up to date"));

    let mut other = current.clone();
    other.code = "0123456789abcdef".into();
    other.write(&out).unwrap();
    let rerun = stderr(&importance(&config));
    assert!(rerun.contains("running: code changed"), "{rerun}");
    assert_eq!(Manifest::read(&out).unwrap().code, current.code);
    assert!(stderr(&importance(&config)).contains("up to date"));
}
