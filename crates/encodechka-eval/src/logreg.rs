//! `sklearn.linear_model.LogisticRegression()` with its defaults: L2 penalty with C = 1, unpenalised intercept,
//! a sigmoid model for two classes and a multinomial (softmax) model for more, solved by L-BFGS-B from zero.
//!
//! The objective is scikit-learn's own scaling, mean log-loss + ‖W‖² / (2·C·n), and the solver is SciPy's
//! L-BFGS-B replicated step for step ([`crate::lbfgsb`]) with scikit-learn's settings (`gtol = tol = 1e-4`
//! on the largest gradient entry, `ftol = 64·eps`, `maxls = 50`, 10 correction pairs). scikit-learn stops
//! far from the exact optimum (often after 5–30 iterations), so the same iterates, not merely a better
//! optimum, are what reproduces its scores: a tighter solver moved NLI's accuracy on un-normalised CLS
//! dot products by 0.017 and ROC AUCs by up to 0.002.
//!
//! The embeddings are float32, and scikit-learn keeps a float32 model for float32 input: `coef_` and
//! `intercept_` are stored as float32 and the decision function and probabilities are float32 too. The
//! fitted parameters and the scores are rounded the same way here, so ties (and near-ties that float32
//! merges) come out as in scikit-learn.

use anyhow::{bail, Result};

use crate::float32::{numpy_sum_f32, openblas_sgemv_n_3rows};
use crate::lbfgsb;
use crate::matrix::{gemm_a_bt, gemm_at_b, Matrix};

/// Solver settings. Defaults follow encodechka's `LogisticRegression(max_iter=10_000)`.
#[derive(Clone, Debug)]
pub struct LogRegConfig {
    /// Inverse regularisation strength.
    pub c: f64,
    /// scikit-learn's `tol`: stop when the largest absolute gradient entry is at most this.
    pub tol: f64,
    pub max_iter: u64,
}

impl Default for LogRegConfig {
    fn default() -> Self {
        Self {
            c: 1.0,
            tol: 1e-4,
            max_iter: 10_000,
        }
    }
}

/// A fitted model. For two classes `coef` has one row (the score of class 1), otherwise one row per class.
#[derive(Clone, Debug)]
pub struct LogisticRegression {
    pub n_classes: usize,
    pub dim: usize,
    pub coef: Matrix,
    pub intercept: Vec<f64>,
    pub iterations: u64,
    pub converged: bool,
}

impl LogisticRegression {
    /// Fits on rows of `x` with labels `y` in `0..n_classes` (every class must occur).
    pub fn fit(x: &Matrix, y: &[usize], n_classes: usize, cfg: &LogRegConfig) -> Result<Self> {
        if x.rows != y.len() {
            bail!(
                "logistic regression: {} rows but {} labels",
                x.rows,
                y.len()
            );
        }
        if n_classes < 2 {
            bail!("logistic regression needs at least two classes, got {n_classes}");
        }
        if let Some(&bad) = y.iter().find(|&&c| c >= n_classes) {
            bail!("logistic regression: label {bad} out of range 0..{n_classes}");
        }
        let k = if n_classes == 2 { 1 } else { n_classes };
        let problem = Objective::new(x, y, k, cfg.c);
        let opts = lbfgsb::Options {
            pgtol: cfg.tol,
            max_iter: cfg.max_iter,
            ..lbfgsb::Options::default()
        };
        let out = lbfgsb::minimize(|p| problem.compute(p), vec![0.0; k * (x.cols + 1)], &opts);
        if !out.f.is_finite() {
            bail!("logistic regression: L-BFGS-B ended at a non-finite loss");
        }
        let iterations = out.iterations;
        let converged = out.converged();
        // scikit-learn stores float32 parameters for float32 input
        let params: Vec<f64> = out.x.iter().map(|&v| v as f32 as f64).collect();
        let d = x.cols;
        let coef = Matrix::from_vec(k, d, params[..k * d].to_vec());
        let intercept = params[k * d..].to_vec();
        Ok(Self {
            n_classes,
            dim: d,
            coef,
            intercept,
            iterations,
            converged,
        })
    }

    /// Raw scores `X·Wᵀ + b`, one column (binary) or one per class, rounded to float32 (scikit-learn's
    /// decision function is float32 for a float32 model and input).
    pub fn decision_function(&self, x: &Matrix) -> Matrix {
        let mut z = Matrix::zeros(x.rows, self.coef.rows);
        gemm_a_bt(1.0, x, &self.coef, 0.0, &mut z);
        for i in 0..z.rows {
            for (v, b) in z.row_mut(i).iter_mut().zip(&self.intercept) {
                *v = (*v + b) as f32 as f64;
            }
        }
        z
    }

    /// Predicted class per row (`argmax`, first on ties; binary: class 1 iff score > 0, as sklearn).
    pub fn predict(&self, x: &Matrix) -> Vec<usize> {
        let z = self.decision_function(x);
        (0..z.rows)
            .map(|i| {
                let row = z.row(i);
                if self.coef.rows == 1 {
                    usize::from(row[0] > 0.0)
                } else {
                    argmax(row)
                }
            })
            .collect()
    }

