//! One attention head of one sequence at inference as one kernel: scores, masked softmax and the
//! probabilities times V, a vector's width of queries at a time, in registers and a small scratch buffer.
//!
//! Why: as two gemm calls around the row softmax, a head of a 64-token sequence took 11-15 us on the
//! AVX-512 Xeon of BENCHMARKS.md, about half of it in the softmax's per-row overhead (each row's max and
//! sum end in a chain of dependent scalar steps) and the rest in two small products that gemm packs
//! for. Here the vector lanes are queries, so a row's max and sum are lane-wise steps across keys with
//! no horizontal reduction, and the scores never leave a `[keys, lanes]` buffer: ~7 us for that head,
//! 1.6-3.8x faster up to 100 tokens, ~1.15x at 128 (a throwaway harness).
//!
//! The maths is the composed path's: `q . k` summed over the head dimension in order with fused
//! multiply-adds (as gemm's kernel sums), `* scale + bias`, the max subtracted, the same `exp` as
//! [`crate::cpu_kernels`], each probability `e * (1 / sum)`, the context summed over keys in order with
//! fused multiply-adds. Only the order of the softmax's sum differs (keys in order here, sixteen lane sums
//! in the row kernel), so results agree to rounding. The AVX-512, AVX2 and portable copies do the same
//! operations in the same order per query, so they give the same bits (tested).

/// One head of one sequence: `q`, `k` and `v` are rows `rs` apart (a head's columns of a Q|K|V buffer),
/// `bias` the additive key mask (`f32::MIN` at padding), at least `seq` long.
#[derive(Clone, Copy)]
pub struct Head<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub rs: usize,
    pub seq: usize,
    pub head_dim: usize,
    pub bias: &'a [f32],
    pub scale: f32,
}

/// Which copy of the kernel runs: the best this CPU supports, or one named (for tests and benches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Best,
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// Whether this CPU can run the copy.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => return std::arch::is_x86_feature_detected!("avx512f"),
                Isa::Avx2 => {
                    return std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                }
                _ => {}
            }
        }
        matches!(self, Isa::Best | Isa::Portable)
    }
}

/// `ctx[i, ..head_dim] = softmax_j(q_i . k_j * scale + bias[j]) @ v` for `i, j < seq`, `ctx` rows
/// `ctx_rs` apart; `scratch` is reused across calls. Panics if an operand is too short, or if `isa`
/// names a copy this CPU lacks.
pub fn attend_head(h: &Head, ctx: &mut [f32], ctx_rs: usize, scratch: &mut Vec<f32>, isa: Isa) {
    let (seq, hd) = (h.seq, h.head_dim);
    assert!(
        seq > 0
            && hd > 0
            && h.bias.len() >= seq
            && [h.q, h.k, h.v]
                .iter()
                .all(|x| x.len() >= (seq - 1) * h.rs + hd)
            && ctx.len() >= (seq - 1) * ctx_rs + hd,
        "attend_head: operand out of bounds (seq {seq}, head_dim {hd})"
    );
    assert!(isa.available(), "attend_head: this CPU lacks {isa:?}");
    #[cfg(target_arch = "x86_64")]
    {
        let best = isa == Isa::Best;
        if isa == Isa::Avx512 || (best && Isa::Avx512.available()) {
            // SAFETY: AVX-512F was detected; the operands' bounds were checked above.
            return unsafe { x86::attend_avx512(h, ctx, ctx_rs, scratch) };
        }
        if isa == Isa::Avx2 || (best && Isa::Avx2.available()) {
            // SAFETY: AVX2 and FMA were detected; bounds as above.
            return unsafe { x86::attend_avx2(h, ctx, ctx_rs, scratch) };
        }
    }
    // SAFETY: bounds as above; the portable vector needs no CPU feature.
    unsafe { attend::<Scalar, 1>(h, ctx, ctx_rs, scratch) }
}

