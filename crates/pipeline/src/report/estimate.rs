//! The up-front time estimate of a pipeline run (`report --estimate`, printed by `just pipeline` first).
//!
//! Each stage's section is parsed through the very types the stage parses it into ([`crate::sections`]),
//! so the estimate sees the stage's defaults and the config's values alike. Work is counted in pairs, texts
//! and steps and turned into minutes with rates measured on 2 CPU cores with all-MiniLM-L6-v2 ([`RATES`]),
//! scaled by encoder FLOPs per token (the size report's formula) against MiniLM's. No rate has been measured
//! on a GPU, so a config that runs on CUDA gets "unknown" rather than a CPU number. It is a guide for
//! planning, not a promise.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use sekator_model::{BertConfig, DeviceKind};

use crate::artifacts::size::{flops_per_token, FLOPS_SEQ_LEN};
use crate::sections::{parse_work, DistillWork, EvalWork, ImportanceWork, SurgeryWork};
use crate::{Manifest, RunConfig, Stage};

/// Throughputs on 2 CPU cores, all-MiniLM-L6-v2, with the settings of `configs/default.toml`.
struct Rates {
    /// importance: forward + backward to the masks, pairs per second.
    importance_pairs_per_s: f64,
    /// importance `--validate K`: one forward loss over the sample per validated head, pairs per second.
    validate_pairs_per_s: f64,
    /// distill: student optimizer steps, pairs per second (for a MiniLM-sized student).
    distill_pairs_per_s: f64,
    /// teacher cache and dev evaluations: texts embedded per second (forward only).
    embed_texts_per_s: f64,
    /// surgery: seconds to load, cut, write, export and time one MiniLM-sized model.
    surgery_s: f64,
    /// full encodechka (10 tasks + speed) of one model: seconds of embedding (scales with the model)...
    encodechka_embed_s: f64,
    /// ... and of classifiers (does not).
    encodechka_classify_s: f64,
}

/// From the default run of 2026-11-28 (importance 1024 pairs at 20.4 pairs/s; distillation 18.4 pairs/s on
/// the half-size student; teacher cache 16,384 texts in 86 s; encodechka 488 s of embedding and 40 s of
/// classifiers for MiniLM); checked against a later measured run in BENCHMARKS.md ("Pipeline estimate").
/// Distillation scaled by the speed-up of the CPU training work, measured on the default run's stage before
/// and after it on one machine (2026-12-03: 21.0 -> 31.6 pairs/s).
const RATES: Rates = Rates {
    importance_pairs_per_s: 20.0,
    validate_pairs_per_s: 60.0,
    distill_pairs_per_s: 13.8,
    embed_texts_per_s: 190.0,
    surgery_s: 10.0,
    encodechka_embed_s: 488.0,
    encodechka_classify_s: 40.0,
};

/// encodechka task codes with their share of the full run's time for MiniLM (embedding dominates).
const TASK_SHARE: [(&str, f64); 10] = [
    ("STS", 0.05),
    ("PI", 0.06),
    ("NLI", 0.14),
    ("SA", 0.12),
    ("TI", 0.06),
    ("IA", 0.09),
    ("IC", 0.12),
    ("ICX", 0.08),
    ("NE1", 0.14),
    ("NE2", 0.14),
];

/// MiniLM's encoder FLOPs per token (what the rates were measured on).
fn minilm_flops() -> f64 {
    let mut c = BertConfig::new(30522, 384, 6, 12, 1536);
    c.max_position_embeddings = 512;
    flops_per_token(&c, FLOPS_SEQ_LEN) as f64
}

