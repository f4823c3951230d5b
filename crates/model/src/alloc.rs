//! The C allocator's settings for the CPU backend's allocation pattern.
//!
//! burn-flex allocates a fresh buffer for most tensor results, many of them megabytes (activations,
//! gradients, the word embeddings' 11.7 M-float gradient). glibc serves blocks above its mmap threshold
//! (128 KiB at first) with `mmap` and returns them with `munmap`, so every step paid page faults, the
//! kernel zeroing each new page and TLB shootdowns across cores: a fifth of a distillation step's CPU
//! time was system time (`scripts/profile.sh`). Raising the threshold to glibc's maximum and never
//! trimming keeps freed memory in the heap for the next step: measured +19% distillation pairs/s on 2
//! cores (BENCHMARKS.md). Numbers are unaffected: only where buffers live changes.
//!
//! The thresholds govern the main arena only. The worker threads that compute tensor results get
//! glibc's per-thread arenas, heaps of their own that still map fresh pages and trim them, so system
//! time stayed at a third of distillation's CPU time (`clear_page_erms` ~20% of its profile). One arena
//! (`M_ARENA_MAX` 1) sends every thread's blocks through the tuned main heap: measured sys time 8-13 s
//! -> 2.6 s and wall 20-26 s -> 15 s over 8 MiniLM distillation steps on 2 cores of one Xeon VM. On
//! another (2026-12-04 evening), where per-thread arenas cost little, the same A/B moved wall time by
//! under 1.5% either way (sys 1.6 -> 1.1 s): one arena is kept for the machines where it matters.

/// Applies the settings once per process; a no-op off glibc, and when `MALLOC_MMAP_THRESHOLD_`,
/// `MALLOC_TRIM_THRESHOLD_` or `MALLOC_ARENA_MAX` is set (the user's own tuning wins).
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
            || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
            || std::env::var_os("MALLOC_ARENA_MAX").is_some()
        {
            return;
        }
        // glibc caps the mmap threshold at 32 MiB on 64-bit (HEAP_MAX_SIZE / 2); larger blocks still map.
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        const TOP_PAD: libc::c_int = 256 << 20;
        // SAFETY: mallopt only changes allocator parameters; called before any thread is spawned by us.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
            libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
