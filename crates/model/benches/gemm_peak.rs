//! GFLOP/s of the f32 matmul kernel under burn-flex (the `gemm` crate) at the Linear shapes of MiniLM
//! training (batch 32 x length 64 = 2,048 rows, hidden 384, FFN 1,536), on 1 and 2 threads. Beside
//! `scripts/reference/bench_gemm_torch.py` (the same shapes through PyTorch's MKL) it says how much of a
//! gap to PyTorch is the matmul kernel itself (BENCHMARKS.md).
//!
//!     cargo bench -p sekator-model --bench gemm_peak

use std::time::Instant;

/// (m, k, n): the forward Linears (384 -> 384, 384 -> 1536, 1536 -> 384) and a weight gradient.
const SHAPES: [(usize, usize, usize); 4] = [
    (2048, 384, 384),
    (2048, 384, 1536),
    (2048, 1536, 384),
    (384, 2048, 1536),
];

/// Seconds per `dst = lhs[m, k] @ rhs[k, n]` (row-major), the median of 7 runs of 10 calls.
fn seconds(m: usize, k: usize, n: usize, threads: usize) -> f64 {
    let lhs = vec![0.5f32; m * k];
    let rhs = vec![0.25f32; k * n];
    let mut dst = vec![0f32; m * n];
    let par = match threads {
        1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    let mut call = || unsafe {
        // dst = 0 * dst + 1 * lhs @ rhs; strides: (column, row) in elements
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    };
    call();
    let mut runs: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            (0..10).for_each(|_| call());
            t.elapsed().as_secs_f64() / 10.0
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    assert_eq!(dst[0], 0.125 * k as f32, "the product is wrong");
    runs[3]
}

fn main() {
    for threads in [1, 2] {
        for (m, k, n) in SHAPES {
            let gflops = 2.0 * (m * k * n) as f64 / seconds(m, k, n, threads) / 1e9;
            println!("{{\"impl\": \"gemm\", \"m\": {m}, \"k\": {k}, \"n\": {n}, \"threads\": {threads}, \"gflops\": {gflops:.1}}}");
        }
    }
}
