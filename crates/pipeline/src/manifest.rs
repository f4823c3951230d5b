//! Stage manifests: what a stage ran with (config section, input hashes, code fingerprint) and how long it
//! took.
//!
//! A stage whose manifest matches what it is about to do is skipped; that makes `just pipeline` resumable
//! after a crash or a change to a later stage only. When it does not match, [`Manifest::rerun_reason`] says
//! why ("code changed", "config key `steps` changed", "input `data` changed").

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use sekator_model::{write_atomic, ModelError};

pub const MANIFEST_FILE: &str = "manifest.json";

/// Prefix of the inputs that carry an upstream stage's code lineage (`code:importance`).
const CODE_INPUT: &str = "code:";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub stage: String,
    /// The stage's own settings, as it resolved them.
    pub config: serde_json::Value,
    /// Input name -> content hash (checkpoints, data files, importance files), plus `code:<stage>` ->
    /// the code lineage of each upstream stage whose output this stage read.
    pub inputs: BTreeMap<String, String>,
    /// Fingerprint of the sources the stage's binary was built from (see `sekator-fingerprint`). Manifests
    /// written before fingerprints (`code_version: "0.1.0"`) read as a different code.
    #[serde(alias = "code_version")]
    pub code: String,
    /// Wall-clock seconds of the stage (not part of the match).
    #[serde(default)]
    pub seconds: f64,
    /// Free-form results worth keeping beside the outputs (not part of the match).
    #[serde(default)]
    pub results: serde_json::Value,
}

impl Manifest {
    /// `code` is the calling stage's build-time fingerprint: `env!("SEKATOR_CODE")` in a crate whose
    /// build script runs `sekator_fingerprint::emit()`.
    pub fn new(
        stage: &str,
        config: serde_json::Value,
        inputs: BTreeMap<String, String>,
        code: &str,
    ) -> Self {
        Self {
            stage: stage.to_string(),
            config,
            inputs,
            code: code.to_string(),
            seconds: 0.0,
            results: serde_json::Value::Null,
        }
    }

    /// Same stage, settings, inputs and code: the outputs beside this manifest are still valid.
    pub fn matches(&self, other: &Manifest) -> bool {
        self.rerun_reason(other).is_none()
    }

    /// Why outputs made under `old` are not what `self` would make, or `None` when they are.
    pub fn rerun_reason(&self, old: &Manifest) -> Option<String> {
        if self.stage != old.stage {
            return Some(format!("the outputs are of stage `{}`", old.stage));
        }
        if self.code != old.code {
            return Some("code changed".into());
        }
        if let Some(up) = changed_keys(&self.inputs, &old.inputs)
            .into_iter()
            .find_map(|k| k.strip_prefix(CODE_INPUT).map(str::to_string))
        {
            return Some(format!("code changed (upstream stage `{up}`)"));
        }
        if self.config != old.config {
            let keys = match (&self.config, &old.config) {
                (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                    let a: BTreeMap<_, _> =
                        a.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
                    let b: BTreeMap<_, _> =
                        b.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
                    changed_keys(&a, &b)
                }
                _ => vec![],
            };
            return Some(match keys.as_slice() {
                [] => "config changed".into(),
                [k] => format!("config key `{k}` changed"),
                ks => format!("config keys {} changed", quoted(ks)),
            });
        }
        match changed_keys(&self.inputs, &old.inputs).as_slice() {
            [] => None,
            [k] => Some(format!("input `{k}` changed")),
            ks => Some(format!("inputs {} changed", quoted(ks))),
        }
    }

    /// The code this stage's outputs depend on: its own fingerprint and its upstream stages' lineages. A
    /// downstream stage records it as input `code:<stage>`, so a code change reruns every stage after it
    /// even when the rerun wrote identical files.
    pub fn lineage(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.code.as_bytes());
        for (k, v) in self
            .inputs
            .iter()
            .filter(|(k, _)| k.starts_with(CODE_INPUT))
        {
            h.update(format!("\n{k}={v}").as_bytes());
        }
        hex::encode(&h.finalize()[..8])
    }

    /// Adds input `code:<stage>` for the stage that wrote `dir` (its manifest in `dir` or, for a
    /// `distill/final` model, in the parent). A directory without a manifest (a model made outside the
    /// pipeline) adds nothing.
    pub fn record_upstream(&mut self, dir: &Path) {
        let found = Manifest::read(dir).or_else(|| dir.parent().and_then(Manifest::read));
        if let Some(m) = found {
            self.inputs
                .insert(format!("{CODE_INPUT}{}", m.stage), m.lineage());
        }
    }

    pub fn read(dir: &Path) -> Option<Manifest> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?).ok()
    }

    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| ModelError::Other(e.to_string()))?;
        write_atomic(&dir.join(MANIFEST_FILE), text.as_bytes())
    }
}

/// Whether `out` already holds what `want` describes: `Ok(())` when it does (the caller skips), else the
/// reason to rerun, which the caller logs ("no manifest" for a fresh directory).
pub fn freshness(out: &Path, want: &Manifest) -> Result<(), String> {
    match Manifest::read(out) {
        None if out.join(MANIFEST_FILE).exists() => Err("its manifest.json is unreadable".into()),
        None => Err("no manifest yet".into()),
        Some(have) => want.rerun_reason(&have).map_or(Ok(()), Err),
    }
}

fn changed_keys(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn quoted(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(code: &str, steps: u64, data: &str) -> Manifest {
        let inputs = BTreeMap::from([("data".to_string(), data.to_string())]);
        Manifest::new(
            "distill",
            serde_json::json!({"steps": steps, "lr": 1e-4}),
            inputs,
            code,
        )
    }

    #[test]
    fn reasons_name_what_changed() {
        let base = m("a", 40, "h1");
        assert_eq!(base.rerun_reason(&base.clone()), None);
        assert_eq!(
            m("b", 40, "h1").rerun_reason(&base).unwrap(),
            "code changed"
        );
        assert_eq!(
            m("a", 60, "h1").rerun_reason(&base).unwrap(),
            "config key `steps` changed"
        );
        assert_eq!(
            m("a", 40, "h2").rerun_reason(&base).unwrap(),
            "input `data` changed"
        );
    }

    #[test]
    fn an_upstream_code_change_reaches_downstream_stages() {
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path().join("importance");
        let mut imp = Manifest::new("importance", serde_json::json!({}), BTreeMap::new(), "c1");
        imp.write(&up).unwrap();
        let mut old = m("a", 40, "h1");
        old.record_upstream(&up);
        imp.code = "c2".into();
        imp.write(&up).unwrap();
        let mut new = m("a", 40, "h1");
        new.record_upstream(&up);
        assert_eq!(
            new.rerun_reason(&old).unwrap(),
            "code changed (upstream stage `importance`)"
        );
    }

    #[test]
    fn old_manifests_read_as_other_code() {
        let text = r#"{"stage":"eval","config":{},"inputs":{},"code_version":"0.1.0"}"#;
        let old: Manifest = serde_json::from_str(text).unwrap();
        let new = Manifest::new("eval", serde_json::json!({}), BTreeMap::new(), "f00");
        assert_eq!(new.rerun_reason(&old).unwrap(), "code changed");
    }
}
