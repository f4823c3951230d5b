//! The settings of each stage that decide how much work it does, as the one type that stage parses them
//! into: importance and surgery flatten these into their command lines (so a `[importance]` key, its flag,
//! its default and its `--help` text are defined once, here), and the estimate parses the same sections
//! through the same types. The other flags of a stage (loss kind, pooling, output paths, ...) stay with it.

use std::path::PathBuf;

use serde::Serialize;

use crate::config::RunConfig;
use sekator_model::ModelError;

/// `[importance]`: how many gradient passes the scoring takes.
#[derive(clap::Args, Debug, Clone, PartialEq, Serialize)]
pub struct ImportanceWork {
    /// Pairs sampled (seeded) from the data; only whole batches are used.
    #[arg(long, default_value_t = 2048)]
    pub samples: usize,
    /// Pairs per batch (the ranking loss uses the other pairs of the batch as negatives).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Truncate texts to this many tokens, [CLS] and [SEP] included.
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    /// Check the ranking: for K seeded heads, measure the loss increase when that head alone is masked
    /// (forward only, same batches) and report the Spearman correlation with the scores.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub validate: usize,
    /// Also score every residual-stream dimension (one mask shared by all layers, at the embedding and
    /// every LayerNorm), for `surgery --hidden-ratio` (width pruning). Gradient criteria only.
    #[arg(long)]
    pub hidden: bool,
}

/// `[surgery]`: what is cut, and in how many re-scored steps.
#[derive(clap::Args, Debug, Clone, PartialEq, Serialize)]
pub struct SurgeryWork {
    /// Fraction of all heads to remove, least important first across layers [default: 0.5].
    #[arg(
        long,
        value_name = "R",
        requires = "importance",
        conflicts_with = "heads_per_layer"
    )]
    pub heads_ratio: Option<f64>,
    /// Keep this many most important heads in every layer (instead of --heads-ratio).
    #[arg(long, value_name = "N", requires = "importance")]
    pub heads_per_layer: Option<usize>,
    /// Fraction of FFN neurons to remove, least important first.
    #[arg(long, value_name = "R", requires = "importance", default_value_t = 0.0)]
    pub ffn_ratio: f64,
    /// Apply --ffn-ratio to every layer separately instead of across layers.
    #[arg(long, requires = "importance")]
    pub ffn_uniform: bool,
    /// Fraction of the residual-stream dimensions to remove from the whole model, least important first
    /// (width pruning: embeddings, every layer's inputs and outputs, LayerNorms, pooler; head size stays).
    /// Needs importance scores made with `importance --hidden`.
    #[arg(long, value_name = "R", requires = "importance", default_value_t = 0.0)]
    pub hidden_ratio: f64,
    /// Keep only these layers (ascending, comma-separated), after any head/FFN cuts: layer dropping.
    #[arg(long, value_name = "L,L,...", value_delimiter = ',')]
    pub keep_layers: Option<Vec<usize>>,
    /// Random control plan: build the plan from the importance scores as usual (the same number of heads
    /// and FFN neurons removed in every layer), then choose WHICH go in each layer by a uniform random draw
    /// (seeded) among the units present; tells whether importance matters. Not with --steps K > 1.
    #[arg(long, value_name = "SEED", requires = "importance")]
    pub random: Option<u64>,
    /// Reach the target in K equal steps, re-scoring importance on the partly pruned model in between.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub steps: usize,
}

impl SurgeryWork {
    /// The fraction of heads cut by importance (0.5 unless set; 0 with `heads_per_layer`, which the
    /// caller applies per layer).
    pub fn heads_ratio(&self) -> f64 {
        self.heads_ratio.unwrap_or(0.5)
    }
}

/// `[eval]`: which encodechka tasks run, and whether the speed is measured.
#[derive(clap::Args, Debug, Clone, PartialEq, Serialize)]
pub struct EvalWork {
    /// Comma-separated tasks (default: all): sts,pi,nli,sa,ti,ia,ic,icx,ne1,ne2.
    #[arg(long, value_delimiter = ',')]
    pub tasks: Vec<String>,
    /// Skip the speed measurement (sentences_sample.txt one text at a time, then batched).
    #[arg(long)]
    pub no_speed: bool,
    /// Embedding cache directory (default: <out>/cache).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    #[arg(long)]
    pub no_cache: bool,
}

