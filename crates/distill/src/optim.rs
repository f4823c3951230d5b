//! AdamW with global gradient-norm clipping, its state keyed by parameter path.
//!
//! Written here rather than taken from burn-optim 0.21 because three things a resumable distillation needs
//! are not available there: (1) burn keys optimizer state by `ParamId`, which is regenerated when a
//! checkpoint is loaded from safetensors, so saved moments would not find their parameters; here the key is
//! the module path (`layers.3.attention.self_attention.query.weight`), stable across processes; (2) burn
//! clips each parameter's gradient by its own norm, not the global norm over all parameters as
//! `torch.nn.utils.clip_grad_norm_` does; (3) burn decays every parameter, while BERT practice exempts biases
//! and LayerNorm. The update itself is burn's / torch's AdamW:
//!
//! `m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p = p (1 - lr wd) - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)`

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use sekator_model::cpu_optim::{self, AdamWScalars};
use sekator_model::loader::write_safetensors;
use sekator_model::{NamedTensor, SafetensorsWeights};

use crate::error::{DistillError, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global L2 norm the gradients are scaled down to (0: no clipping).
    pub max_grad_norm: f64,
}

struct Moments<B: Backend> {
    m: Tensor<B, 1>,
    v: Tensor<B, 1>,
}

/// AdamW over the parameters of one module; `B` is the inner (non-autodiff) backend.
pub struct AdamW<B: Backend> {
    pub settings: AdamWSettings,
    /// Updates done so far (the `t` of the bias correction).
    pub step: usize,
    state: HashMap<String, Moments<B>>,
}

/// Whether weight decay applies to the parameter at `path` (not to biases and LayerNorm gamma/beta).
pub fn decays(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    !(last == "bias" || last == "beta" || last == "gamma" || path.contains("layer_norm"))
}

/// Module paths of all float parameters, in visiting order (also the key of the optimizer state).
pub fn param_paths<B: Backend, M: burn::module::Module<B>>(module: &M) -> Vec<String> {
    struct V {
        path: Vec<String>,
        out: Vec<String>,
    }
    impl<B: Backend> ModuleVisitor<B> for V {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<B, D>>) {
            self.out.push(self.path.join("."));
        }
    }
    let mut v = V {
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

impl<B: Backend> AdamW<B> {
    pub fn new(settings: AdamWSettings) -> Self {
        Self {
            settings,
            step: 0,
            state: HashMap::new(),
        }
    }

    /// Clips the gradients to the global norm, applies one AdamW update with learning rate `lr`, and
    /// returns the updated module and the gradient norm before clipping.
    pub fn step<AB, M>(&mut self, module: M, mut grads: GradientsParams, lr: f64) -> (M, f32)
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        let norm = global_norm::<AB, M>(&module, &grads);
        let max = self.settings.max_grad_norm;
        let coef = if max > 0.0 && norm as f64 > max {
            max / (norm as f64 + 1e-6)
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step as i32;
        let s = self.settings;
        let mut mapper = StepMapper::<AB> {
            opt: self,
            grads: &mut grads,
            path: Vec::new(),
            lr,
            coef,
            bc1: 1.0 - s.beta1.powi(t),
            bc2: 1.0 - s.beta2.powi(t),
        };
        (module.map(&mut mapper), norm)
    }

    /// Moments as named tensors (`exp_avg.<path>`, `exp_avg_sq.<path>`), for checkpoints.
    pub fn export(&self) -> Vec<NamedTensor> {
        let mut keys: Vec<&String> = self.state.keys().collect();
        keys.sort();
        let mut out = Vec::new();
        for k in keys {
            let st = &self.state[k];
            for (prefix, t) in [("exp_avg", &st.m), ("exp_avg_sq", &st.v)] {
                let data: Vec<f32> = t
                    .to_data()
                    .convert::<f32>()
                    .into_vec()
                    .expect("f32 moments");
                out.push(NamedTensor {
                    name: format!("{prefix}.{k}"),
                    shape: vec![data.len()],
                    data,
                });
            }
        }
        out
    }

    /// Writes the moments to a safetensors file (the step count goes into the checkpoint's state.json).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut meta = BTreeMap::new();
        meta.insert("step".to_string(), self.step.to_string());
        write_safetensors(path, &self.export(), meta)?;
        Ok(())
    }

    /// Restores moments written by [`AdamW::save`]; `step` is the update count stored beside them. Every
    /// path in the file must be a parameter of `expected_paths` (the model being trained).
    pub fn load(
        &mut self,
        path: &Path,
        step: usize,
        expected_paths: &[String],
        device: &B::Device,
    ) -> Result<()> {
        let file = SafetensorsWeights::open_files(&[path.to_path_buf()])?;
        let mut state = HashMap::new();
        for name in file.names() {
            let Some(key) = name.strip_prefix("exp_avg.") else {
                continue;
            };
            if !expected_paths.iter().any(|p| p == key) {
                return Err(DistillError::Resume(format!(
                    "{}: optimizer state for `{key}`, which the model does not have",
                    path.display()
                )));
            }
            let (_, m) = file.read_f32(&name)?;
            let (_, v) = file.read_f32(&format!("exp_avg_sq.{key}"))?;
            let n = m.len();
            state.insert(
                key.to_string(),
                Moments {
                    m: Tensor::from_data(TensorData::new(m, [n]), device),
                    v: Tensor::from_data(TensorData::new(v, [n]), device),
                },
            );
        }
        self.state = state;
        self.step = step;
        Ok(())
    }
}

