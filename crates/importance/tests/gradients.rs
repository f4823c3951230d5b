//! Acceptance 1: mask gradients from burn's autodiff agree with central finite differences (f32, tiny model).

mod common;

use burn::module::{AutodiffModule, Module};
use sekator_importance::loss::{self, host, LossSpec};
use sekator_importance::LossKind;
use sekator_model::rng::SplitMix64;
use sekator_model::testing::{tiny_config, write_random_model_from};
use sekator_model::weights::RandomWeights;
use sekator_model::{CpuAutodiff, Encoder, Pooling, UnitMasks};

use common::B;

type AD = CpuAutodiff;

/// Finite differences in f64 (forward only; burn-flex is f32-only, burn-ndarray has f64).
type B64 = burn::backend::NdArray<f64>;

const WEIGHT_STD: f32 = 0.5;

/// |a - b| / max(|a|, |b|).
fn rel(a: f64, b: f64) -> f64 {
    let d = (a - b).abs();
    if d == 0.0 {
        0.0
    } else {
        d / a.abs().max(b.abs())
    }
}

/// Central difference with one Richardson step: (4 D(h/2) - D(h)) / 3 cancels the h^2 truncation term, which
/// the saturated softmax/tanh of a random model makes large at h = 1e-2, while h stays far above f32 rounding.
fn richardson(d: impl Fn(f32) -> f64, h: f32) -> f64 {
    (4.0 * d(h / 2.0) - d(h)) / 3.0
}

fn check(kind: LossKind, pooling: Pooling) {
    let dir = tempfile::tempdir().unwrap();
    let dev = Default::default();
    // Weights with std 0.5 (not 0.1): the smallest mask gradients must stand well above what f32 rounding
    // does to a finite difference (about ulp(loss) / eps ~ 1e-5 here).
    let model = dir.path().join("student");
    let mut w = RandomWeights::new(5);
    w.std = WEIGHT_STD;
    write_random_model_from::<B>(&model, &tiny_config(2), w, &dev).unwrap();
    let mut enc = Encoder::<AD>::load(&model, &dev).unwrap();
    enc.model = enc.model.clone().no_grad();
    let pairs = common::pairs(8);
    let mut batches = loss::prepare_batches(&enc, &pairs, 8, 32).unwrap();
    if kind == LossKind::Teacher {
        let t = dir.path().join("teacher");
        let mut w = RandomWeights::new(6);
        w.std = WEIGHT_STD;
        write_random_model_from::<B>(&t, &tiny_config(2), w, &dev).unwrap();
        let teacher = Encoder::<B>::load(&t, &dev).unwrap();
        loss::add_teacher_targets(&teacher, &mut batches, pooling);
    }
    if kind == LossKind::Contrastive {
        // the model's own unmasked vectors, as `importance --loss contrastive` does without --teacher
        let own = Encoder::<B>::load(&model, &dev).unwrap();
        loss::add_teacher_targets(&own, &mut batches, pooling);
    }
    let spec = LossSpec {
        kind,
        scale: 20.0,
        pooling,
    };
    let batch = &batches[0];
    let g = loss::mask_gradients(&enc.model, batch, &spec, false, &dev);

    let inner = enc.model.valid();
    let heads = inner.num_heads();
    let ffn = inner.ffn_sizes();
    // The reference: the same f32 checkpoint evaluated in f64, so finite differences are not swamped by f32
    // rounding of the loss (ulp(2.3) / 1e-2 is already 2e-5, the size of the smallest FFN gradients).
    let dev64 = Default::default();
    let enc64 = Encoder::<B64>::load(&model, &dev64).unwrap();
    let loss_at = |hv: &[Vec<f32>], fv: &[Vec<f32>]| -> f64 {
        let m = UnitMasks::<B64>::from_values(hv, fv, &dev64);
        loss::batch_loss(&enc64.model, batch, &spec, Some(&m), &dev64)
            .into_data()
            .convert::<f64>()
            .into_vec::<f64>()
            .unwrap()[0]
    };
    let ones_h: Vec<Vec<f32>> = heads.iter().map(|&n| vec![1.0; n]).collect();
    let ones_f: Vec<Vec<f32>> = ffn.iter().map(|&n| vec![1.0; n]).collect();
    let base = loss_at(&ones_h, &ones_f);
    assert!(
        (base - g.loss as f64).abs() < 1e-5 * base.abs().max(1.0),
        "loss with ones masks {base} vs {}",
        g.loss
    );

    if kind == LossKind::Contrastive {
        let largest = g.heads.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
        assert!(
            base > 0.01 && largest > 1e-4,
            "loss {base}, largest head gradient {largest}"
        );
    }
    let eps = 1e-2f32;
    let mut worst = 0.0f64;
    for (l, &n) in heads.iter().enumerate() {
        for h in 0..n {
            let fd = richardson(
                |e| {
                    let mut hp = ones_h.clone();
                    hp[l][h] += e;
                    let mut hm = ones_h.clone();
                    hm[l][h] -= e;
                    (loss_at(&hp, &ones_f) - loss_at(&hm, &ones_f)) / (2.0 * e as f64)
                },
                eps,
            );
            let ad = g.heads[l][h] as f64;
            let r = rel(ad, fd);
            worst = worst.max(r);
            assert!(r <= 1e-2, "{kind:?}/{pooling}: head L{l}H{h}: autodiff {ad:.6e}, finite difference {fd:.6e}, rel {r:.2e}");
        }
    }
    let mut rng = SplitMix64::new(17);
    for (l, &n) in ffn.iter().enumerate() {
        for _ in 0..6 {
            let i = rng.below(n);
            let fd = richardson(
                |e| {
                    let mut fp = ones_f.clone();
                    fp[l][i] += e;
                    let mut fm = ones_f.clone();
                    fm[l][i] -= e;
                    (loss_at(&ones_h, &fp) - loss_at(&ones_h, &fm)) / (2.0 * e as f64)
                },
                eps,
            );
            let ad = g.ffn[l][i] as f64;
            let r = rel(ad, fd);
            worst = worst.max(r);
            assert!(r <= 1e-2, "{kind:?}/{pooling}: FFN L{l}N{i}: autodiff {ad:.6e}, finite difference {fd:.6e}, rel {r:.2e}");
        }
    }
    eprintln!("{kind:?}/{pooling}: loss {base:.4}, worst relative error {worst:.2e}");
}