/// The operations the kernel needs of a vector of `LANES` f32 (one query per lane).
///
/// # Safety
/// The methods may use CPU features: call them only where those were detected.
trait Lanes: Copy {
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    /// Lane `l` from `p + min(l, n - 1) * stride`.
    unsafe fn gather(p: *const f32, stride: usize, n: usize) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// `self * b + c`, rounded once.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    unsafe fn max(self, b: Self) -> Self;
    unsafe fn recip(self) -> Self;
    /// [`crate::cpu_kernels::exp_nonpositive`] lane by lane, bit for bit.
    unsafe fn exp_nonpositive(self) -> Self;
}

/// The lanes of [`crate::cpu_kernels::softmax_row`]'s partial sums, whose order the kernel follows.
const ROW_LANES: usize = crate::cpu_kernels::LANES;

/// Keys scored at once: independent accumulators that keep the multiply-add units busy.
const KEYS: usize = 8;

/// The kernel, for one vector type; the context is summed `ROWS` queries by two vectors of columns at
/// a time (accumulators that fit the register file).
///
/// # Safety
/// `V`'s CPU features are present; the operands are in bounds (checked by [`attend_head`]).
#[inline(always)]
unsafe fn attend<V: Lanes, const ROWS: usize>(
    h: &Head,
    ctx: &mut [f32],
    ctx_rs: usize,
    scratch: &mut Vec<f32>,
) {
    let (seq, hd, w) = (h.seq, h.head_dim, V::LANES);
    scratch.resize((hd + seq) * w, 0.0);
    let (qt, p) = scratch.split_at_mut(hd * w);
    let (q, q_rs) = (h.q, h.rs);
    for i0 in (0..seq).step_by(w) {
        let n = w.min(seq - i0);
        // The block's queries transposed, qt[d * w + l] = q[i0 + l, d]; lanes past the sequence repeat
        // its last query (finite work whose results are not stored).
        let q = q.as_ptr().add(i0 * q_rs);
        for d in 0..hd {
            V::gather(q.add(d), q_rs, n).store(qt.as_mut_ptr().add(d * w));
        }
        for j in (0..seq).step_by(KEYS) {
            score_keys::<V, KEYS>(h, qt, j, p);
        }
        softmax_lanes::<V>(&mut p[..seq * w]);
        let out = &mut ctx[i0 * ctx_rs..];
        let mut c = 0;
        while c + 2 * w <= hd {
            weigh_values::<V, ROWS, 2>(h, p, w, c, out, ctx_rs, n);
            c += 2 * w;
        }
        if c + w <= hd {
            weigh_values::<V, ROWS, 1>(h, p, w, c, out, ctx_rs, n);
            c += w;
        }
        for c in c..hd {
            weigh_values::<Scalar, 1, 1>(h, p, w, c, out, ctx_rs, n);
        }
    }
}

/// Scores of keys `j..j + U` that exist: `p[(j + u) * w + l] = (q_l . k_{j+u}) * scale + bias[j + u]`
/// (past the last key, the last key is scored again and not stored).
#[inline(always)]
unsafe fn score_keys<V: Lanes, const U: usize>(h: &Head, qt: &[f32], j: usize, p: &mut [f32]) {
    let w = V::LANES;
    let mut acc = [V::zero(); U];
    // One pointer per key row, so each multiply-add reads its key at `row + d`.
    let rows: [*const f32; U] =
        std::array::from_fn(|u| h.k.as_ptr().add((j + u).min(h.seq - 1) * h.rs));
    for d in 0..h.head_dim {
        let qd = V::load(qt.as_ptr().add(d * w));
        for (a, row) in acc.iter_mut().zip(rows) {
            *a = qd.mul_add(V::splat(*row.add(d)), *a);
        }
    }
    let scale = V::splat(h.scale);
    for (u, a) in acc.iter().enumerate().take(h.seq - j) {
        let s = a.mul(scale).add(V::splat(h.bias[j + u]));
        s.store(p.as_mut_ptr().add((j + u) * w));
    }
}

