//! The distillation objective.
//!
//! ```text
//! L = w_mse [MSE(s(en), t(en)) + MSE(s(ru), t(ru))] + w_cross MSE(s(ru), t(en)) + w_rank R(s(en), s(ru))
//!   + w_tokens [TMSE(S(en), T(en)) + TMSE(S(ru), T(ru))]
//! ```
//!
//! `s`, `t`: pooled student and teacher embeddings `[batch, hidden]`; MSE is the mean over all elements
//! (torch's `MSELoss`). `R` is the symmetric in-batch translation-ranking loss: cosine similarities of
//! every en with every ru of the batch, times `scale`, softmax cross-entropy with the translation (the
//! diagonal) as the target, averaged over both directions (en->ru rows and ru->en columns). `S`, `T`: the
//! last-layer hidden states `[batch, seq, hidden]`; TMSE is their MSE over the non-padding tokens only
//! ([`masked_token_mse`]).
//!
//! The first two terms keep each language where the teacher puts it; the cross term (Reimers & Gurevych
//! 2020) pulls the Russian sentence to the teacher's vector of its English translation, which is what makes
//! the space cross-lingual; the ranking term cares only about which translation is nearest, the quantity the
//! retrieval evaluation measures. The token term (hidden-state distillation, as in TinyBERT) gives the
//! student a target for every token rather than one per sentence, more signal per pair; it needs the
//! teacher online each step (see `train.rs`), so it is off by default.

use burn::tensor::{backend::Backend, Tensor};

use sekator_model::pooling::l2_normalize;

/// The ranking term, shared with importance.
pub use sekator_model::losses::ranking_loss;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    pub mse: f64,
    pub cross: f64,
    pub rank: f64,
    pub rank_scale: f64,
    /// Weight of the token-level hidden-state term (0: not computed at all).
    pub tokens: f64,
    /// L2-normalise both sides before the MSE terms.
    pub normalize: bool,
}

/// The total (for backward) and its unweighted parts (for logging).
pub struct LossParts<B: Backend> {
    pub total: Tensor<B, 1>,
    pub mse_en: Tensor<B, 1>,
    pub mse_ru: Tensor<B, 1>,
    pub cross: Tensor<B, 1>,
    pub rank: Tensor<B, 1>,
    /// `TMSE(en) + TMSE(ru)`; zero when the run has no token term.
    pub tokens: Tensor<B, 1>,
}

/// Host values of [`LossParts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossValues {
    pub total: f32,
    pub mse_en: f32,
    pub mse_ru: f32,
    pub cross: f32,
    pub rank: f32,
    /// Absent from metrics and checkpoints written before the token term existed.
    #[serde(default)]
    pub tokens: f32,
}

impl<B: Backend> LossParts<B> {
    /// One device-to-host transfer for all six numbers.
    pub fn values(&self) -> LossValues {
        let all = Tensor::cat(
            vec![
                self.total.clone(),
                self.mse_en.clone(),
                self.mse_ru.clone(),
                self.cross.clone(),
                self.rank.clone(),
                self.tokens.clone(),
            ],
            0,
        );
        let v: Vec<f32> = all
            .into_data()
            .convert::<f32>()
            .into_vec()
            .unwrap_or_else(|_| vec![f32::NAN; 6]);
        LossValues {
            total: v[0],
            mse_en: v[1],
            mse_ru: v[2],
            cross: v[3],
            rank: v[4],
            tokens: v[5],
        }
    }

    /// Adds the token term `tokens` (unweighted) with weight `w`.
    pub fn with_tokens(self, tokens: Tensor<B, 1>, w: f64) -> Self {
        Self {
            total: self.total + tokens.clone().mul_scalar(w),
            tokens,
            ..self
        }
    }
}

pub fn mse<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
    (a - b).square().mean()
}

