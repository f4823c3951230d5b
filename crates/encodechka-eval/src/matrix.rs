//! A row-major f64 matrix and the two products the classifiers need, on `matrixmultiply`'s dgemm.
//!
//! Classifiers run in f64 (as scikit-learn's L-BFGS and SGD do) even though embeddings are stored as f32.

/// Dense row-major matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    pub fn from_vec(rows: usize, cols: usize, data: Vec<f64>) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix data does not match {rows}x{cols}"
        );
        Self { rows, cols, data }
    }

    /// Widens f32 rows (exactly: every f32 is an f64).
    pub fn from_f32(rows: usize, cols: usize, data: &[f32]) -> Self {
        Self::from_vec(rows, cols, data.iter().map(|&v| v as f64).collect())
    }

    /// Rows picked by index, in the given order.
    pub fn select_rows(&self, idx: &[usize]) -> Self {
        let mut data = Vec::with_capacity(idx.len() * self.cols);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        Self::from_vec(idx.len(), self.cols, data)
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Squared L2 norm of every row.
    pub fn row_sq_norms(&self) -> Vec<f64> {
        (0..self.rows)
            .map(|i| self.row(i).iter().map(|v| v * v).sum())
            .collect()
    }
}

/// `C = alpha * A · Bᵀ + beta * C` with A `[m, k]`, B `[n, k]`, C `[m, n]`.
pub fn gemm_a_bt(alpha: f64, a: &Matrix, b: &Matrix, beta: f64, c: &mut Matrix) {
    assert_eq!(a.cols, b.cols, "gemm_a_bt: inner dimensions differ");
    assert_eq!(
        (c.rows, c.cols),
        (a.rows, b.rows),
        "gemm_a_bt: output shape"
    );
    let (m, k, n) = (a.rows, a.cols, b.rows);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the pointers cover m*k, n*k and m*n elements with the strides given, as asserted above.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            k as isize,
            1,
            b.data.as_ptr(),
            1,
            k as isize,
            beta,
            c.data.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// `C = alpha * Aᵀ · B + beta * C` with A `[n, m]`, B `[n, k]`, C `[m, k]`.
pub fn gemm_at_b(alpha: f64, a: &Matrix, b: &Matrix, beta: f64, c: &mut Matrix) {
    assert_eq!(a.rows, b.rows, "gemm_at_b: inner dimensions differ");
    assert_eq!(
        (c.rows, c.cols),
        (a.cols, b.cols),
        "gemm_at_b: output shape"
    );
    let (m, n, k) = (a.cols, a.rows, b.cols);
    if m == 0 || k == 0 {
        return;
    }
    // SAFETY: as in `gemm_a_bt`; Aᵀ is read through swapped strides.
    unsafe {
        matrixmultiply::dgemm(
            m,
            n,
            k,
            alpha,
            a.data.as_ptr(),
            1,
            m as isize,
            b.data.as_ptr(),
            k as isize,
            1,
            beta,
            c.data.as_mut_ptr(),
            k as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_by_hand() {
        let a = Matrix::from_vec(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = Matrix::from_vec(2, 3, vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        let mut c = Matrix::zeros(2, 2);
        gemm_a_bt(1.0, &a, &b, 0.0, &mut c);
        assert_eq!(c.data, vec![4.0, 2.0, 10.0, 5.0]);
        // Aᵀ·B: [3,2]·[2,3]
        let mut d = Matrix::zeros(3, 3);
        gemm_at_b(1.0, &a, &b, 0.0, &mut d);
        assert_eq!(d.data, vec![1.0, 4.0, 1.0, 2.0, 5.0, 2.0, 3.0, 6.0, 3.0]);
    }
}
