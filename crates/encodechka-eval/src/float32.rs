//! Float32 arithmetic the way numpy and PyTorch carry it out, where the original evaluator's float32 results
//! decide a score: exact ties in Spearman ranks and ROC AUC, and the float32 loss scikit-learn's logistic
//! regression minimises for float32 embeddings (its quantised values steer L-BFGS-B's line search and
//! stopping test).

/// `torch.linalg.vector_norm(x)` of a float32 row as PyTorch's CPU kernel computes it: squares summed in
/// eight float32 lanes (`Vectorized<float>`), the lanes folded left to right, the tail added one by one, a
/// float32 square root. `torch.nn.functional.normalize` then divides in float32; doing the same keeps the
/// `*_norm` variants bit-identical to the original's (a correctly rounded norm differs in the last bit for
/// about half the rows, which is enough to reorder exact ties such as the self-similarity of identical
/// sentences).
pub fn torch_l2_norm(row: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0.0f32; LANES];
    let body = row.len() - row.len() % LANES;
    for chunk in row[..body].chunks_exact(LANES) {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v * v;
        }
    }
    let mut sum = acc[0];
    for &a in &acc[1..] {
        sum += a;
    }
    for &v in &row[body..] {
        sum += v * v;
    }
    sum.sqrt()
}

/// `np.sum(x)` of a contiguous float32 array: numpy's pairwise summation (eight accumulators in blocks of
/// up to 128 values, halves summed recursively above that), in float32.
pub fn numpy_sum_f32(x: &[f32]) -> f32 {
    let n = x.len();
    if n < 8 {
        let mut res = -0.0f32;
        for &v in x {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f32; 8];
        r.copy_from_slice(&x[..8]);
        let body = n - n % 8;
        let mut i = 8;
        while i < body {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += x[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &x[body..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum_f32(&x[..n2]) + numpy_sum_f32(&x[n2..])
    }
}

/// `A·x` for a column-major `3 × n` float32 matrix `A` (`lda = 3`: the rows of `a` below are its columns),
/// as OpenBLAS's `sgemv_n` computes it for exactly three rows on x86-64 (its `m3 == 3` tail with `lda == 3`):
/// pairs of products fused as `fma(a0, x0, a1·x1)`, added to three float32 running sums four columns at a
/// time, the remaining columns fused into the sums one by one.
///
/// This is scikit-learn's weight gradient `grad_pointwise.T @ X` of a three-class logistic regression on one
/// feature (encodechka's NLI): reproducing its float32 rounding keeps L-BFGS-B on scikit-learn's iterates
/// where the float32 loss is too flat to tell them apart otherwise.
pub fn openblas_sgemv_n_3rows(a: &[[f32; 3]], x: &[f32]) -> [f32; 3] {
    assert_eq!(a.len(), x.len(), "sgemv: shapes differ");
    let n = x.len();
    let body = n & !3;
    let mut t = [0.0f32; 3];
    for i in (0..body).step_by(4) {
        for c in 0..3 {
            t[c] += a[i][c].mul_add(x[i], a[i + 1][c] * x[i + 1]);
        }
        for c in 0..3 {
            t[c] += a[i + 2][c].mul_add(x[i + 2], a[i + 3][c] * x[i + 3]);
        }
    }
    for i in body..n {
        for c in 0..3 {
            t[c] = a[i][c].mul_add(x[i], t[c]);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_pairwise_sum() {
        // a large first value swallows ones added to it one at a time in float32; numpy's blocks keep them
        // (values printed by numpy 2.4: np.sum(x) for these float32 arrays)
        let mut x = vec![1.0f32; 300];
        x[0] = 1e8;
        assert_eq!(numpy_sum_f32(&x), 100_000_288.0);
        assert_eq!(x.iter().fold(0.0f32, |a, &b| a + b), 1e8);
        let mut x = vec![1.0f32; 20];
        x[0] = 1e8;
        assert_eq!(numpy_sum_f32(&x), 100_000_008.0);
        assert_eq!(numpy_sum_f32(&[1.0, 2.0, 3.0]), 6.0);
    }

    #[test]
    fn torch_norm_of_a_simple_row() {
        assert_eq!(torch_l2_norm(&[3.0, 4.0]), 5.0);
        let row: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let exact = (0..20).map(|i| (i * i) as f64).sum::<f64>().sqrt();
        assert!((torch_l2_norm(&row) as f64 - exact).abs() < 1e-5);
    }

    /// `(gp.T @ X).ravel()` printed by numpy 2.4 (scipy-openblas 0.3.31) for
    /// `gp = (np.arange(180, dtype=np.float32).reshape(60, 3) % 7 - 3) / 7` and
    /// `X = (np.arange(60, dtype=np.float32) * 1.3 + 40)[:, None]` (more than 48 columns: OpenBLAS has
    /// another kernel for at most 48).
    #[test]
    fn openblas_three_row_gemv() {
        let a: Vec<[f32; 3]> = (0..60)
            .map(|i| {
                let r = |c: usize| (((3 * i + c) % 7) as f32 - 3.0) / 7.0;
                [r(0), r(1), r(2)]
            })
            .collect();
        let x: Vec<f32> = (0..60).map(|i| i as f32 * 1.3 + 40.0).collect();
        assert_eq!(openblas_sgemv_n_3rows(&a, &x), OPENBLAS_THREE_ROWS);
        // a plain float32 loop rounds differently
        let mut plain = [0.0f32; 3];
        for (row, &xv) in a.iter().zip(&x) {
            for c in 0..3 {
                plain[c] += row[c] * xv;
            }
        }
        assert_ne!(plain, OPENBLAS_THREE_ROWS);
    }

    const OPENBLAS_THREE_ROWS: [f32; 3] = [-5.157_142_6, -44.585_705, 10.585_722];
}
