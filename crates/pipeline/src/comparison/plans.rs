//! `configs/study.toml`: the study's plans, and the one pipeline config each plan (and each extra seed)
//! becomes.
//!
//! A plan is written as the sections it changes; the driver turns it into an ordinary run config under
//! `<runs_dir>/<study>/configs/`, so every stage runs exactly as under `just pipeline`, skips itself when its
//! manifest matches, and can be rerun by hand with that file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use sekator_model::ModelError;

use crate::RunConfig;

/// The `[surgery]` keys that say what is cut: a plan sets its own, none is inherited from the base.
pub const CUT_KEYS: [&str; 8] = [
    "heads_ratio",
    "heads_per_layer",
    "ffn_ratio",
    "ffn_uniform",
    "hidden_ratio",
    "keep_layers",
    "steps",
    "random",
];

/// `[study]`: what the plans share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySection {
    /// Study name: its runs go to `<runs_dir>/<name>/<plan>/`, its report to `<runs_dir>/<name>/report/`.
    pub name: String,
    /// The pipeline config every plan starts from (`[run]`, `[importance]`, `[distill]`, `[eval]`).
    pub base: PathBuf,
    /// More distillation seeds for the first plan (its own is the base's): the spread of the report.
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// `[importance]` keys set for every plan on top of the base's, under its own (e.g. pinning the loss the
    /// study was measured with when the base's default moves on).
    #[serde(default)]
    pub importance: toml::Table,
    /// `[surgery]` keys set for every plan under its own (e.g. `no_onnx`, the timing).
    #[serde(default)]
    pub surgery: toml::Table,
    /// `[distill]` keys set for every plan on top of the base's (the study's budget).
    #[serde(default)]
    pub distill: toml::Table,
}

/// `[[plan]]`: one way to reach the FLOPs target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSection {
    /// Short name (letters, digits, `-`): the run directory and the report row.
    pub name: String,
    /// One line for the report.
    #[serde(default)]
    pub about: String,
    /// Keys set on top of the base's and the study's `[importance]`.
    #[serde(default)]
    pub importance: toml::Table,
    /// The plan's cut: the base's cut keys ([`CUT_KEYS`]) are dropped, its other `[surgery]` keys (timing,
    /// limits) kept, then the study's and these set on top.
    pub surgery: toml::Table,
    /// Keys set on top of the base's and the study's `[distill]`.
    #[serde(default)]
    pub distill: toml::Table,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StudyFile {
    study: StudySection,
    plan: Vec<PlanSection>,
}

/// A parsed study config.
#[derive(Debug, Clone)]
pub struct StudyConfig {
    pub path: PathBuf,
    pub study: StudySection,
    pub plans: Vec<PlanSection>,
    pub base: RunConfig,
}

/// One pipeline run of the study: a plan, or the first plan with another distillation seed.
#[derive(Debug, Clone)]
pub struct PlanRun {
    /// Run name and report label (`taylor`, `taylor-seed43`).
    pub name: String,
    /// The plan it belongs to.
    pub plan: String,
    pub about: String,
    /// The distillation seed.
    pub seed: u64,
    /// The generated pipeline config.
    pub config: RunConfig,
}

fn config_err(path: &Path, msg: String) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        msg,
    }
}

