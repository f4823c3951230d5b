//! The pipeline's final report (`report --config FILE`): teacher vs pruned (before distillation) vs distilled,
//! side by side with published leaderboard rows.
//!
//! It only joins what the stages wrote (`eval/summary.csv`, `pruned/size.json`, the stage manifests), so it
//! is cheap to rerun and always shows the numbers of the files beside it.

use std::path::{Path, PathBuf};

use crate::artifacts::distill::{DevMetrics, DistillSummary};
use crate::artifacts::eval::{EvalSummary, ModelSummary, EVAL_SUMMARY_FILE};
use crate::artifacts::size::Report as SizeFile;
use crate::{Manifest, RunConfig, Stage};
use anyhow::{bail, Context, Result};
use polars::prelude::*;
use serde::Deserialize;

use crate::tables::{self, PublishedRow, PUBLISHED_MARK, TASKS};

/// `[report]` of a pipeline config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSection {
    /// Published rows shown beside ours: model names as in `data/published/encodechka_leaderboard.csv`.
    pub published: Vec<String>,
}

impl Default for ReportSection {
    fn default() -> Self {
        Self {
            published: vec![
                "cointegrated/LaBSE-en-ru".into(),
                "cointegrated/rubert-tiny2".into(),
            ],
        }
    }
}

/// Measured model names of the pipeline, in table order.
pub const MODELS: [&str; 3] = ["teacher", "pruned", "distilled"];

/// One row of the report.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub model: String,
    pub scores: Vec<Option<f64>>,
    pub mean_s: Option<f64>,
    pub mean_sw: Option<f64>,
    pub params_m: Option<f64>,
    pub mflops_per_token: Option<f64>,
    pub size_mb: Option<f64>,
    pub cpu_ms: Option<f64>,
    pub texts_per_s: Option<f64>,
}

/// The report's row of a measured model from the eval stage's summary.
pub(crate) fn row_of(m: &ModelSummary) -> Row {
    Row {
        model: m.model.clone(),
        scores: TASKS.iter().map(|t| m.scores.get(*t).copied()).collect(),
        mean_s: m.mean_s,
        mean_sw: m.mean_sw,
        size_mb: m.size_mb,
        cpu_ms: m.cpu_ms,
        texts_per_s: m.texts_per_s,
        ..Default::default()
    }
}

/// Everything the report shows.
pub struct Study {
    pub rows: Vec<Row>,
    pub published: Vec<PublishedRow>,
    /// (stage, seconds) from the manifests.
    pub stage_seconds: Vec<(String, f64)>,
    pub size: SizeFile,
    /// `None` before the distillation finished (the report then leaves its line out).
    pub distill: Option<DistillSummary>,
    pub run_name: String,
}

