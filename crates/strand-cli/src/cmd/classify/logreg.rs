//! Multinomial logistic regression whose fitted model is exactly a
//! bias-free linear head, `logits = W x`, fitted in f64.
//!
//! The reference classification head (`score`, a `Linear` without bias)
//! cannot add a per-class constant, so an ordinary fit with an intercept
//! could not be stored in it. Instead the fit is done in the coordinates of
//! a [`Basis`]: a linear, hence exactly foldable, change of coordinates
//! `z = T x` in which
//!
//! - `z_0 = <x, mu> / |mu|^2` is the component of the embedding along the
//!   training mean `mu`. Its mean is 1; pooled hidden states carry a large
//!   common component, so it varies little between sequences and plays the
//!   part of the intercept: its weight sets the class balance. Like an
//!   intercept in ordinary logistic regression it is (almost) unpenalised.
//! - `z_j = u_j / s_j` (j = 1..d) with `u = x - z_0 mu` the rest of the
//!   embedding, which is centred by construction (`mean(u) = mu - mu = 0`),
//!   scaled to unit variance per channel so one penalty suits all channels.
//!
//! The model `logits = V z` is then `logits = (V T) x`, so `W = V T`
//! reproduces it exactly (in real arithmetic; in f64 to rounding): nothing
//! is approximated when the fit is written into the bias-free head.
//! When every embedding has exactly the same component along `mu`, `z_0` is
//! a constant and this is precisely logistic regression with an intercept
//! (see the tests).

use rayon::prelude::*;

/// Penalty on `z_0`'s weights: negligible next to the loss, so the
/// intercept-like coordinate is effectively unpenalised, but positive so
/// the minimiser is unique.
pub const INTERCEPT_PENALTY: f64 = 1e-8;

/// Rows per parallel work item when evaluating the objective. Fixed (not
/// derived from the thread count) so the summation order, and hence the
/// result, does not depend on the machine.
const CHUNK: usize = 256;

/// The change of coordinates `z = T x` described in the module docs.
#[derive(Debug, Clone)]
pub struct Basis {
    /// `mu / |mu|^2`; all zero when the mean embedding vanishes (then
    /// there is no intercept-like coordinate and `z_0 = 0`).
    a: Vec<f64>,
    mu: Vec<f64>,
    /// Standard deviation of each channel of `u` (1 where it is zero).
    scale: Vec<f64>,
}

impl Basis {
    /// Fits the basis to the rows of `x` (`n x d`, row-major).
    pub fn fit(x: &[f64], d: usize) -> Basis {
        let n = (x.len() / d).max(1) as f64;
        let mut mu = vec![0.0; d];
        for row in x.chunks_exact(d) {
            mu.iter_mut().zip(row).for_each(|(m, v)| *m += v);
        }
        mu.iter_mut().for_each(|m| *m /= n);
        let mu2: f64 = mu.iter().map(|m| m * m).sum();
        let mean_sq = x.iter().map(|v| v * v).sum::<f64>() / n;
        // A mean that is zero up to rounding gives no usable direction.
        let a: Vec<f64> = if mu2 > 1e-12 * mean_sq && mu2 > 0.0 {
            mu.iter().map(|m| m / mu2).collect()
        } else {
            vec![0.0; d]
        };
        let mut basis = Basis {
            a,
            mu,
            scale: vec![1.0; d],
        };
        let mut var = vec![0.0; d];
        for row in x.chunks_exact(d) {
            let (_, u) = basis.split(row);
            var.iter_mut().zip(&u).for_each(|(s, u)| *s += u * u);
        }
        let sd: Vec<f64> = var.iter().map(|v| (v / n).sqrt()).collect();
        let top = sd.iter().cloned().fold(0.0, f64::max);
        // Constant channels (u_j = 0 throughout) stay unscaled: they
        // carry nothing, and dividing by ~0 would only amplify rounding.
        basis.scale = sd
            .into_iter()
            .map(|s| if s > 1e-12 * top && s > 0.0 { s } else { 1.0 })
            .collect();
        basis
    }

    /// Input width `d`.
    pub fn d(&self) -> usize {
        self.mu.len()
    }

    /// Coordinates per row, `d + 1`.
    pub fn dim(&self) -> usize {
        self.mu.len() + 1
    }

    /// Whether the training embeddings had a non-zero mean, i.e. whether
    /// the head can express class balance at all.
    pub fn has_intercept(&self) -> bool {
        self.a.iter().any(|&a| a != 0.0)
    }