impl StudyConfig {
    /// Reads a study config; `base` is relative to the current directory, like every path in a config.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Self::load_in(path, Path::new(""))
    }

    /// [`load`](Self::load) with a relative `base` taken from `root` (tests run in their crate's directory).
    pub fn load_in(path: &Path, root: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let mut file: StudyFile =
            toml::from_str(&text).map_err(|e| config_err(path, e.to_string()))?;
        file.study.base = root.join(&file.study.base);
        let base = RunConfig::load(&file.study.base)?;
        let mut seen = std::collections::BTreeSet::new();
        for p in &file.plan {
            let ok = !p.name.is_empty()
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok || ["configs", "report", "teacher"].contains(&p.name.as_str()) {
                return Err(config_err(
                    path,
                    format!("plan name {:?}: use letters, digits and `-` (and not configs/report/teacher)", p.name),
                ));
            }
            if !seen.insert(p.name.clone()) {
                return Err(config_err(
                    path,
                    format!("plan {:?} is listed twice", p.name),
                ));
            }
        }
        if file.plan.is_empty() {
            return Err(config_err(
                path,
                "no [[plan]]: a study compares at least one plan".into(),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            study: file.study,
            plans: file.plan,
            base,
        })
    }

    /// `<base runs_dir>/<study name>`.
    pub fn dir(&self) -> PathBuf {
        self.base.run.runs_dir.join(&self.study.name)
    }

    /// Where the generated pipeline configs go.
    pub fn configs_dir(&self) -> PathBuf {
        self.dir().join("configs")
    }

    /// The encodechka embedding cache shared with every other run (the teacher is embedded once).
    pub fn eval_cache(&self) -> PathBuf {
        self.base.run.runs_dir.join("encodechka-cache")
    }

    /// The study's runs in order: the first plan, again per extra seed (the noise every comparison needs),
    /// then the other plans. Each config is
    /// written to [`configs_dir`](Self::configs_dir) (replaced only when its text changed) and parsed back,
    /// so a bad key fails here with the generated file named.
    pub fn runs(&self) -> Result<Vec<PlanRun>, ModelError> {
        let base_seed = self.distill_seed(&self.plans[0]);
        let mut out = vec![self.run_of(&self.plans[0], &self.plans[0].name, None)?];
        for &s in &self.study.seeds {
            if s == base_seed {
                return Err(config_err(
                    &self.path,
                    format!("[study] seeds: {s} is the first plan's own distillation seed"),
                ));
            }
            let p = &self.plans[0];
            out.push(self.run_of(p, &format!("{}-seed{s}", p.name), Some(s))?);
        }
        for p in &self.plans[1..] {
            out.push(self.run_of(p, &p.name, None)?);
        }
        Ok(out)
    }

    /// The distillation seed of plan `p`: its `[distill] seed`, the study's, the base's, else `[run] seed`.
    fn distill_seed(&self, p: &PlanSection) -> u64 {
        let from = |t: Option<&toml::Table>| {
            t.and_then(|t| t.get("seed"))
                .and_then(|v| v.as_integer())
                .map(|i| i as u64)
        };
        from(Some(&p.distill))
            .or_else(|| from(Some(&self.study.distill)))
            .or_else(|| from(self.base_table().get("distill").and_then(|v| v.as_table())))
            .unwrap_or(self.base.run.seed)
    }

    fn base_table(&self) -> toml::Table {
        let text = std::fs::read_to_string(&self.base.path).unwrap_or_default();
        text.parse().unwrap_or_default()
    }

    fn run_of(
        &self,
        p: &PlanSection,
        name: &str,
        seed: Option<u64>,
    ) -> Result<PlanRun, ModelError> {
        let mut t = self.base_table();
        let run = t
            .get_mut("run")
            .and_then(|v| v.as_table_mut())
            .expect("RunConfig::load checked [run]");
        run.insert("name".into(), name.into());
        run.insert("runs_dir".into(), path_value(&self.dir()));
        let section = |t: &toml::Table, name: &str| -> toml::Table {
            t.get(name)
                .and_then(|v| v.as_table())
                .cloned()
                .unwrap_or_default()
        };
        let mut importance = section(&t, "importance");
        importance.extend(self.study.importance.clone());
        importance.extend(p.importance.clone());
        t.insert("importance".into(), importance.into());
        let mut surgery = section(&t, "surgery");
        surgery.retain(|k, _| !CUT_KEYS.contains(&k));
        surgery.extend(self.study.surgery.clone());
        surgery.extend(p.surgery.clone());
        t.insert("surgery".into(), surgery.into());
        let mut distill = section(&t, "distill");
        // the teacher's vectors are shared with every run of the base (`just pipeline` included)
        distill
            .entry("cache_dir")
            .or_insert_with(|| path_value(&self.base.run.runs_dir.join("teacher-cache")));
        distill.extend(self.study.distill.clone());
        distill.extend(p.distill.clone());
        if let Some(s) = seed {
            distill.insert("seed".into(), (s as i64).into());
        }
        t.insert("distill".into(), distill.into());
        let path = self.configs_dir().join(format!("{name}.toml"));
        let header = format!(
            "# Generated by `study --config {}` (plan `{}`); edit the study config, not this file.\n",
            self.path.display(),
            p.name
        );
        let text = header + &toml::to_string(&t).map_err(|e| config_err(&path, e.to_string()))?;
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            sekator_model::write_atomic(&path, text.as_bytes())?;
        }
        Ok(PlanRun {
            name: name.into(),
            plan: p.name.clone(),
            about: p.about.clone(),
            seed: seed.unwrap_or_else(|| self.distill_seed(p)),
            config: RunConfig::load(&path)?,
        })
    }
}

/// Whether `path` is a study config (a `[study]` section) rather than a pipeline config.
pub fn is_study_config(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("study"))
}

