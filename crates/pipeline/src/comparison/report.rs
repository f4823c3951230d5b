//! The study's report (`<runs_dir>/<study>/report/`): every plan's distilled student on encodechka beside
//! the teacher, with the spread of the plan that was distilled with several seeds, per-task changes against
//! the teacher, and Mean S against CPU ms per text as a PNG.
//!
//! Like the run report it only reads what the stages wrote (each run's `eval/summary.json`,
//! `pruned/size.json`, `distill/summary.json`, `importance/importance.json`, the manifests).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use polars::prelude::*;

use super::plans::{PlanRun, StudyConfig};
use crate::artifacts::distill::DistillSummary;
use crate::artifacts::eval::{EvalSummary, EVAL_SUMMARY_FILE};
use crate::artifacts::size::Report as SizeFile;
use crate::report::study::{row_of, Row};
use crate::tables::{self, TASKS};
use crate::{Manifest, Stage};

/// Name of the teacher's row (and of its run directory under the study).
pub const TEACHER: &str = "teacher";

/// One measured model of the study.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Run name (`taylor-seed43`) and the plan it belongs to.
    pub run: String,
    pub plan: String,
    pub seed: Option<u64>,
    pub row: Row,
    /// Dev MSE to the teacher after the distillation.
    pub dev_mse: Option<f64>,
    /// `--validate` Spearman of the importance scores the plan used (when validated).
    pub spearman: Option<f64>,
    /// Seconds per stage (importance, surgery, distill, eval) from the manifests.
    pub seconds: Vec<(String, f64)>,
}

/// A plan's runs summarised: the mean of every column and, with two runs or more, its sample SD.
#[derive(Debug, Clone)]
pub struct PlanStats {
    pub plan: String,
    pub about: String,
    pub runs: usize,
    /// Mean and SD per task (TASKS order), then Mean S, then Mean S+W.
    pub mean: Vec<Option<f64>>,
    pub sd: Vec<Option<f64>>,
    pub params_m: Option<f64>,
    pub mflops: Option<f64>,
    pub cpu_ms: Option<f64>,
    pub dev_mse: Option<f64>,
    pub spearman: Option<f64>,
}

/// Everything the study report shows.
pub struct StudyReport {
    pub name: String,
    pub base: PathBuf,
    pub teacher: Measured,
    pub runs: Vec<Measured>,
    pub plans: Vec<PlanStats>,
    /// Runs not evaluated yet (the report of an unfinished study leaves them out and names them).
    pub pending: Vec<String>,
}

fn json_number(path: &Path, pointer: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.pointer(pointer)?.as_f64()
}

fn stage_seconds(rc: &crate::RunConfig) -> Vec<(String, f64)> {
    [
        Stage::Importance,
        Stage::Surgery,
        Stage::Distill,
        Stage::Eval,
    ]
    .into_iter()
    .filter_map(|s| Manifest::read(&rc.stage_dir(s)).map(|m| (s.to_string(), m.seconds)))
    .collect()
}

/// The eval row named `name` in `dir/summary.json`.
fn eval_row(dir: &Path, name: &str) -> Result<Row> {
    let summary = EvalSummary::read(dir)?;
    let m = summary.model(name).with_context(|| {
        format!(
            "{}/summary.json has no row `{name}` (rerun the study: it evaluates every plan)",
            dir.display()
        )
    })?;
    Ok(row_of(m))
}

fn measure(r: &PlanRun) -> Result<Measured> {
    let rc = &r.config;
    let mut row = eval_row(&rc.stage_dir(Stage::Eval), &r.name)?;
    let size = SizeFile::read(&rc.stage_dir(Stage::Surgery))?;
    row.params_m = Some(size.after.params.total as f64 / 1e6);
    row.mflops_per_token = Some(size.after.flops_per_token as f64 / 1e6);
    let distill = DistillSummary::read(&rc.stage_dir(Stage::Distill)).ok();
    let imp = rc.stage_dir(Stage::Importance).join("importance.json");
    Ok(Measured {
        run: r.name.clone(),
        plan: r.plan.clone(),
        seed: Some(r.seed),
        row,
        dev_mse: distill.and_then(|d| d.eval_last).map(|m| m.mse as f64),
        spearman: json_number(&imp, "/validate/spearman"),
        seconds: stage_seconds(rc),
    })
}