    /// `(z_0, u)` of one row.
    fn split(&self, x: &[f64]) -> (f64, Vec<f64>) {
        let z0: f64 = x.iter().zip(&self.a).map(|(x, a)| x * a).sum();
        let u = x.iter().zip(&self.mu).map(|(x, m)| x - z0 * m).collect();
        (z0, u)
    }

    /// `z = T x` of one row.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        let (z0, u) = self.split(x);
        std::iter::once(z0)
            .chain(u.iter().zip(&self.scale).map(|(u, s)| u / s))
            .collect()
    }

    /// `z` of every row of `x` (`n x d`), as `n x (d + 1)`.
    pub fn apply_all(&self, x: &[f64]) -> Vec<f64> {
        x.chunks_exact(self.d())
            .flat_map(|row| self.apply(row))
            .collect()
    }

    /// `W = V T` (`k x d`) for `V` (`k x (d + 1)`), so `W x = V z`.
    ///
    /// With `b_j = V_j / s_j`: `V z = V_0 <a, x> + sum_j b_j (x_j - mu_j <a, x>)`
    /// `= sum_i x_i (b_i + a_i (V_0 - <b, mu>))`.
    pub fn fold(&self, v: &[f64], k: usize) -> Vec<f64> {
        let (d, p) = (self.d(), self.dim());
        let mut w = Vec::with_capacity(k * d);
        for row in v.chunks_exact(p).take(k) {
            let b: Vec<f64> = row[1..]
                .iter()
                .zip(&self.scale)
                .map(|(v, s)| v / s)
                .collect();
            let shift = row[0] - b.iter().zip(&self.mu).map(|(b, m)| b * m).sum::<f64>();
            w.extend(b.iter().zip(&self.a).map(|(b, a)| b + a * shift));
        }
        w
    }

    /// Spread of `z_0` over the rows of `x`: its standard deviation (its
    /// mean is 1 on the data the basis was fitted to). The smaller, the
    /// more exactly `z_0`'s weight acts as an intercept.
    pub fn intercept_spread(&self, x: &[f64]) -> f64 {
        let z0: Vec<f64> = x.chunks_exact(self.d()).map(|r| self.split(r).0).collect();
        let n = z0.len().max(1) as f64;
        let mean = z0.iter().sum::<f64>() / n;
        (z0.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / n).sqrt()
    }
}

/// Training data in fitted coordinates.
pub struct Data<'a> {
    /// `n x p`, row-major.
    pub z: &'a [f64],
    /// Class of each row, `< k`.
    pub y: &'a [usize],
    pub p: usize,
    pub k: usize,
}

impl Data<'_> {
    pub fn n(&self) -> usize {
        self.y.len()
    }
}

/// Logits `V z` of one row (`V` is `k x p`).
pub fn logits(v: &[f64], z: &[f64]) -> Vec<f64> {
    v.chunks_exact(z.len())
        .map(|row| row.iter().zip(z).map(|(a, b)| a * b).sum())
        .collect()
}

