//! The distillation objective.
//!
//! `L = w_mse [MSE(s(en), t(en)) + MSE(s(ru), t(ru))] + w_cross MSE(s(ru), t(en)) + w_rank R(s(en), s(ru))`
//!
//! `s`, `t`: pooled student and teacher embeddings `[batch, hidden]`; MSE is the mean over all elements
//! (torch's `MSELoss`). `R` is the symmetric in-batch translation-ranking loss: cosine similarities of every
//! en with every ru of the batch, times `scale`, softmax cross-entropy with the translation (the diagonal)
//! as the target, averaged over both directions (en->ru rows and ru->en columns).
//!
//! The first two terms keep each language where the teacher puts it; the cross term (Reimers & Gurevych
//! 2020) pulls the Russian sentence to the teacher's vector of its English translation, which is what makes
//! the space cross-lingual; the ranking term cares only about which translation is nearest, the quantity the
//! retrieval evaluation measures.

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
}

/// Host values of [`LossParts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossValues {
    pub total: f32,
    pub mse_en: f32,
    pub mse_ru: f32,
    pub cross: f32,
    pub rank: f32,
}

impl<B: Backend> LossParts<B> {
    /// One device-to-host transfer for all five numbers.
    pub fn values(&self) -> LossValues {
        let all = Tensor::cat(
            vec![
                self.total.clone(),
                self.mse_en.clone(),
                self.mse_ru.clone(),
                self.cross.clone(),
                self.rank.clone(),
            ],
            0,
        );
        let v: Vec<f32> = all
            .into_data()
            .convert::<f32>()
            .into_vec()
            .unwrap_or_else(|_| vec![f32::NAN; 5]);
        LossValues {
            total: v[0],
            mse_en: v[1],
            mse_ru: v[2],
            cross: v[3],
            rank: v[4],
        }
    }
}

pub fn mse<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
    (a - b).square().mean()
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
            normalize: false,
        };
        let v = distill_loss(s_en, s_ru, t_en, t_ru, &w).values();
        assert!((v.mse_en - 0.5).abs() < 1e-6);
        assert!((v.mse_ru - (0.25 + 1.0 + 1.0 + 1.0) / 4.0).abs() < 1e-6);
        assert!((v.cross - (0.25 + 4.0) / 4.0).abs() < 1e-6);
        let want = 2.0 * (v.mse_en + v.mse_ru) + 3.0 * v.cross + 0.5 * v.rank;
        assert!((v.total - want).abs() < 1e-5);
    }
}