/// `cfg` after a cut of `heads` (fraction of heads, or heads kept per layer) and `ffn` (fraction of
/// neurons), both spread evenly over the layers, and `hidden` (fraction of the residual stream), keeping
/// `layers` (all when `None`): the shapes the FLOPs count needs, not the units importance would pick.
fn cut(
    cfg: &BertConfig,
    heads: Heads,
    ffn: f64,
    hidden: f64,
    layers: Option<&[usize]>,
) -> BertConfig {
    let all: Vec<usize> = (0..cfg.num_hidden_layers).collect();
    let keep = layers.unwrap_or(&all);
    let mut c = cfg.clone();
    c.num_hidden_layers = keep.len();
    c.pruned_heads.clear();
    let mut widths = vec![];
    for (new, &l) in keep.iter().enumerate() {
        let n = cfg.heads_per_layer()[l];
        let kept = match heads {
            Heads::Ratio(r) => ((n as f64) * (1.0 - r)).round() as usize,
            Heads::PerLayer(k) => k.min(n),
        }
        .max(1);
        let gone: Vec<usize> = (kept..cfg.num_attention_heads).collect();
        c.add_pruned_heads(new, &gone);
        widths.push(((cfg.ffn_sizes()[l] as f64 * (1.0 - ffn)).round() as usize).max(1));
    }
    c.set_ffn_sizes(widths);
    let narrower = (cfg.hidden_size as f64 * hidden).round() as usize;
    c.add_pruned_hidden(&(0..narrower.min(cfg.hidden_size - 1)).collect::<Vec<_>>());
    c
}

#[derive(Clone, Copy)]
enum Heads {
    Ratio(f64),
    PerLayer(usize),
}

/// Lines of a pair file (its pairs, roughly; a header line is one too many), or `None` when absent.
fn pair_count(path: &Path) -> Option<usize> {
    let text = std::fs::read(path).ok()?;
    Some(text.iter().filter(|&&b| b == b'\n').count())
}

/// One row of the table: seconds, or why none is known.
type Row = (Stage, Result<f64, String>);

/// The estimate as a small markdown table (minutes per stage), with a note on stages already done.
pub fn estimate(rc: &RunConfig) -> Result<String> {
    let device = match rc.run.device {
        DeviceKind::Auto => sekator_model::backend::resolve(DeviceKind::Auto)?,
        d => d,
    };
    let config = rc.run.model.join("config.json");
    let unknown = |why: String| -> Vec<Row> {
        Stage::ALL[..4]
            .iter()
            .map(|&s| (s, Err(why.clone())))
            .collect()
    };
    let rows = if device == DeviceKind::Cuda {
        unknown("unknown: no rate measured for cuda".into())
    } else if !config.is_file() {
        unknown(format!(
            "unknown: {} not found (fetch the teacher first)",
            config.display()
        ))
    } else {
        let cfg = BertConfig::load(&config)
            .with_context(|| format!("{}: reading the teacher's config", config.display()))?;
        cpu_rows(rc, &cfg)?
    };
    Ok(table(rc, device, &rows))
}

/// The importance pass's cost in ranking-loss passes: `magnitude` takes none (weights only), a loss against
/// a teacher (`contrastive`, `teacher`) adds the teacher's forward to every batch: 1.7x, measured in the
/// study of 2026-12-02 (100 s against 60 s for the same 1024 pairs).
fn gradient_passes(importance: &serde_json::Value) -> f64 {
    match (
        importance["criterion"].as_str(),
        importance["loss"].as_str(),
    ) {
        (Some("magnitude"), _) => 0.0,
        (_, Some("contrastive" | "teacher")) => 1.7,
        _ => 1.0,
    }
}

