//! f32 matrix products on Intel AMX tiles, at f32 accuracy: the inference Linears of
//! [`crate::cpu_encoder`] and the forward and `dx` products of [`crate::cpu_linear`].
//!
//! Why: the encoder spends three quarters of an embedding in its Linear products, which the AVX-512 FMA
//! units run at ~80% of their peak, as PyTorch's MKL does (BENCHMARKS.md). CPUs with AMX (Intel Xeon
//! since Sapphire Rapids) have a second matrix unit, ~14x the FMA units' rate, that multiplies bf16 only
//! (8 significant bits). Each f32 is split exactly into three bf16 parts, `x = hi + mid + lo` (8 bits
//! each), and a product keeps the six part products down to the 2^-16 order (`hi hi`, `hi mid`,
//! `mid hi`, `mid mid`, `hi lo`, `lo hi`): every part product is exact in f32, the tiles accumulate in
//! f32, and the terms left out are below 2^-24 of the result's scale, so the result is an f32 product
//! summed in another order (tested against f64 below: within twice gemm's error on the same operands).
//! Nothing is rounded to bf16.
//!
//! Layouts, so that every tile load is one strided read:
//! - A (activations, packed per group of 128 rows just before its product): row `i`, chunk `c` of 32
//!   columns: the hi, mid and lo parts of those 32 values, 192 bytes; rows `32 * 3 * 2 * chunks` bytes
//!   apart; rows padded to a multiple of 32 and columns to a multiple of 32 with zeros.
//! - B (weights, packed once: `packed_weights`, `packed_tensor`): per 16 output columns and 32-row
//!   chunk, three 1 KiB tiles (hi, mid, lo) in the tiles' pair layout (tile row `r` holds rows `2r, 2r + 1`
//!   interleaved column by column).
//!
//! Each 32 x 32 block of the result is four accumulator tiles; for each chunk the six terms run in an
//! order that changes one operand at a time, 14 tile loads for 24 tile products. A row's result depends
//! only on that row (every row of a tile is summed alone in a fixed order), so a text's vector does not
//! depend on what it is batched with, and splitting rows across threads changes no bit.
//!
//! Used only where the CPU reports AMX-BF16 and the kernel grants the tile state
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); `SEKATOR_AMX=0` turns it off (then gemm, as on other CPUs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use burn::module::{Param, ParamId};
use burn::tensor::Tensor;
use burn_flex::FlexTensor;

use crate::backend::Cpu;

/// Tile geometry: 16 rows of 64 bytes (16 f32 or 32 bf16).
const TILE_ROWS: usize = 16;
/// bf16 values per tile row of A (the chunk of the inner dimension one tile product consumes).
const CHUNK: usize = 32;
/// Output block: two row tiles by two column tiles.
const BLOCK: usize = 32;
const TILE_BYTES: usize = 1024;

/// Whether this process can use AMX tiles (checked once: CPUID, `SEKATOR_AMX`, the kernel's grant).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE
        .get_or_init(|| std::env::var("SEKATOR_AMX").map_or(true, |v| v != "0") && imp::enable())
}

/// `x = hi + mid + lo`, each part a bf16 (its f32 bits' top half): round to nearest even, then the
/// remainders, each exact in f32.
#[inline(always)]
fn split(x: f32) -> [u16; 3] {
    let hi = bf16(x);
    let r = x - widen(hi);
    let mid = bf16(r);
    let lo = bf16(r - widen(mid));
    [hi, mid, lo]
}

