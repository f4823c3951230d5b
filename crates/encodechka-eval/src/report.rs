//! Result tables as polars frames: `scores.csv` (model × task × variant × classifier), `summary.csv` (one row
//! per model, encodechka's columns), `timings.csv`, and `summary.md` in the layout of encodechka's README.
//! Every file is written to a temporary file in the output directory and renamed into place.

use std::path::Path;

use anyhow::Result;
use polars::prelude::*;

use sekator_pipeline::artifacts::eval::{EvalSummary, ModelSummary};
use sekator_pipeline::tables::{markdown, write_csv, PublishedRow, PUBLISHED_MARK};

use crate::benchmark::ModelReport;
use crate::tasks::TaskId;

/// Mean over `tasks` when every one of them has a score.
fn mean_of(r: &ModelReport, tasks: &[TaskId]) -> Option<f64> {
    let v: Option<Vec<f64>> = tasks.iter().map(|&t| r.score(t)).collect();
    v.map(|v| v.iter().sum::<f64>() / v.len() as f64)
}

fn sentence_tasks() -> Vec<TaskId> {
    TaskId::ALL
        .into_iter()
        .filter(|t| !t.is_word_task())
        .collect()
}

/// `scores.csv`: every (model, task, variant, classifier) score, `best` marking the one that counts.
pub fn scores_frame(reports: &[ModelReport]) -> Result<DataFrame> {
    let (mut model, mut task, mut variant, mut classifier, mut score, mut best) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in reports {
        for t in &r.tasks {
            let b = t.outcome.best();
            for s in &t.outcome.scores {
                model.push(r.name.clone());
                task.push(t.outcome.task.code().to_string());
                variant.push(s.variant.clone());
                classifier.push(s.classifier.clone());
                score.push(s.score);
                best.push(b.is_some_and(|b| std::ptr::eq(b, s)));
            }
        }
    }
    Ok(DataFrame::new(vec![
        Column::new("model".into(), model),
        Column::new("task".into(), task),
        Column::new("variant".into(), variant),
        Column::new("classifier".into(), classifier),
        Column::new("score".into(), score),
        Column::new("best".into(), best),
    ])?)
}

/// `summary.csv`: one row per model with encodechka's columns; published rows (if given) after the measured
/// ones, their model name marked.
pub fn summary_frame(reports: &[ModelReport], published: &[PublishedRow]) -> Result<DataFrame> {
    let mut model: Vec<String> = vec![];
    let mut task_cols: Vec<Vec<Option<f64>>> = vec![vec![]; TaskId::ALL.len()];
    let (mut mean_s, mut mean_sw, mut cpu_ms, mut size_mb, mut dim, mut texts_per_s) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let sentence = sentence_tasks();
    for r in reports.iter().filter(|r| !r.tasks.is_empty()) {
        model.push(r.name.clone());
        for (k, t) in TaskId::ALL.iter().enumerate() {
            task_cols[k].push(r.score(*t));
        }
        mean_s.push(mean_of(r, &sentence));
        mean_sw.push(mean_of(r, &TaskId::ALL));
        cpu_ms.push(
            r.speed
                .as_ref()
                .filter(|_| r.is_cpu())
                .map(|s| s.ms_per_text),
        );
        size_mb.push(r.size_mb);
        dim.push(Some(r.dim as i64));
        texts_per_s.push(r.speed.as_ref().map(|s| s.batched_texts_per_s));
    }
    for p in published {
        model.push(format!("{}{PUBLISHED_MARK}", p.model));
        for (k, t) in TaskId::ALL.iter().enumerate() {
            task_cols[k].push(
                p.scores
                    .iter()
                    .find(|(pt, _)| *pt == t.code())
                    .map(|(_, v)| *v),
            );
        }
        mean_s.push(Some(p.mean_s));
        mean_sw.push(p.mean_sw);
        cpu_ms.push(p.cpu_ms);
        size_mb.push(p.size_mb);
        dim.push(p.dim);
        texts_per_s.push(None);
    }
    let mut cols = vec![Column::new("model".into(), model)];
    for (t, v) in TaskId::ALL.iter().zip(task_cols) {
        cols.push(Column::new(t.code().into(), v));
    }
    cols.extend([
        Column::new("mean_s".into(), mean_s),
        Column::new("mean_sw".into(), mean_sw),
        Column::new("cpu_ms".into(), cpu_ms),
        Column::new("size_mb".into(), size_mb),
        Column::new("dim".into(), dim),
        // ours: batched throughput on the same device as cpu_ms
        Column::new("texts_per_s".into(), texts_per_s),
    ]);
    Ok(DataFrame::new(cols)?)
}

