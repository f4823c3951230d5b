//! Train/test sentence classification.
//! - SA, IC, ICX: accuracy of a logistic regression and of 3-NN with distance weights, both reported.
//! - TI, IA: ROC AUC of the logistic regression's probability of the larger class.

use std::path::Path;

use anyhow::{bail, Result};
use rayon::prelude::*;

use crate::data::{read_csv_columns, require, sorted_classes};
use crate::embedder::{SentenceStore, Variant};
use crate::knn::KNeighbors;
use crate::logreg::{LogRegConfig, LogisticRegression};
use crate::metrics::roc_auc;
use crate::tasks::VariantScore;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scoring {
    AccuracyLrKnn,
    RocAucLr,
}

pub struct ClassifyTask {
    pub train_text: Vec<String>,
    pub train_label: Vec<String>,
    pub test_text: Vec<String>,
    pub test_label: Vec<String>,
    scoring: Scoring,
}

impl ClassifyTask {
    /// Reads `{stem}_train.csv` and `{stem}_test.csv`; `columns` = (train text, test text, label).
    pub fn load(
        dir: &Path,
        stem: &str,
        columns: (&str, &str, &str),
        scoring: Scoring,
    ) -> Result<Self> {
        let (train_col, test_col, label_col) = columns;
        let train = read_csv_columns(
            &require(dir, &format!("{stem}_train.csv"))?,
            &[train_col, label_col],
        )?;
        let test = read_csv_columns(
            &require(dir, &format!("{stem}_test.csv"))?,
            &[test_col, label_col],
        )?;
        let [train_text, train_label]: [Vec<String>; 2] = train.try_into().expect("two columns");
        let [test_text, test_label]: [Vec<String>; 2] = test.try_into().expect("two columns");
        Ok(Self {
            train_text,
            train_label,
            test_text,
            test_label,
            scoring,
        })
    }

    pub fn evaluate(
        &self,
        store: &SentenceStore,
        variants: &[Variant],
    ) -> Result<Vec<VariantScore>> {
        let classes = sorted_classes(&self.train_label);
        let index = |l: &String| classes.iter().position(|c| c == l);
        let y_train: Vec<usize> = self
            .train_label
            .iter()
            .map(|l| index(l).expect("own class"))
            .collect();
        // A test label never seen in training can never be predicted: it just counts as an error.
        let y_test: Vec<Option<usize>> = self.test_label.iter().map(index).collect();
        if self.scoring == Scoring::RocAucLr && classes.len() != 2 {
            bail!(
                "ROC AUC needs two classes, the training labels have {}",
                classes.len()
            );
        }
        let per_variant: Vec<Vec<VariantScore>> = variants
            .par_iter()
            .map(|&v| -> Result<Vec<VariantScore>> {
                let x_train = store.matrix(&self.train_text, v)?;
                let x_test = store.matrix(&self.test_text, v)?;
                let lr = LogisticRegression::fit(
                    &x_train,
                    &y_train,
                    classes.len(),
                    &LogRegConfig::default(),
                )?;
                let score = |classifier: &str, score: f64| VariantScore {
                    variant: v.name().into(),
                    classifier: classifier.into(),
                    score,
                };
                Ok(match self.scoring {
                    Scoring::RocAucLr => {
                        let positive: Vec<bool> = y_test.iter().map(|&c| c == Some(1)).collect();
                        vec![score(
                            "lr",
                            roc_auc(&positive, &lr.predict_proba_positive(&x_test)),
                        )]
                    }
                    Scoring::AccuracyLrKnn => {
                        let knn = KNeighbors::new(&x_train, &y_train, classes.len(), 3);
                        vec![
                            score("lr", hit_rate(&y_test, &lr.predict(&x_test))),
                            score("knn", hit_rate(&y_test, &knn.predict(&x_test))),
                        ]
                    }
                })
            })
            .collect::<Result<_>>()?;
        Ok(per_variant.into_iter().flatten().collect())
    }
}

fn hit_rate(truth: &[Option<usize>], predicted: &[usize]) -> f64 {
    let hits = truth
        .iter()
        .zip(predicted)
        .filter(|(t, p)| **t == Some(**p))
        .count();
    hits as f64 / truth.len() as f64
}