/// Gathers the report of the run `rc` describes.
pub fn gather(rc: &RunConfig) -> Result<Study> {
    let section: ReportSection = rc.section("report")?;
    let eval = rc.stage_dir(Stage::Eval);
    let summary = EvalSummary::read(&eval)?;
    let size = SizeFile::read(&rc.stage_dir(Stage::Surgery))?;
    let mut rows = vec![];
    for name in MODELS {
        let Some(m) = summary.model(name) else {
            bail!(
                "{}: no row for `{name}` (was the eval stage run with this config?)",
                eval.join(EVAL_SUMMARY_FILE).display()
            );
        };
        let mut r = row_of(m);
        let side = if name == "teacher" {
            &size.before
        } else {
            &size.after
        };
        r.params_m = Some(side.params.total as f64 / 1e6);
        r.mflops_per_token = Some(side.flops_per_token as f64 / 1e6);
        rows.push(r);
    }
    let static_dir = rc.run_dir().join(crate::stage::STATIC_MODEL);
    if let Some(r) = static_row(rc, &summary, &static_dir)? {
        rows.push(r);
    }
    let all = tables::parse_published(tables::PUBLISHED_CSV)?;
    let mut published = vec![];
    for want in &section.published {
        match all.iter().find(|p| &p.model == want) {
            Some(p) => published.push(p.clone()),
            None => bail!(
                "{}: [report] published = {want:?} is not in data/published/encodechka_leaderboard.csv (there: {})",
                rc.path.display(),
                all.iter().map(|p| p.model.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    let mut stage_seconds = vec![];
    for stage in Stage::ALL.into_iter().filter(|s| *s != Stage::Report) {
        if let Some(m) = Manifest::read(&rc.stage_dir(stage)) {
            stage_seconds.push((stage.to_string(), m.seconds));
        }
    }
    if let Some(m) = Manifest::read(&static_dir) {
        stage_seconds.push((crate::config::STATIC_SECTION.to_string(), m.seconds));
    }
    let distill = DistillSummary::read(&rc.stage_dir(Stage::Distill)).ok();
    Ok(Study {
        rows,
        published,
        stage_seconds,
        size,
        distill,
        run_name: rc.run.name.clone(),
    })
}

/// The static-embedding baseline's row when the run builds one (`[static]`) and the eval scored it: its
/// table's size as parameters, no encoder FLOPs.
fn static_row(rc: &RunConfig, summary: &EvalSummary, dir: &Path) -> Result<Option<Row>> {
    if !rc.has_section(crate::config::STATIC_SECTION) {
        return Ok(None);
    }
    let Some(m) = summary.model(crate::stage::STATIC_MODEL) else {
        return Ok(None);
    };
    let info = sekator_model::StaticModel::load(dir)?.info;
    let mut r = row_of(m);
    r.params_m = Some((info.vocab_size * info.dim) as f64 / 1e6);
    r.mflops_per_token = Some(0.0);
    Ok(Some(r))
}

fn pct(x: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (x, base) {
        (Some(x), Some(b)) if b != 0.0 => Some(100.0 * (x - b) / b),
        _ => None,
    }
}

impl Study {
    /// The report table: measured rows, then published ones (marked), with deltas against the teacher.
    pub fn frame(&self) -> Result<DataFrame> {
        let teacher = &self.rows[0];
        let mut model = vec![];
        let mut scores: Vec<Vec<Option<f64>>> = vec![vec![]; TASKS.len()];
        let (mut ms, mut msw, mut dms, mut params, mut flops, mut mb, mut cpu, mut tps, mut speed) = (
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
        );
        for r in &self.rows {
            model.push(r.model.clone());
            for (k, v) in r.scores.iter().enumerate() {
                scores[k].push(*v);
            }
            ms.push(r.mean_s);
            msw.push(r.mean_sw);
            dms.push(pct(r.mean_s, teacher.mean_s));
            params.push(r.params_m);
            flops.push(r.mflops_per_token);
            mb.push(r.size_mb);
            cpu.push(r.cpu_ms);
            tps.push(r.texts_per_s);
            speed.push(match (teacher.cpu_ms, r.cpu_ms) {
                (Some(t), Some(x)) if x > 0.0 => Some(t / x),
                _ => None,
            });
        }
        for p in &self.published {
            model.push(format!("{}{PUBLISHED_MARK}", p.model));
            for (k, t) in TASKS.iter().enumerate() {
                scores[k].push(p.scores.iter().find(|(pt, _)| pt == t).map(|(_, v)| *v));
            }
            ms.push(Some(p.mean_s));
            msw.push(p.mean_sw);
            dms.push(None);
            params.push(None);
            flops.push(None);
            mb.push(p.size_mb);
            cpu.push(p.cpu_ms);
            tps.push(None);
            speed.push(None);
        }
        let mut cols = vec![Column::new("model".into(), model)];
        for (t, v) in TASKS.iter().zip(scores) {
            cols.push(Column::new((*t).into(), v));
        }
        cols.extend([
            Column::new("mean_s".into(), ms),
            Column::new("mean_sw".into(), msw),
            Column::new("mean_s_vs_teacher_pct".into(), dms),
            Column::new("params_M".into(), params),
            Column::new("MFLOPs_per_token".into(), flops),
            Column::new("size_mb".into(), mb),
            Column::new("cpu_ms".into(), cpu),
            Column::new("cpu_speedup".into(), speed),
            Column::new("texts_per_s".into(), tps),
        ]);
        Ok(DataFrame::new(cols)?)
    }

    /// `report.md`: the table plus the headline ratios and stage times.
    pub fn markdown(&self, df: &DataFrame) -> String {
        let mut s = format!("# sekator run `{}`\n\n", self.run_name);
        let r = &self.size.ratios;
        s.push_str(&format!(
            "Pruning: {:.2}x fewer parameters, {:.2}x fewer encoder FLOPs per token (sequence length {}).\n",
            r.params_total, r.flops_per_token, self.size.after.flops_seq_len
        ));
        let (t, p, d) = (&self.rows[0], &self.rows[1], &self.rows[2]);
        if let (Some(tm), Some(pm), Some(dm)) = (t.mean_s, p.mean_s, d.mean_s) {
            s.push_str(&format!(
                "Mean S: teacher {tm:.4}, pruned {pm:.4} ({:+.1}%), distilled {dm:.4} ({:+.1}%).\n",
                100.0 * (pm - tm) / tm,
                100.0 * (dm - tm) / tm
            ));
        }
        if let Some(d) = &self.distill {
            let mse = |m: Option<DevMetrics>| m.map_or(f64::NAN, |m| m.mse as f64);
            s.push_str(&format!(
                "Distillation: {} steps, {:.1} pairs/s; dev MSE to teacher {:.5} -> {:.5}.\n",
                d.total_steps,
                d.pairs_per_s,
                mse(d.eval_first),
                mse(d.eval_last),
            ));
        }
        s.push('\n');
        s.push_str(&tables::markdown(df, 3));
        s.push_str("\nScores: encodechka tasks (max over embedding variants and classifiers); mean_s over the \
8 sentence tasks, mean_sw over all 10. cpu_ms: ms per text, one text at a time (encodechka's CPU column, \
measured on this machine for our rows); texts_per_s: batched. Published rows are from the encodechka README, \
measured elsewhere: compare their scores, not their times.\n");
        if !self.stage_seconds.is_empty() {
            s.push_str("\n| stage | seconds |\n|---|---:|\n");
            for (stage, secs) in &self.stage_seconds {
                s.push_str(&format!("| {stage} | {secs:.0} |\n"));
            }
        }
        s
    }

    /// Quality (Mean S, or the mean over the tasks run) against CPU ms per text.
    pub fn plot(&self, path: &Path) -> Result<()> {
        let points: Vec<(String, f64, f64)> = self
            .rows
            .iter()
            .filter_map(|r| {
                let q = r.mean_s.or_else(|| {
                    let v: Vec<f64> = r.scores.iter().flatten().copied().collect();
                    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
                })?;
                Some((r.model.clone(), r.cpu_ms?, q))
            })
            .collect();
        sekator_plot::scatter_labeled(
            path,
            "quality vs speed (this machine)",
            "CPU ms per text",
            "encodechka mean score",
            &points,
        )
        .with_context(|| format!("drawing {}", path.display()))
    }
}

/// Writes `report.md`, `report.csv` and `quality_vs_speed.png` into `out`; returns the Markdown.
pub fn write(study: &Study, out: &Path) -> Result<(String, PathBuf)> {
    let mut df = study.frame()?;
    let md = study.markdown(&df);
    tables::write_csv(&out.join("report.csv"), &mut df)?;
    sekator_model::write_atomic(&out.join("report.md"), md.as_bytes())?;
    let png = out.join("quality_vs_speed.png");
    if let Err(e) = study.plot(&png) {
        tracing::warn!("{e:#}");
    }
    Ok((md, png))
}

/// Adds the run's encodechka scores (and the teacher's beside them) to the model cards of the pruned and the
/// distilled model, where the stage that wrote them left one. Only README.md and sekator_card.json change:
/// the weights and config.json (what the manifests hash) stay as they are.
pub fn update_cards(study: &Study, rc: &RunConfig) -> Result<Vec<PathBuf>> {
    let teacher = study.rows.iter().find(|r| r.model == "teacher");
    let mut done = vec![];
    for (name, dir) in [
        ("pruned", rc.stage_dir(Stage::Surgery)),
        (
            "distilled",
            rc.stage_dir(Stage::Distill)
                .join(crate::stage::DISTILLED_MODEL),
        ),
    ] {
        let Some(row) = study.rows.iter().find(|r| r.model == name) else {
            continue;
        };
        let Some(mut facts) = sekator_export::card::read_facts(&dir)? else {
            continue;
        };
        let mut rows: Vec<sekator_export::card::TaskScore> = TASKS
            .iter()
            .enumerate()
            .filter_map(|(k, t)| {
                row.scores[k].map(|v| sekator_export::card::TaskScore {
                    task: (*t).into(),
                    base: teacher.and_then(|r| r.scores[k]),
                    model: v,
                })
            })
            .collect();
        if let Some(m) = row.mean_s {
            rows.push(sekator_export::card::TaskScore {
                task: "Mean S".into(),
                base: teacher.and_then(|r| r.mean_s),
                model: m,
            });
        }
        facts.encodechka = Some(rows);
        sekator_export::card::write_card(&dir, &facts)?;
        done.push(dir);
    }
    Ok(done)
}
