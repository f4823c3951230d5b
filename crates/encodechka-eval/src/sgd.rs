//! encodechka's NER classifier: `SGDClassifier(loss="log_loss", shuffle=True, random_state=1, tol=1e-4,
//! early_stopping=False)`, i.e. one-vs-rest logistic models trained by plain SGD with the "optimal" learning
//! rate, L2 alpha = 1e-4, at most 1000 epochs and 5 epochs without improvement to stop.
//!
//! SGD depends on the visiting order, so this follows scikit-learn step by step: class `i` gets the seed
//! `RandomState(1).randint(2**31-1, size=n_classes)[i]`; from that seed `make_dataset` draws one number and
//! `fit_binary` draws the shuffle seed; every epoch shuffles the (already shuffled) index array with
//! `our_rand_r` seeded by that same value; the weight vector is kept as `wscale · w` as in `WeightVector64`.
//! Rows are stored as f32 and read as f64, which is exactly what sklearn's float64 conversion does.

use rayon::prelude::*;

use crate::numpy_rng::RandomState;

const MAX_INT: i64 = i32::MAX as i64;

/// When an epoch counts as "no improvement".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopRule {
    /// scikit-learn ≥ 1.8: the epoch's mean objective (loss + alpha/2·‖w‖², summed per sample) did not drop
    /// by `tol` below the best so far.
    Objective,
    /// Older scikit-learn (what the published encodechka numbers ran on): the epoch's summed loss did not
    /// drop by `tol · n` below the best so far.
    LossSum,
}

#[derive(Clone, Debug)]
pub struct SgdConfig {
    pub alpha: f64,
    pub tol: f64,
    pub max_iter: usize,
    pub n_iter_no_change: usize,
    pub seed: u32,
    pub stop: StopRule,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            alpha: 1e-4,
            tol: 1e-4,
            max_iter: 1000,
            n_iter_no_change: 5,
            seed: 1,
            stop: StopRule::Objective,
        }
    }
}

/// Row-major f32 features.
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub dim: usize,
}

impl Rows<'_> {
    fn len(&self) -> usize {
        self.data.len() / self.dim
    }
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// One-vs-rest linear model (one row per class; a single row when there are two classes).
#[derive(Clone, Debug)]
pub struct SgdClassifier {
    pub coef: Vec<Vec<f64>>,
    pub intercept: Vec<f64>,
    pub epochs: Vec<usize>,
}

impl SgdClassifier {
    /// Fits on `x` with labels in `0..n_classes` (classes in sklearn's sorted order).
    pub fn fit(x: &Rows, y: &[usize], n_classes: usize, cfg: &SgdConfig) -> Self {
        assert_eq!(x.len(), y.len(), "SGD: rows and labels differ");
        assert!(n_classes >= 2, "SGD needs at least two classes");
        if n_classes == 2 {
            // sklearn's binary path: class 1 is positive and the estimator's own random_state seeds it.
            let (w, b, e) = fit_binary(x, y, 1, cfg.seed, cfg);
            return Self {
                coef: vec![w],
                intercept: vec![b],
                epochs: vec![e],
            };
        }
        let mut rs = RandomState::new(cfg.seed);
        let seeds: Vec<u32> = (0..n_classes)
            .map(|_| rs.randint(0, MAX_INT) as u32)
            .collect();
        let fits: Vec<(Vec<f64>, f64, usize)> = (0..n_classes)
            .into_par_iter()
            .map(|c| fit_binary(x, y, c, seeds[c], cfg))
            .collect();
        let mut model = Self {
            coef: vec![],
            intercept: vec![],
            epochs: vec![],
        };
        for (w, b, e) in fits {
            model.coef.push(w);
            model.intercept.push(b);
            model.epochs.push(e);
        }
        model
    }

    /// `argmax` of the class scores (first on ties); binary: class 1 iff its score is > 0.
    pub fn predict(&self, x: &Rows) -> Vec<usize> {
        (0..x.len())
            .map(|i| {
                let row = x.row(i);
                let scores: Vec<f64> = self
                    .coef
                    .iter()
                    .zip(&self.intercept)
                    .map(|(w, b)| dot(w, row) + b)
                    .collect();
                if scores.len() == 1 {
                    usize::from(scores[0] > 0.0)
                } else {
                    let mut best = 0;
                    for (j, &s) in scores.iter().enumerate() {
                        if s > scores[best] {
                            best = j;
                        }
                    }
                    best
                }
            })
            .collect()
    }
}

fn dot(w: &[f64], x: &[f32]) -> f64 {
    w.iter().zip(x).map(|(a, &b)| a * b as f64).sum()
}

/// sklearn's `our_rand_r`: xorshift32, reduced to 31 bits.
fn our_rand_r(seed: &mut u32) -> u32 {
    if *seed == 0 {
        *seed = 1;
    }
    *seed ^= *seed << 13;
    *seed ^= *seed >> 17;
    *seed ^= *seed << 5;
    *seed % (i32::MAX as u32 + 1)
}

