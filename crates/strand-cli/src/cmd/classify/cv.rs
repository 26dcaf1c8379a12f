//! Choosing the L2 penalty by stratified k-fold cross-validation, and
//! fitting the final head.

use rayon::prelude::*;
use strand_core::model::synthetic::Rng;

use super::logreg::{self, Basis, Data};

/// Penalties tried, largest first (each fit warm-starts from the previous
/// one). They apply to standardised coordinates and a mean loss, so the
/// same grid suits any model width and data size: 10 shrinks the head to
/// class priors, 1e-6 is practically unregularised.
pub const LAMBDA_GRID: [f64; 8] = [10.0, 1.0, 0.1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6];

/// A fitted head: `logits = W x`.
pub struct Head {
    /// `k x d`, row-major, f64.
    pub w: Vec<f64>,
    /// The fit in basis coordinates (for the exactness check).
    pub basis: Basis,
    pub v: Vec<f64>,
    pub converged: bool,
}

/// Fits the head on all rows of `x` (`n x d`).
pub fn fit_head(x: &[f64], d: usize, y: &[usize], k: usize, lambda: f64) -> Head {
    let basis = Basis::fit(x, d);
    let z = basis.apply_all(x);
    let fit = logreg::fit(
        &Data {
            z: &z,
            y,
            p: basis.dim(),
            k,
        },
        lambda,
        None,
    );
    Head {
        w: basis.fold(&fit.v, k),
        basis,
        v: fit.v,
        converged: fit.converged,
    }
}

/// Assigns each row to one of `folds` folds, stratified by class: each
/// class's rows, shuffled with `seed`, are dealt out in turn, continuing
/// where the previous class stopped so fold sizes differ by at most one.
pub fn stratified_folds(y: &[usize], k: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut fold_of = vec![0; y.len()];
    let mut next = 0;
    for c in 0..k {
        let mut rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c).collect();
        // Fisher-Yates.
        for i in (1..rows.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            rows.swap(i, j);
        }
        for r in rows {
            fold_of[r] = next % folds;
            next += 1;
        }
    }
    fold_of
}

/// Out-of-fold results at one penalty.
pub struct CvPoint {
    pub lambda: f64,
    /// Mean held-out cross-entropy (the selection criterion).
    pub log_loss: f64,
    /// Held-out logits of every row, `n x k`, each from the fold model
    /// that did not see it.
    pub logits: Vec<f64>,
    /// Whether every fold's fit converged.
    pub converged: bool,
}

/// Cross-validates every penalty of `grid` (largest first). Folds are
/// fitted in parallel; each fold's basis is fitted on its training rows
/// only, so nothing of the held-out rows leaks into the fit.
pub fn cross_validate(
    x: &[f64],
    d: usize,
    y: &[usize],
    k: usize,
    fold_of: &[usize],
    folds: usize,
    grid: &[f64],
) -> Vec<CvPoint> {
    let n = y.len();
    // per fold: (held-out rows, per-lambda (logits of those rows, converged))
    type FoldResult = (Vec<usize>, Vec<(Vec<f64>, bool)>);
    let per_fold: Vec<FoldResult> = (0..folds)
        .into_par_iter()
        .map(|f| {
            let (train, test): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| fold_of[i] != f);
            let rows = |idx: &[usize]| -> Vec<f64> {
                idx.iter()
                    .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
                    .collect()
            };
            let basis = Basis::fit(&rows(&train), d);
            let z_train = basis.apply_all(&rows(&train));
            let z_test = basis.apply_all(&rows(&test));
            let y_train: Vec<usize> = train.iter().map(|&i| y[i]).collect();
            let data = Data {
                z: &z_train,
                y: &y_train,
                p: basis.dim(),
                k,
            };
            let mut start: Option<Vec<f64>> = None;
            let path = grid
                .iter()
                .map(|&lambda| {
                    let fit = logreg::fit(&data, lambda, start.as_deref());
                    let logits: Vec<f64> = z_test
                        .chunks_exact(basis.dim())
                        .flat_map(|z| logreg::logits(&fit.v, z))
                        .collect();
                    start = Some(fit.v);
                    (logits, fit.converged)
                })
                .collect();
            (test, path)
        })
        .collect();

    grid.iter()
        .enumerate()
        .map(|(g, &lambda)| {
            let mut logits = vec![0.0; n * k];
            let mut converged = true;
            for (test, path) in &per_fold {
                let (l, ok) = &path[g];
                converged &= ok;
                for (j, &row) in test.iter().enumerate() {
                    logits[row * k..(row + 1) * k].copy_from_slice(&l[j * k..(j + 1) * k]);
                }
            }
            let log_loss = logits
                .chunks_exact(k)
                .zip(y)
                .map(|(l, &c)| logreg::log_sum_exp(l) - l[c])
                .sum::<f64>()
                / n as f64;
            CvPoint {
                lambda,
                log_loss,
                logits,
                converged,
            }
        })
        .collect()
}

/// Index of the point with the lowest held-out log-loss; among
/// practically equal ones (relative 1e-9) the larger penalty, which comes
/// first.
pub fn best(points: &[CvPoint]) -> usize {
    let mut best = 0;
    for (i, p) in points.iter().enumerate().skip(1) {
        let b = points[best].log_loss;
        if p.log_loss < b - 1e-9 * b.abs() {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_and_balanced() {
        let y: Vec<usize> = (0..103).map(|i| usize::from(i % 4 == 0)).collect();
        let fold_of = stratified_folds(&y, 2, 5, 9);
        for f in 0..5 {
            let size = fold_of.iter().filter(|&&g| g == f).count();
            assert!((20..=21).contains(&size), "fold {f}: {size} rows");
            let ones = (0..103).filter(|&i| fold_of[i] == f && y[i] == 1).count();
            assert!((5..=6).contains(&ones), "fold {f}: {ones} of class 1");
        }
        assert_eq!(fold_of, stratified_folds(&y, 2, 5, 9), "deterministic");
        assert_ne!(fold_of, stratified_folds(&y, 2, 5, 10), "seeded");
    }

    #[test]
    fn cross_validation_prefers_regularisation_on_noise() {
        // Labels independent of 20 noisy features: the best held-out
        // log-loss comes from shrinking towards the class priors.
        let (n, d) = (120, 20);
        let mut rng = Rng::new(11);
        let x: Vec<f64> = (0..n * d).map(|_| 3.0 + rng.normal()).collect();
        let y: Vec<usize> = (0..n).map(|_| (rng.next_u64() % 2) as usize).collect();
        let fold_of = stratified_folds(&y, 2, 4, 1);
        let points = cross_validate(&x, d, &y, 2, &fold_of, 4, &LAMBDA_GRID);
        let b = best(&points);
        assert!(points[b].lambda >= 0.1, "chose {}", points[b].lambda);
        assert!(points.last().unwrap().log_loss > points[b].log_loss);
    }

    #[test]
    fn best_breaks_ties_towards_the_larger_penalty() {
        let pt = |lambda, log_loss| CvPoint {
            lambda,
            log_loss,
            logits: Vec::new(),
            converged: true,
        };
        let points = [pt(1.0, 0.5), pt(0.1, 0.5), pt(0.01, 0.6)];
        assert_eq!(best(&points), 0);
        let points = [pt(1.0, 0.5), pt(0.1, 0.4), pt(0.01, 0.4)];
        assert_eq!(best(&points), 1);
    }
}
