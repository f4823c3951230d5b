//! The encoder layers' inference forward on the CPU backend as direct gemm calls over contiguous buffers.
//!
//! Why: composed from burn ops on burn-flex, every layer allocates and zeroes a dozen activations, splits
//! Q/K/V into heads as strided views that are copied before the batched matmuls, merges the heads back
//! with more copies, adds each bias in a pass of its own, and parallelises each matmul over all cores
//! while the passes between them run on one (profiles in BENCHMARKS.md). Here, per layer: the Q, K and V
//! products go straight into the column blocks of one `[tokens, 3 * inner]` buffer; attention runs per
//! (sequence, head) as one kernel ([`crate::cpu_attend`]) reading Q, K and V in place and writing each
//! head's context into its columns of `[tokens, inner]` (tokens: only the real ones where the batch is
//! right-padded, see [`Rows`]); the bias adds ride along with GELU or the
//! residual add; the LayerNorms are burn-flex's own kernel; the scratch buffers live with the thread and
//! are reused from batch to batch. When the caller keeps one batch in flight per core
//! ([`crate::backend::in_flight`]) each gemm runs on its calling thread, otherwise on all cores.
//!
//! The maths is the composed path's, step for step (the same gemm kernel, GELU and LayerNorm code, the
//! bias and residual added in the same order; the attention kernel sums its softmax in another order,
//! see its module doc); the tests below compare the two on random models with padding and uneven heads.
//! Only inference without masks on f32 `Cpu` takes it: autodiff, unit masks, mixed precision and other
//! backends keep [`crate::bert::BertModel::forward_composed`].

use std::any::{Any, TypeId};

use burn::backend::Flex;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::ops::ModuleOps;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_flex::FlexTensor;

use crate::backend::{on_in_flight_worker, Cpu};
use crate::bert::{BertLayer, BertModel};
use crate::cpu_amx;
use crate::cpu_attend::{attend_head, Head, Isa};
use crate::cpu_gemm::{matmul, View};
use crate::cpu_kernels::{bias_gelu_rows, bias_residual_rows, bias_rows, softmax_row};
use crate::feed_forward::{BertFeedForward, ACT_GELU, ACT_GELU_TANH, ACT_RELU};

/// The encoder layers over `x` (the embeddings' output, `[batch, seq, hidden]`) on the fast path, or
/// `Err(x)` untouched where it does not apply (see the module doc).
pub fn encode<B: Backend>(
    model: &BertModel<B>,
    x: Tensor<B, 3>,
    attention_mask: &Tensor<B, 2>,
) -> Result<Tensor<B, 3>, Tensor<B, 3>> {
    let applies = TypeId::of::<B>() == TypeId::of::<Cpu>()
        && x.dtype() == DType::F32
        && crate::mixed_precision::matmul_dtype().is_none();
    let Some(model) = (model as &dyn Any).downcast_ref::<BertModel<Cpu>>() else {
        return Err(x);
    };
    if !applies {
        return Err(x);
    }
    let [batch, seq, hidden] = x.dims();
    let mask: Vec<f32> = attention_mask
        .to_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 mask");
    let x: Box<dyn Any> = Box::new(x);
    let x = flex(*x.downcast::<Tensor<Cpu, 3>>().expect("B is Cpu"));
    let rows = Rows::of(&mask, [batch, seq]);
    let tokens = rows.spans.iter().map(|s| s.len).sum::<usize>();
    let h = rows.pack(x.storage::<f32>(), hidden);
    let h = FlexTensor::from_data(TensorData::new(h, [tokens, hidden]));
    let h = SCRATCH.with_borrow_mut(|scratch| {
        let mut h = h;
        for layer in &model.layers {
            h = encode_layer(layer, h, &rows, hidden, model.layer_norm_eps, scratch);
        }
        h
    });
    let h = rows.unpack(h.storage::<f32>(), hidden);
    let h = FlexTensor::from_data(TensorData::new(h, [batch, seq, hidden]));
    let out: Box<dyn Any> = Box::new(Tensor::<Cpu, 3>::from_primitive(TensorPrimitive::Float(h)));
    Ok(*out.downcast::<Tensor<B, 3>>().expect("B is Cpu"))
}