/// The softmax over keys (rows of `p`, `[keys, w]`) of each lane, in place.
#[inline(always)]
unsafe fn softmax_lanes<V: Lanes>(p: &mut [f32]) {
    let w = V::LANES;
    // Four running maxima (keys j mod 4), so the max instructions' latency overlaps; max does not
    // depend on the order it is taken in.
    let mut m4 = [V::splat(f32::NEG_INFINITY); 4];
    for (j, row) in p.chunks_exact(w).enumerate() {
        m4[j % 4] = m4[j % 4].max(V::load(row.as_ptr()));
    }
    let max = m4[0].max(m4[1]).max(m4[2].max(m4[3]));
    // The sum in the row kernel's order, so the probabilities equal its bits: keys j < full into
    // ROW_LANES partial sums by j mod ROW_LANES, those added in order, then the tail keys in order.
    let full = p.len() / w / ROW_LANES * ROW_LANES;
    let mut parts = [V::zero(); ROW_LANES];
    for rows in p[..full * w].chunks_exact_mut(ROW_LANES * w) {
        for (part, row) in parts.iter_mut().zip(rows.chunks_exact_mut(w)) {
            *part = part.add(exp_row(row, max));
        }
    }
    for row in p[full * w..].chunks_exact_mut(w) {
        exp_row(row, max);
    }
    let mut sum = V::zero();
    for part in parts {
        sum = sum.add(part);
    }
    for row in p.chunks_exact(w).skip(full) {
        sum = sum.add(V::load(row.as_ptr()));
    }
    let inv = sum.recip();
    for row in p.chunks_exact_mut(w) {
        V::load(row.as_ptr()).mul(inv).store(row.as_mut_ptr());
    }
}

/// `row = exp(row - max)` in place, returned too.
#[inline(always)]
unsafe fn exp_row<V: Lanes>(row: &mut [f32], max: V) -> V {
    let e = V::load(row.as_ptr()).sub(max).exp_nonpositive();
    e.store(row.as_mut_ptr());
    e
}

/// Context columns `c..c + CV * V::LANES` of the block's first `n` queries (`p` is `[keys, w]`, a query
/// per lane): `ctx[l, c..] = sum_j p[j, l] v[j, c..]`, `ROWS` queries at a time, each row's columns as
/// vectors stored straight into its context row.
#[inline(always)]
unsafe fn weigh_values<V: Lanes, const ROWS: usize, const CV: usize>(
    h: &Head,
    p: &[f32],
    w: usize,
    c: usize,
    ctx: &mut [f32],
    ctx_rs: usize,
    n: usize,
) {
    let lanes = V::LANES;
    for l0 in (0..n).step_by(ROWS) {
        let mut acc = [[V::zero(); CV]; ROWS];
        let v = h.v.as_ptr().add(c);
        let pl = p.as_ptr().add(l0);
        for j in 0..h.seq {
            let vj: [V; CV] = std::array::from_fn(|k| V::load(v.add(j * h.rs + k * lanes)));
            for (r, a) in acc.iter_mut().enumerate() {
                let pj = V::splat(*pl.add(j * w + r));
                for (x, vk) in a.iter_mut().zip(vj) {
                    *x = pj.mul_add(vk, *x);
                }
            }
        }
        for (r, a) in acc.iter().enumerate().take(n - l0) {
            let row = ctx.as_mut_ptr().add((l0 + r) * ctx_rs + c);
            for (k, x) in a.iter().enumerate() {
                x.store(row.add(k * lanes));
            }
        }
    }
}

/// One lane of plain f32: the kernel on any CPU, and the bit-level reference of the vector copies.
#[derive(Clone, Copy)]
struct Scalar(f32);

