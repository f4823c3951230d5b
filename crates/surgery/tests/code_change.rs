//! A code change upstream reruns the stages after it: surgery records the importance stage's code lineage,
//! and reruns ("code changed (upstream stage `importance`)") when the scores come from other code, even
//! with identical score files; its own manifest from other code reruns it too.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{stand_in_importance, tiny_model};
use sekator_pipeline::Manifest;

fn surgery(config: &Path) -> String {
    let o: Output = Command::new(env!("CARGO_BIN_EXE_surgery"))
        .arg("--config")
        .arg(config)
        .args(["--no-onnx"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn importance_manifest(dir: &Path, code: &str) {
    Manifest::new("importance", serde_json::json!({}), BTreeMap::new(), code)
        .write(dir)
        .unwrap();
}

#[test]
fn upstream_and_own_code_changes_rerun_surgery() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(2), 3);
    let run = tmp.path().join("runs/t");
    stand_in_importance(&model, &run.join("importance"), &model);
    importance_manifest(&run.join("importance"), "c1");
    let config = tmp.path().join("run.toml");
    let text = format!(
        "[run]\nname = \"t\"\nmodel = {model:?}\nruns_dir = {:?}\ndevice = \"cpu\"\n\n[surgery]\nheads_ratio = 0.5\n",
        tmp.path().join("runs")
    );
    std::fs::write(&config, text).unwrap();
    let pruned = run.join("pruned");

    surgery(&config);
    assert!(surgery(&config).contains("up to date"));

    importance_manifest(&run.join("importance"), "c2");
    let rerun = surgery(&config);
    assert!(
        rerun.contains("code changed (upstream stage `importance`)"),
        "{rerun}"
    );
    assert!(surgery(&config).contains("up to date"));

    let mut own = Manifest::read(&pruned).unwrap();
    own.code = "0123456789abcdef".into();
    own.write(&pruned).unwrap();
    let rerun = surgery(&config);
    assert!(rerun.contains("code changed"), "{rerun}");
    assert!(surgery(&config).contains("up to date"));
}