    /// Probability of class 1 (binary models only): what `predict_proba(X)[:, 1]` gives, in float32.
    pub fn predict_proba_positive(&self, x: &Matrix) -> Vec<f64> {
        assert_eq!(
            self.coef.rows, 1,
            "predict_proba_positive is for binary models"
        );
        let z = self.decision_function(x);
        z.data.iter().map(|&v| expit(v) as f32 as f64).collect()
    }
}

fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

fn expit(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// scikit-learn's `LinearModelLoss.loss_gradient` for float32 input: mean log-loss plus L2 on the weights.
/// Parameters are `W` (`k × d`, row-major) then `b` (`k`), in float64 as L-BFGS-B keeps them.
///
/// scikit-learn casts the parameters to the data's float32 for the raw predictions, computes each sample's
/// loss and gradient in float64 but stores them as float32, sums the losses with numpy's pairwise float32
/// sum and divides by n in float32; the weight gradient is a float32 BLAS product, the L2 terms are float64.
/// All of that is reproduced; the float32 BLAS products are exact float32 products for one feature, the
/// OpenBLAS summation order is reproduced for the three-class one-feature gradient (NLI), and elsewhere a
/// float64 product rounded to float32 stands in for it. The loss is thus the same float32-quantised value. That matters: close to the optimum the quantised loss
/// stops decreasing, which ends scikit-learn's line searches and runs (e.g. one NLI fold on un-normalised
/// CLS products stops after two iterations, and its accuracy with it).
struct Objective<'a> {
    x: &'a Matrix,
    y: &'a [usize],
    k: usize,
    l2: f64,
}

impl<'a> Objective<'a> {
    fn new(x: &'a Matrix, y: &'a [usize], k: usize, c: f64) -> Self {
        Self {
            x,
            y,
            k,
            l2: 1.0 / (c * x.rows as f64),
        }
    }

    fn compute(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let (n, d, k) = (self.x.rows, self.x.cols, self.k);
        let w = &p[..k * d];
        let b32: Vec<f32> = p[k * d..].iter().map(|&v| v as f32).collect();
        let w32 = Matrix::from_vec(k, d, w.iter().map(|&v| v as f32 as f64).collect());
        let mut z = Matrix::zeros(n, k);
        gemm_a_bt(1.0, self.x, &w32, 0.0, &mut z);
        let mut losses = vec![0.0f32; n];
        // per-sample gradient (probability minus target), float32
        let mut residual = vec![0.0f32; n * k];
        let mut raw = vec![0.0f32; k];
        let mut prob = vec![0.0f32; k];
        for i in 0..n {
            for ((r, &zv), &bv) in raw.iter_mut().zip(z.row(i)).zip(&b32) {
                *r = zv as f32 + bv;
            }
            let yi = self.y[i];
            let out = &mut residual[i * k..(i + 1) * k];
            if k == 1 {
                let (l, g) = half_binomial(if yi == 1 { 1.0 } else { 0.0 }, raw[0] as f64);
                losses[i] = l as f32;
                out[0] = g as f32;
            } else {
                // HalfMultinomialLoss.loss_gradient with float32 buffers
                let mut max = raw[0] as f64;
                for &r in &raw[1..] {
                    if max < r as f64 {
                        max = r as f64;
                    }
                }
                let mut sum_exps = 0.0f64;
                for (pv, &r) in prob.iter_mut().zip(&raw) {
                    *pv = (r as f64 - max).exp() as f32;
                    sum_exps += *pv as f64;
                }
                let sum_exps = sum_exps as f32;
                let mut loss = ((sum_exps as f64).ln() + max) as f32;
                for c in 0..k {
                    if yi == c {
                        loss -= raw[c];
                    }
                    prob[c] /= sum_exps;
                    out[c] = prob[c] - if yi == c { 1.0 } else { 0.0 };
                }
                losses[i] = loss;
            }
        }
        let nf = n as f32;
        let loss = (numpy_sum_f32(&losses) / nf) as f64;
        residual.iter_mut().for_each(|v| *v /= nf);

        let mut grad: Vec<f64> = if k == 3 && d == 1 {
            // NLI's shape: OpenBLAS's float32 rounding, reproduced exactly
            let rows: Vec<[f32; 3]> = residual
                .chunks_exact(3)
                .map(|r| [r[0], r[1], r[2]])
                .collect();
            let x: Vec<f32> = self.x.data.iter().map(|&v| v as f32).collect();
            openblas_sgemv_n_3rows(&rows, &x)
                .iter()
                .map(|&v| v as f64)
                .collect()
        } else {
            let r64 = Matrix::from_vec(n, k, residual.iter().map(|&v| v as f64).collect());
            let mut gw = Matrix::zeros(k, d);
            gemm_at_b(1.0, &r64, self.x, 0.0, &mut gw);
            gw.data
        };
        let mut sq = 0.0;
        for (g, wv) in grad.iter_mut().zip(w) {
            *g = *g as f32 as f64 + self.l2 * wv;
            sq += wv * wv;
        }
        if k == 1 {
            // np.sum over a contiguous vector: pairwise
            grad.push(numpy_sum_f32(&residual) as f64);
        } else {
            // np.sum(axis=0) of a C-ordered (n, k) array: row after row
            let mut gb = vec![0.0f32; k];
            for row in residual.chunks_exact(k) {
                for (acc, &v) in gb.iter_mut().zip(row) {
                    *acc += v;
                }
            }
            grad.extend(gb.into_iter().map(|v| v as f64));
        }
        (loss + 0.5 * self.l2 * sq, grad)
    }
}

