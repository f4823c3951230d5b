//! The model card (`README.md`) of every model sekator writes, and the facts it is rendered from.
//!
//! A card copied from the source model would describe the source (the teacher's card said the 17M-parameter
//! pruned model was `all-MiniLM-L6-v2`). Each stage that makes a model records what it knows in
//! `sekator_card.json` (surgery: base model, plan, sizes; distillation: its settings; the report: encodechka
//! scores) and the card is re-rendered from that file, so it is always the sum of what the stages said.
//! This module is that file's one reader and one writer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use sekator_model::{portable, write_atomic, BertConfig};

use crate::error::ExportError;

pub const CARD_FILE: &str = "README.md";
pub const FACTS_FILE: &str = "sekator_card.json";

/// Size and shape of one model (the base or the written one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelFacts {
    pub name: String,
    pub params: Option<usize>,
    pub flops_per_token: Option<u64>,
    pub file_bytes: Option<u64>,
    pub heads_per_layer: Vec<usize>,
    pub ffn_per_layer: Vec<usize>,
    /// Tokens in the vocabulary (`surgery --vocab-from` trims it); absent in cards written before.
    #[serde(default)]
    pub vocab_size: Option<usize>,
    /// Residual-stream width (width pruning narrows it); absent in cards written before.
    #[serde(default)]
    pub hidden_size: Option<usize>,
}

impl ModelFacts {
    /// Heads and FFN widths read off a config; sizes left to the caller (they come from the size report).
    pub fn shape_of(name: &str, cfg: &BertConfig) -> Self {
        Self {
            name: name.into(),
            heads_per_layer: cfg.heads_per_layer(),
            ffn_per_layer: cfg.ffn_sizes(),
            vocab_size: Some(cfg.vocab_size),
            hidden_size: Some(cfg.hidden_size),
            ..Default::default()
        }
    }
}

/// One encodechka task's score for the base model and this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    pub task: String,
    pub base: Option<f64>,
    pub model: f64,
}

/// Everything a card says. `base.name` and `license` come from the model the first cut started from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardFacts {
    pub base: ModelFacts,
    pub model: ModelFacts,
    /// License of the base model, from its card's front matter (`license:`).
    pub license: Option<String>,
    /// Original indices of the layers kept, when layers were dropped.
    pub layers_kept: Option<Vec<usize>>,
    /// What made the model: "surgery", then "distillation" when trained.
    pub stages: Vec<String>,
    /// Distillation settings, in the order the distill stage lists them.
    pub distillation: Option<Vec<(String, String)>>,
    pub encodechka: Option<Vec<TaskScore>>,
}

/// The facts recorded in `dir`, if a stage wrote any.
pub fn read_facts(dir: &Path) -> Result<Option<CardFacts>, ExportError> {
    let path = dir.join(FACTS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ExportError::io(&path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        let msg = format!("not a sekator card file ({e}); delete it to have it rewritten");
        ExportError::io(
            &path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, msg),
        )
    })
}

/// Writes `sekator_card.json` and the rendered `README.md` into the model directory `dir`.
pub fn write_card(dir: &Path, facts: &CardFacts) -> Result<(), ExportError> {
    let cfg = sekator_model::read_config(dir)?;
    let json = serde_json::to_string_pretty(facts).expect("card facts serialise");
    write_atomic(&dir.join(FACTS_FILE), (json + "\n").as_bytes())?;
    write_atomic(&dir.join(CARD_FILE), render(facts, &cfg).as_bytes())?;
    Ok(())
}

/// Base-model facts of `dir` for a first cut: its own card facts' base when sekator made it (a re-cut keeps
/// the original base and license), else its directory name and the license of its card's front matter.
pub fn base_of(dir: &Path, cfg: &BertConfig) -> Result<(ModelFacts, Option<String>), ExportError> {
    if let Some(f) = read_facts(dir)? {
        return Ok((f.base, f.license));
    }
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| dir.display().to_string());
    let license = std::fs::read_to_string(dir.join(CARD_FILE))
        .ok()
        .and_then(|t| front_matter_license(&t));
    Ok((ModelFacts::shape_of(&name, cfg), license))
}

