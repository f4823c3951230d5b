//! Micro-batches in flight: one training batch split into row groups whose forward and backward passes run
//! on threads of their own, with the gradient of the whole batch's loss.
//!
//! Why: burn's CPU backend runs only its matmuls on several threads; a distillation batch as one graph left
//! a core idle about a third of the time (2 cores, `scripts/profile.sh`). Two graphs keep both busy.
//!
//! How, exactly: the loss couples the rows of a batch (the ranking term, the batch means), so the loss is
//! not split, only the student. (1) Each micro-batch runs the student to its pooled embeddings `s_i` on a
//! copy whose parameters are fresh autodiff leaves with the original `ParamId`s ([`fresh_leaves`]): burn
//! merges graphs that share a node into one locked graph, which would serialise the passes again.
//! (2) The loss of the whole batch is computed on `s = cat(s_i)` taken as a leaf, giving `dL/ds`.
//! (3) Each micro-batch backpropagates `sum(s_i * dL/ds_i)`: by the chain rule its parameter gradients are
//! its rows' share of `dL/dθ`. (4) The shares are summed in micro-batch order ([`sum_in_order`]). The
//! result is the one-graph gradient up to float rounding, and the same bits on every run whatever the
//! threads' timing, since nothing depends on which finishes first.

use std::sync::Mutex;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use sekator_model::backend;

use crate::error::Result;
use crate::loss::{LossParts, LossValues};

/// `idx` cut into `n` contiguous groups whose sizes differ by at most one (fewer when `idx` is shorter).
pub fn split(idx: &[usize], n: usize) -> Vec<&[usize]> {
    let n = n.clamp(1, idx.len().max(1));
    let (base, extra) = (idx.len() / n, idx.len() % n);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for i in 0..n {
        let len = base + usize::from(i < extra);
        out.push(&idx[start..start + len]);
        start += len;
    }
    out
}

/// The same module whose trainable parameters are new autodiff leaves (same values, same storage, same
/// `ParamId`s), so that its graph shares no node with the original's or with another copy's.
pub fn fresh_leaves<B: AutodiffBackend, M: Module<B>>(module: &M) -> M {
    struct Fresh;
    impl<B: AutodiffBackend> ModuleMapper<B> for Fresh {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, t, mapper) = p.consume();
            let tracked = t.is_require_grad();
            let leaf = Tensor::from_inner(t.inner());
            let leaf = if tracked { leaf.require_grad() } else { leaf };
            Param::from_mapped_value(id, leaf, mapper)
        }
    }
    module.clone().map(&mut Fresh)
}

/// The gradients of `parts`, parameter by parameter summed in the order of `parts`.
pub fn sum_in_order<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    parts: Vec<GradientsParams>,
) -> GradientsParams {
    struct Sum {
        parts: Vec<GradientsParams>,
        out: GradientsParams,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Sum {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let mut acc: Option<Tensor<B::InnerBackend, D>> = None;
            for part in &mut self.parts {
                if let Some(g) = part.remove::<B::InnerBackend, D>(p.id) {
                    acc = Some(match acc {
                        Some(a) => a + g,
                        None => g,
                    });
                }
            }
            if let Some(a) = acc {
                self.out.register::<B::InnerBackend, D>(p.id, a);
            }
        }
    }
    let mut sum = Sum {
        parts,
        out: GradientsParams::new(),
    };
    module.visit(&mut sum);
    sum.out
}

/// One micro-batch's student outputs, graph attached: the en and ru pooled embeddings `[rows, dim]`.
pub struct Pooled<B: AutodiffBackend> {
    pub en: Tensor<B, 2>,
    pub ru: Tensor<B, 2>,
}

/// A micro-batch's model copy (its fresh leaves) and its pooled embeddings.
type Forwarded<B> = (M<B>, Pooled<B>);

