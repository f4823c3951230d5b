//! GFLOP/s of the f32 matmul kernel under burn-flex (the `gemm` crate) at the Linear shapes of MiniLM
//! training (batch 32 x length 64 = 2,048 rows, hidden 384, FFN 1,536), on 1 and 2 threads. Beside
//! `scripts/reference/bench_gemm_torch.py` (the same shapes through PyTorch's MKL) it says how much of a
//! gap to PyTorch is the matmul kernel itself (BENCHMARKS.md).
//!
//! Its first lines are the core's FMA peak (a loop of independent multiply-adds, 8 lanes and, where the
//! CPU has AVX-512, 16), the ceiling of both; its last, the one-thread products run two at a time on
//! their own threads, as sekator's batches in flight run them.
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

/// Seconds per `call()` after one untimed call: the median of 7 runs of 10 calls.
fn median_seconds(mut call: impl FnMut()) -> f64 {
    call();
    let mut runs: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            (0..10).for_each(|_| call());
            t.elapsed().as_secs_f64() / 10.0
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[3]
}

/// Seconds per `dst = lhs[m, k] @ rhs[k, n]` (row-major), the median of 7 runs of 10 calls.
fn seconds(m: usize, k: usize, n: usize, threads: usize) -> f64 {
    let lhs = vec![0.5f32; m * k];
    let rhs = vec![0.25f32; k * n];
    let mut dst = vec![0f32; m * n];
    let par = match threads {
        1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    let secs = median_seconds(|| unsafe {
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
    });
    assert_eq!(dst[0], 0.125 * k as f32, "the product is wrong");
    secs
}

/// GFLOP/s of twelve independent chains of 8-lane fused multiply-adds on this thread: the core's
/// arithmetic peak for f32 AVX2 code (x86-64 with AVX2 and FMA only).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_peak() -> f64 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_setzero_ps(); 12];
    let steps = 50_000_000u64;
    let t = Instant::now();
    for _ in 0..steps {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, b, c);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let sum: f32 = acc.iter().map(|a| _mm256_cvtss_f32(*a)).sum();
    assert!(sum.is_finite());
    (steps * 12 * 8 * 2) as f64 / secs / 1e9
}

/// The same with 16-lane AVX-512 multiply-adds (x86-64 with AVX-512F only).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_peak_512() -> f64 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_setzero_ps(); 12];
    let steps = 50_000_000u64;
    let t = Instant::now();
    for _ in 0..steps {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, b, c);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let sum: f32 = acc.iter().map(|a| _mm512_reduce_add_ps(*a)).sum();
    assert!(sum.is_finite());
    (steps * 12 * 16 * 2) as f64 / secs / 1e9
}

/// Seconds per product on AMX tiles (`cpu_amx`, f32-accurate; weight packed once, outside the timing),
/// as [`median_seconds`] times it. Varied operands, unlike the gemm rows: AMX's rate depends on the
/// data (constant operands, whose mid and lo parts are zero, ran 10-50% faster).
fn amx_seconds(m: usize, k: usize, n: usize) -> f64 {
    use sekator_model::cpu_amx;
    let vary = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed) % 2003) as f32 / 1000.0 - 1.0)
            .collect()
    };
    let (lhs, w) = (vary(m * k, 1), vary(k * n, 2));
    let rhs = cpu_amx::PackedB::new(&w, [k, n]);
    let mut dst = vec![0f32; m * n];
    let secs =
        median_seconds(|| cpu_amx::matmul(&mut dst, n, cpu_amx::Lhs(&lhs, k), &rhs, m, false));
    let want: f64 = (0..k).map(|p| lhs[p] as f64 * w[p * n] as f64).sum();
    let scale: f64 = (0..k)
        .map(|p| (lhs[p] as f64 * w[p * n] as f64).abs())
        .sum();
    assert!(
        (dst[0] as f64 - want).abs() <= 1e-6 * scale,
        "the product is wrong"
    );
    secs
}

/// GFLOP/s each of two products timed by `secs` at once on their own threads.
fn two_in_flight(m: usize, k: usize, n: usize, secs: fn(usize, usize, usize) -> f64) -> f64 {
    let each: Vec<f64> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2).map(|_| s.spawn(move || secs(m, k, n))).collect();
        runs.into_iter()
            .map(|r| r.join().expect("product thread"))
            .collect()
    });
    each.iter()
        .map(|t| 2.0 * (m * k * n) as f64 / t / 1e9)
        .sum::<f64>()
        / 2.0
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        let peak = unsafe { fma_peak() };
        println!("{{\"impl\": \"fma peak\", \"lanes\": 8, \"threads\": 1, \"gflops\": {peak:.1}}}");
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            let peak = unsafe { fma_peak_512() };
            println!(
                "{{\"impl\": \"fma peak\", \"lanes\": 16, \"threads\": 1, \"gflops\": {peak:.1}}}"
            );
        }
    }
    for threads in [1, 2] {
        for (m, k, n) in SHAPES {
            let gflops = 2.0 * (m * k * n) as f64 / seconds(m, k, n, threads) / 1e9;
            println!("{{\"impl\": \"gemm\", \"m\": {m}, \"k\": {k}, \"n\": {n}, \"threads\": {threads}, \"gflops\": {gflops:.1}}}");
        }
    }
    // The inference Linears on AMX tiles where the CPU has them (the forward shapes), one thread and
    // two in flight.
    if sekator_model::cpu_amx::available() {
        for (m, k, n) in &SHAPES[..3] {
            let (m, k, n) = (*m, *k, *n);
            let gflops = 2.0 * (m * k * n) as f64 / amx_seconds(m, k, n) / 1e9;
            println!("{{\"impl\": \"amx\", \"m\": {m}, \"k\": {k}, \"n\": {n}, \"threads\": 1, \"gflops\": {gflops:.1}}}");
            let gflops = two_in_flight(m, k, n, amx_seconds);
            println!("{{\"impl\": \"amx, 2 in flight\", \"m\": {m}, \"k\": {k}, \"n\": {n}, \"threads\": 1, \"gflops\": {gflops:.1}}}");
        }
    }
    // Two one-thread products at once (each batch in flight runs its gemm calls on its own core): the
    // rate each gets when both cores are busy, which is what sekator's kernels can reach.
    for (m, k, n) in SHAPES {
        let gflops = two_in_flight(m, k, n, |m, k, n| seconds(m, k, n, 1));
        println!("{{\"impl\": \"gemm, 2 in flight\", \"m\": {m}, \"k\": {k}, \"n\": {n}, \"threads\": 1, \"gflops\": {gflops:.1}}}");
    }
}