/// Seconds of every stage on the CPU.
fn cpu_rows(rc: &RunConfig, cfg: &BertConfig) -> Result<Vec<Row>> {
    let imp: ImportanceWork = parse_work(rc, Stage::Importance.name(), &[])?;
    let sur: SurgeryWork = parse_work(rc, Stage::Surgery.name(), &["importance"])?;
    let dis: DistillWork = rc.section(Stage::Distill.name())?;
    let ev: EvalWork = parse_work(rc, Stage::Eval.name(), &[])?;
    let scale = |c: &BertConfig| flops_per_token(c, FLOPS_SEQ_LEN) as f64 / minilm_flops();
    let n_pairs = pair_count(&rc.run.pairs);

    let heads = match sur.heads_per_layer {
        Some(k) => Heads::PerLayer(k),
        None => Heads::Ratio(sur.heads_ratio()),
    };
    let (ffn, hidden) = (sur.ffn_ratio, sur.hidden_ratio);
    let student = cut(cfg, heads, ffn, hidden, sur.keep_layers.as_deref());

    // importance: whole batches of the sample, plus one forward pass over it per validated head
    let pairs = n_pairs.map_or(imp.samples, |n| imp.samples.min(n));
    let pairs = (pairs / imp.batch_size.max(1) * imp.batch_size) as f64;
    let passes = gradient_passes(&rc.section_json(Stage::Importance.name()));
    let importance_s = |c: &BertConfig| {
        scale(c)
            * (passes * pairs / RATES.importance_pairs_per_s
                + imp.validate as f64 * pairs / RATES.validate_pairs_per_s)
    };

    // surgery: one cut per step, re-scoring importance on the partly cut model between steps
    let k = sur.steps.max(1);
    let mut surgery_s = RATES.surgery_s * (scale(cfg) + scale(&student)) / 2.0;
    for step in 1..k {
        let f = step as f64 / k as f64;
        let partial = match heads {
            Heads::Ratio(r) => cut(cfg, Heads::Ratio(r * f), ffn * f, hidden * f, None),
            Heads::PerLayer(_) => cut(cfg, heads, ffn * f, hidden * f, None),
        };
        surgery_s += importance_s(&partial) + RATES.surgery_s * scale(&partial);
    }

    // distill: the student's steps; the teacher embeds both sides of the sample once (cache), and the
    // student embeds the dev pairs at every evaluation
    let data = n_pairs.map(|n| dis.max_pairs.map_or(n, |m| m.min(n)));
    let steps = match (dis.steps, data) {
        (Some(s), _) => s,
        (None, Some(n)) => (dis.epochs * n.div_ceil(dis.batch_size.max(1)) as f64).ceil() as usize,
        (None, None) => {
            return Err(anyhow::anyhow!(
                "{}: pair file not found (needed to count distillation steps)",
                rc.run.pairs.display()
            ))
        }
    };
    let trained = (steps * dis.batch_size) as f64;
    let sample = data.unwrap_or(steps * dis.batch_size) as f64;
    // before the first step, every `eval_every` steps, after the last
    let evals = steps.checked_div(dis.eval_every).unwrap_or(0) + 2;
    let dev_texts = (evals * 2 * dis.eval_pairs) as f64;
    let distill_s = scale(&student)
        * (trained / RATES.distill_pairs_per_s + dev_texts / RATES.embed_texts_per_s)
        + scale(cfg) * (2.0 * sample + 2.0 * dis.eval_pairs as f64) / RATES.embed_texts_per_s;

    // eval: three models; a model whose vectors are cached (same checkpoint) is not embedded again
    let share: f64 = if ev.tasks.is_empty() {
        1.0
    } else {
        TASK_SHARE
            .iter()
            .filter(|(code, _)| ev.tasks.iter().any(|x| x.eq_ignore_ascii_case(code)))
            .map(|(_, s)| s)
            .sum()
    };
    let cache = ev
        .cache
        .clone()
        .unwrap_or_else(|| rc.run.runs_dir.join("encodechka-cache"));
    let cached = |dir: &Path| {
        !ev.no_cache && sekator_model::checkpoint_hash(dir).is_ok_and(|h| cache.join(h).is_dir())
    };
    let teacher_embed = if cached(&rc.run.model) {
        0.0
    } else {
        scale(cfg)
    };
    let eval_s = share
        * (3.0 * RATES.encodechka_classify_s
            + RATES.encodechka_embed_s * (teacher_embed + 2.0 * scale(&student)));

    Ok(vec![
        (Stage::Importance, Ok(importance_s(cfg))),
        (Stage::Surgery, Ok(surgery_s)),
        (Stage::Distill, Ok(distill_s)),
        (Stage::Eval, Ok(eval_s)),
    ])
}