/// `log(sum(exp(l)))`, computed without overflow.
pub fn log_sum_exp(l: &[f64]) -> f64 {
    let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + l.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The penalised mean cross-entropy
/// `f(V) = (1/n) sum_i [lse(V z_i) - (V z_i)_{y_i}] + (lambda/2) sum_{k, j>=1} V_kj^2
///        + (eps/2) sum_k V_k0^2`,
/// with its gradient written to `grad`.
pub fn objective(data: &Data, lambda: f64, v: &[f64], grad: &mut [f64]) -> f64 {
    let (p, k) = (data.p, data.k);
    let parts: Vec<(f64, Vec<f64>)> = data
        .z
        .par_chunks(CHUNK * p)
        .zip(data.y.par_chunks(CHUNK))
        .map(|(z, y)| {
            let mut loss = 0.0;
            let mut g = vec![0.0; k * p];
            let mut prob = vec![0.0; k];
            for (zi, &yi) in z.chunks_exact(p).zip(y) {
                let l = logits(v, zi);
                let lse = log_sum_exp(&l);
                loss += lse - l[yi];
                for (c, pc) in prob.iter_mut().enumerate() {
                    *pc = (l[c] - lse).exp() - if c == yi { 1.0 } else { 0.0 };
                }
                for (gc, &pc) in g.chunks_exact_mut(p).zip(&prob) {
                    gc.iter_mut().zip(zi).for_each(|(g, z)| *g += pc * z);
                }
            }
            (loss, g)
        })
        .collect();
    let n = data.n().max(1) as f64;
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut loss = 0.0;
    for (l, g) in parts {
        loss += l;
        grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
    }
    loss /= n;
    grad.iter_mut().for_each(|g| *g /= n);
    for (j, (g, &w)) in grad.iter_mut().zip(v).enumerate() {
        let pen = if j % p == 0 {
            INTERCEPT_PENALTY
        } else {
            lambda
        };
        loss += 0.5 * pen * w * w;
        *g += pen * w;
    }
    loss
}

/// Result of [`fit`].
#[derive(Debug, Clone)]
pub struct Fit {
    /// `V`, `k x p`.
    pub v: Vec<f64>,
    pub objective: f64,
    pub iterations: usize,
    /// Whether the gradient tolerance was reached (otherwise the search
    /// stopped because f64 could not improve the objective further, or at
    /// the iteration limit).
    pub converged: bool,
}

/// Largest gradient entry at which the fit counts as converged. The
/// objective is a mean over records, O(1); 1e-8 leaves logits within
/// ~1e-7 of the optimum, far below what f32 weights can hold anyway.
const GTOL: f64 = 1e-8;
const MAX_ITER: usize = 5000;
/// L-BFGS memory.
const HISTORY: usize = 10;

/// Minimises [`objective`] by L-BFGS with a backtracking (Armijo) line
/// search, from `start` (a warm start) or zero. The objective is strongly
/// convex (`lambda > 0`), so every accepted step has `s.y > 0` and the
/// curvature pairs are always usable.
pub fn fit(data: &Data, lambda: f64, start: Option<&[f64]>) -> Fit {
    let dim = data.k * data.p;
    let mut x = start.map_or_else(|| vec![0.0; dim], <[f64]>::to_vec);
    let mut g = vec![0.0; dim];
    let mut f = objective(data, lambda, &x, &mut g);
    let mut hist: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = Default::default();
    let mut g_new = vec![0.0; dim];
    let mut converged = false;
    let mut iter = 0;
    while iter < MAX_ITER {
        if inf_norm(&g) <= GTOL {
            converged = true;
            break;
        }
        iter += 1;
        // Two-loop recursion: r = H g.
        let mut q = g.clone();
        let mut alpha = Vec::with_capacity(hist.len());
        for (s, y, rho) in hist.iter().rev() {
            let a = rho * dot(s, &q);
            axpy(-a, y, &mut q);
            alpha.push(a);
        }
        let gamma = match hist.back() {
            Some((s, y, _)) => dot(s, y) / dot(y, y),
            // First step: a unit-length move along -g.
            None => 1.0 / dot(&g, &g).sqrt(),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in hist.iter().zip(alpha.iter().rev()) {
            let b = rho * dot(y, &q);
            axpy(a - b, s, &mut q);
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&dir, &g);
        if slope >= 0.0 {
            // Not a descent direction (rounding): restart from steepest descent.
            hist.clear();
            let norm = dot(&g, &g).sqrt();
            dir = g.iter().map(|v| -v / norm).collect();
            slope = dot(&dir, &g);
        }
        let mut t = 1.0;
        let mut x_new = x.clone();
        let mut accepted = None;
        for _ in 0..60 {
            x_new
                .iter_mut()
                .zip(&x)
                .zip(&dir)
                .for_each(|((n, x), d)| *n = x + t * d);
            let f_new = objective(data, lambda, &x_new, &mut g_new);
            if f_new <= f + 1e-4 * t * slope {
                accepted = Some(f_new);
                break;
            }
            t *= 0.5;
        }
        let Some(f_new) = accepted else {
            break; // no decrease representable in f64: as good as it gets
        };
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 0.0 {
            if hist.len() == HISTORY {
                hist.pop_front();
            }
            hist.push_back((s, y, 1.0 / sy));
        }
        let stalled = f - f_new <= 1e-15 * f.abs().max(1.0);
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        f = f_new;
        if stalled {
            converged = inf_norm(&g) <= GTOL.sqrt();
            break;
        }
    }
    Fit {
        v: x,
        objective: f,
        iterations: iter,
        converged,
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

fn inf_norm(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

#[cfg(test)]
mod tests;
