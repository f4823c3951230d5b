//! SciPy's L-BFGS-B (`scipy.optimize.minimize(method="L-BFGS-B")`, version 3.0 of the algorithm) for problems
//! without bounds, step for step.
//!
//! scikit-learn's `LogisticRegression` stops L-BFGS-B at `gtol = tol = 1e-4` on the largest gradient entry,
//! typically after 5–30 iterations and far from the exact optimum, so encodechka's logistic-regression scores
//! are those of that particular early-stopped iterate. Reproducing them needs the same iterates, not merely
//! another good solver: this follows SciPy's control flow exactly (first step `1/‖g‖` along `-g`, the
//! MINPACK-2 `dcsrch`/`dcstep` line search with `ftol = 1e-3`, `gtol = 0.9`, `xtol = 0.1`, the curvature
//! skip rule, memory resets after a failed line search, the projected-gradient and relative-reduction
//! stopping tests in SciPy's order). Without bounds the generalised Cauchy point and the subspace
//! minimisation reduce to the plain limited-memory BFGS step `-H·g` with `H₀ = I/θ`, `θ = yᵀy / sᵀy` of the
//! newest pair; that product is computed with the two-loop recursion (the compact form SciPy uses is the same
//! matrix, so only the last bits of rounding differ).

use std::collections::VecDeque;

/// Stopping settings; the defaults are what scikit-learn passes for `LogisticRegression(max_iter=10_000)`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Number of correction pairs kept (`maxcor`).
    pub m: usize,
    /// Stop when `max |g_i| <= pgtol` (`gtol`).
    pub pgtol: f64,
    /// Stop when `(f_old - f) <= ftol · max(|f_old|, |f|, 1)` (`ftol`).
    pub ftol: f64,
    /// Iterations (accepted steps) at most.
    pub max_iter: u64,
    /// Function evaluations per line search at most.
    pub max_ls: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            m: 10,
            pgtol: 1e-4,
            ftol: 64.0 * f64::EPSILON,
            max_iter: 10_000,
            max_ls: 50,
        }
    }
}

/// Why the minimisation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL`
    ProjectedGradient,
    /// `CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH`
    RelativeReduction,
    /// `STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT`
    MaxIter,
    /// `ABNORMAL_TERMINATION_IN_LNSRCH`: the line search failed with no memory left to drop.
    Abnormal,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub x: Vec<f64>,
    pub f: f64,
    pub g: Vec<f64>,
    /// Accepted steps (`OptimizeResult.nit`).
    pub iterations: u64,
    pub evaluations: u64,
    pub stop: Stop,
}

impl Outcome {
    pub fn converged(&self) -> bool {
        matches!(self.stop, Stop::ProjectedGradient | Stop::RelativeReduction)
    }
}