/// `license:` of a card's YAML front matter (the block between the first two `---` lines).
fn front_matter_license(card: &str) -> Option<String> {
    let mut lines = card.lines();
    if lines.next()?.trim() != "---" {
        return None;
    }
    lines
        .take_while(|l| l.trim() != "---")
        .find_map(|l| l.strip_prefix("license:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// The card's Markdown.
pub fn render(f: &CardFacts, cfg: &BertConfig) -> String {
    let code = portable::needs_remote_code(cfg);
    let mut s = String::new();
    let license = f.license.as_deref().unwrap_or("other");
    let _ = writeln!(
        s,
        "---\nlicense: {license}\nlibrary_name: sentence-transformers"
    );
    s.push_str("tags:\n- sentence-transformers\n- feature-extraction\n- sentence-similarity\n");
    s.push_str("- sekator\n- pruned\n");
    if f.stages.iter().any(|x| x == "distillation") {
        s.push_str("- distilled\n");
    }
    s.push_str("---\n\n");
    let _ = writeln!(
        s,
        "# {} — {}\n\nMade by [sekator](https://example.invalid/sekator) from `{}`: {}.\n",
        f.base.name,
        f.stages.join(" + "),
        f.base.name,
        summary(f)
    );
    sizes(&mut s, f);
    plan(&mut s, f);
    if let Some(d) = &f.distillation {
        s.push_str("## Distillation\n\n| setting | value |\n|---|---|\n");
        for (k, v) in d {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        s.push('\n');
    }
    scores(&mut s, f);
    usage(&mut s, code, cfg);
    let _ = writeln!(
        s,
        "## License\n\nInherited from the base model `{}`: {}.",
        f.base.name,
        f.license
            .as_deref()
            .unwrap_or("unknown (see the base model's card)")
    );
    s
}

fn summary(f: &CardFacts) -> String {
    let (b, m) = (&f.base, &f.model);
    let sum = |v: &[usize]| v.iter().sum::<usize>();
    let mut parts = vec![format!(
        "{} of {} attention heads and {} of {} FFN neurons kept",
        sum(&m.heads_per_layer),
        sum(&b.heads_per_layer),
        sum(&m.ffn_per_layer),
        sum(&b.ffn_per_layer)
    )];
    if m.heads_per_layer.len() != b.heads_per_layer.len() {
        parts.push(format!(
            "{} of {} layers",
            m.heads_per_layer.len(),
            b.heads_per_layer.len()
        ));
    }
    parts.join(", ")
}

fn sizes(s: &mut String, f: &CardFacts) {
    let (b, m) = (&f.base, &f.model);
    let row = |what: &str, x: Option<f64>, y: Option<f64>, unit: f64, digits: usize| match (x, y) {
        (Some(x), Some(y)) => format!(
            "| {what} | {:.digits$} | {:.digits$} | {:.2}x |\n",
            x / unit,
            y / unit,
            x / y
        ),
        (x, y) => {
            let show =
                |v: Option<f64>| v.map_or("—".into(), |v| format!("{:.digits$}", v / unit));
            format!("| {what} | {} | {} | |\n", show(x), show(y))
        }
    };
    s.push_str("## Size\n\n| | base | this model | fewer |\n|---|---:|---:|---:|\n");
    s.push_str(&row(
        "parameters (M)",
        b.params.map(|v| v as f64),
        m.params.map(|v| v as f64),
        1e6,
        2,
    ));
    s.push_str(&row(
        "encoder MFLOPs per token (seq 128)",
        b.flops_per_token.map(|v| v as f64),
        m.flops_per_token.map(|v| v as f64),
        1e6,
        2,
    ));
    if b.vocab_size != m.vocab_size {
        s.push_str(&row(
            "vocabulary (tokens)",
            b.vocab_size.map(|v| v as f64),
            m.vocab_size.map(|v| v as f64),
            1.0,
            0,
        ));
    }
    if b.hidden_size != m.hidden_size {
        s.push_str(&row(
            "hidden size (residual stream)",
            b.hidden_size.map(|v| v as f64),
            m.hidden_size.map(|v| v as f64),
            1.0,
            0,
        ));
    }
    s.push_str(&row(
        "model.safetensors (MB, f32)",
        b.file_bytes.map(|v| v as f64),
        m.file_bytes.map(|v| v as f64),
        1e6,
        1,
    ));
    s.push('\n');
}

fn plan(s: &mut String, f: &CardFacts) {
    s.push_str("## Plan\n\n| layer | original layer | heads kept | FFN width kept |\n|---:|---:|---:|---:|\n");
    for (l, (h, w)) in f
        .model
        .heads_per_layer
        .iter()
        .zip(&f.model.ffn_per_layer)
        .enumerate()
    {
        let orig = f
            .layers_kept
            .as_ref()
            .and_then(|k| k.get(l))
            .copied()
            .unwrap_or(l);
        let bh = f
            .base
            .heads_per_layer
            .get(orig)
            .map_or("?".into(), |v| v.to_string());
        let bw = f
            .base
            .ffn_per_layer
            .get(orig)
            .map_or("?".into(), |v| v.to_string());
        let _ = writeln!(s, "| {l} | {orig} | {h} of {bh} | {w} of {bw} |");
    }
    s.push('\n');
}

fn scores(s: &mut String, f: &CardFacts) {
    let Some(rows) = &f.encodechka else { return };
    s.push_str("## encodechka (Russian)\n\n| task | base | this model |\n|---|---:|---:|\n");
    for r in rows {
        let base = r.base.map_or("—".into(), |v| format!("{v:.3}"));
        let _ = writeln!(s, "| {} | {base} | {:.3} |", r.task, r.model);
    }
    s.push('\n');
}

fn usage(s: &mut String, code: bool, cfg: &BertConfig) {
    let trust = if code { ", trust_remote_code=True" } else { "" };
    s.push_str("## Use it\n\n");
    if code {
        let _ = writeln!(
            s,
            "Layers have their own head counts and FFN widths, which transformers' `BertModel` cannot \
             express: the architecture ships beside the weights (`{}`, `{}`, `auto_map` in config.json), so \
             transformers and sentence-transformers need `trust_remote_code=True`.\n",
            portable::CONFIGURATION_FILE,
            portable::MODELING_FILE
        );
    } else {
        s.push_str("The shape is a plain `BertModel`: no custom code is needed.\n\n");
    }
    let _ = writeln!(
        s,
        "sentence-transformers:\n\n```python\nfrom sentence_transformers import SentenceTransformer\n\
         model = SentenceTransformer(\"path/to/this/dir\"{trust})\n\
         vectors = model.encode([\"Привет, мир!\", \"Hello, world!\"])\n```\n"
    );
    let _ = writeln!(
        s,
        "transformers:\n\n```python\nfrom transformers import AutoModel, AutoTokenizer\n\
         tok = AutoTokenizer.from_pretrained(\"path/to/this/dir\"{trust})\n\
         model = AutoModel.from_pretrained(\"path/to/this/dir\"{trust})\n\
         out = model(**tok([\"Привет, мир!\"], return_tensors=\"pt\"))\n\
         hidden = out.last_hidden_state  # pool as 1_Pooling/config.json says\n```\n"
    );
    let pooler = if cfg.extra.get("add_pooling_layer") == Some(&serde_json::Value::Bool(false)) {
        ""
    } else {
        " and `pooler_output`"
    };
    let _ = writeln!(
        s,
        "ONNX Runtime (`onnx/model.onnx` f32, `onnx/model_qint8.onnx` int8 when exported; inputs \
         `input_ids`, `attention_mask`, `token_type_ids`, output `last_hidden_state`{pooler}):\n\n\
         ```python\nimport numpy as np\nimport onnxruntime as ort\nfrom tokenizers import Tokenizer\n\
         tok = Tokenizer.from_file(\"path/to/this/dir/tokenizer.json\")\n\
         sess = ort.InferenceSession(\"path/to/this/dir/onnx/model.onnx\")\n\
         e = tok.encode(\"Привет, мир!\")\n\
         mask = np.array([e.attention_mask])\n\
         feed = {{\"input_ids\": np.array([e.ids]), \"attention_mask\": mask, \
         \"token_type_ids\": np.array([e.type_ids])}}\n\
         hidden = sess.run([\"last_hidden_state\"], feed)[0]\n\
         # pool over real tokens only (the tokenizer may pad), as 1_Pooling/config.json says, e.g. mean:\n\
         vector = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)\n```\n"
    );
}

/// Settings table rows from `(key, value)` pairs of any displayable values.
pub fn settings<K: ToString, V: ToString>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Scores as card rows, tasks in the given order.
pub fn task_scores(
    model: &BTreeMap<String, f64>,
    base: &BTreeMap<String, f64>,
    order: &[String],
) -> Vec<TaskScore> {
    order
        .iter()
        .filter_map(|t| {
            model.get(t).map(|&m| TaskScore {
                task: t.clone(),
                base: base.get(t).copied(),
                model: m,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_license_is_read() {
        assert_eq!(
            front_matter_license(
                "---\nlanguage: en\nlicense: apache-2.0\n---\n# x\nlicense: mit\n"
            ),
            Some("apache-2.0".into())
        );
        assert_eq!(
            front_matter_license("# no front matter\nlicense: mit\n"),
            None
        );
    }

    #[test]
    fn card_names_the_base_the_plan_and_how_to_load() {
        let mut cfg = BertConfig::new(100, 32, 2, 4, 64);
        cfg.add_pruned_heads(1, &[0, 2]);
        cfg.set_ffn_sizes(vec![30, 20]);
        let cfg = portable::portable_config(&cfg, true);
        let base = ModelFacts {
            name: "all-MiniLM-L6-v2".into(),
            params: Some(22_713_216),
            flops_per_token: Some(22_413_312),
            file_bytes: Some(90_868_376),
            heads_per_layer: vec![4, 4, 4],
            ffn_per_layer: vec![64, 64, 64],
            vocab_size: Some(100),
            hidden_size: Some(32),
        };
        let model = ModelFacts {
            name: "pruned".into(),
            params: Some(17_400_000),
            flops_per_token: Some(11_206_656),
            file_bytes: Some(66_400_000),
            ..ModelFacts::shape_of("pruned", &cfg)
        };
        let f = CardFacts {
            base,
            model,
            license: Some("apache-2.0".into()),
            layers_kept: Some(vec![0, 2]),
            stages: vec!["surgery".into()],
            ..Default::default()
        };
        let card = render(&f, &cfg);
        assert!(card.starts_with("---\nlicense: apache-2.0\n"));
        assert!(card.contains("from `all-MiniLM-L6-v2`: 6 of 12 attention heads and 50 of 192 FFN neurons kept, 2 of 3 layers"));
        assert!(card.contains("| parameters (M) | 22.71 | 17.40 | 1.31x |"));
        assert!(card.contains("| encoder MFLOPs per token (seq 128) | 22.41 | 11.21 | 2.00x |"));
        assert!(card.contains("| 1 | 2 | 2 of 4 | 20 of 64 |"));
        assert!(card.contains("trust_remote_code=True"));
        assert!(card.contains("onnx/model.onnx"));
        // The tokenizer pads (MiniLM's to 128): an ONNX snippet that pooled padding gave cosine 0.37.
        assert!(card.contains("(hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)"));
        assert!(!card.contains("## encodechka"));
        // the vocabulary row only when it was trimmed
        assert!(!card.contains("vocabulary (tokens)"));
        let mut trimmed = f.clone();
        trimmed.base.vocab_size = Some(400);
        let card = render(&trimmed, &cfg);
        assert!(
            card.contains("| vocabulary (tokens) | 400 | 100 | 4.00x |"),
            "{card}"
        );
        // and the width row only when the residual stream was narrowed
        assert!(!card.contains("hidden size"));
        let mut narrowed = f.clone();
        narrowed.model.hidden_size = Some(16);
        let card = render(&narrowed, &cfg);
        assert!(
            card.contains("| hidden size (residual stream) | 32 | 16 | 2.00x |"),
            "{card}"
        );
    }
}
