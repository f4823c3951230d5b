//! What makes a written checkpoint load in transformers and sentence-transformers unchanged.
//!
//! transformers' `BertModel` has one head count and one FFN width for all layers, and transformers 5 no longer
//! honours `pruned_heads`. A checkpoint whose shape plain BERT can express (no head removed, one FFN width) gets
//! a plain `BertModel` config and no code; any other gets the Hub's standard way to ship an architecture
//! transformers lacks: `configuration_sekator_bert.py` + `modeling_sekator_bert.py` beside the weights and an
//! `auto_map` in `config.json` (loaded with `trust_remote_code=True`). The Python source lives once in the repo
//! (`crates/model/python/`) and is embedded here, so every directory gets the same code.

use std::path::Path;

use serde_json::{json, Value};

use crate::config::BertConfig;
use crate::error::ModelError;

/// `configuration_sekator_bert.py`: the config class (per-layer heads from `pruned_heads`, FFN widths).
pub const CONFIGURATION_PY: &str = include_str!("../python/configuration_sekator_bert.py");
/// `modeling_sekator_bert.py`: a BERT whose layers each have their own head count and FFN width.
pub const MODELING_PY: &str = include_str!("../python/modeling_sekator_bert.py");
pub const CONFIGURATION_FILE: &str = "configuration_sekator_bert.py";
pub const MODELING_FILE: &str = "modeling_sekator_bert.py";
/// `model_type` of the remote-code architecture (must equal the Python config's `model_type`).
pub const MODEL_TYPE: &str = "sekator_bert";

/// Keys this module owns in `config.json`; rewritten on every save so a re-cut model never keeps stale ones.
const OWNED_KEYS: [&str; 6] = [
    "architectures",
    "model_type",
    "auto_map",
    "add_pooling_layer",
    "torch_dtype",
    "dtype",
];

/// True when plain transformers `BertModel` cannot express the shape: a head removed somewhere, FFN widths
/// that differ per layer, or a head size other than `hidden_size / num_attention_heads` (width pruning).
pub fn needs_remote_code(cfg: &BertConfig) -> bool {
    cfg.pruned_heads.values().any(|h| !h.is_empty())
        || cfg.intermediate_sizes.is_some()
        || cfg.head_dim() * cfg.num_attention_heads != cfg.hidden_size
}

/// The config to write for a checkpoint with (or without) pooler weights.
pub fn portable_config(cfg: &BertConfig, has_pooler: bool) -> BertConfig {
    let mut c = cfg.clone();
    c.pruned_heads.retain(|_, h| !h.is_empty());
    for k in OWNED_KEYS {
        c.extra.remove(k);
    }
    // The weights are always written in f32; transformers 5 loads in the dtype the config names, so a
    // teacher's leftover "torch_dtype": "float16" would silently run the model in f16.
    c.extra.insert("dtype".into(), json!("float32"));
    if needs_remote_code(&c) {
        let stem = |f: &str| f.trim_end_matches(".py").to_string();
        c.extra
            .insert("architectures".into(), json!(["SekatorBertModel"]));
        c.extra.insert("model_type".into(), json!(MODEL_TYPE));
        c.extra.insert(
            "auto_map".into(),
            json!({
                "AutoConfig": format!("{}.SekatorBertConfig", stem(CONFIGURATION_FILE)),
                "AutoModel": format!("{}.SekatorBertModel", stem(MODELING_FILE)),
            }),
        );
        c.extra
            .insert("add_pooling_layer".into(), Value::Bool(has_pooler));
    } else {
        c.extra.insert("architectures".into(), json!(["BertModel"]));
        c.extra.insert("model_type".into(), json!("bert"));
    }
    c
}

/// Writes the Python sources into `dir` when `cfg` needs them (and removes stale copies when it does not).
pub fn write_code(dir: &Path, cfg: &BertConfig) -> Result<(), ModelError> {
    for (name, text) in [
        (CONFIGURATION_FILE, CONFIGURATION_PY),
        (MODELING_FILE, MODELING_PY),
    ] {
        let path = dir.join(name);
        if needs_remote_code(cfg) {
            std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
        } else if path.exists() {
            std::fs::remove_file(&path).map_err(|e| ModelError::io(&path, e))?;
        }
    }
    Ok(())
}