/// Minimises `fg` (returning the value and the gradient) from `x0`.
pub fn minimize<F>(mut fg: F, x0: Vec<f64>, opts: &Options) -> Outcome
where
    F: FnMut(&[f64]) -> (f64, Vec<f64>),
{
    let n = x0.len();
    let mut x = x0;
    let (mut f, mut g) = fg(&x);
    let mut evaluations = 1u64;
    let mut sbgnrm = inf_norm(&g);
    if sbgnrm <= opts.pgtol {
        return Outcome {
            x,
            f,
            g,
            iterations: 0,
            evaluations,
            stop: Stop::ProjectedGradient,
        };
    }

    // (s, y, sᵀy) oldest first; theta = yᵀy/sᵀy of the newest pair, 1 while the memory is empty.
    let mut memory: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::with_capacity(opts.m);
    let mut theta = 1.0f64;
    let mut iter = 0u64;

    loop {
        // ---- search direction: z is the point the full step reaches, d = z - x
        let z: Vec<f64> = if memory.is_empty() {
            // Cauchy point with B = I and no breakpoints: x + 1·(-g).
            x.iter().zip(&g).map(|(xi, gi)| xi + -gi).collect()
        } else {
            let step = two_loop(&memory, theta, &g);
            x.iter().zip(&step).map(|(xi, si)| xi + si).collect()
        };
        let mut d: Vec<f64> = z.iter().zip(&x).map(|(zi, xi)| zi - xi).collect();

        // ---- line search (lnsrlb + dcsrch)
        let dnorm = dot(&d, &d).sqrt();
        let stpmx = 1.0e10;
        let mut stp = if iter == 0 {
            (1.0 / dnorm).min(stpmx)
        } else {
            1.0
        };
        let t = x.clone();
        let r = g.clone();
        let fold = f;
        let mut gd = dot(&g, &d);
        let gdold = gd;
        let mut ifun = 0usize;
        let mut failed = gd >= 0.0; // not a descent direction
        let mut search = None;
        if !failed {
            let (ls, task) = Dcsrch::start(f, gd, &mut stp, 1e-3, 0.9, 0.1, 0.0, stpmx);
            search = Some(ls);
            failed = task == Task::Error;
        }
        if !failed {
            let ls = search.as_mut().expect("started");
            loop {
                // dcsrch asked for f and g at stp
                ifun += 1;
                let iback = ifun - 1;
                if iback >= opts.max_ls {
                    failed = true;
                    break;
                }
                if stp == 1.0 {
                    x.copy_from_slice(&z);
                } else {
                    for ((xi, di), ti) in x.iter_mut().zip(&d).zip(&t) {
                        *xi = stp * di + ti;
                    }
                }
                let (fv, gv) = fg(&x);
                evaluations += 1;
                f = fv;
                g = gv;
                gd = dot(&g, &d);
                match ls.next(f, gd, &mut stp) {
                    Task::Fg => continue,
                    Task::Converged | Task::Warning => break,
                    Task::Error => {
                        failed = true;
                        break;
                    }
                }
            }
        }
        if failed {
            x.copy_from_slice(&t);
            g.copy_from_slice(&r);
            f = fold;
            if memory.is_empty() {
                iter += 1;
                return Outcome {
                    x,
                    f,
                    g,
                    iterations: iter,
                    evaluations,
                    stop: Stop::Abnormal,
                };
            }
            // drop the memory and start again from the same point
            memory.clear();
            theta = 1.0;
            continue;
        }

        // ---- new iterate
        iter += 1;
        sbgnrm = inf_norm(&g);
        if iter >= opts.max_iter {
            return Outcome {
                x,
                f,
                g,
                iterations: iter,
                evaluations,
                stop: Stop::MaxIter,
            };
        }
        if sbgnrm <= opts.pgtol {
            return Outcome {
                x,
                f,
                g,
                iterations: iter,
                evaluations,
                stop: Stop::ProjectedGradient,
            };
        }
        let ddum = fold.abs().max(f.abs()).max(1.0);
        if fold - f <= opts.ftol * ddum {
            return Outcome {
                x,
                f,
                g,
                iterations: iter,
                evaluations,
                stop: Stop::RelativeReduction,
            };
        }

        // ---- memory update: s = stp·d, y = g - g_old, sᵀy from the directional derivatives
        let y: Vec<f64> = g.iter().zip(&r).map(|(a, b)| a - b).collect();
        let rr = dot(&y, &y);
        let (dr, ddum) = if stp == 1.0 {
            (gd - gdold, -gdold)
        } else {
            d.iter_mut().for_each(|v| *v *= stp);
            ((gd - gdold) * stp, -gdold * stp)
        };
        if dr <= f64::EPSILON * ddum {
            continue; // curvature too small: skip the update
        }
        if memory.len() == opts.m {
            memory.pop_front();
        }
        memory.push_back((d, y, dr));
        theta = rr / dr;
        debug_assert_eq!(n, x.len());
    }
}

