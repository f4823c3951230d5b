//! The pipeline config file (`configs/*.toml`): a `[run]` section plus one section per stage.
//!
//! Every stage binary takes `--config FILE`, reads `[run]` and its own section, and derives its input and
//! output directories from the run name, so `just pipeline` is just the stages called in order with the
//! same file; nothing is orchestrated twice. Unknown sections and unknown keys are errors naming the key.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use sekator_model::ModelError;

use crate::Stage;

/// Sections a config file may contain.
pub const SECTIONS: [&str; 7] = [
    "run",
    Stage::Importance.name(),
    Stage::Surgery.name(),
    Stage::Distill.name(),
    Stage::Eval.name(),
    Stage::Report.name(),
    STATIC_SECTION,
];

/// `[static]`: the static-embedding baseline of the teacher (`static-embedding --config`), written to
/// `<run>/static` and scored by the eval stage beside the run's models. Absent: no baseline.
pub const STATIC_SECTION: &str = "static";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Run name: outputs go to `<runs_dir>/<name>/<stage>/`.
    pub name: String,
    /// The teacher / original checkpoint (Hugging Face directory).
    pub model: PathBuf,
    /// en<TAB>ru training pairs.
    #[serde(default = "default_pairs")]
    pub pairs: PathBuf,
    /// Held-out pairs for distillation metrics.
    #[serde(default = "default_dev_pairs")]
    pub dev_pairs: PathBuf,
    /// encodechka data directory.
    #[serde(default = "default_encodechka")]
    pub encodechka: PathBuf,
    #[serde(default = "default_runs")]
    pub runs_dir: PathBuf,
    /// `auto`, `cpu` or `cuda`.
    #[serde(default)]
    pub device: sekator_model::DeviceKind,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_pairs() -> PathBuf {
    "data/en-ru/pairs.tsv".into()
}
fn default_dev_pairs() -> PathBuf {
    "data/en-ru/pairs_dev.tsv".into()
}
fn default_encodechka() -> PathBuf {
    "data/encodechka".into()
}
fn default_runs() -> PathBuf {
    "runs".into()
}
fn default_seed() -> u64 {
    42
}