fn global_norm<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    module: &M,
    grads: &GradientsParams,
) -> f32 {
    struct V<'a, AB: AutodiffBackend> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<AB::InnerBackend, 1>>,
    }
    impl<AB: AutodiffBackend> ModuleVisitor<AB> for V<'_, AB> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
            if let Some(g) = self.grads.get::<AB::InnerBackend, D>(param.id) {
                let s = g.square().sum();
                self.sum = Some(match self.sum.take() {
                    Some(acc) => acc + s,
                    None => s,
                });
            }
        }
    }
    let mut v = V::<AB> { grads, sum: None };
    module.visit(&mut v);
    v.sum
        .map(|s| s.sqrt().into_scalar().elem::<f32>())
        .unwrap_or(0.0)
}

use burn::tensor::ElementConversion;

struct StepMapper<'a, AB: AutodiffBackend> {
    opt: &'a mut AdamW<AB::InnerBackend>,
    grads: &'a mut GradientsParams,
    path: Vec<String>,
    lr: f64,
    coef: f64,
    bc1: f64,
    bc2: f64,
}

impl<AB: AutodiffBackend> ModuleMapper<AB> for StepMapper<'_, AB> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<AB, D>>) -> Param<Tensor<AB, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<AB::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let name = self.path.join(".");
        let s = self.opt.settings;
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let decay = if decays(&name) {
            self.lr * s.weight_decay
        } else {
            0.0
        };
        let scalars = AdamWScalars {
            coef: (self.coef != 1.0).then_some(self.coef as f32),
            beta1: s.beta1 as f32,
            one_minus_beta1: (1.0 - s.beta1) as f32,
            beta2: s.beta2 as f32,
            one_minus_beta2: (1.0 - s.beta2) as f32,
            bc1: self.bc1 as f32,
            bc2: self.bc2 as f32,
            eps: s.eps as f32,
            lr: self.lr as f32,
            keep: (decay != 0.0).then_some((1.0 - decay) as f32),
        };
        let p = tensor.inner().reshape([n]);
        let moments = self.opt.state.remove(&name).map(|st| (st.m, st.v));
        let (p, m, v) = if cpu_optim::fused(&p) {
            cpu_optim::adamw(p, grad.reshape([n]), moments, &scalars)
        } else {
            composed(p, grad.reshape([n]), moments, &scalars)
        };
        self.opt.state.insert(name, Moments { m, v });
        let updated = Tensor::<AB, D>::from_inner(p.reshape(dims)).require_grad();
        Param::from_mapped_value(id, updated, mapper)
    }
}