/// The loss values and parameter gradients of one batch, `idx` run as `micro` micro-batches in flight.
///
/// `forward(model, rows)` gives the pooled embeddings of those rows through `model` (a [`fresh_leaves`]
/// copy); `loss(s_en, s_ru)` is the whole batch's loss on them.
pub fn step<B, F, L>(
    model: &M<B>,
    idx: &[usize],
    micro: usize,
    forward: F,
    loss: L,
) -> Result<(LossValues, GradientsParams)>
where
    B: AutodiffBackend,
    F: Fn(&M<B>, &[usize]) -> Result<Pooled<B>> + Sync,
    L: FnOnce(Tensor<B, 2>, Tensor<B, 2>) -> LossParts<B>,
{
    let chunks = split(idx, micro);
    let workers = backend::concurrent_batches::<B>();
    let mut outs: Vec<Option<Result<Forwarded<B>>>> = (0..chunks.len()).map(|_| None).collect();
    backend::in_flight(
        chunks.len(),
        workers,
        |i| {
            let copy = fresh_leaves(model);
            forward(&copy, chunks[i]).map(|p| (copy, p))
        },
        |i, r| outs[i] = Some(r),
    );
    let outs: Vec<Forwarded<B>> = outs
        .into_iter()
        .map(|o| o.expect("every micro-batch ran"))
        .collect::<Result<_>>()?;
    let leaf = |side: fn(&Pooled<B>) -> &Tensor<B, 2>| {
        let rows = outs.iter().map(|(_, p)| side(p).clone().detach()).collect();
        Tensor::cat(rows, 0).require_grad()
    };
    let (s_en, s_ru) = (leaf(|p| &p.en), leaf(|p| &p.ru));
    let parts = loss(s_en.clone(), s_ru.clone());
    let values = parts.values();
    let g = parts.total.backward();
    let grad_of = |t: &Tensor<B, 2>| t.grad(&g).unwrap_or_else(|| t.clone().inner().zeros_like());
    let (g_en, g_ru) = (grad_of(&s_en), grad_of(&s_ru));
    let slots: Vec<Mutex<Option<Forwarded<B>>>> =
        outs.into_iter().map(|o| Mutex::new(Some(o))).collect();
    let offsets: Vec<usize> = chunks
        .iter()
        .scan(0, |at, c| {
            let start = *at;
            *at += c.len();
            Some(start)
        })
        .collect();
    let mut shares: Vec<Option<GradientsParams>> = (0..chunks.len()).map(|_| None).collect();
    backend::in_flight(
        chunks.len(),
        workers,
        |i| {
            let (copy, p) = slots[i]
                .lock()
                .expect("one taker")
                .take()
                .expect("taken once");
            let rows = offsets[i]..offsets[i] + chunks[i].len();
            let ge = Tensor::<B, 2>::from_inner(g_en.clone().slice([rows.clone()]));
            let gr = Tensor::<B, 2>::from_inner(g_ru.clone().slice([rows]));
            let surrogate = (p.en * ge).sum() + (p.ru * gr).sum();
            GradientsParams::from_grads(surrogate.backward(), &copy)
        },
        |i, g| shares[i] = Some(g),
    );
    let shares = shares
        .into_iter()
        .map(|s| s.expect("every micro-batch ran"))
        .collect();
    Ok((values, sum_in_order(model, shares)))
}

/// The student type the distillation trains.
type M<B> = sekator_model::BertModel<B>;

#[cfg(test)]
mod tests {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::backend::AutodiffBackend;
    use burn::tensor::{Int, Tensor, TensorData};
    use sekator_model::testing::tiny_config;
    use sekator_model::weights::RandomWeights;
    use sekator_model::{pooling, BertModel, CpuAutodiff, Pooling};

    use super::{split, step, Pooled};
    use crate::loss::{distill_loss, LossWeights};

    type B = CpuAutodiff;
    type Inner = <B as AutodiffBackend>::InnerBackend;

    #[test]
    fn split_covers_every_row_once_in_order() {
        let idx: Vec<usize> = (10..17).collect();
        let parts = split(&idx, 3);
        assert_eq!(parts, vec![&idx[0..3], &idx[3..5], &idx[5..7]]);
        assert_eq!(split(&idx, 1), vec![&idx[..]]);
        assert_eq!(split(&idx[..2], 4).len(), 2);
    }

    /// Token ids of row `r` (lengths 3 to 8, so micro-batches pad differently from the whole batch).
    fn row(r: usize, salt: usize) -> Vec<i32> {
        (0..3 + (r * 5 + salt) % 6)
            .map(|j| (5 + (r * 7 + j * 3 + salt) % 150) as i32)
            .collect()
    }

