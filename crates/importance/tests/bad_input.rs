//! Acceptance 4: bad input data and options give clear errors (library and binary).

mod common;

use std::process::Command;

use sekator_importance::{score, ImportanceOptions};
use sekator_model::backend::DeviceKind;

#[test]
fn lines_without_tab_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny(dir.path(), "m", 1, 1);
    let good = common::pairs(40);
    let mut text = String::from("en\tru\n");
    for (i, p) in good.iter().enumerate() {
        text.push_str(&format!("{}\t{}\n", p.en, p.ru));
        if i == 3 || i == 20 {
            text.push_str("a line without any tab\n");
        }
    }
    let data = dir.path().join("pairs.tsv");
    std::fs::write(&data, text).unwrap();
    let d = sekator_pipeline::PairData::read(&data).unwrap();
    assert_eq!(d.skipped, 2);
    assert_eq!(
        d.first_bad.iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![6, 24]
    );
    let mut o = common::opts(&data);
    o.samples = 32;
    let s = score(&model, &o, DeviceKind::Cpu).unwrap();
    assert_eq!(s.meta.skipped_lines, 2);
    assert_eq!(s.meta.samples, 32);
}

fn err(model: &std::path::Path, o: &ImportanceOptions) -> String {
    score(model, o, DeviceKind::Cpu).unwrap_err().to_string()
}

#[test]
fn empty_missing_and_too_small_data_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny(dir.path(), "m", 1, 1);

    let missing = dir.path().join("nope.tsv");
    let e = err(&model, &common::opts(&missing));
    assert!(e.contains("nope.tsv") && e.contains("not found"), "{e}");

    let empty = dir.path().join("empty.tsv");
    std::fs::write(&empty, "").unwrap();
    let e = err(&model, &common::opts(&empty));
    assert!(e.contains("empty.tsv") && e.contains("no valid"), "{e}");

    let small = common::write_pairs(dir.path(), "small.tsv", &common::pairs(10));
    let e = err(&model, &common::opts(&small));
    assert!(
        e.contains("only 10 pairs") && e.contains("--batch-size 16"),
        "{e}"
    );

    let data = common::write_pairs(dir.path(), "ok.tsv", &common::pairs(40));
    let mut o = common::opts(&data);
    o.samples = 8;
    let e = err(&model, &o);
    assert!(
        e.contains("only 8 pairs") && e.contains("--samples 8"),
        "{e}"
    );

    let mut o = common::opts(&data);
    o.loss = sekator_importance::LossKind::Teacher;
    assert!(err(&model, &o).contains("--teacher"));
    let mut o = common::opts(&data);
    o.batch_size = 1;
    assert!(err(&model, &o).contains("at least 2 pairs"));
    let e = err(&dir.path().join("no-model"), &common::opts(&data));
    assert!(e.contains("no-model"), "{e}");
}

#[test]
fn binary_help_and_one_line_errors() {
    let exe = env!("CARGO_BIN_EXE_importance");
    let out = Command::new(exe).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for w in [
        "--criterion",
        "--normalize",
        "--validate",
        "Taylor",
        "importance.safetensors",
    ] {
        assert!(help.contains(w), "--help lacks {w}");
    }

    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny(dir.path(), "m", 1, 1);
    let small = common::write_pairs(dir.path(), "small.tsv", &common::pairs(5));
    let out = Command::new(exe)
        .args([
            "--model",
            model.to_str().unwrap(),
            "--out",
            dir.path().join("o").to_str().unwrap(),
        ])
        .args(["--data", small.to_str().unwrap(), "--device", "cpu"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.contains("only 5 pairs"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // a successful run, then a rerun that is skipped as up to date
    let data = common::write_pairs(dir.path(), "ok.tsv", &common::pairs(40));
    let args = |extra: &[&str]| {
        let mut c = Command::new(exe);
        c.args([
            "--model",
            model.to_str().unwrap(),
            "--out",
            dir.path().join("o").to_str().unwrap(),
        ])
        .args([
            "--data",
            data.to_str().unwrap(),
            "--device",
            "cpu",
            "--samples",
            "32",
            "--batch-size",
            "16",
        ])
        .args(["--max-length", "32", "--validate", "2", "--quiet"])
        .args(extra);
        c.output().unwrap()
    };
    let out = args(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Spearman"), "{stdout}");
    let out = args(&[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("up to date"));
    let out = args(&["--force"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("pairs/s"));
}