/// Every pipeline config under `root/configs`, each study config's plans included (generated under
/// `scratch`), with `[run]` paths made relative to `root`: what the stages' parser tests walk.
pub fn shipped_run_configs(root: &Path, scratch: &Path) -> Result<Vec<RunConfig>, ModelError> {
    let dir = root.join("configs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| ModelError::io(&dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut out = vec![];
    for path in paths {
        if is_study_config(&path) {
            let mut study = StudyConfig::load_in(&path, root)?;
            study.base.run.runs_dir = scratch.join(path.file_stem().unwrap_or_default());
            out.extend(study.runs()?.into_iter().map(|r| r.config));
        } else {
            out.push(RunConfig::load(&path)?);
        }
    }
    for rc in &mut out {
        for p in [
            &mut rc.run.model,
            &mut rc.run.pairs,
            &mut rc.run.dev_pairs,
            &mut rc.run.runs_dir,
        ] {
            if p.is_relative() {
                *p = root.join(&*p);
            }
        }
    }
    Ok(out)
}

fn path_value(p: &Path) -> toml::Value {
    p.display().to_string().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[run]\nname = \"base\"\nmodel = \"m\"\nruns_dir = \"RUNS\"\nseed = 42\n\
[importance]\nsamples = 64\n[surgery]\nheads_ratio = 0.5\nbench_texts = 8\n[distill]\nsteps = 10\nlr = 1e-4\n";

    fn study(dir: &Path, plans: &str) -> Result<StudyConfig, ModelError> {
        let runs = dir.join("runs");
        std::fs::write(
            dir.join("base.toml"),
            BASE.replace("RUNS", &runs.display().to_string()),
        )
        .unwrap();
        let text = format!(
            "[study]\nname = \"s\"\nbase = \"{}\"\nseeds = [7]\n[study.importance]\nsamples = 48\nbatch_size = 8\n[study.distill]\nsteps = 4\n[study.surgery]\nno_onnx = true\n{plans}",
            dir.join("base.toml").display()
        );
        std::fs::write(dir.join("study.toml"), text).unwrap();
        StudyConfig::load(&dir.join("study.toml"))
    }

    const PLANS: &str = "[[plan]]\nname = \"a\"\n[plan.surgery]\nheads_ratio = 0.25\n\
[[plan]]\nname = \"layers\"\n[plan.importance]\nsamples = 32\n[plan.surgery]\nkeep_layers = [0]\n[plan.distill]\nlr = 2e-4\n";

    #[test]
    fn plans_become_pipeline_configs_with_the_study_budget_and_extra_seeds() {
        let d = tempfile::tempdir().unwrap();
        let s = study(d.path(), PLANS).unwrap();
        let runs = s.runs().unwrap();
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "a-seed7", "layers"]);
        assert_eq!(runs.iter().map(|r| r.seed).collect::<Vec<_>>(), [42, 7, 42]);
        let a = &runs[0].config;
        assert_eq!(a.run_dir(), d.path().join("runs/s/a"));
        let sur = a.section_json("surgery");
        // the base's cut is gone, its timing kept
        assert_eq!(
            sur,
            serde_json::json!({"heads_ratio": 0.25, "no_onnx": true, "bench_texts": 8})
        );
        // the study's [importance] on top of the base's
        assert_eq!(
            a.section_json("importance"),
            serde_json::json!({"samples": 48, "batch_size": 8})
        );
        let dist = a.section_json("distill");
        assert_eq!(
            (dist["steps"].clone(), dist["lr"].clone()),
            (4.into(), 1e-4.into())
        );
        let l = &runs[2].config;
        // ... and the plan's on top of the study's
        assert_eq!(
            l.section_json("importance"),
            serde_json::json!({"samples": 32, "batch_size": 8})
        );
        assert_eq!(l.section_json("distill")["lr"], 2e-4);
        assert_eq!(
            l.section_json("surgery"),
            serde_json::json!({"keep_layers": [0], "no_onnx": true, "bench_texts": 8})
        );
        assert_eq!(runs[1].config.section_json("distill")["seed"], 7);
        assert!(d.path().join("runs/s/configs/a-seed7.toml").is_file());
    }

    #[test]
    fn bad_studies_are_refused_naming_the_problem() {
        let d = tempfile::tempdir().unwrap();
        let twice =
            "[[plan]]\nname = \"a\"\n[plan.surgery]\n[[plan]]\nname = \"a\"\n[plan.surgery]\n";
        let e = study(d.path(), twice).unwrap_err().to_string();
        assert!(e.contains("listed twice"), "{e}");
        let e = study(d.path(), "[[plan]]\nname = \"a b\"\n[plan.surgery]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("letters, digits"), "{e}");
        let e = study(
            d.path(),
            "[[plan]]\nname = \"a\"\nsurgery = {}\ncolour = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("colour"), "{e}");
        let e = study(
            d.path(),
            "[[plan]]\nname = \"a\"\n[plan.surgery]\n[plan.distill]\nseed = 7\n",
        )
        .unwrap()
        .runs()
        .unwrap_err()
        .to_string();
        assert!(e.contains("first plan's own distillation seed"), "{e}");
    }
}