#[test]
fn ranking_loss_gradients_match_finite_differences() {
    check(LossKind::Ranking, Pooling::Mean);
    check(LossKind::Ranking, Pooling::Pooler);
}

#[test]
fn contrastive_loss_gradients_match_finite_differences() {
    // against the model itself: the loss is positive and its gradients are not zero at ones masks
    check(LossKind::Contrastive, Pooling::Mean);
}

#[test]
fn teacher_loss_gradients_match_finite_differences() {
    check(LossKind::Teacher, Pooling::Cls);
}

#[test]
fn ranking_loss_is_log_n_for_orthogonal_and_small_for_aligned() {
    use burn::tensor::{Tensor, TensorData};
    let dev = Default::default();
    let eye = |n: usize| {
        Tensor::<B, 2>::from_data(
            TensorData::new(
                (0..n * n)
                    .map(|i| if i / n == i % n { 1.0f32 } else { 0.0 })
                    .collect::<Vec<_>>(),
                [n, n],
            ),
            &dev,
        )
    };
    // identical unit vectors per pair, orthogonal across pairs: loss = log(1 + (n-1) e^-scale)
    let l = host(loss::ranking_loss(eye(4), eye(4), 20.0))[0] as f64;
    let want = (1.0 + 3.0 * (-20.0f64).exp()).ln();
    assert!((l - want).abs() < 1e-6, "{l} vs {want}");
    // all embeddings equal: every candidate equally likely, loss = log n
    let same = Tensor::<B, 2>::ones([4, 4], &dev);
    let l = host(loss::ranking_loss(same.clone(), same, 20.0))[0] as f64;
    assert!((l - 4f64.ln()).abs() < 1e-5, "{l}");
}

/// The residual-stream (width) mask (`importance --hidden`): its gradient through the masked LayerNorms
/// and the pooled vector agrees with finite differences, with mean pooling and with the pooler; the head
/// gradients stay those of the run without it (the hidden mask at ones changes no value).
#[test]
fn hidden_mask_gradients_match_finite_differences() {
    for (pooling, seed) in [(Pooling::Mean, 7), (Pooling::Pooler, 8)] {
        let dir = tempfile::tempdir().unwrap();
        let dev = Default::default();
        let model = dir.path().join("student");
        let mut w = RandomWeights::new(seed);
        w.std = WEIGHT_STD;
        write_random_model_from::<B>(&model, &tiny_config(2), w, &dev).unwrap();
        let mut enc = Encoder::<AD>::load(&model, &dev).unwrap();
        enc.model = enc.model.clone().no_grad();
        let mut batches = loss::prepare_batches(&enc, &common::pairs(8), 8, 32).unwrap();
        let own = Encoder::<B>::load(&model, &dev).unwrap();
        loss::add_teacher_targets(&own, &mut batches, pooling);
        let spec = LossSpec {
            kind: LossKind::Contrastive,
            scale: 20.0,
            pooling,
        };
        let batch = &batches[0];
        let g = loss::mask_gradients(&enc.model, batch, &spec, true, &dev);
        let plain = loss::mask_gradients(&enc.model, batch, &spec, false, &dev);
        assert!(plain.hidden.is_empty());
        assert_eq!(g.hidden.len(), 32);
        let top = plain
            .heads
            .iter()
            .flatten()
            .fold(0f32, |m, x| m.max(x.abs()));
        let dh = g
            .heads
            .iter()
            .flatten()
            .zip(plain.heads.iter().flatten())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            / top;
        assert!(
            dh <= 1e-4,
            "head gradients moved by {dh:e} of the largest under the hidden mask"
        );

        let dev64 = Default::default();
        let enc64 = Encoder::<B64>::load(&model, &dev64).unwrap();
        let (nh, nf) = (enc64.model.num_heads(), enc64.model.ffn_sizes());
        let loss_at = |m: Vec<f32>| -> f64 {
            let masks = UnitMasks::<B64>::from_values(
                &vec![vec![]; nh.len()],
                &vec![vec![]; nf.len()],
                &dev64,
            )
            .with_hidden(sekator_model::layers::tensor1(m, &dev64));
            loss::batch_loss(&enc64.model, batch, &spec, Some(&masks), &dev64)
                .into_data()
                .convert::<f64>()
                .into_vec::<f64>()
                .unwrap()[0]
        };
        let mut worst = 0.0f64;
        for d in 0..32 {
            let fd = richardson(
                |e| {
                    let mut p = vec![1.0f32; 32];
                    p[d] += e;
                    let mut m = vec![1.0f32; 32];
                    m[d] -= e;
                    (loss_at(p) - loss_at(m)) / (2.0 * e as f64)
                },
                1e-2,
            );
            let ad = g.hidden[d] as f64;
            let r = rel(ad, fd);
            worst = worst.max(r);
            assert!(
                r <= 1e-2,
                "{pooling}: dimension {d}: autodiff {ad:.6e}, finite difference {fd:.6e}"
            );
        }
        eprintln!("hidden mask/{pooling}: worst relative error {worst:.2e}");
    }
}