/// Where each sequence's tokens lie in the row buffers the layers work on. Where every mask row is
/// ones then zeros (right padding, as [`crate::tokenizer`] pads) only the real tokens are rows: the
/// Linears, GELU and LayerNorm skip the padding (2.4% of the tokens of BENCHMARKS.md's length-sorted
/// batch-32 embedding, more for mixed lengths) and attention needs no mask, so a text's vector has
/// the same bits whatever it is batched with. Any other mask keeps every position as a row and masks
/// keys through `bias`.
struct Rows {
    spans: Vec<Span>,
    /// Added to each row's attention score as a key (0 or `f32::MIN`).
    bias: Vec<f32>,
    /// The padded sequence length (of the positions the caller sees).
    seq: usize,
}

/// Rows `start..start + len` hold one sequence's first `len` positions.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

impl Rows {
    fn of(mask: &[f32], [batch, seq]: [usize; 2]) -> Self {
        let len = |row: &[f32]| row.iter().take_while(|&&m| m == 1.0).count();
        let right_padded = seq > 0
            && mask.chunks_exact(seq).all(|row| {
                let n = len(row);
                n > 0 && row[n..].iter().all(|&m| m == 0.0)
            });
        if right_padded {
            let mut start = 0;
            let spans = mask
                .chunks_exact(seq)
                .map(|row| {
                    let span = Span {
                        start,
                        len: len(row),
                    };
                    start += span.len;
                    span
                })
                .collect();
            Rows {
                spans,
                bias: vec![0.0; start],
                seq,
            }
        } else {
            let spans = (0..batch)
                .map(|b| Span {
                    start: b * seq,
                    len: seq,
                })
                .collect();
            let bias = mask.iter().map(|m| (1.0 - m) * f32::MIN).collect();
            Rows { spans, bias, seq }
        }
    }

    /// The rows of `x` (`[batch, seq, hidden]`) that the spans hold, `[tokens, hidden]`.
    fn pack(&self, x: &[f32], hidden: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.bias.len() * hidden);
        for (b, s) in self.spans.iter().enumerate() {
            let from = b * self.seq * hidden;
            out.extend_from_slice(&x[from..from + s.len * hidden]);
        }
        out
    }

    /// `h` (`[tokens, hidden]`) back at its positions of `[batch, seq, hidden]`, padding rows zero
    /// (nothing downstream reads them: pooling and word states take real tokens only).
    fn unpack(&self, h: &[f32], hidden: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.spans.len() * self.seq * hidden];
        for (b, s) in self.spans.iter().enumerate() {
            let to = b * self.seq * hidden;
            out[to..to + s.len * hidden]
                .copy_from_slice(&h[s.start * hidden..(s.start + s.len) * hidden]);
        }
        out
    }
}

thread_local! {
    /// This thread's activations, kept from batch to batch: allocated and zeroed once per thread (one
    /// per batch in flight), not once per batch.
    static SCRATCH: std::cell::RefCell<Scratch> = Default::default();
}

/// Activations reused from layer to layer and batch to batch (each fully overwritten before it is read).
#[derive(Default)]
struct Scratch {
    qkv: Vec<f32>,
    context: Vec<f32>,
    out: Vec<f32>,
    ffn: Vec<f32>,
    attend: Vec<f32>,
}

/// `v` resized to `n` (zeroed only where it grows).
fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

