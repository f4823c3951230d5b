//! `KNeighborsClassifier(n_neighbors=3, weights="distance")`: Euclidean neighbours, votes weighted by 1/d.
//!
//! Like scikit-learn, a query with a neighbour at distance zero lets only its zero-distance neighbours vote
//! (weight 1 each). Candidates come from one dgemm (‖a‖² + ‖b‖² − 2a·b, what sklearn's brute force does);
//! the chosen neighbours' distances are then recomputed exactly, so an exact duplicate really is at zero.

use rayon::prelude::*;

use crate::matrix::{gemm_a_bt, Matrix};

/// A "fitted" k-NN model: the training rows and their labels.
pub struct KNeighbors<'a> {
    train: &'a Matrix,
    labels: &'a [usize],
    n_classes: usize,
    k: usize,
}

/// Queries per dgemm block: bounds the distance block to `BLOCK × n_train` f64s.
const BLOCK: usize = 512;

impl<'a> KNeighbors<'a> {
    pub fn new(train: &'a Matrix, labels: &'a [usize], n_classes: usize, k: usize) -> Self {
        assert_eq!(train.rows, labels.len(), "k-NN: rows and labels differ");
        assert!(k >= 1 && k <= train.rows, "k-NN: k must be in 1..=n_train");
        Self {
            train,
            labels,
            n_classes,
            k,
        }
    }

    /// Predicted class per query row: the class with the largest summed weight, the smallest class id on ties.
    pub fn predict(&self, queries: &Matrix) -> Vec<usize> {
        let train_sq = self.train.row_sq_norms();
        let starts: Vec<usize> = (0..queries.rows).step_by(BLOCK).collect();
        starts
            .par_iter()
            .flat_map_iter(|&start| {
                let end = (start + BLOCK).min(queries.rows);
                let idx: Vec<usize> = (start..end).collect();
                let block = queries.select_rows(&idx);
                let mut dots = Matrix::zeros(block.rows, self.train.rows);
                gemm_a_bt(1.0, &block, self.train, 0.0, &mut dots);
                let block_sq = block.row_sq_norms();
                (0..block.rows)
                    .map(|i| {
                        let approx: Vec<f64> = dots
                            .row(i)
                            .iter()
                            .zip(&train_sq)
                            .map(|(dot, tsq)| (block_sq[i] + tsq - 2.0 * dot).max(0.0))
                            .collect();
                        self.vote(block.row(i), &approx)
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn vote(&self, query: &[f64], approx_sq: &[f64]) -> usize {
        let neighbours = smallest_k(approx_sq, self.k);
        let exact: Vec<f64> = neighbours
            .iter()
            .map(|&j| {
                query
                    .iter()
                    .zip(self.train.row(j))
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        let mut weight = vec![0.0; self.n_classes];
        if exact.contains(&0.0) {
            for (&j, &d) in neighbours.iter().zip(&exact) {
                if d == 0.0 {
                    weight[self.labels[j]] += 1.0;
                }
            }
        } else {
            for (&j, &d) in neighbours.iter().zip(&exact) {
                weight[self.labels[j]] += 1.0 / d;
            }
        }
        let mut best = 0;
        for (c, &w) in weight.iter().enumerate() {
            if w > weight[best] {
                best = c;
            }
        }
        best
    }
}

/// Indices of the `k` smallest values, nearest first; equal values keep index order (a stable choice).
fn smallest_k(values: &[f64], k: usize) -> Vec<usize> {
    let mut best: Vec<usize> = Vec::with_capacity(k + 1);
    for (j, &v) in values.iter().enumerate() {
        if best.len() == k && v >= values[best[k - 1]] {
            continue;
        }
        let pos = best.partition_point(|&b| values[b] <= v);
        best.insert(pos, j);
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_weighted_vote_by_hand() {
        // 1-d points: class 0 at 0.0 and 3.0, class 1 at 1.0 and 10.0
        let train = Matrix::from_vec(4, 1, vec![0.0, 3.0, 1.0, 10.0]);
        let labels = [0usize, 0, 1, 1];
        let knn = KNeighbors::new(&train, &labels, 2, 3);
        // query 0.9: neighbours 1.0 (d .1, class 1), 0.0 (d .9, class 0), 3.0 (d 2.1, class 0)
        // weights: class 1 = 10, class 0 = 1/.9 + 1/2.1 = 1.587 -> class 1 (a plain majority would say 0)
        // query 2.0: 1.0 (d 1, class 1), 3.0 (d 1, class 0), 0.0 (d 2, class 0) -> 0: 1 + .5, 1: 1 -> class 0
        let q = Matrix::from_vec(2, 1, vec![0.9, 2.0]);
        assert_eq!(knn.predict(&q), vec![1, 0]);
    }

    #[test]
    fn zero_distance_neighbours_take_the_vote() {
        // query equals a class-1 point; the two class-0 points are close but non-zero: only the exact match votes
        let train = Matrix::from_vec(3, 2, vec![1.0, 1.0, 1.0, 1.001, 1.0, 0.999]);
        let labels = [1usize, 0, 0];
        let knn = KNeighbors::new(&train, &labels, 2, 3);
        assert_eq!(
            knn.predict(&Matrix::from_vec(1, 2, vec![1.0, 1.0])),
            vec![1]
        );
    }

    #[test]
    fn equal_weights_pick_the_smaller_class() {
        let train = Matrix::from_vec(2, 1, vec![-1.0, 1.0]);
        let labels = [1usize, 0];
        let knn = KNeighbors::new(&train, &labels, 2, 2);
        assert_eq!(knn.predict(&Matrix::from_vec(1, 1, vec![0.0])), vec![0]);
    }

    #[test]
    fn smallest_k_orders() {
        assert_eq!(smallest_k(&[5.0, 1.0, 3.0, 1.0, 0.5], 3), vec![4, 1, 3]);
    }
}