#[inline(always)]
fn bf16(x: f32) -> u16 {
    let u = x.to_bits();
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

#[inline(always)]
fn widen(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// u16s in 64-byte lines: a tile row that straddles two cache lines halves the loads' rate (measured:
/// the kernel ran at half speed on `Vec<u16>`'s 16-byte alignment).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([u16; 32]);

#[derive(Default)]
struct Lines(Vec<Line>);

impl Lines {
    /// `n` values (rounded up to whole lines), the new ones zero.
    fn resize(&mut self, n: usize) {
        self.0.resize(n.div_ceil(32), Line::default());
    }
    fn as_slice(&self) -> &[u16] {
        // SAFETY: `Line` is 32 u16s with no padding (repr(C), 64 bytes).
        unsafe { std::slice::from_raw_parts(self.0.as_ptr() as *const u16, self.0.len() * 32) }
    }
    fn as_mut_slice(&mut self) -> &mut [u16] {
        // SAFETY: as above, and borrowed mutably.
        unsafe {
            std::slice::from_raw_parts_mut(self.0.as_mut_ptr() as *mut u16, self.0.len() * 32)
        }
    }
}

/// A weight `[k, n]` (row-major) in the tiles' layout, split in three parts (public for `gemm_peak`).
pub struct PackedB {
    k: usize,
    n: usize,
    chunks: usize,
    /// Per 16-column block `j`, chunk `c`, part `p`: a tile at `((j * chunks + c) * 3 + p) * 512`.
    data: Lines,
}

impl PackedB {
    /// From a row-major `[k, n]` weight.
    pub fn new(w: &[f32], [k, n]: [usize; 2]) -> Self {
        assert!(w.len() >= k * n, "cpu_amx: weight smaller than {k} x {n}");
        Self::gathered([k, n], |blk, [k0, n0], [kk, nn]| {
            for (r, row) in blk.iter_mut().enumerate().take(kk) {
                row[..nn].copy_from_slice(&w[(k0 + r) * n + n0..][..nn]);
            }
        })
    }

    /// From the transpose of a row-major `[n, k]` matrix (`x @ W^T` multiplies by `PackedB::transposed(W)`).
    pub fn transposed(wt: &[f32], [k, n]: [usize; 2]) -> Self {
        assert!(wt.len() >= k * n, "cpu_amx: weight smaller than {n} x {k}");
        Self::gathered([k, n], |blk, [k0, n0], [kk, nn]| {
            for col in 0..nn {
                let src = &wt[(n0 + col) * k + k0..][..kk];
                for (r, &v) in src.iter().enumerate() {
                    blk[r][col] = v;
                }
            }
        })
    }

    /// Tile by tile: `gather(block, [k0, n0], [rows, cols])` copies B's `rows x cols` values from
    /// `(k0, n0)` into a zeroed 32 x 16 block, which is split into the three part tiles.
    fn gathered(
        [k, n]: [usize; 2],
        gather: impl Fn(&mut [[f32; TILE_ROWS]; CHUNK], [usize; 2], [usize; 2]),
    ) -> Self {
        let chunks = k.div_ceil(CHUNK);
        let col_blocks = n.div_ceil(BLOCK) * 2;
        let mut lines = Lines::default();
        lines.resize(col_blocks * chunks * 3 * TILE_BYTES / 2);
        let data = lines.as_mut_slice();
        for j in 0..n.div_ceil(TILE_ROWS) {
            for c in 0..chunks {
                let mut blk = [[0f32; TILE_ROWS]; CHUNK];
                let (k0, n0) = (c * CHUNK, j * TILE_ROWS);
                gather(
                    &mut blk,
                    [k0, n0],
                    [(k - k0).min(CHUNK), (n - n0).min(TILE_ROWS)],
                );
                let tile = (j * chunks + c) * 3 * 512;
                imp::split_tile(&blk, &mut data[tile..tile + 3 * 512]);
            }
        }
        Self {
            k,
            n,
            chunks,
            data: lines,
        }
    }

    fn bytes(&self) -> usize {
        self.data.0.len() * 64
    }
}

/// A 32 x 16 block of B into its hi, mid and lo tiles (512 values each): tile row `r` holds rows
/// `2r` and `2r + 1` interleaved column by column.
fn split_tile_scalar(blk: &[[f32; TILE_ROWS]; CHUNK], d: &mut [u16]) {
    for (kk, row) in blk.iter().enumerate() {
        for (col, &v) in row.iter().enumerate() {
            let at = (kk / 2) * 32 + col * 2 + kk % 2;
            for (p, part) in split(v).into_iter().enumerate() {
                d[p * 512 + at] = part;
            }
        }
    }
}

/// A product's left operand `[m, k]` in its slice: row-major, rows `.1` apart.
#[derive(Clone, Copy)]
pub struct Lhs<'a>(pub &'a [f32], pub usize);

impl Lhs<'_> {
    fn fits(&self, [m, k]: [usize; 2]) -> bool {
        (m - 1) * self.1 + k <= self.0.len()
    }

    /// Rows `first..first + m` in A's layout (see the module doc), into `out`.
    fn pack(&self, first: usize, [m, k]: [usize; 2], out: &mut Lines) {
        let row = k.div_ceil(CHUNK) * 3 * CHUNK;
        let rows = m.next_multiple_of(BLOCK);
        // Only the padding needs zeros: every real row's chunks are overwritten below (a partial last
        // chunk included, which the splits fill with zeros past `k`).
        out.resize(rows * row);
        let out = &mut out.as_mut_slice()[..rows * row];
        out[m * row..].fill(0);
        let Lhs(x, rs) = *self;
        for (i, dst) in out.chunks_exact_mut(row).take(m).enumerate() {
            imp::split_row(&x[(first + i) * rs..][..k], dst);
        }
    }
}

