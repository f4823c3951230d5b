//! Parity with the scikit-learn replica (`scripts/reference/encodechka_reference.py`).
//!
//! `fixture_matches_sklearn` runs in CI (well under a second): `tests/fixtures/parity/` holds subsets of every
//! task's data files, the MiniLM vectors of those texts (first 16 dimensions) as the replica exported them, and
//! the scores scikit-learn computed on exactly those vectors. The test scores them through the whole Rust path
//! (CSV/JSON readers, razdel splitting and BIO labels, numpy-seeded splits, every classifier and metric, the
//! npy reader) and compares every task × variant × classifier score.
//!
//! `full_minilm_export_matches_reference` is the acceptance check on all the data: it needs the replica's full
//! export (`--export DIR`, hundreds of MB, not committed) and compares with the committed
//! `scripts/reference/encodechka_minilm_reference.csv`. Run it with
//! `SEKATOR_ENCODECHKA_EXPORT=runs/minilm-export cargo test --workspace --test parity -- --ignored --nocapture`
//! (a relative path is taken from the workspace root).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sekator_encodechka::benchmark::{evaluate, EvalOptions, ModelReport};
use sekator_encodechka::npy_embedder::NpyEmbedder;
use sekator_encodechka::tasks::{TaskId, TaskInput};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (task, variant, classifier) -> (score, best)
fn read_expected(path: &Path) -> HashMap<(String, String, String), (f64, bool)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("task,variant,classifier,score,best"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                (f[0].to_string(), f[1].to_string(), f[2].to_string()),
                (f[3].parse().unwrap(), f[4] == "1"),
            )
        })
        .collect()
}

fn run(data: &Path, export: &Path) -> ModelReport {
    let inputs: Vec<(TaskId, TaskInput)> = TaskId::ALL
        .iter()
        .map(|&t| {
            (
                t,
                TaskInput::load(t, data).unwrap_or_else(|e| panic!("{t:?}: {e:#}")),
            )
        })
        .collect();
    let mut embedder = NpyEmbedder::open(export).unwrap();
    let opts = EvalOptions {
        cache_root: None,
        progress: false,
        chunk: 512,
        speed_texts: None,
    };
    let report = evaluate(&mut embedder, "cpu (python export)", &inputs, &opts);
    assert!(report.error.is_none(), "{:?}", report.error);
    report
}

/// Compares every score; `tolerance(task, classifier)` bounds the difference. Returns the largest difference.
fn compare(
    report: &ModelReport,
    expected: &HashMap<(String, String, String), (f64, bool)>,
    tolerance: impl Fn(TaskId, &str) -> f64,
) -> f64 {
    let mut seen = 0;
    let mut worst: f64 = 0.0;
    let mut failures = vec![];
    for run in &report.tasks {
        let task = run.outcome.task;
        let mut task_worst: f64 = 0.0;
        for s in &run.outcome.scores {
            let key = (
                task.code().to_string(),
                s.variant.clone(),
                s.classifier.clone(),
            );
            let (want, _) = expected
                .get(&key)
                .unwrap_or_else(|| panic!("no reference score for {key:?}"));
            let diff = (s.score - want).abs();
            worst = worst.max(diff);
            task_worst = task_worst.max(diff);
            seen += 1;
            if diff > tolerance(task, &s.classifier) {
                failures.push(format!("{key:?}: rust {:.6} vs sklearn {want:.6}", s.score));
            }
        }
        // the task score is the maximum, so it is as close as the closest rows allow
        let best_want = expected
            .iter()
            .filter(|(k, _)| k.0 == task.code())
            .map(|(_, v)| v.0)
            .fold(f64::NEG_INFINITY, f64::max);
        let d = (run.outcome.score() - best_want).abs();
        eprintln!(
            "{:<4} largest row difference {task_worst:.2e}, task score {:.6} vs {best_want:.6}",
            task.code(),
            run.outcome.score()
        );
        if d > tolerance(task, "best") {
            failures.push(format!(
                "{} task score: rust {:.6} vs sklearn {best_want:.6}",
                task.code(),
                run.outcome.score()
            ));
        }
    }
    assert_eq!(seen, expected.len(), "rows scored vs rows expected");
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
    worst
}

#[test]
fn fixture_matches_sklearn() {
    let dir = crate_dir().join("tests/fixtures/parity");
    let report = run(&dir.join("data"), &dir.join("vectors"));
    let expected = read_expected(&dir.join("expected.csv"));
    // Same vectors, same seeds, the same float32 arithmetic and SciPy's L-BFGS-B path: every score agrees to
    // rounding (the CSV's six decimals). A logistic regression's accuracy gets one borderline test row of slack
    // (the smallest accuracy test set here has 160 rows): for more than one feature the float32 BLAS summation
    // order is approximated, which could in principle move an iterate across a prediction boundary.
    let worst = compare(&report, &expected, |task, classifier| {
        match (task, classifier) {
            (TaskId::Nli | TaskId::Sa | TaskId::Ic | TaskId::Icx, "lr" | "best") => {
                1.0 / 160.0 + 1e-9
            }
            _ => 1e-6,
        }
    });
    eprintln!("largest fixture difference: {worst:.2e}");
}

#[test]
#[ignore = "needs the full export of scripts/reference/encodechka_reference.py; set SEKATOR_ENCODECHKA_EXPORT"]
fn full_minilm_export_matches_reference() {
    let root = crate_dir().join("../..");
    // cargo runs tests in the crate directory; a relative path is taken from the workspace root
    let export = PathBuf::from(
        std::env::var("SEKATOR_ENCODECHKA_EXPORT").expect("SEKATOR_ENCODECHKA_EXPORT=<export dir>"),
    );
    let export = if export.is_relative() && !export.exists() {
        root.join(export)
    } else {
        export
    };
    let data = std::env::var("SEKATOR_ENCODECHKA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("data/encodechka"));
    let report = run(&data, &export);
    let expected = read_expected(&root.join("scripts/reference/encodechka_minilm_reference.csv"));
    // The acceptance bounds of issue 7: every task within 0.005, NER within 0.01.
    let worst = compare(&report, &expected, |task, _| {
        if task.is_word_task() {
            0.01
        } else {
            0.005
        }
    });
    eprintln!("largest difference to scikit-learn: {worst:.2e}");
}