/// `SequentialDataset.shuffle(seed)`: forward Fisher-Yates on the current order, seed passed by value.
fn shuffle(order: &mut [u32], mut seed: u32) {
    let n = order.len();
    for i in 0..n.saturating_sub(1) {
        let j = i + (our_rand_r(&mut seed) as usize) % (n - i);
        order.swap(i, j);
    }
}

/// scikit-learn's half-binomial loss and gradient with targets in {0, 1}.
fn loss(y: f64, p: f64) -> f64 {
    let l = if p <= -37.0 {
        p.exp()
    } else if p <= -2.0 {
        p.exp().ln_1p()
    } else if p <= 18.0 {
        (1.0 + p.exp()).ln()
    } else if p <= 33.3 {
        p + (-p).exp()
    } else {
        p
    };
    l - y * p
}

fn gradient(y: f64, p: f64) -> f64 {
    if p > -37.0 {
        let e = (-p).exp();
        ((1.0 - y) - y * e) / (1.0 + e)
    } else {
        p.exp() - y
    }
}

/// `fit_binary` + `_plain_sgd` for class `positive` against the rest. Returns (w, intercept, epochs run).
fn fit_binary(
    x: &Rows,
    y: &[usize],
    positive: usize,
    seed: u32,
    cfg: &SgdConfig,
) -> (Vec<f64>, f64, usize) {
    let n = x.len();
    let d = x.dim;
    let mut rs = RandomState::new(seed);
    let _dataset_seed = rs.randint(1, MAX_INT); // make_dataset's draw, unused for dense data
    let shuffle_seed = rs.randint(0, MAX_INT) as u32;
    let target: Vec<f64> = y
        .iter()
        .map(|&c| if c == positive { 1.0 } else { 0.0 })
        .collect();

    let alpha = cfg.alpha;
    let typw = (1.0 / alpha.sqrt()).sqrt();
    // initial_eta0 = typw / max(1, gradient(1, -typw)); the log-loss gradient is below 1 in magnitude
    let initial_eta0 = typw / gradient(1.0, -typw).max(1.0);
    let optimal_init = 1.0 / (initial_eta0 * alpha);

    let mut w = vec![0.0f64; d];
    let mut wscale = 1.0f64;
    let mut sq_norm = 0.0f64;
    let mut intercept = 0.0f64;
    let mut t = 1.0f64;
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut best = f64::INFINITY;
    let mut no_improvement = 0;
    let mut epochs = 0;

    for epoch in 0..cfg.max_iter {
        epochs = epoch + 1;
        let mut sumloss = 0.0;
        let mut objective = 0.0;
        shuffle(&mut order, shuffle_seed);
        for &idx in &order {
            let row = x.row(idx as usize);
            let yi = target[idx as usize];
            let p = dot(&w, row) * wscale + intercept;
            let eta = 1.0 / (alpha * (optimal_init + t - 1.0));
            let l = loss(yi, p);
            sumloss += l;
            objective += l + alpha * 0.5 * sq_norm;
            let dloss = gradient(yi, p).clamp(-1e12, 1e12);
            let update = -eta * dloss;
            // w.scale(max(0, 1 - eta * alpha))
            let c = (1.0 - eta * alpha).max(0.0);
            wscale *= c;
            sq_norm *= c * c;
            if wscale < 1e-9 {
                for v in w.iter_mut() {
                    *v *= wscale;
                }
                wscale = 1.0;
            }
            if update != 0.0 {
                let step = update / wscale;
                let mut acc = 0.0;
                for (wv, &xv) in w.iter_mut().zip(row) {
                    *wv += xv as f64 * step;
                    acc += *wv * *wv;
                }
                sq_norm = acc * wscale * wscale;
                intercept += update;
            }
            t += 1.0;
        }
        assert!(
            intercept.is_finite() && w.iter().all(|v| v.is_finite()),
            "SGD diverged at epoch {epochs}"
        );
        let (current, threshold) = match cfg.stop {
            StopRule::Objective => (objective / n as f64, cfg.tol),
            StopRule::LossSum => (sumloss, cfg.tol * n as f64),
        };
        if current > best - threshold {
            no_improvement += 1;
        } else {
            no_improvement = 0;
        }
        if current < best {
            best = current;
        }
        if no_improvement >= cfg.n_iter_no_change {
            break;
        }
    }
    for v in w.iter_mut() {
        *v *= wscale;
    }
    (w, intercept, epochs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_matches_sklearn_rand_r() {
        // our_rand_r from seed 1: 1 -> 270369 (1 ^ 1<<13 = 8193; ^ >>17 = 8193; ^ <<5 = 8193 ^ 262176 = 270369)
        let mut s = 1u32;
        assert_eq!(our_rand_r(&mut s), 270_369);
    }

    #[test]
    fn separable_toy_problem_is_learned() {
        let data: Vec<f32> = vec![
            1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9, -1.0, -1.0, -0.9, -1.1,
        ];
        let x = Rows {
            data: &data,
            dim: 2,
        };
        let y = [0usize, 0, 1, 1, 2, 2];
        let model = SgdClassifier::fit(&x, &y, 3, &SgdConfig::default());
        assert_eq!(model.predict(&x), y.to_vec());
    }
    /// Thirty float32 rows, three features; from `np.random.RandomState(0).randn(30, 3)`, digits as numpy
    /// prints them (the f32 literals round to the same values).
    #[allow(clippy::excessive_precision)]
    const X: [f32; 90] = [
        1.764052391052246,
        0.40015721321105957,
        0.978738009929657,
        2.2408931255340576,
        1.8675580024719238,
        -0.9772778749465942,
        0.9500884413719177,
        -0.15135720372200012,
        -0.10321885347366333,
        0.4105985164642334,
        0.14404356479644775,
        1.4542734622955322,
        0.7610377073287964,
        0.12167501449584961,
        0.44386324286460876,
        0.3336743414402008,
        1.4940791130065918,
        -0.2051582634449005,
        0.3130677044391632,
        -0.8540957570075989,
        -2.5529897212982178,
        0.653618574142456,
        0.8644362092018127,
        -0.7421650290489197,
        2.269754648208618,
        -1.4543657302856445,
        0.04575851559638977,
        -0.18718385696411133,
        1.5327792167663574,
        1.4693588018417358,
        0.154947429895401,
        0.37816253304481506,
        -0.8877857327461243,
        -1.980796456336975,
        -0.34791216254234314,
        0.15634897351264954,
        1.2302906513214111,
        1.202379822731018,
        -0.38732680678367615,
        -0.302302747964859,
        -1.0485529899597168,
        -1.420017957687378,
        -1.7062702178955078,
        1.950775384902954,
        -0.5096521973609924,
        -0.4380742907524109,
        -1.2527953386306763,
        0.7774903774261475,
        -1.6138978004455566,
        -0.21274028718471527,
        -0.8954665660858154,
        0.38690251111984253,
        -0.5108051300048828,
        -1.18063223361969,
        -0.02818222902715206,
        0.4283318817615509,
        0.06651721894741058,
        0.30247190594673157,
        -0.6343221068382263,
        -0.3627411723136902,
        -0.6724604368209839,
        -0.35955315828323364,
        -0.8131462931632996,
        -1.7262825965881348,
        0.17742614448070526,
        -0.4017809331417084,
        -1.630198359489441,
        0.46278226375579834,
        -0.9072983860969543,
        0.05194539576768875,
        0.7290905714035034,
        0.12898291647434235,
        1.1394007205963135,
        -1.234825849533081,
        0.4023416340351105,
        -0.6848101019859314,
        -0.8707971572875977,
        -0.5788496732711792,
        -0.3115525245666504,
        0.056165341287851334,
        -1.1651498079299927,
        0.9008265137672424,
        0.4656624495983124,
        -1.5362436771392822,
        1.4882521629333496,
        1.895889163017273,
        1.1787796020507812,
        -0.1799248307943344,
        -1.0707526206970215,
        1.0544517040252686,
    ];
    /// Classes B-X, I-X, O as 0, 1, 2.
    const Y: [usize; 30] = [
        0, 2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 2, 2, 1, 2, 2, 1, 2, 2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1,
    ];

    fn assert_close(got: &[f64], want: &[f64]) {
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    /// scikit-learn 1.9.1: `SGDClassifier(loss="log_loss", shuffle=True, random_state=1, early_stopping=False,
    /// tol=1e-4).fit(X.astype(np.float64), y)`: the same seeds, order and arithmetic give the same weights.
    #[test]
    fn one_vs_rest_matches_sklearn_exactly() {
        let model = SgdClassifier::fit(&Rows { data: &X, dim: 3 }, &Y, 3, &SgdConfig::default());
        let coef: Vec<f64> = model.coef.iter().flatten().copied().collect();
        assert_close(
            &coef,
            &[
                -8.284844373811604,
                8.142029001976358,
                1.7738538480227366,
                -13.450229148364548,
                4.4658259452700415,
                -4.3486398974830465,
                -5.876048730331165,
                -0.8791950551582947,
                -19.971950110370607,
            ],
        );
        assert_close(
            &model.intercept,
            &[-4.410630330862684, -11.904601438352586, -4.321075760748365],
        );
        assert_eq!(model.epochs.iter().max(), Some(&11));
    }

    #[test]
    fn binary_matches_sklearn_exactly() {
        let y: Vec<usize> = Y.iter().map(|&c| usize::from(c == 2)).collect();
        let model = SgdClassifier::fit(&Rows { data: &X, dim: 3 }, &y, 2, &SgdConfig::default());
        assert_close(
            &model.coef[0],
            &[-3.931284517358, 1.5103172149367223, -5.053393900941329],
        );
        assert_close(&model.intercept, &[0.05565850656117366]);
        assert_eq!(model.epochs, vec![21]);
    }
}
