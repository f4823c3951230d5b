//! Direct calls of the `gemm` crate (the kernel burn-flex's matmul uses) on strided views of slices.
//!
//! The CPU fast paths ([`crate::cpu_encoder`], [`crate::cpu_linear`]) multiply views in place (a head's
//! columns of a Q/K/V buffer, a transposed weight) instead of materialising them as burn-flex does before
//! its matmuls; bounds are checked here once, so the callers stay safe code.

use crate::backend::on_in_flight_worker;

/// A strided matrix in a slice: element `(i, j)` at `i * rs + j * cs`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// Row-major rows `rs` apart.
    pub(crate) fn rows(data: &'a [f32], rs: usize) -> Self {
        Self { data, rs, cs: 1 }
    }

    /// The transpose of row-major rows `rs` apart (columns of the view are the rows of `data`).
    pub(crate) fn cols(data: &'a [f32], rs: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: rs,
        }
    }

    fn last_index(&self, rows: usize, cols: usize) -> usize {
        (rows - 1) * self.rs + (cols - 1) * self.cs
    }
}

/// `dst[m, n] (rows dst_rs apart) = lhs[m, k] @ rhs[k, n]`, on all cores unless this thread is one of
/// several batches in flight or the product is small.
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: View,
    rhs: View,
    [m, k, n]: [usize; 3],
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        k > 0
            && lhs.last_index(m, k) < lhs.data.len()
            && rhs.last_index(k, n) < rhs.data.len()
            && (m - 1) * dst_rs + n <= dst.len(),
        "cpu_encoder::matmul: operand out of bounds ({m} x {k} x {n})"
    );
    let threads = if parallel && !on_in_flight_worker() && m * k * n >= 1 << 21 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every element gemm reads or writes lies inside the slices (asserted above), `dst` is
    // borrowed mutably and does not overlap the operands.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            threads,
        )
    }
}
