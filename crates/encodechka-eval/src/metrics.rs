//! The four scores encodechka reports, with scipy / scikit-learn semantics (ties included).

pub use sekator_pipeline::stats::{average_ranks, pearson, spearman};

/// `roc_auc_score(y_true, score)` for binary labels: the Mann-Whitney statistic, ties counted as one half.
pub fn roc_auc(positive: &[bool], score: &[f64]) -> f64 {
    assert_eq!(positive.len(), score.len(), "roc_auc: length mismatch");
    let ranks = average_ranks(score);
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    assert!(
        n_pos > 0.0 && n_neg > 0.0,
        "roc_auc: needs both classes in y_true"
    );
    let rank_sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// Fraction of equal entries.
pub fn accuracy<T: PartialEq>(truth: &[T], predicted: &[T]) -> f64 {
    assert_eq!(truth.len(), predicted.len(), "accuracy: length mismatch");
    let hits = truth.iter().zip(predicted).filter(|(a, b)| a == b).count();
    hits as f64 / truth.len() as f64
}

/// `f1_score(truth, predicted, average="macro", labels=labels)`: per-label F1 averaged over `labels` only;
/// a label with no true and no predicted occurrence scores 0 (sklearn's `zero_division` default).
pub fn macro_f1<T: PartialEq>(truth: &[T], predicted: &[T], labels: &[T]) -> f64 {
    assert_eq!(truth.len(), predicted.len(), "macro_f1: length mismatch");
    assert!(!labels.is_empty(), "macro_f1: empty label set");
    let mut total = 0.0;
    for label in labels {
        let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
        for (t, p) in truth.iter().zip(predicted) {
            match (t == label, p == label) {
                (true, true) => tp += 1,
                (false, true) => fp += 1,
                (true, false) => fn_ += 1,
                (false, false) => {}
            }
        }
        let denom = 2 * tp + fp + fn_;
        if denom > 0 {
            total += 2.0 * tp as f64 / denom as f64;
        }
    }
    total / labels.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 10.0, 30.0, 20.0, 20.0]),
            vec![1.5, 4.0, 1.5, 6.0, 4.0, 4.0]
        );
    }

    #[test]
    fn spearman_with_ties_by_hand() {
        // x ranks: [1.5, 1.5, 3, 4, 5]; y ranks: [2, 1, 4, 4, 4]
        // dx = [-1.5,-1.5,0,1,2], dy = [-1,-2,1,1,1] (means 3 and 3)
        // sxy = 1.5+3+0+1+2 = 7.5, sxx = 2.25+2.25+0+1+4 = 9.5, syy = 1+4+1+1+1 = 8
        let x = [1.0, 1.0, 2.0, 3.0, 4.0];
        let y = [0.5, 0.1, 0.9, 0.9, 0.9];
        assert!(close(spearman(&x, &y), 7.5 / (9.5f64.sqrt() * 8f64.sqrt())));
        // a perfect monotone relation is 1 even through a non-linear map
        assert!(close(spearman(&[1.0, 2.0, 3.0], &[1.0, 8.0, 27.0]), 1.0));
        assert!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
    }

    #[test]
    fn auc_with_ties_by_hand() {
        // positives at 0.8, 0.4; negatives at 0.4, 0.1, 0.8, 0.2.
        // pairs (pos, neg): 0.8 beats 0.4,0.1,0.2 and ties 0.8 -> 3.5; 0.4 ties 0.4, beats 0.1,0.2 -> 2.5
        // AUC = 6 / 8
        let y = [true, true, false, false, false, false];
        let s = [0.8, 0.4, 0.4, 0.1, 0.8, 0.2];
        assert!(close(roc_auc(&y, &s), 0.75));
        assert!(close(roc_auc(&[false, true], &[0.0, 1.0]), 1.0));
        assert!(close(roc_auc(&[false, true], &[0.5, 0.5]), 0.5));
    }

    #[test]
    fn macro_f1_by_hand() {
        // label a: tp=1 fp=1 fn=1 -> 2/4; label b: tp=1 fp=0 fn=1 -> 2/3; label c: never true or predicted -> 0
        // label O is ignored even though it is mostly right.
        let truth = ["a", "a", "b", "b", "O", "O"];
        let pred = ["a", "O", "b", "a", "O", "O"];
        let f = macro_f1(&truth, &pred, &["a", "b", "c"]);
        assert!(close(f, (0.5 + 2.0 / 3.0 + 0.0) / 3.0));
        assert!(close(accuracy(&truth, &pred), 4.0 / 6.0));
    }
}