impl Lanes for Scalar {
    const LANES: usize = 1;
    unsafe fn zero() -> Self {
        Scalar(0.0)
    }
    unsafe fn splat(x: f32) -> Self {
        Scalar(x)
    }
    unsafe fn load(p: *const f32) -> Self {
        Scalar(*p)
    }
    unsafe fn gather(p: *const f32, _: usize, _: usize) -> Self {
        Scalar(*p)
    }
    unsafe fn store(self, p: *mut f32) {
        *p = self.0
    }
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        Scalar(self.0.mul_add(b.0, c.0))
    }
    unsafe fn mul(self, b: Self) -> Self {
        Scalar(self.0 * b.0)
    }
    unsafe fn add(self, b: Self) -> Self {
        Scalar(self.0 + b.0)
    }
    unsafe fn sub(self, b: Self) -> Self {
        Scalar(self.0 - b.0)
    }
    unsafe fn max(self, b: Self) -> Self {
        // as the vector max instructions: the second operand where either is NaN
        Scalar(if self.0 > b.0 { self.0 } else { b.0 })
    }
    unsafe fn recip(self) -> Self {
        Scalar(1.0 / self.0)
    }
    unsafe fn exp_nonpositive(self) -> Self {
        Scalar(crate::cpu_kernels::exp_nonpositive(self.0))
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{attend, Head, Lanes};

    // The constants of `cpu_kernels::exp_nonpositive`, which these copies follow step for step.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;
    /// Taylor coefficients of e^r from the highest: 1/5040, 1/720, ..., 1/2, 1, 1.
    const POLY: [f32; 8] = [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ];

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn attend_avx512(
        h: &Head,
        ctx: &mut [f32],
        ctx_rs: usize,
        scratch: &mut Vec<f32>,
    ) {
        attend::<Avx512, 8>(h, ctx, ctx_rs, scratch)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn attend_avx2(
        h: &Head,
        ctx: &mut [f32],
        ctx_rs: usize,
        scratch: &mut Vec<f32>,
    ) {
        attend::<Avx2, 4>(h, ctx, ctx_rs, scratch)
    }

    #[derive(Clone, Copy)]
    struct Avx512(__m512);

    impl Lanes for Avx512 {
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            Avx512(_mm512_setzero_ps())
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            Avx512(_mm512_set1_ps(x))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx512(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn gather(p: *const f32, stride: usize, n: usize) -> Self {
            let rows = _mm512_min_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32(n as i32 - 1),
            );
            let idx = _mm512_mullo_epi32(rows, _mm512_set1_epi32(stride as i32));
            Avx512(_mm512_i32gather_ps::<4>(idx, p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self.0)
        }
        #[inline(always)]
        unsafe fn mul_add(self, b: Self, c: Self) -> Self {
            Avx512(_mm512_fmadd_ps(self.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            Avx512(_mm512_mul_ps(self.0, b.0))
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            Avx512(_mm512_add_ps(self.0, b.0))
        }
        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            Avx512(_mm512_sub_ps(self.0, b.0))
        }
        #[inline(always)]
        unsafe fn max(self, b: Self) -> Self {
            Avx512(_mm512_max_ps(self.0, b.0))
        }
        #[inline(always)]
        unsafe fn recip(self) -> Self {
            Avx512(_mm512_div_ps(_mm512_set1_ps(1.0), self.0))
        }
        #[inline(always)]
        unsafe fn exp_nonpositive(self) -> Self {
            let y = self.0;
            let low = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(y, _mm512_set1_ps(-87.0));
            let yc = _mm512_mask_blend_ps(low, y, _mm512_set1_ps(-87.0));
            let round = _mm512_set1_ps(ROUND);
            let t = _mm512_add_ps(
                _mm512_mul_ps(yc, _mm512_set1_ps(std::f32::consts::LOG2_E)),
                round,
            );
            let n = _mm512_sub_ps(t, round);
            let r = _mm512_sub_ps(
                _mm512_sub_ps(yc, _mm512_mul_ps(n, _mm512_set1_ps(LN2_HI))),
                _mm512_mul_ps(n, _mm512_set1_ps(LN2_LO)),
            );
            let mut p = _mm512_set1_ps(POLY[0]);
            for c in &POLY[1..] {
                p = _mm512_add_ps(_mm512_set1_ps(*c), _mm512_mul_ps(r, p));
            }
            let bits = _mm512_sub_epi32(
                _mm512_castps_si512(t),
                _mm512_set1_epi32(ROUND.to_bits() as i32),
            );
            let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
                bits,
                _mm512_set1_epi32(127),
            )));
            Avx512(_mm512_maskz_mov_ps(!low, _mm512_mul_ps(p, scale)))
        }
    }

    #[derive(Clone, Copy)]
    struct Avx2(__m256);

    impl Lanes for Avx2 {
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            Avx2(_mm256_setzero_ps())
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            Avx2(_mm256_set1_ps(x))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx2(_mm256_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn gather(p: *const f32, stride: usize, n: usize) -> Self {
            let rows = _mm256_min_epi32(
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                _mm256_set1_epi32(n as i32 - 1),
            );
            let idx = _mm256_mullo_epi32(rows, _mm256_set1_epi32(stride as i32));
            Avx2(_mm256_i32gather_ps::<4>(p, idx))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0)
        }
        #[inline(always)]
        unsafe fn mul_add(self, b: Self, c: Self) -> Self {
            Avx2(_mm256_fmadd_ps(self.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            Avx2(_mm256_mul_ps(self.0, b.0))
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            Avx2(_mm256_add_ps(self.0, b.0))
        }
        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            Avx2(_mm256_sub_ps(self.0, b.0))
        }
        #[inline(always)]
        unsafe fn max(self, b: Self) -> Self {
            Avx2(_mm256_max_ps(self.0, b.0))
        }
        #[inline(always)]
        unsafe fn recip(self) -> Self {
            Avx2(_mm256_div_ps(_mm256_set1_ps(1.0), self.0))
        }
        #[inline(always)]
        unsafe fn exp_nonpositive(self) -> Self {
            let y = self.0;
            let low = _mm256_cmp_ps::<_CMP_LT_OQ>(y, _mm256_set1_ps(-87.0));
            let yc = _mm256_blendv_ps(y, _mm256_set1_ps(-87.0), low);
            let round = _mm256_set1_ps(ROUND);
            let t = _mm256_add_ps(
                _mm256_mul_ps(yc, _mm256_set1_ps(std::f32::consts::LOG2_E)),
                round,
            );
            let n = _mm256_sub_ps(t, round);
            let r = _mm256_sub_ps(
                _mm256_sub_ps(yc, _mm256_mul_ps(n, _mm256_set1_ps(LN2_HI))),
                _mm256_mul_ps(n, _mm256_set1_ps(LN2_LO)),
            );
            let mut p = _mm256_set1_ps(POLY[0]);
            for c in &POLY[1..] {
                p = _mm256_add_ps(_mm256_set1_ps(*c), _mm256_mul_ps(r, p));
            }
            let bits = _mm256_sub_epi32(
                _mm256_castps_si256(t),
                _mm256_set1_epi32(ROUND.to_bits() as i32),
            );
            let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                bits,
                _mm256_set1_epi32(127),
            )));
            Avx2(_mm256_andnot_ps(low, _mm256_mul_ps(p, scale)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{attend_head, Head, Isa};

    /// Q|K|V rows of `seq` tokens, `heads` heads of `hd` (rows `3 * heads * hd` wide), from a seed.
    fn qkv(seq: usize, heads: usize, hd: usize, seed: usize) -> Vec<f32> {
        (0..seq * 3 * heads * hd)
            .map(|i| ((i * 7919 + seed * 104_729) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// The last `pad` keys masked out as the encoder masks padding.
    fn bias(seq: usize, pad: usize) -> Vec<f32> {
        (0..seq)
            .map(|j| if j + pad >= seq { f32::MIN } else { 0.0 })
            .collect()
    }

    /// Head 1 of the buffer through `isa`: the context rows of that head (`seq x hd`).
    fn run(x: &[f32], [seq, heads, hd]: [usize; 3], bias: &[f32], isa: Isa) -> Vec<f32> {
        let inner = heads * hd;
        let h = Head {
            q: &x[hd..],
            k: &x[inner + hd..],
            v: &x[2 * inner + hd..],
            rs: 3 * inner,
            seq,
            head_dim: hd,
            bias,
            scale: 1.0 / (hd as f32).sqrt(),
        };
        let mut ctx = vec![f32::NAN; seq * inner];
        attend_head(&h, &mut ctx[hd..], inner, &mut Vec::new(), isa);
        (0..seq)
            .flat_map(|i| ctx[i * inner + hd..i * inner + 2 * hd].to_vec())
            .collect()
    }

    /// Softmax attention in f64, written independently of the kernel.
    fn reference(x: &[f32], [seq, heads, hd]: [usize; 3], bias: &[f32]) -> Vec<f64> {
        let (inner, rs) = (heads * hd, 3 * heads * hd);
        let at = |t: usize, block: usize, d: usize| x[t * rs + block * inner + hd + d] as f64;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut out = Vec::new();
        for i in 0..seq {
            let s: Vec<f64> = (0..seq)
                .map(|j| (0..hd).map(|d| at(i, 0, d) * at(j, 1, d)).sum::<f64>() * scale)
                .collect();
            let live: Vec<bool> = bias.iter().map(|b| *b == 0.0).collect();
            let m = (0..seq)
                .filter(|&j| live[j])
                .map(|j| s[j])
                .fold(f64::MIN, f64::max);
            let e: Vec<f64> = (0..seq)
                .map(|j| if live[j] { (s[j] - m).exp() } else { 0.0 })
                .collect();
            let z: f64 = e.iter().sum();
            out.extend((0..hd).map(|d| (0..seq).map(|j| e[j] / z * at(j, 2, d)).sum::<f64>()));
        }
        out
    }

    const SHAPES: [[usize; 3]; 7] = [
        [1, 3, 32],
        [7, 2, 32],
        [17, 3, 16],
        [33, 2, 64],
        [40, 2, 20],
        [5, 4, 33],
        [100, 2, 32],
    ];

    #[test]
    fn the_context_equals_softmax_attention_in_f64() {
        for (n, shape) in SHAPES.into_iter().enumerate() {
            let x = qkv(shape[0], shape[1], shape[2], n);
            let b = bias(shape[0], shape[0] / 4);
            let got = run(&x, shape, &b, Isa::Best);
            let want = reference(&x, shape, &b);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (*g as f64 - w).abs())
                .fold(0.0, f64::max);
            assert!(
                got.iter().all(|v| v.is_finite()),
                "{shape:?}: a context left unwritten"
            );
            assert!(worst < 1e-6, "{shape:?}: max |f32 - f64| {worst}");
        }
    }

    #[test]
    fn every_copy_gives_the_same_bits() {
        let isas = [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .filter(|i| i.available());
        for isa in isas {
            for seq in (1..=40).chain([64, 127]) {
                for hd in [16, 20, 32, 64] {
                    let shape = [seq, 2, hd];
                    let x = qkv(seq, 2, hd, seq);
                    let b = bias(seq, seq / 3);
                    let portable = run(&x, shape, &b, Isa::Portable);
                    let vector = run(&x, shape, &b, isa);
                    let same = portable
                        .iter()
                        .zip(&vector)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{isa:?} differs from the portable copy at {shape:?}");
                }
            }
        }
    }

    /// A diverged run has to show up as NaN, not as a plausible vector.
    #[test]
    fn a_nan_query_gives_a_nan_context_row_and_leaves_the_others() {
        let shape = [20, 2, 32];
        let mut x = qkv(20, 2, 32, 1);
        x[3 * 192 + 32 + 5] = f32::NAN; // query 3, head 1
        let got = run(&x, shape, &bias(20, 0), Isa::Best);
        for (i, row) in got.chunks_exact(32).enumerate() {
            if i == 3 {
                assert!(row.iter().all(|v| v.is_nan()));
            } else {
                assert!(row.iter().all(|v| v.is_finite()), "row {i}");
            }
        }
    }
}
