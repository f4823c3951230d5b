//! Every cut checkpoint is portable: remote code + `auto_map` exactly when plain BERT cannot express its
//! shape, a model card of its own, and the ONNX export beside it.

mod common;

use common::*;
use sekator_surgery::{run, ExportOptions, PlanSource};

fn cut(plan: &str, export: ExportOptions) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(3), 5);
    std::fs::write(
        model.join("README.md"),
        "---\nlicense: mit\n---\n# the teacher's card\n",
    )
    .unwrap();
    let p = write_plan(tmp.path(), "plan.json", &plan_from_json(plan));
    let out = tmp.path().join("out");
    let mut o = opts(&model, PlanSource::File(p), &out);
    o.export = export;
    run(&o, None).unwrap();
    (tmp, out)
}

fn config_json(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

#[test]
fn uneven_cut_ships_its_code_card_and_onnx() {
    let (_tmp, out) = cut(
        r#"{"heads": {"0": [1], "2": [0, 1, 3]}, "ffn": {"1": [0, 5, 9]}}"#,
        ExportOptions::default(),
    );
    let c = config_json(&out);
    assert_eq!(c["model_type"], "sekator_bert");
    assert_eq!(c["architectures"][0], "SekatorBertModel");
    assert_eq!(
        c["auto_map"]["AutoConfig"],
        "configuration_sekator_bert.SekatorBertConfig"
    );
    assert_eq!(c["add_pooling_layer"], true);
    for f in ["configuration_sekator_bert.py", "modeling_sekator_bert.py"] {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(text.contains("SekatorBert"), "{f}");
    }
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(!card.contains("the teacher's card"), "{card}");
    assert!(card.starts_with("---\nlicense: mit\n"), "{card}");
    assert!(
        card.contains("8 of 12 attention heads and 189 of 192 FFN neurons kept"),
        "{card}"
    );
    assert!(card.contains("| 2 | 2 | 1 of 4 | 64 of 64 |"), "{card}");
    assert!(card.contains("trust_remote_code=True"), "{card}");
    assert!(out.join("onnx/model.onnx").is_file());
    assert!(out.join("onnx/model_qint8.onnx").is_file());
    // The written model still loads in sekator with its per-layer shapes.
    let cfg = sekator_model::read_config(&out).unwrap();
    assert_eq!(cfg.heads_per_layer(), vec![3, 4, 1]);
    assert_eq!(cfg.ffn_sizes(), vec![64, 61, 64]);
}

#[test]
fn a_shape_plain_bert_expresses_gets_no_code() {
    // One FFN width for all layers, no head removed, a layer dropped: a plain BertModel.
    let (_tmp, out) = cut(
        r#"{"ffn": {"0": [0, 1], "1": [2, 3], "2": [4, 5]}, "keep_layers": [0, 2]}"#,
        ExportOptions {
            onnx: false,
            int8: false,
        },
    );
    let c = config_json(&out);
    assert_eq!(c["model_type"], "bert");
    assert_eq!(c["architectures"][0], "BertModel");
    assert_eq!(c["intermediate_size"], 62);
    assert_eq!(c["num_hidden_layers"], 2);
    assert!(c.get("auto_map").is_none() && c.get("intermediate_sizes").is_none());
    assert!(!out.join("modeling_sekator_bert.py").exists());
    assert!(!out.join("onnx").exists());
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains("2 of 3 layers") && card.contains("| 1 | 2 | 4 of 4 | 62 of 64 |"),
        "{card}"
    );
    assert!(card.contains("no custom code is needed"), "{card}");
}