    fn pooled(model: &BertModel<B>, idx: &[usize], salt: usize) -> Tensor<B, 2> {
        let rows: Vec<Vec<i32>> = idx.iter().map(|&r| row(r, salt)).collect();
        let seq = rows.iter().map(Vec::len).max().unwrap();
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for r in &rows {
            ids.extend(
                r.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, seq - r.len())),
            );
            mask.extend((0..seq).map(|j| if j < r.len() { 1.0f32 } else { 0.0 }));
        }
        let dev = Default::default();
        let shape = [rows.len(), seq];
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, shape), &dev);
        let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, shape), &dev);
        let hidden = model.forward(ids, mask.clone(), None);
        pooling::pool(model, &hidden, &mask, Pooling::Mean).unwrap()
    }

    /// The gradients two sets hold for each parameter of a module (parameters with neither are skipped).
    struct Collect<'a> {
        a: &'a GradientsParams,
        b: &'a GradientsParams,
        pairs: Vec<(Vec<f32>, Vec<f32>)>,
    }

    impl ModuleVisitor<B> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let get = |g: &GradientsParams| {
                g.get::<Inner, D>(p.id)
                    .map(|t| t.into_data().to_vec::<f32>().unwrap())
            };
            match (get(self.a), get(self.b)) {
                (Some(a), Some(b)) => self.pairs.push((a, b)),
                (None, None) => {}
                _ => panic!("a gradient in one set only"),
            }
        }
    }

    /// Largest difference relative to each parameter's largest gradient, floored at 1e-3 of the model's
    /// largest (the key biases' gradients are exactly 0 in exact arithmetic: softmax ignores a constant
    /// per query, so they hold rounding noise only).
    fn worst_relative(pairs: &[(Vec<f32>, Vec<f32>)]) -> f32 {
        let max = |v: &[f32]| v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let global = pairs.iter().map(|(a, _)| max(a)).fold(0.0, f32::max);
        let mut worst = 0.0f32;
        for (a, b) in pairs {
            let scale = max(a).max(1e-3 * global);
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs() / scale);
            }
        }
        worst
    }

    #[test]
    fn micro_batch_gradients_equal_the_one_graph_gradients() {
        let dev = Default::default();
        let model =
            BertModel::<B>::load(&tiny_config(2), &mut RandomWeights::new(3), &dev).unwrap();
        let idx: Vec<usize> = (0..7).collect();
        let target = |salt: f32| {
            let v: Vec<f32> = (0..7 * 32)
                .map(|i| ((i as f32) * 0.37 + salt).sin())
                .collect();
            Tensor::<B, 2>::from_data(TensorData::new(v, [7, 32]), &dev)
        };
        // the ranking term couples the rows: the case a split loss would get wrong
        let w = LossWeights {
            mse: 1.0,
            cross: 1.0,
            rank: 0.5,
            rank_scale: 20.0,
            tokens: 0.0,
            normalize: false,
        };
        let loss = |e, r| distill_loss(e, r, target(0.0), target(1.0), &w);
        let whole = loss(pooled(&model, &idx, 0), pooled(&model, &idx, 1));
        let whole_loss = whole.values().total;
        let one = GradientsParams::from_grads(whole.total.backward(), &model);
        let forward = |m: &BertModel<B>, rows: &[usize]| {
            Ok(Pooled {
                en: pooled(m, rows, 0),
                ru: pooled(m, rows, 1),
            })
        };
        for micro in [2, 3] {
            let (values, grads) = step(&model, &idx, micro, forward, loss).unwrap();
            assert!((values.total - whole_loss).abs() <= 1e-6 * whole_loss.abs());
            let mut cmp = Collect {
                a: &one,
                b: &grads,
                pairs: Vec::new(),
            };
            model.visit(&mut cmp);
            // every parameter but the unused pooler (2 tensors) has a gradient
            assert!(
                cmp.pairs.len() >= 30,
                "{} gradients compared",
                cmp.pairs.len()
            );
            let worst = worst_relative(&cmp.pairs);
            assert!(
                worst <= 1e-5,
                "{micro} micro-batches: worst relative diff {worst}"
            );
        }
    }
}