/// MSE of hidden states `a`, `b` `[batch, seq, hidden]` over the tokens `mask` `[batch, seq]` keeps (1;
/// padding 0): the mean over kept tokens × hidden, so padding neither counts nor dilutes the mean.
pub fn masked_token_mse<B: Backend>(
    a: Tensor<B, 3>,
    b: Tensor<B, 3>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [batch, seq, hidden] = a.dims();
    let m = mask.unsqueeze_dim::<3>(2);
    let kept = m.clone().sum().mul_scalar(hidden as f64);
    ((a - b).square() * m.expand([batch, seq, hidden])).sum() / kept
}

pub fn distill_loss<B: Backend>(
    s_en: Tensor<B, 2>,
    s_ru: Tensor<B, 2>,
    t_en: Tensor<B, 2>,
    t_ru: Tensor<B, 2>,
    w: &LossWeights,
) -> LossParts<B> {
    let rank = ranking_loss(s_en.clone(), s_ru.clone(), w.rank_scale);
    let (s_en, s_ru, t_en, t_ru) = if w.normalize {
        (
            l2_normalize(s_en),
            l2_normalize(s_ru),
            l2_normalize(t_en),
            l2_normalize(t_ru),
        )
    } else {
        (s_en, s_ru, t_en, t_ru)
    };
    let mse_en = mse(s_en, t_en.clone());
    let mse_ru = mse(s_ru.clone(), t_ru);
    let cross = mse(s_ru, t_en);
    let total = (mse_en.clone() + mse_ru.clone()).mul_scalar(w.mse)
        + cross.clone().mul_scalar(w.cross)
        + rank.clone().mul_scalar(w.rank);
    LossParts {
        tokens: total.zeros_like(),
        total,
        mse_en,
        mse_ru,
        cross,
        rank,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use sekator_model::Cpu;

    fn t(rows: &[[f32; 2]]) -> Tensor<Cpu, 2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 2]), &Default::default())
    }

    #[test]
    fn ranking_loss_matches_hand_computation() {
        // a = b = two orthogonal unit vectors: sims = scale * I.
        let a = t(&[[1.0, 0.0], [0.0, 1.0]]);
        let l: f32 = ranking_loss(a.clone(), a, 2.0).into_scalar();
        // CE row 0: -log(e^2 / (e^2 + e^0)) = log(1 + e^-2)
        let want = (1.0f32 + (-2.0f32).exp()).ln();
        assert!((l - want).abs() < 1e-6, "{l} vs {want}");
    }

    #[test]
    fn ranking_loss_is_symmetric_average() {
        let a = t(&[[1.0, 0.2], [0.3, 1.0], [-1.0, 0.5]]);
        let b = t(&[[0.9, 0.1], [0.1, 1.0], [-0.2, 0.4]]);
        let ab: f32 = ranking_loss(a.clone(), b.clone(), 20.0).into_scalar();
        let ba: f32 = ranking_loss(b, a, 20.0).into_scalar();
        assert!((ab - ba).abs() < 1e-5);
    }

    #[test]
    fn loss_zero_when_student_equals_teacher_and_weights_mse_only() {
        let e = t(&[[1.0, 2.0], [3.0, 4.0]]);
        let w = LossWeights {
            mse: 1.0,
            cross: 0.0,
            rank: 0.0,
            rank_scale: 20.0,
            tokens: 0.0,
            normalize: false,
        };
        let p = distill_loss(e.clone(), e.clone(), e.clone(), e, &w);
        assert_eq!(p.values().total, 0.0);
        assert!(p.values().rank > 0.0);
    }

    #[test]
    fn weights_combine_parts() {
        let s_en = t(&[[1.0, 0.0], [0.0, 1.0]]);
        let s_ru = t(&[[0.5, 0.0], [0.0, 2.0]]);
        let t_en = t(&[[0.0, 0.0], [0.0, 0.0]]);
        let t_ru = t(&[[1.0, 1.0], [1.0, 1.0]]);
        let w = LossWeights {
            mse: 2.0,
            cross: 3.0,
            rank: 0.5,
            rank_scale: 20.0,
            tokens: 0.0,
            normalize: false,
        };
        let v = distill_loss(s_en, s_ru, t_en, t_ru, &w).values();
        assert!((v.mse_en - 0.5).abs() < 1e-6);
        assert!((v.mse_ru - (0.25 + 1.0 + 1.0 + 1.0) / 4.0).abs() < 1e-6);
        assert!((v.cross - (0.25 + 4.0) / 4.0).abs() < 1e-6);
        let want = 2.0 * (v.mse_en + v.mse_ru) + 3.0 * v.cross + 0.5 * v.rank;
        assert!((v.total - want).abs() < 1e-5);
    }

    fn t3(flat: Vec<f32>, shape: [usize; 3]) -> Tensor<Cpu, 3> {
        Tensor::from_data(TensorData::new(flat, shape), &Default::default())
    }

    #[test]
    fn masked_token_mse_ignores_padding() {
        // [2 texts, 3 positions, 2 hidden]; text 0 has 3 tokens, text 1 has 1 (2 padding positions).
        let a = t3(
            vec![1., 2., 3., 4., 5., 6., 7., 8., 100., 100., -50., 9.],
            [2, 3, 2],
        );
        let b = t3(
            vec![0., 2., 3., 1., 5., 8., 6., 8., 0., 0., 0., 0.],
            [2, 3, 2],
        );
        let mask = Tensor::<Cpu, 2>::from_data(
            TensorData::new(vec![1f32, 1., 1., 1., 0., 0.], [2, 3]),
            &Default::default(),
        );
        // kept squared differences: 1, 0 | 0, 9 | 0, 4 | 1, 0 over 4 tokens x 2 hidden
        let want = (1.0 + 9.0 + 4.0 + 1.0) / 8.0;
        let got: f32 = masked_token_mse(a.clone(), b.clone(), mask.clone()).into_scalar();
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // the padding positions' values do not matter
        let b2 = t3(
            vec![0., 2., 3., 1., 5., 8., 6., 8., 7., -7., 1e3, 2.],
            [2, 3, 2],
        );
        let again: f32 = masked_token_mse(a, b2, mask).into_scalar();
        assert_eq!(got, again);
    }

    #[test]
    fn masked_token_mse_gradient_is_zero_on_padding() {
        type A = sekator_model::CpuAutodiff;
        let dev = Default::default();
        let a = Tensor::<A, 3>::from_data(TensorData::new(vec![1f32, 2., 3., 4.], [1, 2, 2]), &dev)
            .require_grad();
        let b = Tensor::<A, 3>::from_data(TensorData::new(vec![0f32, 0., 9., 9.], [1, 2, 2]), &dev);
        let mask = Tensor::<A, 2>::from_data(TensorData::new(vec![1f32, 0.], [1, 2]), &dev);
        let grads = masked_token_mse(a.clone(), b, mask).backward();
        let g: Vec<f32> = a.grad(&grads).unwrap().into_data().into_vec().unwrap();
        // d/da of ((a-b)^2 summed over the kept token) / 2 = (a - b) on it, 0 on the padding
        assert_eq!(g, vec![1.0, 2.0, 0.0, 0.0]);
    }

    #[test]
    fn token_term_adds_weighted() {
        let e = t(&[[1.0, 2.0], [3.0, 4.0]]);
        let w = LossWeights {
            mse: 1.0,
            cross: 0.0,
            rank: 0.0,
            rank_scale: 20.0,
            tokens: 0.5,
            normalize: false,
        };
        let base = distill_loss(e.clone(), e.clone(), e.clone(), e.clone(), &w);
        assert_eq!(base.values().tokens, 0.0);
        let tok = Tensor::<Cpu, 1>::from_floats([3.0], &Default::default());
        let v = base.with_tokens(tok, w.tokens).values();
        assert_eq!((v.tokens, v.total), (3.0, 1.5));
    }
}