/// A row's values (`s`) into its chunks' parts (`d`, 96 values a chunk).
fn split_row_scalar(s: &[f32], d: &mut [u16]) {
    for (c, d) in d.chunks_exact_mut(3 * CHUNK).enumerate() {
        split_chunk_scalar(&s[c * CHUNK..s.len().min(c * CHUNK + CHUNK)], d);
    }
}

/// Up to 32 values into their hi, mid and lo parts (`d`: 32 each, zeros past the values).
fn split_chunk_scalar(s: &[f32], d: &mut [u16]) {
    let (hi, rest) = d.split_at_mut(CHUNK);
    let (mid, lo) = rest.split_at_mut(CHUNK);
    for t in 0..CHUNK {
        [hi[t], mid[t], lo[t]] = s.get(t).map_or([0; 3], |&v| split(v));
    }
}

thread_local! {
    /// This thread's packed A, reused from call to call.
    static PACKED_A: std::cell::RefCell<Lines> = const { std::cell::RefCell::new(Lines(Vec::new())) };
}

/// `dst[m, n] (rows dst_rs apart) = lhs[m, k] @ w`, `w` packed from `[k, n]`; rows split across
/// rayon's threads when `parallel` (the same bits either way).
pub fn matmul(dst: &mut [f32], dst_rs: usize, lhs: Lhs, w: &PackedB, m: usize, parallel: bool) {
    let (k, n) = (w.k, w.n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        k > 0 && lhs.fits([m, k]) && (m - 1) * dst_rs + n <= dst.len() && dst_rs >= n,
        "cpu_amx::matmul: operand out of bounds ({m} x {k} x {n})"
    );
    assert!(available(), "cpu_amx::matmul called without AMX");
    let blocks = m.div_ceil(BLOCK);
    // Each group packs its own rows just before it multiplies them, so they are still in L2 (a whole
    // batch's pack went through L3 at 1.2 ns a value; per group, the embedding ran 9% faster).
    let run = |g: usize, rows: &mut [f32]| {
        let first = g * GROUP * BLOCK;
        let real = (m - first).min(GROUP * BLOCK);
        PACKED_A.with_borrow_mut(|a| {
            lhs.pack(first, [real, k], a);
            let row_bytes = w.chunks * 3 * CHUNK * 2;
            let group_blocks = real.div_ceil(BLOCK);
            // SAFETY: AMX is available (asserted); `a` holds `group_blocks * 32` packed rows, `w` its
            // tiles, and `rows` the real rows of this group, where `group` stores.
            unsafe { imp::group(a.as_slice(), row_bytes, w, group_blocks, rows, dst_rs, real) }
        });
    };
    let per_group = GROUP * BLOCK * dst_rs;
    let dst = &mut dst[..(m - 1) * dst_rs + n];
    if parallel && blocks > GROUP && !crate::backend::on_in_flight_worker() {
        use rayon::prelude::*;
        dst.par_chunks_mut(per_group)
            .enumerate()
            .for_each(|(g, rows)| run(g, rows));
    } else {
        for (g, rows) in dst.chunks_mut(per_group).enumerate() {
            run(g, rows);
        }
    }
}

/// 32-row blocks per group (the unit of work of one thread), whose packed A (4 x 74 KiB for an inner
/// dimension of 384, 4 x 295 KiB for 1,536) stays in L2 while the column panels of B pass it: 2 to 8
/// measured within the machine's noise of each other, 1 and 16 slower for some shapes.
const GROUP: usize = 4;

/// Packed weights kept per parameter (or list of parameters packed side by side): the pack of a weight
/// costs as much as ~1,000 rows of its product. An entry holds the weight tensors it was packed from, so
/// their storage cannot be freed and reused by another tensor while the entry lives (burn-flex storage
/// is copy-on-write: a held tensor never changes); a parameter whose tensor changed (a training step)
/// is packed anew.
struct Entry {
    weights: Vec<FlexTensor>,
    packed: Arc<PackedB>,
    last_use: u64,
}

#[derive(Default)]
struct Cache<K> {
    entries: HashMap<K, Entry>,
    clock: u64,
    bytes: usize,
}

