//! The ten encodechka tasks: their files, how each turns vectors into a score, and the "best of" rule.
//!
//! Each task scores every embedding variant (and every classifier, where two are fitted) and keeps the
//! maximum, exactly as the original's `max(results.values())`; the winning variant/classifier is reported.

pub mod classify;
pub mod ner;
pub mod pairs;

use std::path::Path;

use anyhow::{bail, Result};

use crate::data::{self, DataError};
use crate::embedder::{SentenceStore, Variant, WordStore};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskId {
    Sts,
    Pi,
    Nli,
    Sa,
    Ti,
    Ia,
    Ic,
    Icx,
    Ne1,
    Ne2,
}

impl TaskId {
    pub const ALL: [TaskId; 10] = [
        TaskId::Sts,
        TaskId::Pi,
        TaskId::Nli,
        TaskId::Sa,
        TaskId::Ti,
        TaskId::Ia,
        TaskId::Ic,
        TaskId::Icx,
        TaskId::Ne1,
        TaskId::Ne2,
    ];

    /// The column name used by encodechka's leaderboard and by `summary.csv`.
    pub fn code(self) -> &'static str {
        match self {
            TaskId::Sts => "STS",
            TaskId::Pi => "PI",
            TaskId::Nli => "NLI",
            TaskId::Sa => "SA",
            TaskId::Ti => "TI",
            TaskId::Ia => "IA",
            TaskId::Ic => "IC",
            TaskId::Icx => "ICX",
            TaskId::Ne1 => "NE1",
            TaskId::Ne2 => "NE2",
        }
    }

    pub fn parse(s: &str) -> Result<TaskId> {
        let s = s.trim();
        match TaskId::ALL
            .iter()
            .find(|t| t.code().eq_ignore_ascii_case(s))
        {
            Some(&t) => Ok(t),
            None => bail!(
                "unknown task {s:?}; tasks are {}",
                TaskId::ALL
                    .iter()
                    .map(|t| t.code().to_lowercase())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    /// Word-level (NER) tasks count only towards Mean S+W.
    pub fn is_word_task(self) -> bool {
        matches!(self, TaskId::Ne1 | TaskId::Ne2)
    }

    /// The data files the task reads.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            TaskId::Sts => &["stsb_dev.csv"],
            TaskId::Pi => &["para_gold.csv"],
            TaskId::Nli => &["xnli_ru.csv"],
            TaskId::Sa => &[
                "SentiRuEval2016_small_train.csv",
                "SentiRuEval2016_small_test.csv",
            ],
            TaskId::Ti => &["toxic_train.csv", "toxic_test.csv"],
            TaskId::Ia => &["inappropriate_train.csv", "inappropriate_test.csv"],
            TaskId::Ic | TaskId::Icx => &["intents_train.csv", "intents_test.csv"],
            TaskId::Ne1 => &["factru.json"],
            TaskId::Ne2 => &["rudrec.json"],
        }
    }
}

/// The speed task's texts.
pub const SPEED_FILE: &str = "sentences_sample.txt";

/// Every data file `tasks` need that is missing from `dir` (checked before any model is loaded).
pub fn missing_files(dir: &Path, tasks: &[TaskId], with_speed: bool) -> Vec<DataError> {
    let mut names: Vec<&str> = tasks
        .iter()
        .flat_map(|t| t.files().iter().copied())
        .collect();
    if with_speed {
        names.push(SPEED_FILE);
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| data::require(dir, n).err())
        .collect()
}

/// One scored combination of embedding variant and classifier.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantScore {
    pub variant: String,
    /// `dot` (STS, PI), `lr`, `knn`, `sgd`.
    pub classifier: String,
    pub score: f64,
}

/// All scores of a task and which one counts.
#[derive(Clone, Debug)]
pub struct TaskOutcome {
    pub task: TaskId,
    pub scores: Vec<VariantScore>,
}

impl TaskOutcome {
    /// The first maximal score in the original's key order (what Python's `max` over a dict returns);
    /// NaN never wins.
    pub fn best(&self) -> Option<&VariantScore> {
        let mut best: Option<&VariantScore> = None;
        for s in &self.scores {
            if s.score.is_nan() {
                continue;
            }
            if best.is_none_or(|b| s.score > b.score) {
                best = Some(s);
            }
        }
        best
    }

    pub fn score(&self) -> f64 {
        self.best().map_or(f64::NAN, |b| b.score)
    }
}

/// A task's data, loaded once and scored for every model.
pub enum TaskInput {
    Pairs(pairs::PairsTask),
    Classify(classify::ClassifyTask),
    Ner(ner::NerTask),
}