fn encode_layer(
    layer: &BertLayer<Cpu>,
    x: FlexTensor,
    at: &Rows,
    hidden: usize,
    eps: f64,
    s: &mut Scratch,
) -> FlexTensor {
    let tokens = at.bias.len();
    let xs = &x.storage::<f32>()[..tokens * hidden];
    let sa = &layer.attention.self_attention;
    let (nh, hd) = (sa.num_heads, sa.head_dim);
    let inner = nh * hd;

    // Q | K | V column blocks of one [tokens, 3 * inner] buffer, biases added.
    let qkv = sized(&mut s.qkv, tokens * 3 * inner);
    qkv_into([&sa.query, &sa.key, &sa.value], xs, tokens, qkv, inner);
    let context = sized(&mut s.context, tokens * inner);
    let scale = 1.0 / (hd as f32).sqrt();
    for span in &at.spans {
        let rows = &qkv[span.start * 3 * inner..];
        for head in 0..nh {
            let h = Head {
                q: &rows[head * hd..],
                k: &rows[inner + head * hd..],
                v: &rows[2 * inner + head * hd..],
                rs: 3 * inner,
                seq: span.len,
                head_dim: hd,
                bias: &at.bias[span.start..span.start + span.len],
                scale,
            };
            let dst = &mut context[span.start * inner + head * hd..];
            if span.len > GEMM_SUMS_SHORT {
                attend_head(&h, dst, inner, &mut s.attend, Isa::Best);
            } else {
                attend_by_gemm(&h, dst, inner, &mut s.attend);
            }
        }
    }
    let out = sized(&mut s.out, tokens * hidden);
    linear_into(
        &layer.attention.output.dense,
        context,
        tokens,
        out,
        hidden,
        Some(xs),
    );
    let x = layer_norm(
        &layer.attention.output.layer_norm,
        out,
        [tokens, hidden],
        eps,
    );

    let ff = &layer.feed_forward;
    let xs = &x.storage::<f32>()[..tokens * hidden];
    let out = sized(&mut s.out, tokens * hidden);
    if cpu_amx::available() {
        ffn_by_row_blocks(ff, xs, out, hidden);
    } else {
        let width = ff.intermediate.weight.dims()[1];
        let a = sized(&mut s.ffn, tokens * width);
        linear_into_activated(&ff.intermediate, xs, tokens, a, ff.act);
        linear_into(&ff.output, a, tokens, out, hidden, Some(xs));
    }
    layer_norm(&ff.layer_norm, out, [tokens, hidden], eps)
}

/// Rows of the FFN taken together on AMX tiles: the block's activations (128 x 1,536 floats for MiniLM)
/// stay in L2 from the first Linear through GELU to the second one's tile parts, instead of a batch's
/// worth going out to L3 and back (splitting them into parts waited on memory: 7.5% of an embedding's
/// samples). Rows are independent on AMX, so the blocks give the bits of one product.
const FFN_ROWS: usize = 128;