/// scikit-learn's `closs_grad_half_binomial`: loss `log(1 + exp(raw)) - y·raw` and its derivative.
fn half_binomial(y: f64, raw: f64) -> (f64, f64) {
    if raw <= -37.0 {
        let e = raw.exp();
        (e - y * raw, e - y)
    } else if raw <= -2.0 {
        let e = raw.exp();
        (e.ln_1p() - y * raw, ((1.0 - y) * e - y) / (1.0 + e))
    } else if raw <= 18.0 {
        let e = (-raw).exp();
        (e.ln_1p() + (1.0 - y) * raw, ((1.0 - y) - y * e) / (1.0 + e))
    } else {
        let e = (-raw).exp();
        (e + (1.0 - y) * raw, ((1.0 - y) - y * e) / (1.0 + e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The analytic gradient against finite differences, both model kinds (the loss is float32-quantised,
    /// hence the wide step and tolerance).
    #[test]
    fn gradient_matches_finite_differences() {
        let x = Matrix::from_vec(
            5,
            2,
            vec![0.5, -1.0, 1.5, 0.2, -0.3, 0.8, 2.0, -1.2, 0.1, 0.1],
        );
        for (k, y) in [(1usize, vec![0usize, 1, 1, 0, 1]), (3, vec![0, 2, 1, 2, 0])] {
            let obj = Objective::new(&x, &y, k, 1.0);
            let p: Vec<f64> = (0..k * 3).map(|i| 0.1 * i as f64 - 0.2).collect();
            let (_, g) = obj.compute(&p);
            for j in 0..p.len() {
                let mut hi = p.clone();
                let mut lo = p.clone();
                hi[j] += 1e-3;
                lo[j] -= 1e-3;
                let num = (obj.compute(&hi).0 - obj.compute(&lo).0) / 2e-3;
                assert!((num - g[j]).abs() < 1e-4, "k={k} j={j}: {num} vs {}", g[j]);
            }
        }
    }

    fn toy() -> Matrix {
        // float32 values, as embeddings are
        let v: [f32; 24] = [
            0.5, -1.0, 1.5, 0.2, -0.3, 0.8, 2.0, -1.2, 0.1, 0.1, -1.0, -0.5, 0.7, 1.1, -1.5, 0.3,
            1.2, -0.4, -0.2, -1.3, 0.9, 0.6, -0.8, 1.4,
        ];
        Matrix::from_f32(12, 2, &v)
    }

    /// Equal to a few float32 steps of O(1) values: only the float32 BLAS summation order differs.
    fn assert_f32_close(got: &[f64], want: &[f64]) {
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
    }

    /// `LogisticRegression().fit(X.astype(np.float32), y)` in scikit-learn 1.9.1: the early-stopped iterate
    /// (`n_iter_` 6), not the optimum, stored as float32.
    #[test]
    fn binary_matches_sklearn() {
        let y = [1, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0];
        let m = LogisticRegression::fit(&toy(), &y, 2, &LogRegConfig::default()).unwrap();
        assert_eq!(m.iterations, 6);
        assert!(m.converged);
        assert_f32_close(&m.coef.data, &[1.6117651462554932, -0.01152544841170311]);
        assert_f32_close(&m.intercept, &[-0.4282098114490509]);
        let p = m.predict_proba_positive(&toy());
        assert_f32_close(
            &p[..3],
            &[0.5960896611213684, 0.8794394731521606, 0.2847623825073242],
        );
    }

    #[test]
    fn multinomial_matches_sklearn() {
        let y = [0, 1, 2, 1, 0, 2, 2, 0, 1, 0, 2, 2];
        let m = LogisticRegression::fit(&toy(), &y, 3, &LogRegConfig::default()).unwrap();
        assert_eq!(m.iterations, 8);
        assert_f32_close(
            &m.coef.data,
            &[
                -0.6795974373817444,
                -0.5669545531272888,
                1.0955348014831543,
                -0.27799221873283386,
                -0.4159373939037323,
                0.8449467420578003,
            ],
        );
        assert_f32_close(
            &m.intercept,
            &[0.3900521397590637, -0.8751586079597473, 0.4851062595844269],
        );
        assert_eq!(m.predict(&toy()), vec![0, 1, 2, 1, 2, 0, 2, 2, 1, 0, 2, 2]);
    }
}
