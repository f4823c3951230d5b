//! Acceptance 4 and the command line: bad input is refused with a one-line error naming the problem, and
//! outputs are written atomically.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn surgery(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_surgery"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The error line (last line of stderr).
fn error_line(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected failure, got success; stdout: {}",
        stdout(o)
    );
    let e = stderr(o);
    let last = e.trim_end().lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("error: "), "stderr: {e}");
    last
}

/// Names in `dir` (no temporary `.NAME.surgery-*` / `.old` leftovers allowed next to outputs).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

fn setup() -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(2), 3);
    let m = model.to_string_lossy().to_string();
    (tmp, m)
}

#[test]
fn importance_of_another_checkpoint_is_refused_unless_forced() {
    let (tmp, m) = setup();
    let other = tmp.path().join("other");
    tiny_model(&other, &sekator_model::testing::tiny_config(2), 4);
    let imp = tmp.path().join("imp");
    stand_in_importance(Path::new(&m), &imp, &other);
    let out = tmp.path().join("out");
    let (i, o) = (
        imp.to_string_lossy().to_string(),
        out.to_string_lossy().to_string(),
    );
    let r = surgery(&[
        "--model",
        &m,
        "--importance",
        &i,
        "--out",
        &o,
        "--bench-texts",
        "0",
    ]);
    let e = error_line(&r);
    assert!(
        e.contains("importance scores were computed for checkpoint") && e.contains("--force"),
        "{e}"
    );
    assert!(!out.exists());
    assert_eq!(listing(tmp.path()), vec!["imp", "model", "other"]);
    let r = surgery(&[
        "--model",
        &m,
        "--importance",
        &i,
        "--out",
        &o,
        "--bench-texts",
        "0",
        "--force",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(
        sekator_model::read_config(&out)
            .unwrap()
            .heads_per_layer()
            .iter()
            .sum::<usize>(),
        4
    );
    // the matching hash needs no --force
    stand_in_importance(Path::new(&m), &imp, Path::new(&m));
    let r = surgery(&[
        "--model",
        &m,
        "--importance",
        &i,
        "--out",
        &o,
        "--bench-texts",
        "0",
        "--overwrite",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
}

#[test]
fn plan_leaving_a_layer_without_heads_is_refused_with_the_layer_named() {
    let (tmp, m) = setup();
    let plan = tmp.path().join("plan.json");
    std::fs::write(&plan, r#"{"heads": {"0": [1], "1": [0, 1, 2, 3]}}"#).unwrap();
    let out = tmp.path().join("out");
    let r = surgery(&[
        "--model",
        &m,
        "--plan",
        &plan.to_string_lossy(),
        "--out",
        &out.to_string_lossy(),
    ]);
    let e = error_line(&r);
    assert!(e.contains("layer 1 with 0 of 4 heads"), "{e}");
    assert!(!out.exists());
    assert_eq!(
        listing(tmp.path()),
        vec!["model", "plan.json"],
        "no temporary directory left behind"
    );
    // a typo in the plan file, an unknown layer and a non-numeric key are named too
    for (text, want) in [
        (r#"{"head": {"0": [1]}}"#, "unknown field `head`"),
        (r#"{"heads": {"7": [1]}}"#, "layer 7 does not exist"),
        (r#"{"heads": {"x": [1]}}"#, "\"x\" is not a layer index"),
        (r#"{"ffn": {"0": [64]}}"#, "neuron 64"),
    ] {
        std::fs::write(&plan, text).unwrap();
        let e = error_line(&surgery(&[
            "--model",
            &m,
            "--plan",
            &plan.to_string_lossy(),
            "--dry-run",
        ]));
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn existing_output_needs_overwrite_and_the_swap_is_atomic() {
    let (tmp, m) = setup();
    let plan = tmp.path().join("plan.json");
    std::fs::write(&plan, r#"{"heads": {"0": [1]}, "ffn": {"1": [3, 4]}}"#).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("precious.txt"), "keep me").unwrap();
    let (p, o) = (
        plan.to_string_lossy().to_string(),
        out.to_string_lossy().to_string(),
    );
    let args = [
        "--model",
        &m,
        "--plan",
        &p,
        "--out",
        &o,
        "--bench-texts",
        "8",
        "--bench-repeats",
        "1",
    ];
    let e = error_line(&surgery(&args));
    assert!(
        e.contains("already exists") && e.contains("--overwrite"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("precious.txt")).unwrap(),
        "keep me"
    );

    let mut with = args.to_vec();
    with.push("--overwrite");
    let r = surgery(&with);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(!out.join("precious.txt").exists());
    let files = listing(&out);
    for f in [
        "config.json",
        "model.safetensors",
        "vocab.txt",
        "plan.json",
        "size.json",
        "manifest.json",
    ] {
        assert!(files.contains(&f.to_string()), "{f} missing from {files:?}");
    }
    assert_eq!(
        listing(tmp.path()),
        vec!["model", "out", "plan.json"],
        "no temporary directory left behind"
    );
    let size: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("size.json")).unwrap()).unwrap();
    assert!(size["before"]["ms_per_text"].as_f64().unwrap() > 0.0);
    assert!(size["ratios"]["speedup"].as_f64().unwrap() > 0.0);
    assert_eq!(size["bench"]["texts"], 8);
    let text = stdout(&r);
    assert!(
        text.contains("params_M") && text.contains("before/after"),
        "{text}"
    );

    // Same inputs and settings again, without --overwrite: up to date, nothing rewritten.
    let stamp = std::fs::metadata(out.join("model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    let r = surgery(&args);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stdout(&r).contains("up to date"));
    assert_eq!(
        std::fs::metadata(out.join("model.safetensors"))
            .unwrap()
            .modified()
            .unwrap(),
        stamp
    );
    // A different plan is not "up to date": refused again.
    std::fs::write(&plan, r#"{"heads": {"0": [2]}}"#).unwrap();
    assert!(error_line(&surgery(&args)).contains("already exists"));
}

#[test]
fn dry_run_prints_plan_and_sizes_and_writes_nothing() {
    let (tmp, m) = setup();
    let plan = tmp.path().join("plan.json");
    std::fs::write(&plan, r#"{"heads": {"0": [1, 2]}, "ffn": {"1": [0]}}"#).unwrap();
    let r = surgery(&[
        "--model",
        &m,
        "--plan",
        &plan.to_string_lossy(),
        "--dry-run",
        "--json",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let v: serde_json::Value = serde_json::from_str(&stdout(&r)).unwrap();
    assert_eq!(v["after"]["heads_per_layer"], serde_json::json!([2, 4]));
    assert_eq!(v["after"]["ffn_sizes"], serde_json::json!([64, 63]));
    assert_eq!(
        v["before"]["params"]["total"].as_u64().unwrap()
            - v["after"]["params"]["total"].as_u64().unwrap(),
        2 * (4 * 32 * 8 + 3 * 8) + (2 * 32 + 1)
    );
    let r = surgery(&[
        "--model",
        &m,
        "--plan",
        &plan.to_string_lossy(),
        "--dry-run",
    ]);
    assert!(stdout(&r).contains("\"heads\"") && stdout(&r).contains("MFLOPs_per_token"));
    assert_eq!(listing(tmp.path()), vec!["model", "plan.json"]);
}

#[test]
fn command_line_mistakes() {
    let (tmp, m) = setup();
    let out = tmp.path().join("out").to_string_lossy().to_string();
    let e = error_line(&surgery(&["--model", &m, "--out", &out]));
    assert!(e.contains("nothing to cut"), "{e}");
    let e = error_line(&surgery(&[
        "--model",
        &m,
        "--keep-layers",
        "1,0",
        "--out",
        &out,
    ]));
    assert!(e.contains("ascending"), "{e}");
    let e = error_line(&surgery(&[
        "--model",
        &m,
        "--keep-layers",
        "0,5",
        "--out",
        &out,
    ]));
    assert!(e.contains("layer 5"), "{e}");
    let missing = tmp.path().join("nope").to_string_lossy().to_string();
    let e = error_line(&surgery(&[
        "--model",
        &missing,
        "--keep-layers",
        "0",
        "--out",
        &out,
    ]));
    assert!(e.contains("nope") && e.contains("not found"), "{e}");
    // plan flags without --importance are a usage error (clap, exit code 2)
    let r = surgery(&["--model", &m, "--ffn-ratio", "0.5", "--out", &out]);
    assert_eq!(r.status.code(), Some(2));
    let imp = tmp.path().join("imp");
    stand_in_importance(Path::new(&m), &imp, Path::new(&m));
    let i = imp.to_string_lossy().to_string();
    let e = error_line(&surgery(&[
        "--model",
        &m,
        "--importance",
        &i,
        "--heads-ratio",
        "1.5",
        "--out",
        &out,
    ]));
    assert!(e.contains("--heads-ratio 1.5"), "{e}");
    assert!(!Path::new(&out).exists());
    let help = stdout(&surgery(&["--help"]));
    for word in [
        "--heads-ratio",
        "--keep-layers",
        "original",
        "plan.json",
        "size.json",
        "--overwrite",
        "--steps",
        "--random SEED",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
}

#[test]
fn keep_layers_from_the_command_line() {
    let (tmp, m) = setup();
    let out = tmp.path().join("out");
    let r = surgery(&[
        "--model",
        &m,
        "--keep-layers",
        "1",
        "--out",
        &out.to_string_lossy(),
        "--bench-texts",
        "0",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let cfg = sekator_model::read_config(&out).unwrap();
    assert_eq!(cfg.num_hidden_layers, 1);
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["keep_layers"], serde_json::json!([1]));
}

/// `--random SEED`: the importance plan's per-layer counts, other units, recorded in the manifest so another
/// seed is a different run; refused with `--steps 2` and without `--importance`.
#[test]
fn random_control_plan_from_the_command_line() {
    use sekator_surgery::Plan;
    let (tmp, m) = setup();
    let imp = tmp.path().join("imp");
    stand_in_importance(Path::new(&m), &imp, Path::new(&m));
    let (i, o) = (
        imp.to_string_lossy().to_string(),
        tmp.path().join("out").to_string_lossy().to_string(),
    );
    let base = ["--model", &m, "--importance", &i, "--ffn-ratio", "0.5"];
    let plan_of = |extra: &[&str]| -> Plan {
        let r = surgery(&[&base[..], &["--dry-run"], extra].concat());
        assert!(r.status.success(), "{}", stderr(&r));
        let text = stdout(&r);
        let json = &text[text.find('{').unwrap()..=text.find("\n}").unwrap() + 1];
        plan_from_json(json)
    };
    let counts = |p: &Plan| {
        let n = |m: &std::collections::BTreeMap<String, Vec<usize>>, l: &str| {
            m.get(l).map_or(0, Vec::len)
        };
        ["0", "1"].map(|l| (n(&p.heads, l), n(&p.ffn, l)))
    };
    let imp_plan = plan_of(&[]);
    let rand_plan = plan_of(&["--random", "1"]);
    assert_eq!(counts(&rand_plan), counts(&imp_plan));
    assert_ne!(rand_plan, imp_plan);

    let run = |seed: &str| {
        surgery(
            &[
                &base[..],
                &[
                    "--random",
                    seed,
                    "--out",
                    &o,
                    "--bench-texts",
                    "0",
                    "--no-onnx",
                ],
            ]
            .concat(),
        )
    };
    let r = run("1");
    assert!(r.status.success(), "{}", stderr(&r));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&o).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["config"]["rule"]["random"], 1, "{manifest}");
    assert!(stdout(&run("1")).contains("up to date"));
    assert!(
        error_line(&run("2")).contains("already exists"),
        "another seed is another run"
    );

    let e = error_line(&surgery(
        &[&base[..], &["--random", "1", "--steps", "2", "--dry-run"]].concat(),
    ));
    assert!(
        e.contains("--random cannot be combined with --steps 2"),
        "{e}"
    );
    let r = surgery(&["--model", &m, "--random", "1", "--dry-run"]);
    assert_eq!(r.status.code(), Some(2), "--random needs --importance");
}