/// `timings.csv`: per model and task, texts needed, texts embedded now, embedding and classifier seconds.
pub fn timings_frame(reports: &[ModelReport]) -> Result<DataFrame> {
    let (mut model, mut task, mut n_texts, mut embedded, mut embed_s, mut classify_s) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in reports {
        for t in &r.tasks {
            model.push(r.name.clone());
            task.push(t.outcome.task.code().to_string());
            n_texts.push(t.n_texts as u64);
            embedded.push(t.embedded as u64);
            embed_s.push(t.embed_s);
            classify_s.push(t.classify_s);
        }
    }
    Ok(DataFrame::new(vec![
        Column::new("model".into(), model),
        Column::new("task".into(), task),
        Column::new("n_texts".into(), n_texts),
        Column::new("embedded".into(), embedded),
        Column::new("embed_s".into(), embed_s),
        Column::new("classify_s".into(), classify_s),
    ])?)
}

/// `summary.md`: encodechka's two README tables (models; tasks), then best variants, timings and failures.
pub fn summary_markdown(reports: &[ModelReport], published: &[PublishedRow]) -> Result<String> {
    let measured: Vec<&ModelReport> = reports.iter().filter(|r| !r.tasks.is_empty()).collect();
    let sentence = sentence_tasks();

    // models table
    let (mut model, mut cpu, mut gpu, mut thr, mut size, mut ms, mut msw, mut dim) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for r in &measured {
        model.push(r.name.clone());
        let speed = r.speed.as_ref();
        cpu.push(speed.filter(|_| r.is_cpu()).map(|s| s.ms_per_text));
        gpu.push(speed.filter(|_| !r.is_cpu()).map(|s| s.ms_per_text));
        thr.push(speed.map(|s| s.batched_texts_per_s));
        size.push(r.size_mb);
        ms.push(mean_of(r, &sentence));
        msw.push(mean_of(r, &TaskId::ALL));
        dim.push(Some(r.dim as i64));
    }
    for p in published {
        model.push(format!("{}{PUBLISHED_MARK}", p.model));
        cpu.push(p.cpu_ms);
        gpu.push(p.gpu_ms);
        thr.push(None);
        size.push(p.size_mb);
        ms.push(Some(p.mean_s));
        msw.push(p.mean_sw);
        dim.push(p.dim);
    }
    let models = DataFrame::new(vec![
        Column::new("model".into(), model),
        Column::new("CPU ms".into(), cpu),
        Column::new("GPU ms".into(), gpu),
        Column::new("batched texts/s".into(), thr),
        Column::new("size MB".into(), size),
        Column::new("Mean S".into(), ms),
        Column::new("Mean S+W".into(), msw),
        Column::new("dim".into(), dim),
    ])?;

    let summary = summary_frame(reports, published)?;
    let mut task_cols: Vec<&str> = vec!["model"];
    task_cols.extend(TaskId::ALL.iter().map(|t| t.code()));
    let tasks = summary.select(task_cols)?;

    // winning variant/classifier per task
    let mut best_cols = vec![Column::new(
        "model".into(),
        measured.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
    )];
    for t in TaskId::ALL {
        let v: Vec<Option<String>> = measured
            .iter()
            .map(|r| {
                r.tasks.iter().find(|x| x.outcome.task == t).and_then(|x| {
                    x.outcome
                        .best()
                        .map(|b| format!("{}/{}", b.variant, b.classifier))
                })
            })
            .collect();
        best_cols.push(Column::new(t.code().into(), v));
    }
    let best = DataFrame::new(best_cols)?;

    let mut md = String::from("# encodechka results\n\n");
    md.push_str("Measured by `encodechka-eval`");
    if let Some(r) = measured.first() {
        md.push_str(&format!(" on {}", r.device));
    }
    md.push_str(". Task scores are the maximum over embedding variants and classifiers, as in the original evaluator. ");
    if !published.is_empty() {
        md.push_str(&format!(
            "Rows marked \"published\" are copied from {}.",
            published[0].source
        ));
    }
    md.push_str("\n\n## Models\n\n");
    md.push_str(&markdown(&models, 3));
    md.push_str("\n## Tasks\n\n");
    md.push_str(&markdown(&tasks, 3));
    if !measured.is_empty() {
        md.push_str("\n## Winning variant / classifier\n\n");
        md.push_str(&markdown(&best, 3));
        md.push_str("\n## Time per task (seconds)\n\n");
        md.push_str(&markdown(&timings_frame(reports)?, 1));
    }
    let failures: Vec<&ModelReport> = reports.iter().filter(|r| r.error.is_some()).collect();
    if !failures.is_empty() {
        md.push_str("\n## Failures\n\n");
        for r in failures {
            md.push_str(&format!(
                "- {}: {}\n",
                r.name,
                r.error.as_deref().unwrap_or_default()
            ));
        }
    }
    Ok(md)
}

/// Writes scores.csv, summary.csv, timings.csv and summary.md into `out`; returns the Markdown.
pub fn write_all(
    out: &Path,
    reports: &[ModelReport],
    published: &[PublishedRow],
) -> Result<String> {
    write_csv(&out.join("scores.csv"), &mut scores_frame(reports)?)?;
    write_csv(
        &out.join("summary.csv"),
        &mut summary_frame(reports, published)?,
    )?;
    write_csv(&out.join("timings.csv"), &mut timings_frame(reports)?)?;
    let md = summary_markdown(reports, published)?;
    sekator_model::write_atomic(&out.join("summary.md"), md.as_bytes())?;
    eval_summary(reports).write(out)?;
    Ok(md)
}

