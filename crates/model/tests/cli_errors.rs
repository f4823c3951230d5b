//! Bad input to `embed` gets a one-line error naming the file or tensor, a non-zero exit, and no panic.

use std::path::Path;
use std::process::Command;

use sekator_model::testing::{tiny_config, write_random_model};
use sekator_model::{Cpu, NamedTensor, SafetensorsWeights};

fn embed(model: &Path, input: &Path, out: &Path) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_embed"))
        .args([
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ])
        .args(["--output", out.to_str().unwrap(), "--device", "cpu"])
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn assert_clean_error(ok: bool, stderr: &str, needles: &[&str]) {
    assert!(!ok, "expected failure, stderr: {stderr}");
    assert!(
        !stderr.contains("panicked"),
        "panic instead of an error: {stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    for n in needles {
        assert!(line.contains(n), "error line {line:?} should mention {n:?}");
    }
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    write_random_model::<Cpu>(&model, &tiny_config(1), 1, &Default::default()).unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "привет\n\nhello world\n").unwrap();
    (dir, model, input)
}

#[test]
fn good_input_writes_one_row_per_line_including_empty_lines() {
    let (dir, model, input) = setup();
    let out = dir.path().join("out.npy");
    let (ok, err) = embed(&model, &input, &out);
    assert!(ok, "{err}");
    let (rows, cols, data) = sekator_model::npy::read_f32(&out).unwrap();
    assert_eq!((rows, cols), (3, 32));
    assert!(data.iter().all(|v| v.is_finite()));
    let jsonl = dir.path().join("out.jsonl");
    assert!(embed(&model, &input, &jsonl).0);
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap().lines().count(), 3);
}

#[test]
fn missing_config_and_weights() {
    let (dir, model, input) = setup();
    let out = dir.path().join("o.npy");
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    let (ok, err) = embed(&model, &input, &out);
    assert_clean_error(ok, &err, &["model.safetensors", "not found"]);
    std::fs::remove_file(model.join("config.json")).unwrap();
    let (ok, err) = embed(&model, &input, &out);
    assert_clean_error(ok, &err, &["config.json"]);
    let (ok, err) = embed(&dir.path().join("nope"), &input, &out);
    assert_clean_error(ok, &err, &["nope", "not found"]);
}

fn rewrite(model: &Path, f: impl Fn(&mut Vec<NamedTensor>)) {
    let w = SafetensorsWeights::open_dir(model).unwrap();
    let mut tensors: Vec<NamedTensor> = w
        .names()
        .into_iter()
        .map(|n| {
            let (shape, data) = w.read_f32(&n).unwrap();
            NamedTensor {
                name: n,
                shape,
                data,
            }
        })
        .collect();
    drop(w);
    f(&mut tensors);
    sekator_model::loader::write_safetensors(
        &model.join("model.safetensors"),
        &tensors,
        Default::default(),
    )
    .unwrap();
}

#[test]
fn shape_mismatch_names_tensor_and_shapes() {
    let (dir, model, input) = setup();
    rewrite(&model, |ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.name == "encoder.layer.0.attention.self.key.weight")
            .unwrap();
        t.shape = vec![16, 32];
        t.data.truncate(16 * 32);
    });
    let (ok, err) = embed(&model, &input, &dir.path().join("o.npy"));
    assert_clean_error(
        ok,
        &err,
        &[
            "encoder.layer.0.attention.self.key.weight",
            "[16, 32]",
            "[32, 32]",
        ],
    );
}

#[test]
fn unknown_dtype_and_corrupt_header() {
    let (dir, model, input) = setup();
    // An I32 tensor where a float weight is expected.
    let st = model.join("model.safetensors");
    let w = SafetensorsWeights::open_dir(&model).unwrap();
    let mut views = Vec::new();
    let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = w
        .names()
        .into_iter()
        .map(|n| {
            let (shape, data) = w.read_f32(&n).unwrap();
            let bytes = if n == "pooler.dense.bias" {
                data.iter()
                    .flat_map(|v| (*v as i32).to_le_bytes())
                    .collect()
            } else {
                data.iter().flat_map(|v| v.to_le_bytes()).collect()
            };
            (n, shape, bytes)
        })
        .collect();
    drop(w);
    for (n, s, b) in &bufs {
        let dt = if n == "pooler.dense.bias" {
            safetensors::Dtype::I32
        } else {
            safetensors::Dtype::F32
        };
        views.push((
            n.clone(),
            safetensors::tensor::TensorView::new(dt, s.clone(), b).unwrap(),
        ));
    }
    safetensors::tensor::serialize_to_file(views, None, &st).unwrap();
    let (ok, err) = embed(&model, &input, &dir.path().join("o.npy"));
    assert_clean_error(ok, &err, &["pooler.dense.bias", "dtype"]);

    std::fs::write(&st, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all").unwrap();
    let (ok, err) = embed(&model, &input, &dir.path().join("o.npy"));
    assert_clean_error(ok, &err, &["model.safetensors", "corrupt"]);
}

#[test]
fn empty_input_file() {
    let (dir, model, _) = setup();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let (ok, err) = embed(&model, &empty, &dir.path().join("o.npy"));
    assert_clean_error(ok, &err, &["empty.txt", "empty"]);
}
