//! PCA of the token vectors: the covariance's eigenvectors by nalgebra's symmetric eigendecomposition.

use nalgebra::{DMatrix, SymmetricEigen};

/// The mean and the top components of row vectors.
pub struct Pca {
    pub mean: Vec<f64>,
    /// `[k][d]`: unit components, largest variance first; each one's sign makes its largest-magnitude entry
    /// positive, so the same vectors give the same table.
    pub components: Vec<Vec<f64>>,
    /// Share of the total variance the `k` components hold.
    pub explained: f64,
}

impl Pca {
    /// Fits `k` components to `rows` (row-major `[n, d]`, n >= 1).
    pub fn fit(rows: &[f32], d: usize, k: usize) -> Self {
        let n = rows.len() / d;
        let mut mean = vec![0.0f64; d];
        for row in rows.chunks(d) {
            mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x as f64);
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        let mut cov = DMatrix::<f64>::zeros(d, d);
        let mut centred = vec![0.0f64; d];
        for row in rows.chunks(d) {
            for (c, (&x, m)) in centred.iter_mut().zip(row.iter().zip(&mean)) {
                *c = x as f64 - m;
            }
            for i in 0..d {
                let ci = centred[i];
                for j in i..d {
                    cov[(i, j)] += ci * centred[j];
                }
            }
        }
        for i in 0..d {
            for j in i..d {
                let v = cov[(i, j)] / n.max(1) as f64;
                cov[(i, j)] = v;
                cov[(j, i)] = v;
            }
        }
        let eig = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| {
            eig.eigenvalues[b]
                .total_cmp(&eig.eigenvalues[a])
                .then(a.cmp(&b))
        });
        let total: f64 = eig.eigenvalues.iter().map(|v| v.max(0.0)).sum();
        let kept: f64 = order[..k]
            .iter()
            .map(|&i| eig.eigenvalues[i].max(0.0))
            .sum();
        let components = order[..k]
            .iter()
            .map(|&i| {
                let mut c: Vec<f64> = eig.eigenvectors.column(i).iter().copied().collect();
                let big = c
                    .iter()
                    .copied()
                    .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
                if big < 0.0 {
                    c.iter_mut().for_each(|x| *x = -*x);
                }
                c
            })
            .collect();
        Self {
            mean,
            components,
            explained: if total > 0.0 { kept / total } else { 1.0 },
        }
    }

    /// `rows` `[n, d]` -> `[n, k]`: centred, then onto each component.
    pub fn project(&self, rows: &[f32]) -> Vec<f32> {
        let d = self.mean.len();
        let mut out = Vec::with_capacity(rows.len() / d * self.components.len());
        for row in rows.chunks(d) {
            for c in &self.components {
                let dot: f64 = row
                    .iter()
                    .zip(&self.mean)
                    .zip(c)
                    .map(|((&x, m), w)| (x as f64 - m) * w)
                    .sum();
                out.push(dot as f32);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_orthonormal_and_ordered_by_variance() {
        // points along (1, 1, 0) with spread 3, along (1, -1, 0) with spread 1, nothing along z
        let mut rows = vec![];
        for i in 0..20 {
            // each `a` once with +b and once with -b: the two directions are uncorrelated
            let (a, b) = (
                ((i / 2) as f32 - 4.5) * 0.3,
                if i % 2 == 0 { 0.1 } else { -0.1 },
            );
            rows.extend([a + b + 5.0, a - b - 2.0, 1.0]);
        }
        let p = Pca::fit(&rows, 3, 2);
        let s = std::f64::consts::FRAC_1_SQRT_2;
        assert!((p.components[0][0] - s).abs() < 1e-6 && (p.components[0][1] - s).abs() < 1e-6);
        assert!((p.components[1][0].abs() - s).abs() < 1e-6 && p.components[1][2].abs() < 1e-6);
        let dot: f64 = p.components[0]
            .iter()
            .zip(&p.components[1])
            .map(|(a, b)| a * b)
            .sum();
        assert!(dot.abs() < 1e-12);
        assert!((p.explained - 1.0).abs() < 1e-9, "z holds no variance");
        assert!((p.mean[0] - 5.0).abs() < 1e-6 && (p.mean[2] - 1.0).abs() < 1e-9);
        // projections are centred
        let proj = p.project(&rows);
        let m0: f32 = proj.chunks(2).map(|r| r[0]).sum::<f32>() / 20.0;
        assert!(m0.abs() < 1e-5);
    }
}