/// sentence-transformers' pooling folders (`1_Pooling/config.json`, or the Pooling module `modules.json`
/// names) state the token-vector width; a width-pruned model narrows it, so the copied value is rewritten.
pub fn fix_pooling_dimension(dir: &Path, hidden: usize) -> Result<(), ModelError> {
    let modules: Value = match std::fs::read_to_string(dir.join("modules.json")) {
        Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(_) => return Ok(()),
    };
    let pooling_dirs = modules
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["type"].as_str().is_some_and(|t| t.ends_with("Pooling")))
        .filter_map(|m| m["path"].as_str());
    for sub in pooling_dirs {
        let path = dir.join(sub).join("config.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut cfg: Value = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        if cfg["word_embedding_dimension"].as_u64() == Some(hidden as u64) {
            continue;
        }
        cfg["word_embedding_dimension"] = json!(hidden);
        let text = serde_json::to_string_pretty(&cfg).expect("json") + "\n";
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
    }
    Ok(())
}

/// Files of a source directory that describe *that* model and must not be copied into a rewritten one: its
/// model card, remote code (ours is rewritten), exports made from its weights.
pub fn is_model_specific(name: &str) -> bool {
    name == "README.md"
        || name == "sekator_card.json"
        || (name.ends_with(".py")
            && (name.starts_with("configuration_") || name.starts_with("modeling_")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> BertConfig {
        let mut c = BertConfig::new(100, 32, 2, 4, 64);
        c.extra.insert("model_type".into(), json!("bert"));
        c.extra
            .insert("architectures".into(), json!(["BertForMaskedLM"]));
        c
    }

    #[test]
    fn plain_shapes_stay_plain_bert() {
        let mut c = base();
        c.set_ffn_sizes(vec![40, 40]);
        c.pruned_heads.insert("1".into(), vec![]);
        let p = portable_config(&c, true);
        assert!(!needs_remote_code(&p));
        assert_eq!(p.extra["model_type"], json!("bert"));
        assert_eq!(p.extra["architectures"], json!(["BertModel"]));
        assert!(!p.extra.contains_key("auto_map"));
        assert!(p.pruned_heads.is_empty());
        assert_eq!(p.extra["dtype"], json!("float32"));
    }

    #[test]
    fn uneven_shapes_get_remote_code_and_lose_it_again() {
        let mut c = base();
        c.add_pruned_heads(0, &[1]);
        let p = portable_config(&c, false);
        assert_eq!(p.extra["model_type"], json!(MODEL_TYPE));
        assert_eq!(
            p.extra["auto_map"]["AutoModel"],
            json!("modeling_sekator_bert.SekatorBertModel")
        );
        assert_eq!(p.extra["add_pooling_layer"], json!(false));
        // A config that no longer needs code (e.g. re-read and rewritten unpruned) drops every owned key.
        let mut back = p.clone();
        back.pruned_heads.clear();
        let q = portable_config(&back, false);
        assert_eq!(q.extra["model_type"], json!("bert"));
        assert!(!q.extra.contains_key("auto_map") && !q.extra.contains_key("add_pooling_layer"));
        // Per-layer FFN widths alone need code too.
        let mut f = base();
        f.set_ffn_sizes(vec![10, 20]);
        assert!(needs_remote_code(&portable_config(&f, true)));
        // So does a residual stream narrower than the heads (width pruning: 32 -> 28, heads of 8).
        let mut w = base();
        w.add_pruned_hidden(&[0, 5, 9, 31, 31]);
        assert_eq!(
            (w.hidden_size, w.head_dim(), w.kept_hidden().len()),
            (28, 8, 28)
        );
        let wp = portable_config(&w, true);
        assert!(needs_remote_code(&wp));
        assert_eq!(wp.extra["model_type"], json!(MODEL_TYPE));
        let text = serde_json::to_string(&wp).unwrap();
        assert!(text.contains("\"head_dim\":8") && text.contains("\"pruned_hidden\":[0,5,9,31]"));
    }

    #[test]
    fn a_narrower_model_states_its_width_to_sentence_transformers() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("modules.json"),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
               {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
        )
        .unwrap();
        std::fs::create_dir(d.join("1_Pooling")).unwrap();
        let cfg = d.join("1_Pooling/config.json");
        std::fs::write(
            &cfg,
            r#"{"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true}"#,
        )
        .unwrap();
        fix_pooling_dimension(d, 256).unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        assert_eq!(v["word_embedding_dimension"], 256);
        assert_eq!(v["pooling_mode_mean_tokens"], true);
        // no sentence-transformers files: nothing to do
        fix_pooling_dimension(&d.join("1_Pooling"), 10).unwrap();
    }

    #[test]
    fn the_python_sources_agree_with_the_names_written() {
        assert!(CONFIGURATION_PY.contains(MODEL_TYPE));
        assert!(CONFIGURATION_PY.contains("class SekatorBertConfig"));
        assert!(MODELING_PY.contains("class SekatorBertModel"));
    }
}