/// The AdamW update from burn's tensor ops, for backends without [`cpu_optim::adamw`] (which must agree
/// with it bit for bit: a test below checks). Returns `(param, m, v)`.
fn composed<B: Backend>(
    p: Tensor<B, 1>,
    g: Tensor<B, 1>,
    moments: Option<(Tensor<B, 1>, Tensor<B, 1>)>,
    s: &AdamWScalars,
) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
    let g = match s.coef {
        Some(c) => g.mul_scalar(c),
        None => g,
    };
    let (m, v) = match moments {
        Some((m, v)) => (
            m.mul_scalar(s.beta1) + g.clone().mul_scalar(s.one_minus_beta1),
            v.mul_scalar(s.beta2) + g.square().mul_scalar(s.one_minus_beta2),
        ),
        None => (
            g.clone().mul_scalar(s.one_minus_beta1),
            g.square().mul_scalar(s.one_minus_beta2),
        ),
    };
    let update =
        m.clone().div_scalar(s.bc1) / (v.clone().div_scalar(s.bc2).sqrt().add_scalar(s.eps));
    let p = match s.keep {
        Some(k) => p.mul_scalar(k),
        None => p,
    };
    (p - update.mul_scalar(s.lr), m, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_exempts_bias_and_layer_norm() {
        assert!(decays("layers.0.attention.self_attention.query.weight"));
        assert!(decays("embeddings.word_embeddings.weight"));
        assert!(!decays("layers.0.attention.self_attention.query.bias"));
        assert!(!decays("layers.0.feed_forward.layer_norm.gamma"));
        assert!(!decays("embeddings.layer_norm.beta"));
    }

    /// The fused CPU update equals burn's composition bit for bit, over two steps (first and later
    /// moments), with and without clipping and decay, on a tensor large enough to be split across threads.
    #[test]
    fn fused_update_equals_the_composition_bit_for_bit() {
        type F = sekator_model::Cpu;
        let dev = Default::default();
        let n = 3 * (1 << 15) + 7;
        let t = |f: &dyn Fn(usize) -> f32| {
            let v: Vec<f32> = (0..n).map(f).collect();
            Tensor::<F, 1>::from_data(TensorData::new(v, [n]), &dev)
        };
        let bits = |t: &Tensor<F, 1>| -> Vec<u32> {
            t.to_data()
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        };
        for (coef, keep) in [(None, None), (Some(0.37f32), Some(0.999_99f32))] {
            let s = AdamWScalars {
                coef,
                beta1: 0.9,
                one_minus_beta1: (1.0f64 - 0.9) as f32,
                beta2: 0.999,
                one_minus_beta2: (1.0f64 - 0.999) as f32,
                bc1: 0.1,
                bc2: 0.001,
                eps: 1e-6,
                lr: 5e-5,
                keep,
            };
            let p0 = t(&|i| ((i as f32) * 0.013).sin());
            let (mut a, mut b) = ((p0.clone(), None), (p0, None));
            for step in 0..2 {
                let g = t(&|i| ((i * (step + 3)) as f32 * 0.7).cos() * 1e-2);
                let (p, m, v) = cpu_optim::adamw(a.0, g.clone(), a.1, &s);
                a = (p, Some((m, v)));
                let (p, m, v) = composed(b.0, g, b.1, &s);
                b = (p, Some((m, v)));
            }
            let (am, av) = a.1.as_ref().unwrap();
            let (bm, bv) = b.1.as_ref().unwrap();
            assert_eq!(bits(&a.0), bits(&b.0), "parameters");
            assert_eq!(bits(am), bits(bm), "first moments");
            assert_eq!(bits(av), bits(bv), "second moments");
        }
    }
}