impl TaskInput {
    pub fn load(task: TaskId, dir: &Path) -> Result<TaskInput> {
        Ok(match task {
            TaskId::Sts => TaskInput::Pairs(pairs::PairsTask::load(
                &dir.join("stsb_dev.csv"),
                ["sentence1", "sentence2", "similarity_score"],
                pairs::PairScoring::Spearman,
            )?),
            TaskId::Pi => TaskInput::Pairs(pairs::PairsTask::load(
                &dir.join("para_gold.csv"),
                ["text_1", "text_2", "class"],
                pairs::PairScoring::Spearman,
            )?),
            TaskId::Nli => TaskInput::Pairs(pairs::PairsTask::load(
                &dir.join("xnli_ru.csv"),
                ["sentence1", "sentence2", "gold_label"],
                pairs::PairScoring::CrossValidatedLogReg,
            )?),
            TaskId::Sa => TaskInput::Classify(classify::ClassifyTask::load(
                dir,
                "SentiRuEval2016_small",
                ("text", "text", "answer"),
                classify::Scoring::AccuracyLrKnn,
            )?),
            TaskId::Ti => TaskInput::Classify(classify::ClassifyTask::load(
                dir,
                "toxic",
                ("text", "text", "toxic"),
                classify::Scoring::RocAucLr,
            )?),
            // The original reads the binary column `y` (the `inappropriate` column holds probabilities).
            TaskId::Ia => TaskInput::Classify(classify::ClassifyTask::load(
                dir,
                "inappropriate",
                ("text", "text", "y"),
                classify::Scoring::RocAucLr,
            )?),
            TaskId::Ic => TaskInput::Classify(classify::ClassifyTask::load(
                dir,
                "intents",
                ("text", "text", "label"),
                classify::Scoring::AccuracyLrKnn,
            )?),
            // Cross-lingual: train on the English `answer`, test on the Russian `text`.
            TaskId::Icx => TaskInput::Classify(classify::ClassifyTask::load(
                dir,
                "intents",
                ("answer", "text", "label"),
                classify::Scoring::AccuracyLrKnn,
            )?),
            TaskId::Ne1 => TaskInput::Ner(ner::NerTask::load(&dir.join("factru.json"))?),
            TaskId::Ne2 => TaskInput::Ner(ner::NerTask::load(&dir.join("rudrec.json"))?),
        })
    }

    /// Distinct sentence texts to embed, in first-seen order (empty for NER).
    pub fn sentence_texts(&self) -> Vec<String> {
        let all: Vec<&String> = match self {
            TaskInput::Pairs(t) => t.text1.iter().chain(&t.text2).collect(),
            TaskInput::Classify(t) => t.train_text.iter().chain(&t.test_text).collect(),
            TaskInput::Ner(_) => vec![],
        };
        let mut seen = std::collections::HashSet::new();
        all.into_iter()
            .filter(|s| seen.insert(s.as_str()))
            .cloned()
            .collect()
    }

    /// Word lists to embed (NER only).
    pub fn word_lists(&self) -> Vec<Vec<String>> {
        match self {
            TaskInput::Ner(t) => t.word_lists(),
            _ => vec![],
        }
    }

    /// Scores every variant (and classifier). `sentences`/`words` must hold this task's vectors.
    pub fn evaluate(
        &self,
        task: TaskId,
        sentences: &SentenceStore,
        words: &WordStore,
        variants: &[Variant],
    ) -> Result<TaskOutcome> {
        let scores = match self {
            TaskInput::Pairs(t) => t.evaluate(sentences, variants)?,
            TaskInput::Classify(t) => t.evaluate(sentences, variants)?,
            TaskInput::Ner(t) => t.evaluate(words)?,
        };
        Ok(TaskOutcome { task, scores })
    }

    /// Number of texts (sentences or NER texts) the task embeds.
    pub fn n_texts(&self) -> usize {
        match self {
            TaskInput::Ner(t) => t.len(),
            _ => self.sentence_texts().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_is_first_maximum_and_skips_nan() {
        let s = |v: &str, c: &str, x: f64| VariantScore {
            variant: v.into(),
            classifier: c.into(),
            score: x,
        };
        let o = TaskOutcome {
            task: TaskId::Sa,
            scores: vec![
                s("cls", "lr", f64::NAN),
                s("cls", "knn", 0.7),
                s("mean", "lr", 0.8),
                s("mean", "knn", 0.8),
            ],
        };
        let b = o.best().unwrap();
        assert_eq!((b.variant.as_str(), b.classifier.as_str()), ("mean", "lr"));
        assert_eq!(TaskId::parse("icx").unwrap(), TaskId::Icx);
        assert!(TaskId::parse("xx")
            .unwrap_err()
            .to_string()
            .contains("sts,pi,nli"));
    }
}
