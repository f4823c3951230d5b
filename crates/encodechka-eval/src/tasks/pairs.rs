//! Sentence-pair tasks. The feature is the plain dot product of the two vectors, un-normalised variants
//! included (the original's `np.sum(e1 * e2, axis=1)`, in float32 as numpy computes it: Spearman's ranks
//! see exact ties, e.g. identical sentences, exactly as the original does).
//! - STS, PI: Spearman correlation of the dot product with the gold score / class.
//! - NLI: out-of-fold predictions of a logistic regression on that single feature, 3-fold shuffled KFold
//!   with seed 1 (`cross_val_predict`), scored by accuracy.

use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;

use crate::data::{parse_numbers, read_csv_columns, sorted_classes};
use crate::embedder::{SentenceStore, Variant};
use crate::float32::numpy_sum_f32;
use crate::logreg::{LogRegConfig, LogisticRegression};
use crate::matrix::Matrix;
use crate::metrics::{accuracy, spearman};
use crate::splits::kfold_test_folds;
use crate::tasks::VariantScore;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairScoring {
    Spearman,
    CrossValidatedLogReg,
}

pub struct PairsTask {
    pub text1: Vec<String>,
    pub text2: Vec<String>,
    /// Gold values as written (numbers for Spearman, class names for NLI).
    pub target: Vec<String>,
    numeric: Vec<f64>,
    scoring: PairScoring,
}

impl PairsTask {
    /// `columns` = [first text, second text, target].
    pub fn load(path: &Path, columns: [&str; 3], scoring: PairScoring) -> Result<Self> {
        let mut cols = read_csv_columns(path, &columns)?;
        let target = cols.pop().expect("three columns");
        let text2 = cols.pop().expect("three columns");
        let text1 = cols.pop().expect("three columns");
        let numeric = match scoring {
            PairScoring::Spearman => parse_numbers(path, columns[2], &target)?,
            PairScoring::CrossValidatedLogReg => vec![],
        };
        Ok(Self {
            text1,
            text2,
            target,
            numeric,
            scoring,
        })
    }

    pub fn evaluate(
        &self,
        store: &SentenceStore,
        variants: &[Variant],
    ) -> Result<Vec<VariantScore>> {
        variants
            .par_iter()
            .map(|&v| {
                let e1 = store.matrix(&self.text1, v)?;
                let e2 = store.matrix(&self.text2, v)?;
                // `np.sum(e1 * e2, axis=1)` on float32 arrays: float32 products, numpy's pairwise float32 sum
                // (the matrices hold float32 values, so the casts back are exact).
                let mut products = vec![0.0f32; e1.cols];
                let dots: Vec<f64> = (0..e1.rows)
                    .map(|i| {
                        for ((p, &a), &b) in products.iter_mut().zip(e1.row(i)).zip(e2.row(i)) {
                            *p = a as f32 * b as f32;
                        }
                        numpy_sum_f32(&products) as f64
                    })
                    .collect();
                let (classifier, score) = match self.scoring {
                    PairScoring::Spearman => ("dot", spearman(&self.numeric, &dots)),
                    PairScoring::CrossValidatedLogReg => {
                        ("lr", cross_val_accuracy(&dots, &self.target)?)
                    }
                };
                Ok(VariantScore {
                    variant: v.name().into(),
                    classifier: classifier.into(),
                    score,
                })
            })
            .collect()
    }
}

/// `cross_val_predict(LogisticRegression(max_iter=10_000), x[:, None], y, cv=KFold(3, shuffle=True,
/// random_state=1))`, then accuracy.
pub fn cross_val_accuracy(x: &[f64], y: &[String]) -> Result<f64> {
    let n = x.len();
    let mut predicted: Vec<Option<String>> = vec![None; n];
    for test in kfold_test_folds(n, 3, 1) {
        let mut in_test = vec![false; n];
        test.iter().for_each(|&i| in_test[i] = true);
        let train: Vec<usize> = (0..n).filter(|&i| !in_test[i]).collect();
        let train_labels: Vec<String> = train.iter().map(|&i| y[i].clone()).collect();
        let classes = sorted_classes(&train_labels);
        let y_train: Vec<usize> = train_labels
            .iter()
            .map(|l| classes.iter().position(|c| c == l).expect("own class"))
            .collect();
        let xt = Matrix::from_vec(train.len(), 1, train.iter().map(|&i| x[i]).collect());
        let model =
            LogisticRegression::fit(&xt, &y_train, classes.len(), &LogRegConfig::default())?;
        let xs = Matrix::from_vec(test.len(), 1, test.iter().map(|&i| x[i]).collect());
        for (&i, c) in test.iter().zip(model.predict(&xs)) {
            predicted[i] = Some(classes[c].clone());
        }
    }
    let pred: Vec<String> = predicted
        .into_iter()
        .map(|p| p.expect("every row is in one test fold"))
        .collect();
    Ok(accuracy(y, &pred))
}
