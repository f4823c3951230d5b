//! What the export writes (graph structure, int8 layout, exact round trip of the streamed file) and how
//! it refuses bad input. No ONNX runtime needed here.

use std::path::Path;

use prost::Message;
use sekator_export::onnx::proto::{dtype, DimValue, ModelProto, TensorProto};
use sekator_export::onnx::{self, build_model, check_model, OnnxOptions, Precision};
use sekator_export::ExportError;
use sekator_model::testing::{tiny_config, write_random_model_from};
use sekator_model::weights::RandomWeights;
use sekator_model::{read_config, BertConfig, Cpu, SafetensorsWeights};

fn uneven_config() -> BertConfig {
    let mut cfg = tiny_config(3);
    cfg.add_pruned_heads(0, &[1]);
    cfg.add_pruned_heads(1, &[0, 1, 3]);
    cfg.set_ffn_sizes(vec![64, 16, 40]);
    cfg
}

fn write_model(dir: &Path, cfg: &BertConfig, pooler: bool) {
    let mut src = RandomWeights::new(3);
    src.with_pooler = pooler;
    write_random_model_from::<Cpu>(dir, cfg, src, &Default::default()).unwrap();
}

fn read_model(path: &Path) -> ModelProto {
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

fn count_ops(m: &ModelProto, op: &str) -> usize {
    let g = m.graph.as_ref().unwrap();
    g.node.iter().filter(|n| n.op_type == op).count()
}

fn initializer<'a>(m: &'a ModelProto, name: &str) -> &'a TensorProto {
    let g = m.graph.as_ref().unwrap();
    g.initializer
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no initializer {name}"))
}

/// Hidden temporary or backup directories left beside `onnx/`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".onnx"))
        .collect()
}

#[test]
fn written_files_are_the_checked_graphs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = uneven_config();
    write_model(dir.path(), &cfg, true);
    let report = onnx::export_dir(dir.path(), &OnnxOptions::default()).unwrap();
    let int8 = report.int8.clone().unwrap();
    let mut weights = SafetensorsWeights::open_dir(dir.path()).unwrap();
    for (file, precision) in [(&report.f32, Precision::F32), (&int8, Precision::Int8)] {
        let written = read_model(&file.path);
        // The streamed writer produces exactly the message built in memory.
        assert_eq!(written, build_model(&cfg, &mut weights, precision).unwrap());
        check_model(&written).unwrap();
        assert_eq!(file.bytes, std::fs::metadata(&file.path).unwrap().len());
        let g = written.graph.as_ref().unwrap();
        assert_eq!(
            (file.nodes, file.initializers),
            (g.node.len(), g.initializer.len())
        );
        assert_eq!(written.ir_version, 8);
        assert_eq!(written.opset_import[0].version, 17);
        let names: Vec<&str> = g.input.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["input_ids", "attention_mask", "token_type_ids"]);
        let t = g.input[0]
            .r#type
            .as_ref()
            .unwrap()
            .tensor_type
            .as_ref()
            .unwrap();
        assert_eq!(t.elem_type, dtype::INT64);
        let dims: Vec<_> = t
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| d.value.clone().unwrap())
            .collect();
        assert_eq!(
            dims,
            [
                DimValue::Param("batch_size".into()),
                DimValue::Param("sequence_length".into())
            ]
        );
        let outs: Vec<&str> = g.output.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(outs, ["last_hidden_state", "pooler_output"]);
        // One head split per layer, with that layer's head count (layer 1 keeps a single head of 8).
        assert!(g
            .initializer
            .iter()
            .any(|t| t.name == "const_i64_vec_0_0_1_8"));
        assert_eq!(count_ops(&written, "LayerNormalization"), 1 + 2 * 3);
        assert_eq!(count_ops(&written, "Erf"), 3);
    }
    let f32_model = read_model(&report.f32.path);
    assert_eq!(count_ops(&f32_model, "MatMul"), 6 * 3 + 2 * 3 + 1);
    assert_eq!(count_ops(&f32_model, "MatMulInteger"), 0);

    // int8: every Linear (6 per layer + pooler) quantized, attention score matmuls still f32.
    let q = read_model(&int8.path);
    assert_eq!(count_ops(&q, "MatMulInteger"), 6 * 3 + 1);
    // Q, K and V share one quantization of their input: 4 per layer, plus the pooler's.
    assert_eq!(count_ops(&q, "DynamicQuantizeLinear"), 4 * 3 + 1);
    assert_eq!(count_ops(&q, "MatMul"), 2 * 3);
    let p = "encoder.layer.1.intermediate.dense";
    let w = initializer(&q, &format!("{p}.weight_quantized"));
    assert_eq!((w.data_type, w.dims.clone()), (dtype::INT8, vec![32, 16]));
    let s = initializer(&q, &format!("{p}.weight_scale"));
    assert_eq!((s.data_type, s.dims.clone()), (dtype::FLOAT, vec![16]));
    let z = initializer(&q, &format!("{p}.weight_zero_point"));
    assert_eq!((z.data_type, z.dims.clone()), (dtype::INT8, vec![16]));
    assert!(
        z.raw_data.iter().all(|&b| b == 0),
        "symmetric: zero points are 0"
    );
    assert!(q
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .all(|t| !t.name.ends_with(".weight_t")));
    let ratio = int8.bytes as f64 / report.f32.bytes as f64;
    eprintln!(
        "sizes: f32 {} B, int8 {} B ({ratio:.2})",
        report.f32.bytes, int8.bytes
    );
}

