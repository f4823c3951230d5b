//! scikit-learn's `KFold(shuffle=True)` and `train_test_split`, driven by the numpy stream.
//!
//! NLI's out-of-fold predictions and the NER halves depend on exactly which rows land where.

use crate::numpy_rng::RandomState;

/// Test-fold indices of `KFold(n_splits, shuffle=True, random_state=seed)`, in sklearn's order.
/// Fold sizes are `n / k`, the first `n % k` folds one larger; each fold is a slice of the shuffled indices.
pub fn kfold_test_folds(n: usize, n_splits: usize, seed: u32) -> Vec<Vec<usize>> {
    assert!(
        n_splits >= 2 && n >= n_splits,
        "KFold needs 2 <= n_splits <= n"
    );
    let mut indices: Vec<usize> = (0..n).collect();
    RandomState::new(seed).shuffle(&mut indices);
    let mut folds = Vec::with_capacity(n_splits);
    let mut start = 0;
    for k in 0..n_splits {
        let size = n / n_splits + usize::from(k < n % n_splits);
        folds.push(indices[start..start + size].to_vec());
        start += size;
    }
    folds
}

/// `train_test_split(range(n), test_size=test_fraction, random_state=seed)` as (train, test) index lists.
/// `n_test = ceil(test_fraction * n)`, test first in the permutation, train after it.
pub fn train_test_split(n: usize, test_fraction: f64, seed: u32) -> (Vec<usize>, Vec<usize>) {
    let n_test = (test_fraction * n as f64).ceil() as usize;
    let perm = RandomState::new(seed).permutation(n);
    let test = perm[..n_test].to_vec();
    let train = perm[n_test..].to_vec();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kfold_matches_sklearn() {
        // [t.tolist() for _, t in KFold(3, shuffle=True, random_state=1).split(np.zeros(11))]
        let folds = kfold_test_folds(11, 3, 1);
        let sorted: Vec<Vec<usize>> = folds
            .into_iter()
            .map(|mut f| {
                f.sort();
                f
            })
            .collect();
        assert_eq!(
            sorted,
            vec![vec![2, 3, 4, 9], vec![0, 1, 6, 7], vec![5, 8, 10]]
        );
    }

    #[test]
    fn split_halves_match_sklearn() {
        // train_test_split(list(range(9)), test_size=0.5, random_state=1)
        let (train, test) = train_test_split(9, 0.5, 1);
        assert_eq!(test.len(), 5);
        assert_eq!(train.len(), 4);
        assert_eq!(train, SKLEARN_TRAIN_9);
        assert_eq!(test, SKLEARN_TEST_9);
    }

    const SKLEARN_TRAIN_9: [usize; 4] = [0, 4, 3, 5];
    const SKLEARN_TEST_9: [usize; 5] = [8, 2, 6, 7, 1];
}