impl<K: std::hash::Hash + Eq + Clone> Cache<K> {
    /// The entry for `key` if it was packed from `weights` (the same storage), else `pack()`'s result,
    /// kept in place of any older entry for `key`, the least recently used entries going first past
    /// `budget` bytes.
    fn get_or_pack(
        &mut self,
        key: K,
        weights: Vec<FlexTensor>,
        budget: usize,
        pack: impl FnOnce(&[FlexTensor]) -> PackedB,
    ) -> Arc<PackedB> {
        let id = |t: &FlexTensor| (t.storage::<f32>().as_ptr(), t.layout().shape().to_vec());
        self.clock += 1;
        let now = self.clock;
        if let Some(e) = self.entries.get_mut(&key) {
            if e.weights.iter().map(id).eq(weights.iter().map(id)) {
                e.last_use = now;
                return e.packed.clone();
            }
        }
        let packed = Arc::new(pack(&weights));
        if let Some(old) = self.entries.remove(&key) {
            self.bytes -= old.packed.bytes();
        }
        while self.bytes + packed.bytes() > budget && !self.entries.is_empty() {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_use)
                .map(|(key, _)| key.clone())
                .expect("not empty");
            let old = self.entries.remove(&oldest).expect("present");
            self.bytes -= old.packed.bytes();
        }
        self.bytes += packed.bytes();
        let entry = Entry {
            weights,
            packed: packed.clone(),
            last_use: now,
        };
        self.entries.insert(key, entry);
        packed
    }
}

/// Packed bytes kept before the least recently used entries go (LaBSE-en-ru's encoder packs to ~510 MB).
const CACHE_BYTES: usize = 1 << 30;

/// The same for the training products' weights ([`packed_tensor`]): a distillation step makes new
/// weights, so entries serve the step's micro-batches and its backward pass, and old steps' go soon
/// (MiniLM's weights and their transposes pack to 128 MB).
const STEP_CACHE_BYTES: usize = 256 << 20;

/// The weights `ws` (each `[k, n_i]`) side by side as one packed `[k, sum n_i]`, from the cache when
/// these parameters' current tensors were packed together before.
pub(crate) fn packed_weights(ws: &[&Param<Tensor<Cpu, 2>>]) -> Arc<PackedB> {
    static CACHE: OnceLock<Mutex<Cache<Vec<ParamId>>>> = OnceLock::new();
    let weights: Vec<FlexTensor> = ws
        .iter()
        .map(|w| w.val().into_primitive().tensor().to_contiguous())
        .collect();
    let key: Vec<ParamId> = ws.iter().map(|w| w.id).collect();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .expect("packed weights");
    cache.get_or_pack(key, weights, CACHE_BYTES, side_by_side)
}

/// A contiguous `[k, n]` weight tensor packed (or, `transposed`, its transpose), from the cache while
/// the same tensor is alive: the training products' weights, packed once per step rather than once per
/// micro-batch and pass, and once per run where they are frozen (importance).
pub(crate) fn packed_tensor(w: &FlexTensor, transposed: bool) -> Arc<PackedB> {
    static CACHE: OnceLock<Mutex<Cache<(usize, bool)>>> = OnceLock::new();
    let key = (w.storage::<f32>().as_ptr() as usize, transposed);
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .expect("packed weights");
    cache.get_or_pack(key, vec![w.clone()], STEP_CACHE_BYTES, |w| {
        let s = w[0].layout().shape();
        let (data, [k, n]) = (&w[0].storage::<f32>()[..s[0] * s[1]], [s[0], s[1]]);
        if transposed {
            PackedB::transposed(data, [n, k])
        } else {
            PackedB::new(data, [k, n])
        }
    })
}

