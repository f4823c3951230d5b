//! The BERT encoder as an ONNX graph, layer by layer with each layer's own head count and FFN width.
//!
//! Mirrors `sekator_model::BertModel::forward` op for op (post-LayerNorm layers, additive padding bias of
//! `(1 - mask) * f32::MIN`, exact-erf GELU), so the exported model matches sekator's outputs to rounding.
//! Only standard opset-17 ops: onnxruntime's graph optimizer then fuses attention and LayerNorm itself.

use sekator_model::layers::transpose;
use sekator_model::weights::WeightSource;
use sekator_model::BertConfig;

use super::graph::{attr_float, attr_int, attr_ints, Graph};
use super::proto::{dtype, DimValue, GraphProto, ValueInfoProto};
use super::quant;
use super::Precision;
use crate::error::ExportError;

/// Graph input and output names: the ones transformers' ONNX export uses, which sentence-transformers'
/// ONNX backend (through optimum) and text-embeddings-inference look up.
pub const INPUT_IDS: &str = "input_ids";
pub const ATTENTION_MASK: &str = "attention_mask";
pub const TOKEN_TYPE_IDS: &str = "token_type_ids";
pub const LAST_HIDDEN_STATE: &str = "last_hidden_state";
pub const POOLER_OUTPUT: &str = "pooler_output";

/// The FFN activations `BertConfig::validate` accepts.
#[derive(Clone, Copy)]
enum Act {
    Gelu,
    GeluTanh,
    Relu,
}

fn activation(cfg: &BertConfig) -> Result<Act, ExportError> {
    match cfg.hidden_act.as_str() {
        "gelu" => Ok(Act::Gelu),
        "gelu_new" | "gelu_pytorch_tanh" => Ok(Act::GeluTanh),
        "relu" => Ok(Act::Relu),
        other => Err(ExportError::Activation {
            act: other.to_string(),
        }),
    }
}

struct BertGraph<'a> {
    cfg: &'a BertConfig,
    src: &'a mut dyn WeightSource,
    precision: Precision,
    act: Act,
    g: Graph,
}

/// Builds the graph for `cfg` from HF-named weights; the pooler output exists when the weights have one.
pub(crate) fn build_graph(
    cfg: &BertConfig,
    src: &mut dyn WeightSource,
    precision: Precision,
) -> Result<GraphProto, ExportError> {
    let act = activation(cfg)?;
    let has_pooler = src.has("pooler.dense.weight");
    let mut b = BertGraph {
        cfg,
        src,
        precision,
        act,
        g: Graph::default(),
    };
    let mut x = b.embeddings()?;
    let bias = b.mask_bias();
    for layer in 0..cfg.num_hidden_layers {
        x = b.attention(layer, &x, &bias)?;
        x = b.feed_forward(layer, &x)?;
    }
    b.g.set_scope("encoder");
    b.g.node_to("Identity", &[&x], LAST_HIDDEN_STATE);
    if has_pooler {
        b.pooler(&x)?;
    }
    let h = cfg.hidden_size as i64;
    let (batch, seq) = (
        DimValue::Param("batch_size".into()),
        DimValue::Param("sequence_length".into()),
    );
    let ids = [batch.clone(), seq.clone()];
    let inputs = [INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS]
        .iter()
        .map(|n| ValueInfoProto::tensor(n, dtype::INT64, &ids))
        .collect();
    let mut outputs = vec![ValueInfoProto::tensor(
        LAST_HIDDEN_STATE,
        dtype::FLOAT,
        &[batch.clone(), seq, DimValue::Fixed(h)],
    )];
    if has_pooler {
        outputs.push(ValueInfoProto::tensor(
            POOLER_OUTPUT,
            dtype::FLOAT,
            &[batch, DimValue::Fixed(h)],
        ));
    }
    Ok(b.g.finish("sekator_bert", inputs, outputs))
}

