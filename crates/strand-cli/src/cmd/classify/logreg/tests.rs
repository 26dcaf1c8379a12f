use super::*;
use strand_core::model::synthetic::Rng;

/// `n` rows of width `d` around a non-zero mean, with labels that
/// depend on the first two channels (`k` classes), and unequal class
/// sizes so an intercept matters.
fn toy(n: usize, d: usize, k: usize, seed: u64) -> (Vec<f64>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let mut x = Vec::with_capacity(n * d);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f64> = (0..d)
            .map(|j| 2.0 + j as f64 * 0.1 + rng.normal())
            .collect();
        let score = row[0] - row[1] + 0.7 * rng.normal();
        y.push(((score + 1.2).max(0.0) as usize).min(k - 1));
        x.extend(row);
    }
    (x, y)
}

/// [`toy`] in the fitted basis: coordinates `z`, labels and the basis
/// dimension.
fn toy_z(n: usize, d: usize, k: usize, seed: u64) -> (Vec<f64>, Vec<usize>, usize) {
    let (x, y) = toy(n, d, k, seed);
    let basis = Basis::fit(&x, d);
    (basis.apply_all(&x), y, basis.dim())
}

#[test]
fn gradient_matches_finite_differences() {
    let (d, k) = (5, 3);
    let (z, y, p) = toy_z(40, d, k, 1);
    let data = Data { z: &z, y: &y, p, k };
    let mut rng = Rng::new(2);
    let v: Vec<f64> = (0..k * data.p).map(|_| 0.5 * rng.normal()).collect();
    let mut g = vec![0.0; v.len()];
    objective(&data, 0.3, &v, &mut g);
    let mut scratch = vec![0.0; v.len()];
    for i in 0..v.len() {
        let h = 1e-6;
        let (mut up, mut down) = (v.clone(), v.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (objective(&data, 0.3, &up, &mut scratch)
            - objective(&data, 0.3, &down, &mut scratch))
            / (2.0 * h);
        assert!(
            (fd - g[i]).abs() <= 1e-7 * (1.0 + fd.abs()),
            "component {i}: analytic {} vs finite difference {fd}",
            g[i]
        );
    }
}

#[test]
fn fold_is_exact() {
    let (d, k) = (7, 4);
    let (x, _) = toy(30, d, k, 3);
    let basis = Basis::fit(&x, d);
    assert!(basis.has_intercept());
    let mut rng = Rng::new(4);
    let v: Vec<f64> = (0..k * basis.dim()).map(|_| rng.normal()).collect();
    let w = basis.fold(&v, k);
    for row in x.chunks_exact(d) {
        let via_z = logits(&v, &basis.apply(row));
        let via_w = logits(&w, row);
        for (a, b) in via_z.iter().zip(&via_w) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn basis_coordinates_are_centred_and_scaled() {
    let d = 6;
    let (x, _) = toy(200, d, 2, 5);
    let basis = Basis::fit(&x, d);
    let z = basis.apply_all(&x);
    let n = 200.0;
    let mean = |j: usize| z.chunks_exact(d + 1).map(|r| r[j]).sum::<f64>() / n;
    assert!((mean(0) - 1.0).abs() < 1e-12, "z_0 has mean 1");
    for j in 1..=d {
        assert!(mean(j).abs() < 1e-12, "channel {j} is centred");
        let var = z.chunks_exact(d + 1).map(|r| r[j] * r[j]).sum::<f64>() / n;
        assert!((var - 1.0).abs() < 1e-9, "channel {j} has unit variance");
    }
}

/// When every embedding has the same component along the mean, the
/// bias-free head is exactly logistic regression with an intercept:
/// the fitted probabilities sum, per class, to the class counts (the
/// stationarity condition of an unpenalised intercept), and match a fit
/// that has an explicit intercept column.
#[test]
fn constant_mean_component_acts_as_an_exact_intercept() {
    let (d, k, n) = (4, 3, 300);
    let mut rng = Rng::new(6);
    let mut r = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        // Skewed classes: priors 1/2, 1/3, 1/6, weakly predictable.
        let c = [0, 0, 0, 1, 1, 2][i % 6];
        y.push(c);
        r.extend((0..d - 1).map(|j| rng.normal() + if j == c { 0.4 } else { 0.0 }));
    }
    // Centre r so that x = (5, r) has mean direction e_0 exactly and
    // every <x, mu> is the same.
    for j in 0..d - 1 {
        let m = r.iter().skip(j).step_by(d - 1).sum::<f64>() / n as f64;
        r.iter_mut().skip(j).step_by(d - 1).for_each(|v| *v -= m);
    }
    let x: Vec<f64> = r
        .chunks_exact(d - 1)
        .flat_map(|ri| std::iter::once(5.0).chain(ri.iter().copied()))
        .collect();
    let basis = Basis::fit(&x, d);
    assert!(basis.intercept_spread(&x) < 1e-12);
    let z = basis.apply_all(&x);
    let lambda = 0.05;
    let fitted = fit(
        &Data {
            z: &z,
            y: &y,
            p: basis.dim(),
            k,
        },
        lambda,
        None,
    );
    assert!(fitted.converged);
    let w = basis.fold(&fitted.v, k);

    let mut mass = vec![0.0; k];
    let probs: Vec<Vec<f64>> = x
        .chunks_exact(d)
        .map(|row| {
            let l = logits(&w, row);
            let lse = log_sum_exp(&l);
            l.iter().map(|v| (v - lse).exp()).collect()
        })
        .collect();
    for p in &probs {
        mass.iter_mut().zip(p).for_each(|(m, p)| *m += p);
    }
    for (c, m) in mass.iter().enumerate() {
        let count = y.iter().filter(|&&v| v == c).count() as f64;
        assert!((m - count).abs() < 1e-5, "class {c}: {m} vs {count}");
    }

    // The same model with an explicit intercept column: [1, r / s].
    let sd: Vec<f64> = (0..d - 1)
        .map(|j| (r.iter().skip(j).step_by(d - 1).map(|v| v * v).sum::<f64>() / n as f64).sqrt())
        .collect();
    let z2: Vec<f64> = r
        .chunks_exact(d - 1)
        .flat_map(|ri| std::iter::once(1.0).chain(ri.iter().zip(&sd).map(|(v, s)| v / s)))
        .collect();
    let explicit = fit(
        &Data {
            z: &z2,
            y: &y,
            p: d,
            k,
        },
        lambda,
        None,
    );
    for (i, row) in z2.chunks_exact(d).enumerate() {
        let l = logits(&explicit.v, row);
        let lse = log_sum_exp(&l);
        for c in 0..k {
            let p = (l[c] - lse).exp();
            assert!((p - probs[i][c]).abs() < 1e-6, "row {i} class {c}");
        }
    }
}

#[test]
fn fit_reaches_the_optimum_and_learns() {
    let (d, k) = (5, 3);
    let (z, y, p) = toy_z(300, d, k, 7);
    let data = Data { z: &z, y: &y, p, k };
    let fitted = fit(&data, 1e-3, None);
    assert!(fitted.converged, "{} iterations", fitted.iterations);
    let mut g = vec![0.0; fitted.v.len()];
    objective(&data, 1e-3, &fitted.v, &mut g);
    assert!(inf_norm(&g) <= GTOL.sqrt());
    // A warm start from the optimum stays there.
    let again = fit(&data, 1e-3, Some(&fitted.v));
    assert!(again.iterations <= 1);
    let correct = z
        .chunks_exact(data.p)
        .zip(&y)
        .filter(|(zi, &yi)| {
            let l = logits(&fitted.v, zi);
            (0..k).all(|c| l[yi] >= l[c])
        })
        .count();
    assert!(correct as f64 / 300.0 > 0.7, "{correct} of 300 correct");
}

#[test]
fn zero_mean_embeddings_have_no_intercept() {
    let x = vec![1.0, -2.0, -1.0, 2.0];
    let basis = Basis::fit(&x, 2);
    assert!(!basis.has_intercept());
    assert_eq!(basis.apply(&[1.0, -2.0])[0], 0.0);
}

#[test]
fn log_sum_exp_is_stable() {
    assert!((log_sum_exp(&[1000.0, 1000.0]) - (1000.0 + 2f64.ln())).abs() < 1e-12);
    assert!((log_sum_exp(&[-1000.0, 0.0]) - 0.0).abs() < 1e-12);
}