fn table(rc: &RunConfig, device: DeviceKind, rows: &[Row]) -> String {
    let mut s = format!(
        "Estimated time of run `{}` on {device} (rates measured on 2 CPU cores with MiniLM, scaled by encoder \
         FLOPs per token); stages whose manifest matches are skipped.\n\n\
         | stage | est. minutes | state |\n|---|---:|---|\n",
        rc.run.name
    );
    let mut total = Some(0.0);
    for (stage, secs) in rows {
        let state = if Manifest::read(&rc.stage_dir(*stage)).is_some() {
            "done before (reruns if its code, settings or inputs changed)"
        } else {
            "to run"
        };
        let cell = match secs {
            Ok(x) => format!("{:.1}", x / 60.0),
            Err(why) => why.clone(),
        };
        total = total.zip(secs.as_ref().ok()).map(|(t, x)| t + x);
        writeln!(s, "| {stage} | {cell} | {state} |").ok();
    }
    let total = total.map_or("unknown".to_string(), |t| format!("{:.1}", t / 60.0));
    writeln!(s, "| total | {total} | |").ok();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minilm_flops_match_the_surgery_count() {
        // 22,413,312 is surgery's analytic FLOPs/token of all-MiniLM-L6-v2 (BENCHMARKS.md)
        assert_eq!(minilm_flops(), 22_413_312.0);
        let mut c = BertConfig::new(30522, 384, 6, 12, 1536);
        c.max_position_embeddings = 512;
        // heads and FFN halved: exactly half (the study's 2x point)
        let half = cut(&c, Heads::Ratio(0.5), 0.5, 0.0, None);
        assert_eq!(
            flops_per_token(&half, FLOPS_SEQ_LEN) as f64,
            22_413_312.0 / 2.0
        );
        let two = cut(&c, Heads::PerLayer(12), 0.0, 0.0, Some(&[0, 3]));
        assert_eq!(
            flops_per_token(&two, FLOPS_SEQ_LEN) as f64,
            22_413_312.0 / 3.0
        );
    }

    /// A LaBSE-en-ru-shaped teacher (hidden 768, 12 x 12 heads, FFN 3072) and `n` pairs under `dir`.
    fn labse_run(dir: &Path, sections: &str) -> RunConfig {
        let model = dir.join("labse");
        std::fs::create_dir_all(&model).unwrap();
        let cfg = BertConfig::new(55083, 768, 12, 12, 3072);
        std::fs::write(
            model.join("config.json"),
            serde_json::to_string(&cfg).unwrap(),
        )
        .unwrap();
        let pairs = dir.join("pairs.tsv");
        std::fs::write(&pairs, "a\tb\n".repeat(20_000)).unwrap();
        let toml = format!(
            "[run]\nname = \"x\"\nmodel = {model:?}\npairs = {pairs:?}\nruns_dir = {:?}\ndevice = \"cpu\"\n{sections}",
            dir.join("runs")
        );
        let path = dir.join("run.toml");
        std::fs::write(&path, toml).unwrap();
        RunConfig::load(&path).unwrap()
    }

    fn seconds(rows: &[Row], stage: Stage) -> f64 {
        rows.iter()
            .find(|r| r.0 == stage)
            .unwrap()
            .1
            .clone()
            .unwrap()
    }

    #[test]
    fn epochs_and_iterative_surgery_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let imp = "[importance]\nsamples = 8192\nbatch_size = 64\n";
        let one = labse_run(dir.path(), &format!("{imp}[surgery]\nheads_ratio = 0.9\nffn_ratio = 0.9\n[distill]\nepochs = 3.0\nbatch_size = 64\n"));
        let cfg = BertConfig::load(&one.run.model.join("config.json")).unwrap();
        let r1 = cpu_rows(&one, &cfg).unwrap();
        assert!(r1.iter().all(|r| r.1.as_ref().is_ok_and(|s| *s > 0.0)));
        // 3 epochs of 20,000 pairs (the header-less file's lines) in batches of 64
        let four = labse_run(dir.path(), &format!("{imp}[surgery]\nheads_ratio = 0.9\nffn_ratio = 0.9\nsteps = 4\n[distill]\nepochs = 3.0\nbatch_size = 64\n"));
        let r4 = cpu_rows(&four, &cfg).unwrap();
        // three re-scorings between four steps, on ever smaller models: more than one and less than three
        // full importance passes on top of the one-shot surgery
        let extra = seconds(&r4, Stage::Surgery) - seconds(&r1, Stage::Surgery);
        let importance = seconds(&r1, Stage::Importance);
        assert!(
            extra > importance && extra < 3.0 * importance,
            "{extra} vs {importance}"
        );
        // epochs (no `steps`) count: three passes take longer than one
        let once = labse_run(dir.path(), &format!("{imp}[surgery]\nheads_ratio = 0.9\nffn_ratio = 0.9\n[distill]\nepochs = 1.0\nbatch_size = 64\n"));
        let r0 = cpu_rows(&once, &cfg).unwrap();
        assert!(seconds(&r1, Stage::Distill) > seconds(&r0, Stage::Distill) * 1.1);
    }

    #[test]
    fn every_shipped_config_gets_a_time_for_every_stage_or_says_why_not() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let scratch = tempfile::tempdir().unwrap();
        let mut seen = 0;
        let configs = crate::comparison::plans::shipped_run_configs(&root, scratch.path()).unwrap();
        for rc in configs {
            let path = rc.path.clone();
            let table = estimate(&rc).unwrap();
            let rows: Vec<&str> = table
                .lines()
                .filter(|l| {
                    Stage::ALL
                        .iter()
                        .any(|s| l.starts_with(&format!("| {s} |")))
                })
                .collect();
            assert_eq!(rows.len(), 4, "{}: {table}", path.display());
            for row in rows {
                let cell = row.split('|').nth(2).unwrap().trim();
                // weight norms take well under a minute: the one stage allowed to read 0.0
                let magnitude = row.starts_with("| importance |")
                    && rc.section_json("importance")["criterion"] == "magnitude";
                let known = cell
                    .parse::<f64>()
                    .is_ok_and(|m| m > 0.0 || (magnitude && m == 0.0));
                assert!(
                    known || cell.starts_with("unknown: "),
                    "{}: {row}",
                    path.display()
                );
                let cpu =
                    sekator_model::backend::resolve(rc.run.device).ok() == Some(DeviceKind::Cpu);
                if cpu && rc.run.model.join("config.json").is_file() {
                    assert!(known, "{}: {row}", path.display());
                }
            }
            seen += 1;
        }
        // the pipeline configs and every plan of the two study configs
        assert!(seen >= 15, "{seen} configs");
    }

    #[test]
    fn the_importance_loss_and_criterion_set_its_cost() {
        let dir = tempfile::tempdir().unwrap();
        let secs = |extra: &str| {
            let rc = labse_run(
                dir.path(),
                &format!("[importance]\nsamples = 1024\n{extra}"),
            );
            let cfg = BertConfig::load(&rc.run.model.join("config.json")).unwrap();
            seconds(&cpu_rows(&rc, &cfg).unwrap(), Stage::Importance)
        };
        let ranking = secs("");
        assert!(ranking > 0.0);
        let contrastive = secs("loss = \"contrastive\"\n");
        assert!(
            (contrastive / ranking - 1.7).abs() < 1e-9,
            "{contrastive} vs {ranking}"
        );
        assert_eq!(secs("criterion = \"magnitude\"\n"), 0.0);
        // --validate still needs the data passes
        assert!(secs("criterion = \"magnitude\"\nvalidate = 4\n") > 0.0);
    }

    #[test]
    fn cuda_configs_say_no_rate_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let mut rc = labse_run(dir.path(), "");
        rc.run.device = DeviceKind::Cuda;
        let t = estimate(&rc).unwrap();
        assert_eq!(
            t.matches("unknown: no rate measured for cuda").count(),
            4,
            "{t}"
        );
        assert!(t.contains("| total | unknown |"), "{t}");
    }

    #[test]
    fn task_shares_cover_the_full_run() {
        let total: f64 = TASK_SHARE.iter().map(|t| t.1).sum();
        assert!((total - 1.0).abs() < 1e-9);
        let codes: Vec<&str> = TASK_SHARE.iter().map(|t| t.0).collect();
        assert_eq!(codes, crate::artifacts::eval::TASKS);
    }
}