/// `-H·g` for the limited-memory inverse Hessian with `H₀ = I/θ`.
fn two_loop(memory: &VecDeque<(Vec<f64>, Vec<f64>, f64)>, theta: f64, g: &[f64]) -> Vec<f64> {
    let mut q = g.to_vec();
    let mut alpha = vec![0.0; memory.len()];
    for (i, (s, y, sy)) in memory.iter().enumerate().rev() {
        let a = dot(s, &q) / sy;
        alpha[i] = a;
        q.iter_mut().zip(y).for_each(|(qv, yv)| *qv -= a * yv);
    }
    q.iter_mut().for_each(|v| *v /= theta);
    for (i, (s, y, sy)) in memory.iter().enumerate() {
        let b = dot(y, &q) / sy;
        let c = alpha[i] - b;
        q.iter_mut().zip(s).for_each(|(qv, sv)| *qv += c * sv);
    }
    q.iter_mut().for_each(|v| *v = -*v);
    q
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `max |g_i|`; NaN propagates (SciPy's `projgr`).
fn inf_norm(g: &[f64]) -> f64 {
    let mut m = 0.0f64;
    for &v in g {
        if v.is_nan() {
            return v;
        }
        m = m.max(v.abs());
    }
    m
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Task {
    Fg,
    Converged,
    Warning,
    Error,
}

/// MINPACK-2's `dcsrch` (Moré–Thuente line search), state kept between calls.
struct Dcsrch {
    brackt: bool,
    stage: u8,
    ginit: f64,
    gtest: f64,
    gx: f64,
    gy: f64,
    finit: f64,
    fx: f64,
    fy: f64,
    stx: f64,
    sty: f64,
    stmin: f64,
    stmax: f64,
    width: f64,
    width1: f64,
    ftol: f64,
    gtol: f64,
    xtol: f64,
    stpmin: f64,
    stpmax: f64,
}

impl Dcsrch {
    /// The `task = START` call: checks the input and asks for f and g at the initial `stp`.
    #[allow(clippy::too_many_arguments)]
    fn start(
        f: f64,
        g: f64,
        stp: &mut f64,
        ftol: f64,
        gtol: f64,
        xtol: f64,
        stpmin: f64,
        stpmax: f64,
    ) -> (Self, Task) {
        let error = *stp < stpmin
            || *stp > stpmax
            || g >= 0.0
            || ftol < 0.0
            || gtol < 0.0
            || xtol < 0.0
            || stpmin < 0.0
            || stpmax < stpmin;
        let width = stpmax - stpmin;
        let s = Self {
            brackt: false,
            stage: 1,
            ginit: g,
            gtest: ftol * g,
            gx: g,
            gy: g,
            finit: f,
            fx: f,
            fy: f,
            stx: 0.0,
            sty: 0.0,
            stmin: 0.0,
            stmax: *stp + 4.0 * *stp,
            width,
            width1: width / 0.5,
            ftol,
            gtol,
            xtol,
            stpmin,
            stpmax,
        };
        (s, if error { Task::Error } else { Task::Fg })
    }

    /// A call with f and g at the current `stp`; updates `stp` when more evaluations are needed.
    fn next(&mut self, f: f64, g: f64, stp: &mut f64) -> Task {
        let _ = self.ftol;
        let ftest = self.finit + *stp * self.gtest;
        if self.stage == 1 && f <= ftest && g >= 0.0 {
            self.stage = 2;
        }
        let mut task = None;
        if self.brackt && (*stp <= self.stmin || *stp >= self.stmax) {
            task = Some(Task::Warning);
        }
        if self.brackt && self.stmax - self.stmin <= self.xtol * self.stmax {
            task = Some(Task::Warning);
        }
        if *stp == self.stpmax && f <= ftest && g <= self.gtest {
            task = Some(Task::Warning);
        }
        if *stp == self.stpmin && (f > ftest || g >= self.gtest) {
            task = Some(Task::Warning);
        }
        if f <= ftest && g.abs() <= self.gtol * (-self.ginit) {
            task = Some(Task::Converged);
        }
        if let Some(t) = task {
            return t;
        }

        if self.stage == 1 && f <= self.fx && f > ftest {
            // modified function psi(stp) = f(stp) - f(0) - ftol·stp·f'(0)
            let gtest = self.gtest;
            let fm = f - *stp * gtest;
            let mut fxm = self.fx - self.stx * gtest;
            let mut fym = self.fy - self.sty * gtest;
            let gm = g - gtest;
            let mut gxm = self.gx - gtest;
            let mut gym = self.gy - gtest;
            dcstep(
                &mut self.stx,
                &mut fxm,
                &mut gxm,
                &mut self.sty,
                &mut fym,
                &mut gym,
                stp,
                fm,
                gm,
                &mut self.brackt,
                self.stmin,
                self.stmax,
            );
            self.fx = fxm + self.stx * gtest;
            self.fy = fym + self.sty * gtest;
            self.gx = gxm + gtest;
            self.gy = gym + gtest;
        } else {
            dcstep(
                &mut self.stx,
                &mut self.fx,
                &mut self.gx,
                &mut self.sty,
                &mut self.fy,
                &mut self.gy,
                stp,
                f,
                g,
                &mut self.brackt,
                self.stmin,
                self.stmax,
            );
        }

        if self.brackt {
            if (self.sty - self.stx).abs() >= 0.66 * self.width1 {
                *stp = self.stx + 0.5 * (self.sty - self.stx);
            }
            self.width1 = self.width;
            self.width = (self.sty - self.stx).abs();
        }
        if self.brackt {
            self.stmin = self.stx.min(self.sty);
            self.stmax = self.stx.max(self.sty);
        } else {
            self.stmin = *stp + 1.1 * (*stp - self.stx);
            self.stmax = *stp + 4.0 * (*stp - self.stx);
        }
        *stp = stp.max(self.stpmin);
        *stp = stp.min(self.stpmax);
        if self.brackt
            && (*stp <= self.stmin
                || *stp >= self.stmax
                || self.stmax - self.stmin <= self.xtol * self.stmax)
        {
            *stp = self.stx;
        }
        Task::Fg
    }
}

/// MINPACK-2's `dcstep`: a safeguarded cubic/quadratic step and the update of the bracketing interval.
#[allow(clippy::too_many_arguments)]
fn dcstep(
    stx: &mut f64,
    fx: &mut f64,
    dx: &mut f64,
    sty: &mut f64,
    fy: &mut f64,
    dy: &mut f64,
    stp: &mut f64,
    fp: f64,
    dp: f64,
    brackt: &mut bool,
    stpmin: f64,
    stpmax: f64,
) {
    let sgnd = dp * (*dx / dx.abs());
    let stpf;
    if fp > *fx {
        // higher function value: the minimum is bracketed
        let theta = 3.0 * (*fx - fp) / (*stp - *stx) + *dx + dp;
        let s = theta.abs().max(dx.abs().max(dp.abs()));
        let mut gamma = s * ((theta / s).powi(2) - (*dx / s) * (dp / s)).sqrt();
        if *stp < *stx {
            gamma = -gamma;
        }
        let p = (gamma - *dx) + theta;
        let q = ((gamma - *dx) + gamma) + dp;
        let r = p / q;
        let stpc = *stx + r * (*stp - *stx);
        let stpq = *stx + ((*dx / ((*fx - fp) / (*stp - *stx) + *dx)) / 2.0) * (*stp - *stx);
        stpf = if (stpc - *stx).abs() < (stpq - *stx).abs() {
            stpc
        } else {
            stpc + (stpq - stpc) / 2.0
        };
        *brackt = true;
    } else if sgnd < 0.0 {
        // lower value, derivatives of opposite sign: bracketed
        let theta = 3.0 * (*fx - fp) / (*stp - *stx) + *dx + dp;
        let s = theta.abs().max(dx.abs().max(dp.abs()));
        let mut gamma = s * ((theta / s).powi(2) - (*dx / s) * (dp / s)).sqrt();
        if *stp > *stx {
            gamma = -gamma;
        }
        let p = (gamma - dp) + theta;
        let q = ((gamma - dp) + gamma) + *dx;
        let r = p / q;
        let stpc = *stp + r * (*stx - *stp);
        let stpq = *stp + (dp / (dp - *dx)) * (*stx - *stp);
        stpf = if (stpc - *stp).abs() > (stpq - *stp).abs() {
            stpc
        } else {
            stpq
        };
        *brackt = true;
    } else if dp.abs() < dx.abs() {
        // lower value, same sign, derivative magnitude decreases
        let theta = 3.0 * (*fx - fp) / (*stp - *stx) + *dx + dp;
        let s = theta.abs().max(dx.abs().max(dp.abs()));
        let mut gamma = s
            * (0.0f64)
                .max((theta / s).powi(2) - (*dx / s) * (dp / s))
                .sqrt();
        if *stp > *stx {
            gamma = -gamma;
        }
        let p = (gamma - dp) + theta;
        let q = (gamma + (*dx - dp)) + gamma;
        let r = p / q;
        let stpc = if r < 0.0 && gamma != 0.0 {
            *stp + r * (*stx - *stp)
        } else if *stp > *stx {
            stpmax
        } else {
            stpmin
        };
        let stpq = *stp + (dp / (dp - *dx)) * (*stx - *stp);
        if *brackt {
            let mut v = if (stpc - *stp).abs() < (stpq - *stp).abs() {
                stpc
            } else {
                stpq
            };
            if *stp > *stx {
                v = (*stp + 0.66 * (*sty - *stp)).min(v);
            } else {
                v = (*stp + 0.66 * (*sty - *stp)).max(v);
            }
            stpf = v;
        } else {
            let v = if (stpc - *stp).abs() > (stpq - *stp).abs() {
                stpc
            } else {
                stpq
            };
            stpf = stpmax.min(v).max(stpmin);
        }
    } else {
        // lower value, same sign, derivative magnitude does not decrease
        stpf = if *brackt {
            let theta = 3.0 * (fp - *fy) / (*sty - *stp) + *dy + dp;
            let s = theta.abs().max(dy.abs().max(dp.abs()));
            let mut gamma = s * ((theta / s).powi(2) - (*dy / s) * (dp / s)).sqrt();
            if *stp > *sty {
                gamma = -gamma;
            }
            let p = (gamma - dp) + theta;
            let q = ((gamma - dp) + gamma) + *dy;
            let r = p / q;
            *stp + r * (*sty - *stp)
        } else if *stp > *stx {
            stpmax
        } else {
            stpmin
        };
    }

    if fp > *fx {
        *sty = *stp;
        *fy = fp;
        *dy = dp;
    } else {
        if sgnd < 0.0 {
            *sty = *stx;
            *fy = *fx;
            *dy = *dx;
        }
        *stx = *stp;
        *fx = fp;
        *dx = dp;
    }
    *stp = stpf;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rosenbrock from (-1.2, 1): converges to (1, 1) with a tight tolerance.
    #[test]
    fn rosenbrock() {
        let fg = |x: &[f64]| {
            let (a, b) = (x[0], x[1]);
            let f = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            let g = vec![
                -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
                200.0 * (b - a * a),
            ];
            (f, g)
        };
        let opts = Options {
            pgtol: 1e-9,
            ..Options::default()
        };
        let out = minimize(fg, vec![-1.2, 1.0], &opts);
        assert!(out.converged(), "{:?}", out.stop);
        assert!(
            (out.x[0] - 1.0).abs() < 1e-6 && (out.x[1] - 1.0).abs() < 1e-6,
            "{:?}",
            out.x
        );
    }

    /// `scipy.optimize.minimize(rosen, [-1.2, 1], jac=rosen_der, method="L-BFGS-B",
    /// options={"gtol": 1e-4, "ftol": 64 * np.finfo(float).eps, "maxls": 50})` (SciPy 1.17.1): the same
    /// iterate count and the same point.
    #[test]
    fn rosenbrock_iterates_match_scipy() {
        let fg = |x: &[f64]| {
            let (a, b) = (x[0], x[1]);
            let f = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            let g = vec![
                -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
                200.0 * (b - a * a),
            ];
            (f, g)
        };
        let out = minimize(fg, vec![-1.2, 1.0], &Options::default());
        assert_eq!(out.stop, Stop::ProjectedGradient);
        assert_eq!(out.iterations, SCIPY_NIT);
        assert_eq!(out.evaluations, SCIPY_NFEV);
        for (a, b) in out.x.iter().zip(SCIPY_X) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    const SCIPY_NIT: u64 = 36;
    const SCIPY_NFEV: u64 = 44;
    const SCIPY_X: [f64; 2] = [0.999998945349282, 0.9999980209057328];
}
