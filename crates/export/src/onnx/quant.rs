//! Dynamic int8 Linear layers, laid out as onnxruntime's `quantize_dynamic(per_channel=True)` writes them.
//!
//! Weights: symmetric int8 per output channel (`scale = max|w| / 127`, zero point 0), so a pruned layer
//! with one outlier neuron does not cost every other neuron its resolution. Activations: quantized per
//! tensor at run time by `DynamicQuantizeLinear` (uint8, asymmetric), then `MatMulInteger` -> int32 ->
//! `Cast` -> `Mul` by `activation_scale * weight_scale[col]` -> `Add` bias. onnxruntime's CPU provider
//! runs uint8 x int8 `MatMulInteger` (VNNI on AVX-512 machines).

use super::graph::{attr_int, Graph};
use super::proto::dtype;

/// A `[out, in]` weight quantized per output row, stored transposed to `[in, out]` for `MatMul`.
pub(crate) struct QuantizedWeight {
    /// `[in, out]`, row-major.
    pub values: Vec<i8>,
    /// `[out]`: the real value of one int8 step of each output channel.
    pub scales: Vec<f32>,
}

/// Quantizes HF-layout `w` (`[d_out, d_in]`) symmetrically per output channel (round half to even,
/// as numpy's `rint` in onnxruntime's quantizer).
pub(crate) fn quantize_per_channel(w: &[f32], d_out: usize, d_in: usize) -> QuantizedWeight {
    assert_eq!(w.len(), d_out * d_in, "weight size");
    let mut values = vec![0i8; w.len()];
    let mut scales = Vec::with_capacity(d_out);
    for (o, row) in w.chunks_exact(d_in).enumerate() {
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // An all-zero channel (possible after pruning) keeps scale 1 so dequantization never divides by 0.
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        for (i, v) in row.iter().enumerate() {
            values[i * d_out + o] = (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8;
        }
        scales.push(scale);
    }
    QuantizedWeight { values, scales }
}

/// Wires `x @ W^T + b` for HF weight `prefix.weight` (`[d_out, d_in]`) with int8 weights; returns the
/// output name. Initializer names follow onnxruntime's quantizer (`*_quantized`, `*_scale`, `*_zero_point`).
pub(crate) fn linear_int8(
    g: &mut Graph,
    x: &str,
    prefix: &str,
    w: &[f32],
    b: &[f32],
    d_out: usize,
    d_in: usize,
) -> String {
    let q = quantize_per_channel(w, d_out, d_in);
    let wq = g.init_i8(
        &format!("{prefix}.weight_quantized"),
        &[d_in, d_out],
        &q.values,
    );
    let ws = g.init_f32(&format!("{prefix}.weight_scale"), &[d_out], &q.scales);
    let wz = g.init_i8(
        &format!("{prefix}.weight_zero_point"),
        &[d_out],
        &vec![0; d_out],
    );
    let bias = g.init_f32(&format!("{prefix}.bias"), &[d_out], b);
    // One quantization per activation, shared by every Linear that reads it (Q, K and V), as
    // onnxruntime's quantizer does.
    let op = "DynamicQuantizeLinear";
    let dq = g.shared(&format!("{op}:{x}"), |g| g.node_n(op, &[x], vec![], 3));
    let (xq, xs, xz) = (&dq[0], &dq[1], &dq[2]);
    let acc = g.node("MatMulInteger", &[xq, &wq, xz, &wz], vec![]);
    let accf = g.node("Cast", &[&acc], vec![attr_int("to", dtype::FLOAT as i64)]);
    let scale = g.node("Mul", &[xs, &ws], vec![]);
    let y = g.node("Mul", &[&accf, &scale], vec![]);
    g.node("Add", &[&y, &bias], vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_scales_and_transposed_layout() {
        // 2 output channels of 3 inputs; the second is 10x larger and must not squash the first.
        let w = [0.3, -1.0, 0.25, 4.0, 10.0, -2.6];
        let q = quantize_per_channel(&w, 2, 3);
        assert_eq!(q.scales, vec![1.0 / 127.0, 10.0 / 127.0]);
        // [in, out]: column 0 is channel 0.
        assert_eq!(q.values, vec![38, 51, -127, 127, 32, -33]);
        let zero = quantize_per_channel(&[0.0; 3], 1, 3);
        assert_eq!((zero.scales, zero.values), (vec![1.0], vec![0; 3]));
    }
}