/// A parsed config file.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub path: PathBuf,
    pub run: RunSection,
    table: toml::Table,
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ModelError::Config {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        if let Some(k) = table.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            return Err(ModelError::Config {
                path: path.to_path_buf(),
                msg: format!("unknown section [{k}] (known: {})", SECTIONS.join(", ")),
            });
        }
        let run_value = table
            .get("run")
            .cloned()
            .ok_or_else(|| ModelError::Config {
                path: path.to_path_buf(),
                msg: "missing [run] section (name, model, ...)".into(),
            })?;
        let run: RunSection =
            run_value
                .try_into()
                .map_err(|e: toml::de::Error| ModelError::Config {
                    path: path.to_path_buf(),
                    msg: format!("[run]: {e}"),
                })?;
        Ok(Self {
            path: path.to_path_buf(),
            run,
            table,
        })
    }

    /// Deserialises section `name` into the stage's own settings (all defaults when the section is absent).
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, ModelError> {
        match self.table.get(name) {
            None => Ok(T::default()),
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| ModelError::Config {
                    path: self.path.clone(),
                    msg: format!("[{name}]: {e}"),
                }),
        }
    }

    /// Whether the file has section `name` (for optional parts of a run such as `[static]`).
    pub fn has_section(&self, name: &str) -> bool {
        self.table.contains_key(name)
    }

    /// The raw section, for manifests (so a change in one section reruns only that stage and later ones).
    pub fn section_json(&self, name: &str) -> serde_json::Value {
        self.table
            .get(name)
            .and_then(|v| serde_json::to_value(v).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// `<runs_dir>/<name>`: the run directory (locked while a stage runs).
    pub fn run_dir(&self) -> PathBuf {
        self.run.runs_dir.join(&self.run.name)
    }

    /// `<runs_dir>/<name>/<stage dir>`.
    pub fn stage_dir(&self, stage: crate::Stage) -> PathBuf {
        self.run_dir().join(stage.dir())
    }
}

impl RunConfig {
    /// The command line a stage binary runs with under `--config`: `derived` flags first (inputs and outputs
    /// the pipeline decides: `--model`, `--out`, ...; a section may not set them), then `defaults` from
    /// `[run]` (`--seed`, `--device`; a section may), then section `section` turned into flags
    /// (`heads_ratio = 0.5` -> `--heads-ratio 0.5`), then the user's own flags. Later flags win when the
    /// binary's parser lets them override earlier ones (`Command::args_override_self`). One parser and one
    /// `--help` thus cover both ways of running a stage, and a key the stage does not know is an error
    /// naming it.
    pub fn stage_argv(
        &self,
        section: &str,
        cmd: &clap::Command,
        derived: Vec<String>,
        defaults: Vec<String>,
        user: &[String],
    ) -> Result<Vec<String>, ModelError> {
        self.section_argv(section, cmd, derived, defaults, user, false)
    }

    /// [`stage_argv`](Self::stage_argv) for a command that holds only some of the stage's flags: keys it
    /// does not know are skipped instead of refused (the stage itself refuses the unknown ones).
    pub fn known_section_argv(
        &self,
        section: &str,
        cmd: &clap::Command,
        derived: Vec<String>,
    ) -> Result<Vec<String>, ModelError> {
        self.section_argv(section, cmd, derived, vec![], &[], true)
    }

    fn section_argv(
        &self,
        section: &str,
        cmd: &clap::Command,
        derived: Vec<String>,
        defaults: Vec<String>,
        user: &[String],
        skip_unknown: bool,
    ) -> Result<Vec<String>, ModelError> {
        let err = |msg: String| ModelError::Config {
            path: self.path.clone(),
            msg,
        };
        let reserved: Vec<&str> = derived
            .iter()
            .filter_map(|a| a.strip_prefix("--"))
            .chain(["config", "help", "version"])
            .collect();
        let known: Vec<&clap::Arg> = cmd
            .get_arguments()
            .filter(|a| a.get_long().is_some_and(|l| !reserved.contains(&l)))
            .collect();
        let mut argv = vec![cmd.get_name().to_string()];
        argv.extend(derived.iter().cloned());
        argv.extend(defaults);
        let empty = toml::Table::new();
        let table = match self.table.get(section) {
            None => &empty,
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(err(format!("[{section}] must be a table"))),
        };
        for (key, value) in table {
            let flag = key.replace('_', "-");
            if reserved.contains(&flag.as_str()) {
                return Err(err(format!(
                    "[{section}] key `{key}` is set by the pipeline itself (from [run] and the run directory); remove it"
                )));
            }
            let found = known.iter().find(|a| a.get_long() == Some(flag.as_str()));
            if found.is_none() && skip_unknown {
                continue;
            }
            let Some(arg) = found else {
                let names: Vec<String> = known
                    .iter()
                    .filter_map(|a| a.get_long())
                    .map(|l| l.replace('-', "_"))
                    .collect();
                return Err(err(format!(
                    "[{section}] unknown key `{key}` (known: {}; `{} --help` explains each)",
                    names.join(", "),
                    cmd.get_name()
                )));
            };
            let takes_value = arg.get_action().takes_values();
            let scalar = |v: &toml::Value| -> Result<String, ModelError> {
                match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(i) => Ok(i.to_string()),
                    toml::Value::Float(f) => Ok(f.to_string()),
                    toml::Value::Boolean(b) => Ok(b.to_string()),
                    other => Err(err(format!(
                        "[{section}] key `{key}`: unsupported value {other}"
                    ))),
                }
            };
            match value {
                toml::Value::Boolean(b) if !takes_value => {
                    if *b {
                        argv.push(format!("--{flag}"));
                    }
                }
                _ if !takes_value => {
                    return Err(err(format!(
                        "[{section}] key `{key}` is a switch: write `{key} = true` or `false`"
                    )))
                }
                toml::Value::Array(items) => {
                    let items: Vec<String> = items.iter().map(scalar).collect::<Result<_, _>>()?;
                    argv.push(format!("--{flag}"));
                    argv.push(items.join(","));
                }
                v => {
                    argv.push(format!("--{flag}"));
                    argv.push(scalar(v)?);
                }
            }
        }
        argv.extend(user.iter().cloned());
        Ok(argv)
    }
}

/// Splits `--config FILE` (or `--config=FILE`) off a command line; returns the file and the other arguments
/// (program name excluded).
pub fn take_config_flag(args: &[String]) -> (Option<PathBuf>, Vec<String>) {
    let mut config = None;
    let mut rest = vec![];
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--config" {
            config = it.next().map(PathBuf::from);
        } else if let Some(p) = a.strip_prefix("--config=") {
            config = Some(PathBuf::from(p));
        } else {
            rest.push(a.clone());
        }
    }
    (config, rest)
}