/// The FFN (`out = act(x W1 + b1) W2 + b2 + x`) in blocks of [`FFN_ROWS`] rows, the blocks across
/// rayon's threads unless this thread is one of several batches in flight.
fn ffn_by_row_blocks(ff: &BertFeedForward<Cpu>, x: &[f32], out: &mut [f32], hidden: usize) {
    thread_local! {
        static BLOCK: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let width = ff.intermediate.weight.dims()[1];
    let block = |(x, out): (&[f32], &mut [f32])| {
        let rows = x.len() / hidden;
        BLOCK.with_borrow_mut(|a| {
            let a = sized(a, rows * width);
            linear_into_activated(&ff.intermediate, x, rows, a, ff.act);
            linear_into(&ff.output, a, rows, out, hidden, Some(x));
        })
    };
    let (xs, outs) = (
        x.chunks(FFN_ROWS * hidden),
        out.chunks_mut(FFN_ROWS * hidden),
    );
    if on_in_flight_worker() {
        xs.zip(outs).for_each(block);
    } else {
        use rayon::prelude::*;
        let xs = x.par_chunks(FFN_ROWS * hidden);
        xs.zip(out.par_chunks_mut(FFN_ROWS * hidden))
            .for_each(block);
    }
}

/// Sequences up to this length attend through gemm and the row softmax: for such small products gemm
/// sums in another order than its main kernel, which [`attend_head`] follows (so its contexts equal the
/// gemm path's bits for longer sequences, measured on the AVX-512 machine of BENCHMARKS.md). Short
/// sequences cost little either way, and every embedding keeps the bits it had before the kernel.
const GEMM_SUMS_SHORT: usize = 16;

/// [`attend_head`]'s result by two gemm calls around [`softmax_row`] (`scores` is scratch).
fn attend_by_gemm(h: &Head, ctx: &mut [f32], ctx_rs: usize, scores: &mut Vec<f32>) {
    let (seq, hd) = (h.seq, h.head_dim);
    let scores = sized(scores, seq * seq);
    let (q, k_t) = (View::rows(h.q, h.rs), View::cols(h.k, h.rs));
    matmul(scores, seq, q, k_t, [seq, hd, seq], false);
    for row in scores.chunks_exact_mut(seq) {
        softmax_row(row, &h.bias[..seq], h.scale);
    }
    let v = View::rows(h.v, h.rs);
    matmul(
        ctx,
        ctx_rs,
        View::rows(scores, seq),
        v,
        [seq, seq, hd],
        false,
    );
}

/// The Q, K and V Linears into the column blocks of `qkv` (`[rows, 3 * inner]`), biases added. On AMX
/// tiles as one product with the three weights side by side (the rows are split into tile parts once).
fn qkv_into(lins: [&Linear<Cpu>; 3], x: &[f32], rows: usize, qkv: &mut [f32], inner: usize) {
    if !cpu_amx::available() {
        for (i, lin) in lins.into_iter().enumerate() {
            linear_into(lin, x, rows, &mut qkv[i * inner..], 3 * inner, None);
        }
        return;
    }
    let w = cpu_amx::packed_weights(&lins.map(|l| &l.weight));
    let x = cpu_amx::Lhs(x, lins[0].weight.dims()[0]);
    cpu_amx::matmul(qkv, 3 * inner, x, &w, rows, true);
    for (i, lin) in lins.into_iter().enumerate() {
        if let Some(b) = &lin.bias {
            let b = flex(b.val());
            bias_rows(
                &mut qkv[i * inner..],
                3 * inner,
                &b.storage::<f32>()[..inner],
            );
        }
    }
}

/// `dst[r, ..] = x[r, ..] @ W` for `rows` rows (`x` contiguous, `dst` rows `dst_rs` apart): on AMX tiles
/// where the CPU has them ([`cpu_amx`], f32-accurate), else gemm.
fn product(lin: &Linear<Cpu>, x: &[f32], rows: usize, dst: &mut [f32], dst_rs: usize) {
    let [d_in, d_out] = lin.weight.dims();
    if cpu_amx::available() {
        let w = cpu_amx::packed_weights(&[&lin.weight]);
        cpu_amx::matmul(dst, dst_rs, cpu_amx::Lhs(x, d_in), &w, rows, true);
        return;
    }
    let w = flex(lin.weight.val());
    let w = View::rows(w.storage::<f32>(), d_out);
    matmul(
        dst,
        dst_rs,
        View::rows(x, d_in),
        w,
        [rows, d_in, d_out],
        true,
    );
}

/// `dst[r, ..] = x[r, ..] @ W + b (+ residual[r, ..])` for `rows` rows; `dst` rows `dst_rs` apart.
fn linear_into(
    lin: &Linear<Cpu>,
    x: &[f32],
    rows: usize,
    dst: &mut [f32],
    dst_rs: usize,
    residual: Option<&[f32]>,
) {
    let d_out = lin.weight.dims()[1];
    product(lin, x, rows, dst, dst_rs);
    let bias = lin.bias.as_ref().map(|b| flex(b.val()));
    let bias = bias.as_ref().map(|b| &b.storage::<f32>()[..d_out]);
    match (bias, residual) {
        (Some(b), Some(r)) => bias_residual_rows(dst, b, r),
        (Some(b), None) => {
            let end = (rows * dst_rs).min(dst.len());
            bias_rows(&mut dst[..end], dst_rs, b)
        }
        (None, Some(r)) => dst.iter_mut().zip(r).for_each(|(o, r)| *o += r),
        (None, None) => {}
    }
}

/// The FFN's first Linear with its activation: `dst = act(x @ W + b)`, `dst` contiguous.
fn linear_into_activated(lin: &Linear<Cpu>, x: &[f32], rows: usize, dst: &mut [f32], act: usize) {
    let d_out = lin.weight.dims()[1];
    product(lin, x, rows, dst, d_out);
    let zeros;
    let bias = match &lin.bias {
        Some(b) => flex(b.val()),
        None => {
            zeros = vec![0.0f32; d_out];
            FlexTensor::from_data(TensorData::new(zeros, [d_out]))
        }
    };
    let bias = &bias.storage::<f32>()[..d_out];
    match act {
        ACT_GELU => bias_gelu_rows(dst, bias),
        ACT_RELU | ACT_GELU_TANH => {
            for row in dst.chunks_exact_mut(d_out) {
                for (x, b) in row.iter_mut().zip(bias) {
                    let v = *x + b;
                    *x = if act == ACT_RELU {
                        v.max(0.0)
                    } else {
                        gelu_tanh(v)
                    };
                }
            }
        }
        other => unreachable!("unknown activation code {other}"),
    }
}

/// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`, as burn's `gelu_approximate`.
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// burn-flex's LayerNorm kernel over `x` (`[rows, d]`, copied into a tensor of its own).
fn layer_norm(ln: &LayerNorm<Cpu>, x: &[f32], [rows, d]: [usize; 2], eps: f64) -> FlexTensor {
    let input = FlexTensor::from_data(TensorData::new(x[..rows * d].to_vec(), [rows, d]));
    Flex::layer_norm(
        input,
        flex(ln.gamma.val()),
        ln.beta.as_ref().map(|b| flex(b.val())),
        eps,
    )
}

/// A `Cpu` tensor's primitive, contiguous (a weight already is: this is a reference-count increment).
fn flex<const D: usize>(t: Tensor<Cpu, D>) -> FlexTensor {
    t.into_primitive().tensor().to_contiguous()
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Int, Tensor, TensorData};

    use crate::backend::{in_flight, Cpu};
    use crate::bert::BertModel;
    use crate::layers::to_vec;
    use crate::testing::tiny_config;
    use crate::weights::RandomWeights;

    /// Sequences of lengths `lens` (padding after the short ones), token ids from a seed.
    fn batch(seed: u32, lens: &[usize]) -> (Tensor<Cpu, 2, Int>, Tensor<Cpu, 2>) {
        let (n, seq) = (lens.len(), lens.iter().copied().max().unwrap());
        let mut ids = vec![0i32; n * seq];
        let mut mask = vec![0f32; n * seq];
        for (b, &len) in lens.iter().enumerate() {
            for t in 0..len {
                ids[b * seq + t] = ((seed as usize * 31 + b * 17 + t * 7) % 150 + 5) as i32;
                mask[b * seq + t] = 1.0;
            }
        }
        let dev = Default::default();
        (
            Tensor::from_data(TensorData::new(ids, [n, seq]), &dev),
            Tensor::from_data(TensorData::new(mask, [n, seq]), &dev),
        )
    }

    /// Largest |fast - composed| over the real tokens of a random model (the fast path leaves padding
    /// rows zero, which is checked too).
    fn fast_vs_composed(act: &str, pruned: bool, lens: [usize; 3]) -> f32 {
        let mut cfg = tiny_config(3);
        cfg.hidden_act = act.into();
        if pruned {
            cfg.add_pruned_heads(0, &[1]);
            cfg.add_pruned_heads(2, &[0, 2, 3]);
            cfg.set_ffn_sizes(vec![64, 17, 40]);
        }
        let model =
            BertModel::<Cpu>::load(&cfg, &mut RandomWeights::new(3), &Default::default()).unwrap();
        let (ids, mask) = batch(1, &lens);
        let hidden = cfg.hidden_size;
        let real = to_vec(&mask);
        let fast = to_vec(&model.forward(ids.clone(), mask.clone(), None));
        let composed = to_vec(&model.forward_composed(ids, mask, None));
        assert_eq!(fast.len(), composed.len());
        assert!(fast.iter().all(|v| v.is_finite()));
        let rows = || fast.chunks(hidden).zip(composed.chunks(hidden)).zip(&real);
        assert!(rows().all(|((f, _), &m)| m == 1.0 || f.iter().all(|&v| v == 0.0)));
        rows()
            .filter(|(_, &m)| m == 1.0)
            .flat_map(|((f, c), _)| f.iter().zip(c))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// A two-layer random model of [`tiny_config`].
    fn tiny_model(seed: u64) -> BertModel<Cpu> {
        BertModel::load(
            &tiny_config(2),
            &mut RandomWeights::new(seed),
            &Default::default(),
        )
        .unwrap()
    }

    /// Packing drops the padding rows: each sequence of a padded batch gets the bits it gets alone,
    /// on both attention kernels (up to 16 tokens and over).
    #[test]
    fn a_padded_batch_gives_each_sequence_its_own_bits() {
        let model = tiny_model(4);
        let hidden = tiny_config(2).hidden_size;
        let lens = [29, 9, 23, 16, 31];
        let seq = 31;
        let (ids, mask) = batch(2, &lens);
        let together = to_vec(&model.forward(ids.clone(), mask, None));
        for (b, &len) in lens.iter().enumerate() {
            let one = ids.clone().slice([b..b + 1, 0..len]);
            let mask = Tensor::<Cpu, 2>::ones([1, len], &Default::default());
            let alone = to_vec(&model.forward(one, mask, None));
            let start = b * seq * hidden;
            assert_eq!(alone, together[start..start + len * hidden], "sequence {b}");
        }
    }

    /// A mask that is not ones-then-zeros (a hole in the middle) keeps every position as a row and masks
    /// keys instead: still the composed ops' result.
    #[test]
    fn a_mask_with_holes_takes_the_masked_rows() {
        let model = tiny_model(6);
        let (ids, mask) = batch(3, &[20, 20, 11]);
        let mut m = to_vec(&mask);
        m[5] = 0.0;
        let mask = Tensor::<Cpu, 2>::from_data(TensorData::new(m, [3, 20]), &Default::default());
        let fast = to_vec(&model.forward(ids.clone(), mask.clone(), None));
        let composed = to_vec(&model.forward_composed(ids, mask, None));
        let d = fast
            .iter()
            .zip(&composed)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 2e-6, "max |diff| {d}");
    }

    #[test]
    fn fast_path_equals_the_composed_ops() {
        for act in ["gelu", "gelu_new", "relu"] {
            for pruned in [false, true] {
                // Short sequences attend through gemm, longer ones through `cpu_attend`; 150
                // tokens span two of the AMX path's FFN row blocks and two of its row groups.
                for lens in [[7, 3, 5], [23, 9, 17], [60, 50, 40]] {
                    let d = fast_vs_composed(act, pruned, lens);
                    assert!(d < 2e-6, "{act}, pruned {pruned}, {lens:?}: max |diff| {d}");
                }
            }
        }
    }

    /// Wide enough (hidden 256, FFN 1024, 64 tokens a batch) that outside [`in_flight`] the Linear
    /// products are split across threads: the result must not depend on it.
    #[test]
    fn batches_in_flight_give_the_same_hidden_states() {
        let mut cfg = crate::config::BertConfig::new(160, 256, 1, 4, 1024);
        cfg.max_position_embeddings = 64;
        let model =
            BertModel::<Cpu>::load(&cfg, &mut RandomWeights::new(5), &Default::default()).unwrap();
        let run = |seed: u32| {
            let (ids, mask) = batch(seed, &[7, 3, 5]);
            let rep = |t: Tensor<Cpu, 2>| t.repeat_dim(0, 8).reshape([4, 42]);
            let ids = ids.float();
            to_vec(&model.forward(rep(ids).int(), rep(mask), None))
        };
        let alone: Vec<Vec<f32>> = (0..4).map(run).collect();
        let mut flying = vec![Vec::new(); 4];
        in_flight(4, 2, |i| run(i as u32), |i, h| flying[i] = h);
        assert_eq!(alone, flying, "single-threaded gemm changed the result");
    }
}