/// `[distill]`: the steps and texts of a distillation. The stage parses its section into `DistillConfig`
/// (a serde type of its own); a test there checks that this view agrees with it for the defaults and for
/// every file in `configs/`.
#[derive(serde::Deserialize, Debug, Clone, PartialEq, Serialize)]
#[serde(default)]
pub struct DistillWork {
    pub max_pairs: Option<usize>,
    pub steps: Option<usize>,
    pub epochs: f64,
    pub batch_size: usize,
    pub eval_every: usize,
    pub eval_pairs: usize,
}

impl Default for DistillWork {
    fn default() -> Self {
        Self {
            max_pairs: None,
            steps: None,
            epochs: 1.0,
            batch_size: 32,
            eval_every: 500,
            eval_pairs: 1000,
        }
    }
}

/// `[static]`: the static-embedding baseline (`static-embedding --help` explains each key).
#[derive(serde::Deserialize, Debug, Clone, PartialEq, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticWork {
    /// PCA dimensions.
    pub dim: usize,
    /// SIF's `a`.
    pub sif_a: f64,
    /// Tokens per teacher forward pass.
    pub batch_size: usize,
}

impl Default for StaticWork {
    fn default() -> Self {
        Self {
            dim: 256,
            sif_a: 1e-3,
            batch_size: 512,
        }
    }
}

/// Parses section `section` of `rc` into `W` the way the stage does (its keys as flags, its defaults),
/// skipping the stage's keys that `W` does not hold. `context` names arguments `W` refers to (`requires`)
/// that the stage's own command line defines; they are declared here so the parse is the stage's.
pub fn parse_work<W: clap::Args + clap::FromArgMatches>(
    rc: &RunConfig,
    section: &str,
    context: &[&'static str],
) -> Result<W, ModelError> {
    let mut cmd = clap::Command::new("stage");
    let mut derived = vec![];
    for id in context {
        cmd = cmd.arg(clap::Arg::new(*id).long(*id));
        derived.extend([format!("--{id}"), "-".to_string()]);
    }
    let cmd = W::augment_args(cmd);
    let argv = rc.known_section_argv(section, &cmd, derived)?;
    let matches = cmd
        .args_override_self(true)
        .try_get_matches_from(&argv)
        .map_err(|e| ModelError::Config {
            path: rc.path.clone(),
            msg: format!("[{section}]: {e}"),
        })?;
    W::from_arg_matches(&matches).map_err(|e| ModelError::Config {
        path: rc.path.clone(),
        msg: format!("[{section}]: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(text: &str) -> (tempfile::TempDir, RunConfig) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, format!("[run]\nname = \"t\"\nmodel = \"m\"\n{text}")).unwrap();
        let rc = RunConfig::load(&p).unwrap();
        (dir, rc)
    }

    #[test]
    fn sections_parse_with_the_stages_defaults_and_skip_other_keys() {
        let (_d, c) = rc("[importance]\nsamples = 1024\nloss = \"ranking\"\n[surgery]\nffn_ratio = 0.25\nsteps = 4\n");
        let imp: ImportanceWork = parse_work(&c, "importance", &[]).unwrap();
        assert_eq!(
            (imp.samples, imp.batch_size, imp.max_length),
            (1024, 32, 128)
        );
        let sur: SurgeryWork = parse_work(&c, "surgery", &["importance"]).unwrap();
        assert_eq!(
            (sur.heads_ratio(), sur.ffn_ratio, sur.steps),
            (0.5, 0.25, 4)
        );
        assert_eq!(sur.random, None);
        let ev: EvalWork = parse_work(&c, "eval", &[]).unwrap();
        assert!(ev.tasks.is_empty() && !ev.no_speed);
        let (_d, c) = rc("[surgery]\nrandom = 7\n");
        let sur: SurgeryWork = parse_work(&c, "surgery", &["importance"]).unwrap();
        assert_eq!(sur.random, Some(7));
    }
}