#[test]
fn self_check_catches_broken_graphs() {
    let cfg = tiny_config(1);
    let mut src = RandomWeights::new(1);
    let mut m = build_model(&cfg, &mut src, Precision::F32).unwrap();
    check_model(&m).unwrap();
    let g = m.graph.as_mut().unwrap();
    let removed = g.node.remove(3);
    let err = check_model(&m).unwrap_err();
    assert!(
        err.contains(&removed.output[0]) || err.contains("not computed"),
        "{err}"
    );
    let g = m.graph.as_mut().unwrap();
    g.node.insert(3, removed.clone());
    g.node.push(removed);
    assert!(check_model(&m).unwrap_err().contains("defined twice"));
}

#[test]
fn not_a_model_directory() {
    let dir = tempfile::tempdir().unwrap();
    let opts = OnnxOptions::default();
    let missing = dir.path().join("nope");
    let err = onnx::export_dir(&missing, &opts).unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains("not found"), "{err}");
    let err = onnx::export_dir(dir.path(), &opts).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
    // A config but no weights: the error names the weights file.
    write_model(dir.path(), &tiny_config(1), true);
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = onnx::export_dir(dir.path(), &opts).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(!dir.path().join("onnx").exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn unsupported_activation_names_config_and_key() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &tiny_config(1), true);
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"hidden_act\": \"gelu\""));
    std::fs::write(
        &path,
        text.replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"swish\""),
    )
    .unwrap();
    assert!(read_config(dir.path()).is_err());
    let err = onnx::export_dir(dir.path(), &OnnxOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("hidden_act") && msg.contains("swish"),
        "{msg}"
    );
    assert!(!dir.path().join("onnx").exists());
}

#[test]
fn existing_onnx_dir_needs_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &tiny_config(1), true);
    let onnx_dir = dir.path().join("onnx");
    std::fs::create_dir(&onnx_dir).unwrap();
    std::fs::write(onnx_dir.join("model.onnx"), b"old").unwrap();
    std::fs::write(onnx_dir.join("stale.txt"), b"stale").unwrap();

    let err = onnx::export_dir(dir.path(), &OnnxOptions::default()).unwrap_err();
    assert!(matches!(err, ExportError::Exists { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains(&onnx_dir.display().to_string()) && msg.contains("--overwrite"),
        "{msg}"
    );
    assert_eq!(std::fs::read(onnx_dir.join("model.onnx")).unwrap(), b"old");
    assert!(onnx_dir.join("stale.txt").exists());

    let opts = OnnxOptions {
        int8: true,
        overwrite: true,
    };
    let report = onnx::export_dir(dir.path(), &opts).unwrap();
    check_model(&read_model(&report.f32.path)).unwrap();
    check_model(&read_model(&report.int8.unwrap().path)).unwrap();
    assert!(
        !onnx_dir.join("stale.txt").exists(),
        "the old directory is replaced whole"
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}