/// The teacher's row: its eval output under the study, sizes from any run's `size.json` (`before`).
fn measure_teacher(study: &StudyConfig, any: &PlanRun) -> Result<Measured> {
    let mut row = eval_row(&study.dir().join(TEACHER).join(Stage::Eval.dir()), TEACHER)?;
    let size = SizeFile::read(&any.config.stage_dir(Stage::Surgery))?;
    row.params_m = Some(size.before.params.total as f64 / 1e6);
    row.mflops_per_token = Some(size.before.flops_per_token as f64 / 1e6);
    Ok(Measured {
        run: TEACHER.into(),
        plan: TEACHER.into(),
        seed: None,
        row,
        dev_mse: None,
        spearman: None,
        seconds: vec![],
    })
}

/// Mean and sample SD (None for one value) of the present values.
fn mean_sd(v: &[Option<f64>]) -> (Option<f64>, Option<f64>) {
    let x: Vec<f64> = v.iter().flatten().copied().collect();
    if x.is_empty() {
        return (None, None);
    }
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let sd =
        (x.len() > 1).then(|| (x.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (Some(m), sd)
}

fn columns(r: &Row) -> Vec<Option<f64>> {
    let mut c = r.scores.clone();
    c.extend([r.mean_s, r.mean_sw]);
    c
}

fn plan_stats(plan: &str, about: &str, runs: &[&Measured]) -> PlanStats {
    let cols: Vec<Vec<Option<f64>>> = runs.iter().map(|m| columns(&m.row)).collect();
    let (mut mean, mut sd) = (vec![], vec![]);
    for k in 0..TASKS.len() + 2 {
        let (m, s) = mean_sd(&cols.iter().map(|c| c[k]).collect::<Vec<_>>());
        mean.push(m);
        sd.push(s);
    }
    let avg = |f: &dyn Fn(&Measured) -> Option<f64>| {
        mean_sd(&runs.iter().map(|m| f(m)).collect::<Vec<_>>()).0
    };
    PlanStats {
        plan: plan.into(),
        about: about.into(),
        runs: runs.len(),
        mean,
        sd,
        params_m: avg(&|m| m.row.params_m),
        mflops: avg(&|m| m.row.mflops_per_token),
        cpu_ms: avg(&|m| m.row.cpu_ms),
        dev_mse: avg(&|m| m.dev_mse),
        spearman: avg(&|m| m.spearman),
    }
}

/// Reads every run of the study; a run whose files are missing is an error naming the file.
pub fn gather(study: &StudyConfig, runs: &[PlanRun]) -> Result<StudyReport> {
    let (mut measured, mut pending) = (vec![], vec![]);
    for r in runs {
        let summary = r.config.stage_dir(Stage::Eval).join(EVAL_SUMMARY_FILE);
        if summary.is_file() {
            measured.push(measure(r).with_context(|| format!("study run `{}`", r.name))?);
        } else {
            pending.push(r.name.clone());
        }
    }
    let teacher = measure_teacher(study, &runs[0])?;
    let mut plans = vec![plan_stats(TEACHER, "the teacher itself", &[&teacher])];
    for p in &study.plans {
        let of: Vec<&Measured> = measured.iter().filter(|m| m.plan == p.name).collect();
        plans.push(plan_stats(&p.name, &p.about, &of));
    }
    Ok(StudyReport {
        name: study.study.name.clone(),
        base: study.base.path.clone(),
        teacher,
        runs: measured,
        plans,
        pending,
    })
}

fn cell(m: Option<f64>, sd: Option<f64>) -> String {
    match (m, sd) {
        (Some(m), Some(s)) => format!("{m:.3} ± {s:.3}"),
        (Some(m), None) => format!("{m:.3}"),
        _ => String::new(),
    }
}

fn num(x: Option<f64>, decimals: usize) -> String {
    x.map_or(String::new(), |v| format!("{v:.decimals$}"))
}

impl StudyReport {
    /// Index of Mean S in [`PlanStats::mean`].
    const MEAN_S: usize = TASKS.len();

    fn teacher_mean_s(&self) -> Option<f64> {
        self.plans[0].mean[Self::MEAN_S]
    }

    /// The SD of Mean S of the plan distilled with several seeds, and that plan.
    pub fn noise(&self) -> Option<(&PlanStats, f64)> {
        self.plans
            .iter()
            .find_map(|p| p.sd[Self::MEAN_S].map(|s| (p, s)))
    }

    fn main_table(&self) -> String {
        let mut s = format!(
            "| plan | runs | {} | Mean S | vs teacher | Mean S+W | params M | MFLOPs/token | CPU ms/text | dev MSE | Spearman |\n",
            TASKS.join(" | ")
        );
        s.push_str(&format!("|:---|---:|{}\n", "---:|".repeat(TASKS.len() + 9)));
        let t = self.teacher_mean_s();
        for p in self.plans.iter().filter(|p| p.runs > 0) {
            let scores: Vec<String> = (0..TASKS.len() + 2)
                .map(|k| cell(p.mean[k], p.sd[k]))
                .collect();
            let vs = match (p.mean[Self::MEAN_S], t) {
                (Some(m), Some(t)) if p.plan != TEACHER => format!("{:+.1}%", 100.0 * (m - t) / t),
                _ => String::new(),
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                p.plan,
                p.runs,
                scores[..TASKS.len()].join(" | "),
                scores[Self::MEAN_S],
                vs,
                scores[Self::MEAN_S + 1],
                num(p.params_m, 2),
                num(p.mflops, 2),
                num(p.cpu_ms, 1),
                num(p.dev_mse, 4),
                num(p.spearman, 3),
            ));
        }
        s
    }

    /// Change of every task and of Mean S against the teacher, in points (score x 100).
    fn delta_table(&self) -> String {
        let mut s = format!("| plan | {} | Mean S |\n", TASKS.join(" | "));
        s.push_str(&format!("|:---|{}\n", "---:|".repeat(TASKS.len() + 1)));
        let t = &self.plans[0].mean;
        for p in self.plans[1..].iter().filter(|p| p.runs > 0) {
            let d: Vec<String> = (0..=TASKS.len())
                .map(|k| match (p.mean[k], t[k]) {
                    (Some(x), Some(b)) => format!("{:+.1}", 100.0 * (x - b)),
                    _ => String::new(),
                })
                .collect();
            s.push_str(&format!("| {} | {} |\n", p.plan, d.join(" | ")));
        }
        s
    }

    /// Plans by Mean S, each against the first plan in units of the noise SD.
    fn ranking(&self) -> String {
        let mut ps: Vec<&PlanStats> = self.plans[1..]
            .iter()
            .filter(|p| p.mean[Self::MEAN_S].is_some())
            .collect();
        ps.sort_by(|a, b| {
            b.mean[Self::MEAN_S]
                .partial_cmp(&a.mean[Self::MEAN_S])
                .unwrap()
        });
        let first = &self.plans[1];
        let noise = self.noise().map(|(_, s)| s);
        let mut s = String::new();
        for (i, p) in ps.iter().enumerate() {
            let m = p.mean[Self::MEAN_S].unwrap_or(f64::NAN);
            let d = m - first.mean[Self::MEAN_S].unwrap_or(f64::NAN);
            let vs = if p.plan == first.plan {
                String::new()
            } else {
                let in_sd = noise
                    .filter(|s| *s > 0.0)
                    .map_or(String::new(), |s| format!(" = {:+.1} SD", d / s));
                format!(", {:+.4} against `{}`{in_sd}", d, first.plan)
            };
            s.push_str(&format!("{}. `{}`: Mean S {m:.4}{vs}\n", i + 1, p.plan));
        }
        s
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("# Study `{}`: cuts at one FLOPs target\n\n", self.name);
        s.push_str(&format!(
            "Every plan starts from `{}` and is distilled with the same budget, data and seed; each row is the \
distilled student on encodechka (the tasks of the base's [eval]; all of them by default).\n\n",
            self.base.display()
        ));
        match self.noise() {
            Some((p, sd)) => s.push_str(&format!(
                "Noise: `{}` was distilled with {} seeds; the SD of its Mean S is {sd:.4} (± in the table: SD over \
its seeds). A difference between plans of less than about 2 SD is within the noise of distillation alone.\n\n",
                p.plan, p.runs
            )),
            None if self.plans.iter().any(|p| p.runs > 1) => s.push_str(
                "Noise: ± in the table is the SD over seeds (no Mean S: the base's [eval] runs only some tasks).\n\n",
            ),
            None => s.push_str("Noise: no plan was distilled with more than one seed ([study] seeds).\n\n"),
        }
        if !self.pending.is_empty() {
            s.push_str(&format!(
                "**Unfinished:** not evaluated yet: {} (`just study` continues where it stopped).\n\n",
                self.pending.join(", ")
            ));
        }
        s.push_str(&self.main_table());
        s.push_str("\nScores: encodechka tasks; Mean S over the 8 sentence tasks, Mean S+W over all 10. CPU ms/text: one \
text at a time on this machine (noisy: identical shapes differ by up to ~40% between runs). dev MSE: student \
to teacher on the dev pairs after distillation. Spearman: `--validate` check of the importance scores the \
plan used (empty when not validated or not used).\n\n## Change against the teacher (points, score x 100)\n\n");
        s.push_str(&self.delta_table());
        s.push_str("\n## Ranking by Mean S\n\n");
        s.push_str(&self.ranking());
        s.push_str("\n## Plans\n\n");
        for p in &self.plans[1..] {
            s.push_str(&format!("- `{}`: {}\n", p.plan, p.about));
        }
        s.push_str("\n## Stage seconds per run\n\n| run | importance | surgery | distill | eval |\n|:---|---:|---:|---:|---:|\n");
        for m in &self.runs {
            let secs = |st: Stage| {
                num(
                    m.seconds
                        .iter()
                        .find(|(n, _)| *n == st.to_string())
                        .map(|x| x.1),
                    0,
                )
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                m.run,
                secs(Stage::Importance),
                secs(Stage::Surgery),
                secs(Stage::Distill),
                secs(Stage::Eval)
            ));
        }
        s
    }

    /// One row per run (seeds apart), for other tools.
    pub fn frame(&self) -> Result<DataFrame> {
        let all: Vec<&Measured> = std::iter::once(&self.teacher).chain(&self.runs).collect();
        let mut cols = vec![
            Column::new(
                "run".into(),
                all.iter().map(|m| m.run.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "plan".into(),
                all.iter().map(|m| m.plan.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "seed".into(),
                all.iter().map(|m| m.seed).collect::<Vec<_>>(),
            ),
        ];
        for (k, t) in TASKS.iter().enumerate() {
            cols.push(Column::new(
                (*t).into(),
                all.iter().map(|m| m.row.scores[k]).collect::<Vec<_>>(),
            ));
        }
        let f = |name: &str, g: &dyn Fn(&Measured) -> Option<f64>| {
            Column::new(name.into(), all.iter().map(|m| g(m)).collect::<Vec<_>>())
        };
        cols.extend([
            f("mean_s", &|m| m.row.mean_s),
            f("mean_sw", &|m| m.row.mean_sw),
            f("params_M", &|m| m.row.params_m),
            f("MFLOPs_per_token", &|m| m.row.mflops_per_token),
            f("cpu_ms", &|m| m.row.cpu_ms),
            f("dev_mse", &|m| m.dev_mse),
            f("spearman", &|m| m.spearman),
        ]);
        Ok(DataFrame::new(cols)?)
    }

    /// Mean S against CPU ms per text, a point per run (the seeds of one plan show its spread).
    pub fn plot(&self, path: &Path) -> Result<()> {
        let points: Vec<(String, f64, f64)> = std::iter::once(&self.teacher)
            .chain(&self.runs)
            .filter_map(|m| Some((m.run.clone(), m.row.cpu_ms?, m.row.mean_s?)))
            .collect();
        sekator_plot::scatter_labeled(
            path,
            &format!(
                "study `{}`: quality vs speed at one FLOPs target",
                self.name
            ),
            "CPU ms per text (one at a time)",
            "encodechka Mean S",
            &points,
        )
        .with_context(|| format!("drawing {}", path.display()))
    }
}

/// Writes `study.md`, `study.csv` and `mean_s_vs_cpu_ms.png` into `out`; returns the Markdown and whether
/// the plot was drawn. Without a point to draw (no run measured the speed task) the plot is a warning, and
/// an older plot is removed so it cannot pass for this report's.
pub fn write(r: &StudyReport, out: &Path) -> Result<(String, bool)> {
    let md = r.markdown();
    tables::write_csv(&out.join("study.csv"), &mut r.frame()?)?;
    sekator_model::write_atomic(&out.join("study.md"), md.as_bytes())?;
    let png = out.join("mean_s_vs_cpu_ms.png");
    let plotted = match r.plot(&png) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("{e:#}");
            let _ = std::fs::remove_file(&png);
            false
        }
    };
    Ok((md, plotted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(run: &str, plan: &str, mean_s: f64) -> Measured {
        Measured {
            run: run.into(),
            plan: plan.into(),
            seed: None,
            row: Row {
                model: run.into(),
                scores: (0..TASKS.len())
                    .map(|k| Some(mean_s + k as f64 * 0.001))
                    .collect(),
                mean_s: Some(mean_s),
                mean_sw: Some(mean_s - 0.1),
                cpu_ms: Some(10.0),
                ..Default::default()
            },
            dev_mse: Some(0.01),
            spearman: None,
            seconds: vec![("distill".into(), 100.0)],
        }
    }

    #[test]
    fn seeds_give_a_spread_and_the_ranking_counts_it() {
        let t = measured("teacher", "teacher", 0.5);
        let a = [measured("a", "a", 0.49), measured("a-seed1", "a", 0.47)];
        let b = measured("b", "b", 0.44);
        let plans = vec![
            plan_stats("teacher", "", &[&t]),
            plan_stats("a", "plan a", &[&a[0], &a[1]]),
            plan_stats("b", "plan b", &[&b]),
        ];
        // mean 0.48, sample SD sqrt(2 * 0.01^2 / 1) = 0.01414
        assert!((plans[1].mean[TASKS.len()].unwrap() - 0.48).abs() < 1e-12);
        assert!((plans[1].sd[TASKS.len()].unwrap() - 0.0141421356).abs() < 1e-9);
        assert_eq!(plans[2].sd[TASKS.len()], None);
        let r = StudyReport {
            name: "s".into(),
            base: "configs/default.toml".into(),
            teacher: t,
            runs: vec![a[0].clone(), a[1].clone(), b],
            plans,
            pending: vec!["c".into()],
        };
        let md = r.markdown();
        assert!(md.contains("0.480 ± 0.014"), "{md}");
        assert!(md.contains("not evaluated yet: c"), "{md}");
        assert!(md.contains("| a | 2 |"), "{md}");
        assert!(md.contains("-4.0%"), "{md}");
        // b is 0.04 below a: -2.8 SD
        assert!(
            md.contains("2. `b`: Mean S 0.4400, -0.0400 against `a` = -2.8 SD"),
            "{md}"
        );
        // per-task points against the teacher: a's STS 0.48 vs 0.50
        assert!(md.contains("| a | -2.0 |"), "{md}");
        let df = r.frame().unwrap();
        assert_eq!(df.height(), 4);
    }

    #[test]
    fn the_plot_is_written_only_with_a_speed_to_draw_and_a_stale_one_goes() {
        let d = tempfile::tempdir().unwrap();
        let report = |cpu_ms: Option<f64>| {
            let mut t = measured("teacher", "teacher", 0.5);
            let mut a = measured("a", "a", 0.49);
            t.row.cpu_ms = cpu_ms;
            a.row.cpu_ms = cpu_ms;
            StudyReport {
                name: "s".into(),
                base: "b.toml".into(),
                plans: vec![plan_stats("teacher", "", &[&t]), plan_stats("a", "", &[&a])],
                teacher: t,
                runs: vec![a],
                pending: vec![],
            }
        };
        let png = d.path().join("mean_s_vs_cpu_ms.png");
        let (_, plotted) = write(&report(Some(12.0)), d.path()).unwrap();
        assert!(plotted && std::fs::metadata(&png).unwrap().len() > 0);
        let (md, plotted) = write(&report(None), d.path()).unwrap();
        assert!(!plotted && !png.exists());
        assert!(
            d.path().join("study.csv").is_file() && md.contains("| a |"),
            "{md}"
        );
    }
}