impl BertGraph<'_> {
    /// An f32 initializer holding the checkpoint tensor `name`, checked against `shape`.
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<String, ExportError> {
        let data = self.src.get(name, shape)?;
        Ok(self.g.init_f32(name, shape, &data))
    }

    /// word + position + token type embeddings, then LayerNorm. Positions are rows `0..seq` of the table,
    /// sliced by the input's own length, so the graph needs no `position_ids` input.
    fn embeddings(&mut self) -> Result<String, ExportError> {
        let c = self.cfg;
        let h = c.hidden_size;
        self.g.set_scope("embeddings");
        let word = self.weight("embeddings.word_embeddings.weight", &[c.vocab_size, h])?;
        let pos_name = "embeddings.position_embeddings.weight";
        let pos = self.weight(pos_name, &[c.max_position_embeddings, h])?;
        let types_name = "embeddings.token_type_embeddings.weight";
        let types = self.weight(types_name, &[c.type_vocab_size, h])?;
        let g = &mut self.g;
        let words = g.node("Gather", &[&word, INPUT_IDS], vec![attr_int("axis", 0)]);
        let shape = g.node("Shape", &[INPUT_IDS], vec![]);
        let (one, two, zero) = (g.ints_i64(&[1]), g.ints_i64(&[2]), g.ints_i64(&[0]));
        let seq = g.node("Slice", &[&shape, &one, &two, &zero], vec![]);
        let positions = g.node("Slice", &[&pos, &zero, &seq, &zero], vec![]);
        let type_rows = g.node(
            "Gather",
            &[&types, TOKEN_TYPE_IDS],
            vec![attr_int("axis", 0)],
        );
        let x = g.node("Add", &[&words, &positions], vec![]);
        let x = g.node("Add", &[&x, &type_rows], vec![]);
        self.layer_norm(&x, "embeddings.LayerNorm")
    }

    /// `[batch, 1, 1, seq]`: 0 where attended, `f32::MIN` where padded, exactly sekator's bias.
    fn mask_bias(&mut self) -> String {
        let g = &mut self.g;
        g.set_scope("encoder");
        let m = g.node(
            "Cast",
            &[ATTENTION_MASK],
            vec![attr_int("to", dtype::FLOAT as i64)],
        );
        let one = g.scalar_f32(1.0);
        let inv = g.node("Sub", &[&one, &m], vec![]);
        let min = g.scalar_f32(f32::MIN);
        let bias = g.node("Mul", &[&inv, &min], vec![]);
        let axes = g.ints_i64(&[1, 2]);
        g.node("Unsqueeze", &[&bias, &axes], vec![])
    }

    fn layer_norm(&mut self, x: &str, prefix: &str) -> Result<String, ExportError> {
        let h = self.cfg.hidden_size;
        let gamma = self.weight(&format!("{prefix}.weight"), &[h])?;
        let beta = self.weight(&format!("{prefix}.bias"), &[h])?;
        let attrs = vec![
            attr_int("axis", -1),
            attr_float("epsilon", self.cfg.layer_norm_eps as f32),
        ];
        Ok(self
            .g
            .node("LayerNormalization", &[x, &gamma, &beta], attrs))
    }

    /// HF Linear `prefix` (`[d_out, d_in]` weight and bias) applied to the last axis of `x`.
    fn linear(
        &mut self,
        x: &str,
        prefix: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<String, ExportError> {
        let w = self.src.get(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let b = self.src.get(&format!("{prefix}.bias"), &[d_out])?;
        let g = &mut self.g;
        Ok(match self.precision {
            Precision::Int8 => quant::linear_int8(g, x, prefix, &w, &b, d_out, d_in),
            Precision::F32 => {
                let wt = transpose(&w, d_out, d_in);
                // `_t`: the HF weight transposed to `[in, out]`, MatMul's layout.
                let wt = g.init_f32(&format!("{prefix}.weight_t"), &[d_in, d_out], &wt);
                let bias = g.init_f32(&format!("{prefix}.bias"), &[d_out], &b);
                let y = g.node("MatMul", &[x, &wt], vec![]);
                g.node("Add", &[&y, &bias], vec![])
            }
        })
    }

    /// Self-attention of `layer` with its own head count, output dense, residual, LayerNorm.
    fn attention(&mut self, layer: usize, x: &str, bias: &str) -> Result<String, ExportError> {
        let (h, hd) = (self.cfg.hidden_size, self.cfg.head_dim());
        let nh = self.cfg.kept_heads(layer).len();
        let inner = nh * hd;
        let p = format!("encoder.layer.{layer}.attention");
        self.g
            .set_scope(&format!("encoder.layer.{layer}/attention"));
        let q = self.linear(x, &format!("{p}.self.query"), h, inner)?;
        let k = self.linear(x, &format!("{p}.self.key"), h, inner)?;
        let v = self.linear(x, &format!("{p}.self.value"), h, inner)?;
        let g = &mut self.g;
        // [batch, seq, heads * hd] -> [batch, seq, heads, hd] (0 copies batch and seq from the input).
        let split = g.ints_i64(&[0, 0, nh as i64, hd as i64]);
        let q = g.node("Reshape", &[&q, &split], vec![]);
        let q = g.node("Transpose", &[&q], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let k = g.node("Reshape", &[&k, &split], vec![]);
        let kt = g.node("Transpose", &[&k], vec![attr_ints("perm", &[0, 2, 3, 1])]);
        let v = g.node("Reshape", &[&v, &split], vec![]);
        let v = g.node("Transpose", &[&v], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let scores = g.node("MatMul", &[&q, &kt], vec![]);
        let scale = g.scalar_f32(1.0 / (hd as f32).sqrt());
        let scores = g.node("Mul", &[&scores, &scale], vec![]);
        let scores = g.node("Add", &[&scores, bias], vec![]);
        let probs = g.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
        let ctx = g.node("MatMul", &[&probs, &v], vec![]);
        let ctx = g.node("Transpose", &[&ctx], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let merge = g.ints_i64(&[0, 0, inner as i64]);
        let ctx = g.node("Reshape", &[&ctx, &merge], vec![]);
        let out = self.linear(&ctx, &format!("{p}.output.dense"), inner, h)?;
        let out = self.g.node("Add", &[&out, x], vec![]);
        self.layer_norm(&out, &format!("{p}.output.LayerNorm"))
    }

    /// FFN of `layer` with its own width, residual, LayerNorm.
    fn feed_forward(&mut self, layer: usize, x: &str) -> Result<String, ExportError> {
        let h = self.cfg.hidden_size;
        let w = self.cfg.ffn_sizes()[layer];
        let p = format!("encoder.layer.{layer}");
        self.g
            .set_scope(&format!("encoder.layer.{layer}/intermediate"));
        let a = self.linear(x, &format!("{p}.intermediate.dense"), h, w)?;
        let a = self.activate(&a);
        self.g.set_scope(&format!("encoder.layer.{layer}/output"));
        let out = self.linear(&a, &format!("{p}.output.dense"), w, h)?;
        let out = self.g.node("Add", &[&out, x], vec![]);
        self.layer_norm(&out, &format!("{p}.output.LayerNorm"))
    }

    /// `gelu` = `0.5 x (1 + erf(x / sqrt 2))`; the tanh variants = `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`,
    /// in the same association as burn's `gelu_approximate`.
    fn activate(&mut self, x: &str) -> String {
        let g = &mut self.g;
        let half = g.scalar_f32(0.5);
        let one = g.scalar_f32(1.0);
        let inner = match self.act {
            Act::Relu => return g.node("Relu", &[x], vec![]),
            Act::Gelu => {
                let sqrt2 = g.scalar_f32(std::f32::consts::SQRT_2);
                let t = g.node("Div", &[x, &sqrt2], vec![]);
                g.node("Erf", &[&t], vec![])
            }
            Act::GeluTanh => {
                let (c, k) = (g.scalar_f32(0.044715), g.scalar_f32(SQRT_2_OVER_PI));
                let x2 = g.node("Mul", &[x, x], vec![]);
                let x3 = g.node("Mul", &[&x2, x], vec![]);
                let t = g.node("Mul", &[&x3, &c], vec![]);
                let t = g.node("Add", &[x, &t], vec![]);
                let t = g.node("Mul", &[&t, &k], vec![]);
                g.node("Tanh", &[&t], vec![])
            }
        };
        let inner = g.node("Add", &[&inner, &one], vec![]);
        let y = g.node("Mul", &[x, &inner], vec![]);
        g.node("Mul", &[&y, &half], vec![])
    }

    /// `pooler_output = tanh(dense(hidden[:, 0]))`.
    fn pooler(&mut self, x: &str) -> Result<(), ExportError> {
        let h = self.cfg.hidden_size;
        self.g.set_scope("pooler");
        let zero = self.g.scalar_i64(0);
        let first = self
            .g
            .node("Gather", &[x, &zero], vec![attr_int("axis", 1)]);
        let y = self.linear(&first, "pooler.dense", h, h)?;
        self.g.node_to("Tanh", &[&y], POOLER_OUTPUT);
        Ok(())
    }
}

/// `sqrt(2 / pi)`, as burn computes it (in f64, then rounded once).
const SQRT_2_OVER_PI: f32 =
    (std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2) as f32;