/// Parses a stage binary's arguments. Without `--config` they are the command line as given; with
/// `--config FILE` (a pipeline config), the arguments are built by [`RunConfig::stage_argv`] from `derive`
/// (the reserved flags and the `[run]` defaults) and section `section`, and the config is returned too.
pub fn parse_stage_args<A: clap::Parser>(
    section: &str,
    derive: impl FnOnce(&RunConfig) -> (Vec<String>, Vec<String>),
) -> Result<(A, Option<RunConfig>), ModelError> {
    let argv: Vec<String> = std::env::args().collect();
    let (config, user) = take_config_flag(&argv);
    let Some(path) = config else {
        return Ok((A::parse(), None));
    };
    let cfg = RunConfig::load(&path)?;
    let (derived, defaults) = derive(&cfg);
    let cmd = A::command();
    let argv = cfg.stage_argv(section, &cmd, derived, defaults, &user)?;
    let matches = cmd
        .args_override_self(true)
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| e.exit());
    let args = A::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    Ok((args, Some(cfg)))
}

/// `--flag value` as two arguments.
pub fn flag(name: &str, value: impl std::fmt::Display) -> [String; 2] {
    [format!("--{name}"), value.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn cfg(text: &str) -> RunConfig {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        RunConfig::load(&p).unwrap()
    }

    fn cmd() -> Command {
        Command::new("stage")
            .arg(Arg::new("model").long("model"))
            .arg(Arg::new("heads_ratio").long("heads-ratio"))
            .arg(
                Arg::new("ffn_uniform")
                    .long("ffn-uniform")
                    .action(ArgAction::SetTrue),
            )
            .arg(
                Arg::new("keep_layers")
                    .long("keep-layers")
                    .value_delimiter(','),
            )
    }

    const RUN: &str = "[run]\nname = \"t\"\nmodel = \"m\"\n";

    #[test]
    fn section_keys_become_flags_before_the_users_own() {
        let c = cfg(&format!(
            "{RUN}[surgery]\nheads_ratio = 0.25\nffn_uniform = true\nkeep_layers = [0, 2]\n"
        ));
        let argv = c
            .stage_argv(
                "surgery",
                &cmd(),
                vec!["--model".into(), "m".into()],
                vec![],
                &["--heads-ratio".into(), "0.5".into()],
            )
            .unwrap();
        assert_eq!(
            argv,
            [
                "stage",
                "--model",
                "m",
                "--ffn-uniform",
                "--heads-ratio",
                "0.25",
                "--keep-layers",
                "0,2",
                "--heads-ratio",
                "0.5"
            ]
        );
        let m = cmd().args_override_self(true).get_matches_from(argv);
        assert_eq!(m.get_one::<String>("heads_ratio").unwrap(), "0.5");
    }

    #[test]
    fn unknown_and_reserved_keys_are_errors_naming_the_key() {
        let c = cfg(&format!("{RUN}[surgery]\nheads_ration = 0.5\n"));
        let e = c
            .stage_argv("surgery", &cmd(), vec![], vec![], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown key `heads_ration`") && e.contains("heads_ratio"),
            "{e}"
        );
        let c = cfg(&format!("{RUN}[surgery]\nmodel = \"x\"\n"));
        let e = c
            .stage_argv(
                "surgery",
                &cmd(),
                vec!["--model".into(), "m".into()],
                vec![],
                &[],
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("`model` is set by the pipeline"), "{e}");
        let c = cfg(&format!("{RUN}[surgery]\nffn_uniform = 3\n"));
        let e = c
            .stage_argv("surgery", &cmd(), vec![], vec![], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a switch"), "{e}");
    }

    #[test]
    fn unknown_sections_and_run_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, format!("{RUN}[distil]\nsteps = 3\n")).unwrap();
        let e = RunConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("unknown section [distil]"), "{e}");
        std::fs::write(&p, format!("{RUN}sead = 3\n")).unwrap();
        let e = RunConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("sead"), "{e}");
    }

    #[test]
    fn config_flag_is_split_off() {
        let a: Vec<String> = ["bin", "--force", "--config", "c.toml", "--x=1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            take_config_flag(&a),
            (
                Some(PathBuf::from("c.toml")),
                vec!["--force".into(), "--x=1".into()]
            )
        );
    }
}