/// `[k, n_i]` tensors packed as the columns of one `[k, sum n_i]` weight.
fn side_by_side(ws: &[FlexTensor]) -> PackedB {
    let k = ws[0].layout().shape()[0];
    let ns: Vec<usize> = ws.iter().map(|w| w.layout().shape()[1]).collect();
    assert!(
        ws.iter().all(|w| w.layout().shape()[0] == k),
        "cpu_amx: weights packed side by side need the same input size"
    );
    let n: usize = ns.iter().sum();
    let mut all = Vec::with_capacity(k * n);
    for r in 0..k {
        for (w, &ni) in ws.iter().zip(&ns) {
            all.extend_from_slice(&w.storage::<f32>()[r * ni..(r + 1) * ni]);
        }
    }
    PackedB::new(&all, [k, n])
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::asm;

    use std::arch::x86_64::*;

    use super::{
        split_chunk_scalar, split_row_scalar, split_tile_scalar, PackedB, BLOCK, CHUNK, TILE_BYTES,
        TILE_ROWS,
    };

    /// [`split_row_scalar`], sixteen values a step on AVX-512 (every CPU with AMX has it).
    #[inline]
    pub(super) fn split_row(s: &[f32], d: &mut [u16]) {
        assert!(
            d.len() >= s.len().div_ceil(CHUNK) * 3 * CHUNK,
            "cpu_amx: packed row too short"
        );
        if !super::available() {
            return split_row_scalar(s, d);
        }
        // SAFETY: AMX is available, so AVX-512F is (checked by `enable`); every full chunk reads 32
        // values of `s` and writes 96 of `d` (asserted long enough).
        unsafe {
            let full = s.len() / CHUNK;
            for c in 0..full {
                split_chunk_512(s.as_ptr().add(c * CHUNK), d.as_mut_ptr().add(c * 3 * CHUNK));
            }
            if full * CHUNK < s.len() {
                split_chunk_scalar(&s[full * CHUNK..], &mut d[full * 3 * CHUNK..]);
            }
        }
    }

    /// [`split_tile_scalar`] on AVX-512: each tile row is two block rows' parts, paired in 32-bit lanes.
    pub(super) fn split_tile(blk: &[[f32; TILE_ROWS]; CHUNK], d: &mut [u16]) {
        assert!(d.len() >= 3 * 512, "cpu_amx: tile buffer too short");
        if !super::available() {
            return split_tile_scalar(blk, d);
        }
        // SAFETY: AVX-512F is there (AMX is); 32 rows of 16 in, three 512-value tiles out (asserted).
        unsafe { split_tile_512(blk, d.as_mut_ptr()) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn split_tile_512(blk: &[[f32; TILE_ROWS]; CHUNK], d: *mut u16) {
        for r in 0..TILE_ROWS {
            let even = parts(_mm512_loadu_ps(blk[2 * r].as_ptr()));
            let odd = parts(_mm512_loadu_ps(blk[2 * r + 1].as_ptr()));
            for p in 0..3 {
                let pair = _mm512_or_si512(even[p], _mm512_slli_epi32::<16>(odd[p]));
                _mm512_storeu_si512(d.add(p * 512 + r * 32) as *mut __m512i, pair);
            }
        }
    }

    /// Sixteen values' hi, mid and lo bf16 bits, each in the low half of its 32-bit lane.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn parts(x: __m512) -> [__m512i; 3] {
        let round = |x: __m512| {
            let u = _mm512_castps_si512(x);
            let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(u), _mm512_set1_epi32(1));
            let h = _mm512_srli_epi32::<16>(_mm512_add_epi32(
                u,
                _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)),
            ));
            (h, _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h)))
        };
        let (h, hv) = round(x);
        let r = _mm512_sub_ps(x, hv);
        let (m, mv) = round(r);
        let (l, _) = round(_mm512_sub_ps(r, mv));
        [h, m, l]
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn split_chunk_512(s: *const f32, d: *mut u16) {
        for half in 0..2 {
            let bits = parts(_mm512_loadu_ps(s.add(16 * half)));
            for (p, bits) in bits.into_iter().enumerate() {
                let out = d.add(p * CHUNK + 16 * half) as *mut __m256i;
                _mm256_storeu_si256(out, _mm512_cvtepi32_epi16(bits));
            }
        }
    }

    /// CPUID says AMX-TILE and AMX-BF16, and Linux grants this process the tile data state.
    pub(super) fn enable() -> bool {
        // SAFETY: CPUID leaf 7 exists on every x86-64 CPU that has AVX-512 (checked first).
        let cpuid_ok = std::is_x86_feature_detected!("avx512f") && {
            let r = std::arch::x86_64::__cpuid_count(7, 0);
            (r.edx >> 22) & 1 == 1 && (r.edx >> 24) & 1 == 1
        };
        if !cpuid_ok {
            return false;
        }
        #[cfg(target_os = "linux")]
        {
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: a plain syscall asking for a process-wide permission; no memory is passed.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                )
            };
            r == 0
        }
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Tile configuration: palette 1, all eight tiles 16 rows x 64 bytes.
    #[repr(C, align(64))]
    struct Config([u8; 64]);

    const CONFIG: Config = {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = TILE_ROWS as u8;
            t += 1;
        }
        Config(c)
    };

    /// One group of 32-row blocks: `blocks` blocks of packed A from `a` (rows `a_rs` bytes apart) times
    /// every column block of `w`, into `dst` (rows `dst_rs` floats apart, `rows_left` rows of them real).
    /// A column panel of B stays in L2 while the group's row blocks pass it; each 32 x 32 block of the
    /// result is summed over the whole inner dimension in the tiles (measured faster than steps of 128
    /// that keep a panel in L1 but store and reload the sums).
    ///
    /// # Safety
    /// AMX must be enabled; `a` holds `blocks * 32` packed rows; `dst` holds the group's real rows.
    pub(super) unsafe fn group(
        a: &[u16],
        a_rs: usize,
        w: &PackedB,
        blocks: usize,
        dst: &mut [f32],
        dst_rs: usize,
        rows_left: usize,
    ) {
        debug_assert!(a.len() * 2 >= blocks * BLOCK * a_rs);
        let mut edge = [0f32; BLOCK * BLOCK];
        asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
        for jb in 0..w.n.div_ceil(BLOCK) {
            let b0 =
                (w.data.as_slice().as_ptr() as *const u8).add(2 * jb * w.chunks * 3 * TILE_BYTES);
            let b1 = b0.add(w.chunks * 3 * TILE_BYTES);
            for ib in 0..blocks {
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack, nomem)
                );
                let a0 = (a.as_ptr() as *const u8).add(ib * BLOCK * a_rs);
                for c in 0..w.chunks {
                    chunk(
                        a0.add(c * 3 * CHUNK * 2),
                        a_rs,
                        b0.add(c * 3 * TILE_BYTES),
                        b1.add(c * 3 * TILE_BYTES),
                    );
                }
                let rows = (rows_left - ib * BLOCK).min(BLOCK);
                let cols = (w.n - jb * BLOCK).min(BLOCK);
                let at = ib * BLOCK * dst_rs + jb * BLOCK;
                if rows == BLOCK && cols == BLOCK {
                    store(dst.as_mut_ptr().add(at), dst_rs * 4);
                } else {
                    store(edge.as_mut_ptr(), BLOCK * 4);
                    for r in 0..rows {
                        dst[at + r * dst_rs..at + r * dst_rs + cols]
                            .copy_from_slice(&edge[r * BLOCK..r * BLOCK + cols]);
                    }
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }

    /// The four accumulators plus (A rows 0-15, 16-31 in tmm4, tmm5) x (B columns 0-15, 16-31 in tmm6, tmm7).
    macro_rules! products {
        () => {
            "tdpbf16ps tmm0, tmm4, tmm6\ntdpbf16ps tmm1, tmm4, tmm7\n\
             tdpbf16ps tmm2, tmm5, tmm6\ntdpbf16ps tmm3, tmm5, tmm7"
        };
    }

    /// The six part products of one 32-wide chunk into the four accumulators: A rows at `a0` (hi at +0,
    /// mid at +64, lo at +128 bytes; the second row tile `16 * a_rs` further), B column tiles at `b0`
    /// and `b1` (hi, mid, lo 1 KiB apart). The terms, smallest first, then each changing one operand:
    /// (A hi, B lo), (hi, hi), (hi, mid), (mid, mid), (mid, hi), (lo, hi).
    #[inline(always)]
    unsafe fn chunk(a0: *const u8, a_rs: usize, b0: *const u8, b1: *const u8) {
        asm!(
            "tileloadd tmm4, [{a0} + {sa}*1]",
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tileloadd tmm6, [{b0} + {sb}*1 + 2048]",
            "tileloadd tmm7, [{b1} + {sb}*1 + 2048]",
            products!(),
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tileloadd tmm7, [{b1} + {sb}*1]",
            products!(),
            "tileloadd tmm6, [{b0} + {sb}*1 + 1024]",
            "tileloadd tmm7, [{b1} + {sb}*1 + 1024]",
            products!(),
            "tileloadd tmm4, [{a0} + {sa}*1 + 64]",
            "tileloadd tmm5, [{a1} + {sa}*1 + 64]",
            products!(),
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tileloadd tmm7, [{b1} + {sb}*1]",
            products!(),
            "tileloadd tmm4, [{a0} + {sa}*1 + 128]",
            "tileloadd tmm5, [{a1} + {sa}*1 + 128]",
            products!(),
            a0 = in(reg) a0,
            a1 = in(reg) a0.add(TILE_ROWS * a_rs),
            sa = in(reg) a_rs,
            b0 = in(reg) b0,
            b1 = in(reg) b1,
            sb = in(reg) 64usize,
            options(nostack, readonly)
        );
    }

    /// The four accumulators to a 32 x 32 block at `c` (rows `rs` bytes apart).
    #[inline(always)]
    unsafe fn store(c: *mut f32, rs: usize) {
        let c = c as *mut u8;
        asm!(
            "tilestored [{c0} + {rs}*1], tmm0",
            "tilestored [{c0} + {rs}*1 + 64], tmm1",
            "tilestored [{c1} + {rs}*1], tmm2",
            "tilestored [{c1} + {rs}*1 + 64], tmm3",
            c0 = in(reg) c,
            c1 = in(reg) c.add(TILE_ROWS * rs),
            rs = in(reg) rs,
            options(nostack)
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub(super) fn enable() -> bool {
        false
    }
    pub(super) fn split_row(s: &[f32], d: &mut [u16]) {
        super::split_row_scalar(s, d)
    }
    pub(super) fn split_tile(blk: &[[f32; super::TILE_ROWS]; super::CHUNK], d: &mut [u16]) {
        super::split_tile_scalar(blk, d)
    }
    pub(super) unsafe fn group(
        _: &[u16],
        _: usize,
        _: &super::PackedB,
        _: usize,
        _: &mut [f32],
        _: usize,
        _: usize,
    ) {
        unreachable!("AMX is x86-64 only")
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Values of mixed signs and magnitudes (a few per mille exact zeros, as ReLU outputs have).
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                if rng.gen_bool(0.003) {
                    0.0
                } else {
                    rng.gen_range(-1.0f32..1.0) * 2f32.powi(rng.gen_range(-6..6))
                }
            })
            .collect()
    }

    /// AMX is a property of the machine: tests that need it say so and pass where it is missing
    /// (CI and the development machines have it: Xeons with AMX, see BENCHMARKS.md).
    fn amx_or_skip() -> bool {
        if !available() {
            eprintln!("no AMX on this CPU (or SEKATOR_AMX=0): nothing to test");
        }
        available()
    }

    /// Row-major `x[m, k] @ w[k, n]` in f64, and each element's `sum |x| |w|` (the error scale).
    fn exact(x: &[f32], w: &[f32], [m, k, n]: [usize; 3]) -> (Vec<f64>, Vec<f64>) {
        let mut out = vec![0.0; m * n];
        let mut scale = vec![0.0; m * n];
        for i in 0..m {
            for p in 0..k {
                let a = x[i * k + p] as f64;
                for j in 0..n {
                    out[i * n + j] += a * w[p * n + j] as f64;
                    scale[i * n + j] += (a * w[p * n + j] as f64).abs();
                }
            }
        }
        (out, scale)
    }

    fn amx(x: &[f32], w: &[f32], [m, k, n]: [usize; 3], parallel: bool) -> Vec<f32> {
        let packed = PackedB::new(w, [k, n]);
        let mut dst = vec![f32::NAN; m * n];
        matmul(&mut dst, n, Lhs(x, k), &packed, m, parallel);
        dst
    }

    #[test]
    fn the_three_parts_add_up_to_the_value() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..100_000 {
            let x = f32::from_bits(rng.gen_range(0x0d00_0000u32..0x7f00_0000))
                * [-1.0, 1.0][rng.gen_range(0..2)];
            let [h, m, l] = split(x);
            assert_eq!(widen(h) + widen(m) + widen(l), x, "{x:e}");
            assert!(
                widen(m).abs() <= widen(h).abs() / 128.0
                    && widen(l).abs() <= widen(m).abs() / 128.0
            );
        }
    }

    /// The worst error relative to `sum |x| |w|` over uneven shapes (edges of every tile and block),
    /// against gemm's on the same operands: an f32 product summed in another order, no worse than
    /// twice gemm's worst (measured 0.4-1.8x) nor than 2^-21. Leaving out one of the six part
    /// products fails it (checked by hand: without the smallest, `mid mid`, the error is 5e-6).
    #[test]
    fn products_have_f32_accuracy() {
        if !amx_or_skip() {
            return;
        }
        let shapes = [
            [1, 1, 1],
            [17, 31, 15],
            [33, 33, 17],
            [64, 384, 96],
            [45, 100, 50],
            [40, 1536, 40],
        ];
        for (s, &[m, k, n]) in shapes.iter().enumerate() {
            let x = values(10 + s as u64, m * k);
            let w = values(20 + s as u64, k * n);
            let (want, scale) = exact(&x, &w, [m, k, n]);
            let worst = |got: &[f32]| {
                got.iter()
                    .zip(want.iter().zip(&scale))
                    .map(|(&g, (&e, &s))| (g as f64 - e).abs() / s.max(f64::MIN_POSITIVE))
                    .fold(0.0, f64::max)
            };
            let amx_err = worst(&amx(&x, &w, [m, k, n], false));
            let mut by_gemm = vec![0f32; m * n];
            crate::cpu_gemm::matmul(
                &mut by_gemm,
                n,
                crate::cpu_gemm::View::rows(&x, k),
                crate::cpu_gemm::View::rows(&w, n),
                [m, k, n],
                false,
            );
            let gemm_err = worst(&by_gemm);
            eprintln!("{m} x {k} x {n}: amx {amx_err:e}, gemm {gemm_err:e}");
            assert!(
                amx_err <= (2.0 * gemm_err).max(2f64.powi(-24)) && amx_err < 2f64.powi(-21),
                "{m} x {k} x {n}: relative error {amx_err:e} (gemm {gemm_err:e})"
            );
        }
    }

    /// Each row is summed alone: a row's bits do not depend on the other rows of the call, nor on how
    /// the rows are split across threads.
    #[test]
    fn rows_do_not_depend_on_the_batch_or_the_threads() {
        if !amx_or_skip() {
            return;
        }
        let [m, k, n] = [300, 200, 70];
        let (x, w) = (values(3, m * k), values(4, k * n));
        let all = amx(&x, &w, [m, k, n], false);
        assert_eq!(amx(&x, &w, [m, k, n], true), all, "threads changed bits");
        for i in [0, 31, 32, 150, 299] {
            let one = amx(&x[i * k..(i + 1) * k], &w, [1, k, n], false);
            assert_eq!(one, all[i * n..(i + 1) * n], "row {i}");
        }
    }

    /// A transposed weight packs to the same parts as the row-major one, and the AVX-512 splits
    /// equal the scalar code (every tile and chunk edge).
    #[test]
    fn transposed_and_vectorised_packs_equal_the_plain_ones() {
        let [m, k, n] = [45, 70, 37];
        let (x, w) = (values(7, m * k), values(8, k * n));
        let t = |v: &[f32], [r, c]: [usize; 2]| -> Vec<f32> {
            (0..c)
                .flat_map(|j| (0..r).map(move |i| v[i * c + j]))
                .collect()
        };
        let wt = t(&w, [k, n]);
        let (plain, trans) = (PackedB::new(&w, [k, n]), PackedB::transposed(&wt, [k, n]));
        assert_eq!(plain.data.as_slice(), trans.data.as_slice());
        let mut scalar = vec![0u16; 3 * 512];
        let mut blk = [[0f32; TILE_ROWS]; CHUNK];
        blk.iter_mut().flatten().zip(&w).for_each(|(b, &v)| *b = v);
        split_tile_scalar(&blk, &mut scalar);
        let mut fast = vec![0u16; 3 * 512];
        imp::split_tile(&blk, &mut fast);
        assert_eq!(scalar, fast);
        let (mut scalar, mut fast) = (vec![0u16; 3 * 96], vec![0u16; 3 * 96]);
        split_row_scalar(&x[..70], &mut scalar);
        imp::split_row(&x[..70], &mut fast);
        assert_eq!(scalar, fast);
    }

    /// Strided destination rows (a column block of a wider buffer) leave the other columns alone.
    #[test]
    fn a_strided_destination_keeps_its_other_columns() {
        if !amx_or_skip() {
            return;
        }
        let [m, k, n, rs] = [40, 64, 48, 100];
        let (x, w) = (values(5, m * k), values(6, k * n));
        let packed = PackedB::new(&w, [k, n]);
        let mut dst = vec![7.0f32; m * rs];
        matmul(&mut dst[10..], rs, Lhs(&x, k), &packed, m, false);
        let dense = amx(&x, &w, [m, k, n], false);
        for i in 0..m {
            let row = &dst[i * rs..(i + 1) * rs];
            assert_eq!(&row[10..10 + n], &dense[i * n..(i + 1) * n]);
            assert!(
                row[..10].iter().chain(&row[10 + n..]).all(|&v| v == 7.0),
                "row {i}"
            );
        }
    }

    /// The cache gives the pack of a parameter's current tensor: a parameter updated in place of
    /// itself (as an optimizer step does, same id) is packed anew.
    #[test]
    fn the_cache_follows_a_parameter_update() {
        use burn::tensor::TensorData;
        let [k, n] = [40, 24];
        let dev = Default::default();
        let t =
            |seed| Tensor::<Cpu, 2>::from_data(TensorData::new(values(seed, k * n), [k, n]), &dev);
        let p = Param::from_tensor(t(7));
        let first = packed_weights(&[&p]);
        assert!(Arc::ptr_eq(&first, &packed_weights(&[&p])), "not cached");
        let updated = Param::initialized(p.id, t(8));
        let second = packed_weights(&[&updated]);
        assert!(!Arc::ptr_eq(&first, &second));
        let fresh = PackedB::new(&values(8, k * n), [k, n]);
        assert_eq!(second.data.as_slice(), fresh.data.as_slice());
    }
}