/// `summary.json`, the report stage's input: the measured models' scores (published rows left out).
pub fn eval_summary(reports: &[ModelReport]) -> EvalSummary {
    let sentence = sentence_tasks();
    let models = reports
        .iter()
        .filter(|r| !r.tasks.is_empty())
        .map(|r| ModelSummary {
            model: r.name.clone(),
            scores: TaskId::ALL
                .iter()
                .filter_map(|&t| Some((t.code().to_string(), r.score(t)?)))
                .collect(),
            mean_s: mean_of(r, &sentence),
            mean_sw: mean_of(r, &TaskId::ALL),
            cpu_ms: r
                .speed
                .as_ref()
                .filter(|_| r.is_cpu())
                .map(|s| s.ms_per_text),
            size_mb: r.size_mb,
            dim: r.dim,
            texts_per_s: r.speed.as_ref().map(|s| s.batched_texts_per_s),
        })
        .collect();
    EvalSummary { models }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::benchmark::{Speed, TaskRun};
    use crate::tasks::{TaskOutcome, VariantScore};
    use sekator_pipeline::tables::{parse_published, PUBLISHED_CSV};

    fn report() -> ModelReport {
        let run = |task, score: f64| TaskRun {
            outcome: TaskOutcome {
                task,
                scores: vec![
                    VariantScore {
                        variant: "cls".into(),
                        classifier: "lr".into(),
                        score: score - 0.1,
                    },
                    VariantScore {
                        variant: "mean".into(),
                        classifier: "lr".into(),
                        score,
                    },
                ],
            },
            n_texts: 10,
            embedded: 10,
            embed_s: 1.0,
            classify_s: 0.5,
        };
        ModelReport {
            name: "m".into(),
            dim: 4,
            size_mb: Some(1.5),
            device: "cpu (test)".into(),
            tasks: TaskId::ALL
                .iter()
                .enumerate()
                .map(|(i, &t)| run(t, 0.5 + i as f64 / 100.0))
                .collect(),
            speed: Some(Speed {
                ms_per_text: 2.0,
                batched_texts_per_s: 100.0,
            }),
            error: None,
        }
    }

    #[test]
    fn the_pipelines_task_codes_are_ours() {
        let codes: Vec<&str> = TaskId::ALL.iter().map(|t| t.code()).collect();
        assert_eq!(codes, sekator_pipeline::artifacts::eval::TASKS);
        let words: Vec<&str> = TaskId::ALL
            .iter()
            .filter(|t| t.is_word_task())
            .map(|t| t.code())
            .collect();
        assert_eq!(words, sekator_pipeline::artifacts::eval::WORD_TASKS);
    }

    #[test]
    fn summary_has_encodechka_columns_and_means() {
        let published = parse_published(PUBLISHED_CSV).unwrap();
        assert_eq!(published.len(), 4);
        assert!(published
            .iter()
            .any(|p| p.model == "cointegrated/rubert-tiny2" && p.mean_s == 0.704));
        let df = summary_frame(&[report()], &published).unwrap();
        let names: Vec<&str> = df.get_column_names().iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "model",
                "STS",
                "PI",
                "NLI",
                "SA",
                "TI",
                "IA",
                "IC",
                "ICX",
                "NE1",
                "NE2",
                "mean_s",
                "mean_sw",
                "cpu_ms",
                "size_mb",
                "dim",
                "texts_per_s"
            ]
        );
        assert_eq!(df.height(), 5);
        // sentence tasks score 0.50..0.57 -> mean 0.535; all ten 0.50..0.59 -> 0.545
        let mean_s = df
            .column("mean_s")
            .unwrap()
            .get(0)
            .unwrap()
            .extract::<f64>()
            .unwrap();
        assert!((mean_s - 0.535).abs() < 1e-12);
        assert!(df
            .column("model")
            .unwrap()
            .get(1)
            .unwrap()
            .get_str()
            .unwrap()
            .ends_with(PUBLISHED_MARK));

        let scores = scores_frame(&[report()]).unwrap();
        assert_eq!(scores.height(), 20);
        let md = summary_markdown(&[report()], &published).unwrap();
        assert!(
            md.contains("| model | STS | PI |")
                && md.contains("mean/lr")
                && md.contains("(published)"),
            "{md}"
        );
    }

    #[test]
    fn outputs_are_written() {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &[report()], &[]).unwrap();
        for f in [
            "scores.csv",
            "summary.csv",
            "timings.csv",
            "summary.md",
            "summary.json",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        let summary = EvalSummary::read(dir.path()).unwrap();
        let m = summary.model(&report().name).unwrap();
        assert_eq!(m.scores.len(), report().tasks.len());
        assert_eq!(m.scores["STS"], report().score(TaskId::Sts).unwrap());
        let header = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
        assert!(header.starts_with(
            "model,STS,PI,NLI,SA,TI,IA,IC,ICX,NE1,NE2,mean_s,mean_sw,cpu_ms,size_mb,dim,texts_per_s\n"
        ));
        // no temporary files left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 5);
    }
}
