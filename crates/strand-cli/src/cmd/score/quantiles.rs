//! The arithmetic of calibrated scores: quantiles of a background sample
//! (`strand-score calibrate`) and the percentile of a score read back off
//! those quantiles (`--calibration`). Definitions in docs/score.md,
//! section 7.

/// Quantile levels `k / (points - 1)`, `k = 0..points`: 0, 0.001, ..., 1
/// for 1,001 points.
pub fn levels(points: usize) -> Vec<f64> {
    assert!(points >= 2, "at least the minimum and the maximum");
    let last = (points - 1) as f64;
    (0..points).map(|k| k as f64 / last).collect()
}

/// The quantiles of `values` at `levels`, by linear interpolation between
/// order statistics (Hyndman & Fan type 7, the default of R and numpy):
/// for `n` sorted values `x[0] <= ... <= x[n-1]`, level `q` is
/// `x[j] + (h - j) (x[j+1] - x[j])` with `h = (n - 1) q`, `j = floor(h)`.
/// The minimum and maximum are levels 0 and 1 exactly. NaNs are left out;
/// `None` when no value is left.
pub fn quantiles(mut values: Vec<f32>, levels: &[f64]) -> Option<Vec<f32>> {
    values.retain(|v| !v.is_nan());
    values.sort_unstable_by(f32::total_cmp);
    let x = &values;
    if x.is_empty() {
        return None;
    }
    let n = x.len();
    Some(
        levels
            .iter()
            .map(|&q| {
                let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
                let j = (h.floor() as usize).min(n - 1);
                if j + 1 >= n {
                    return x[n - 1];
                }
                let (a, b) = (f64::from(x[j]), f64::from(x[j + 1]));
                (a + (h - j as f64) * (b - a)) as f32
            })
            .collect(),
    )
}

/// The percentile (0 to 100) of score `x` against the background whose
/// quantiles at `levels` are `values` (non-decreasing): 100 times the
/// level at which the piecewise-linear curve through the points
/// `(values[k], levels[k])` reaches `x`.
///
/// - Between two points with different values: linear interpolation.
/// - Below the smallest value: 0; above the largest: 100.
/// - Equal to one or more stored values (a tie: a plateau of the curve,
///   where many background sites share one score): the middle of the
///   plateau's levels, so that a tied mass of background sites gets, on
///   average, the percentile of its middle, and the result stays
///   non-decreasing in `x`.
///
/// Non-decreasing in `x`; `None` for a NaN.
pub fn percentile(levels: &[f64], values: &[f32], x: f32) -> Option<f64> {
    debug_assert_eq!(levels.len(), values.len());
    if x.is_nan() || values.is_empty() {
        return None;
    }
    // values[..lo] < x, values[lo..hi] == x, values[hi..] > x.
    let lo = values.partition_point(|&v| v < x);
    let hi = values.partition_point(|&v| v <= x);
    let level = if lo < hi {
        (levels[lo] + levels[hi - 1]) / 2.0
    } else if lo == 0 {
        0.0
    } else if lo == values.len() {
        1.0
    } else {
        let (a, b) = (f64::from(values[lo - 1]), f64::from(values[lo]));
        let t = (f64::from(x) - a) / (b - a);
        levels[lo - 1] + t * (levels[lo] - levels[lo - 1])
    };
    Some((100.0 * level).clamp(0.0, 100.0))
}

/// A percentile as written: at most three decimals, trailing zeros cut
/// (`0.3`, `12.345`, `100`).
pub fn format_percentile(p: f64) -> String {
    let s = format!("{p:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// Keeps at most `cap` values of a stream as a uniform random sample
/// (reservoir sampling, Vitter's algorithm R, with a seeded generator: the
/// same stream and seed keep the same values), and counts them all.
pub struct Reservoir {
    pub values: Vec<f32>,
    /// Values offered, kept or not.
    pub seen: u64,
    cap: usize,
    rng: SplitMix64,
}

impl Reservoir {
    pub fn new(cap: usize, seed: u64) -> Reservoir {
        Reservoir {
            values: Vec::new(),
            seen: 0,
            cap,
            rng: SplitMix64(seed),
        }
    }

    pub fn push(&mut self, v: f32) {
        self.seen += 1;
        if self.values.len() < self.cap {
            self.values.push(v);
        } else {
            let j = self.rng.below(self.seen);
            if (j as usize) < self.cap {
                self.values[j as usize] = v;
            }
        }
    }
}

/// A small, fast, seeded generator (Steele, Lea & Flood's SplitMix64):
/// sampling needs reproducibility, not cryptographic strength.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is below 2^-32 for
    /// any `n` under 2^32, and negligible above).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// `k` distinct numbers of `0..n` drawn uniformly (all of them when `k >=
/// n`), sorted: Floyd's algorithm, memory in `k` only.
pub fn sample_indices(n: u64, k: u64, seed: u64) -> Vec<u64> {
    if k >= n {
        return (0..n).collect();
    }
    let mut rng = SplitMix64(seed);
    let mut chosen = std::collections::HashSet::with_capacity(k as usize);
    for j in n - k..n {
        let t = rng.below(j + 1);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    let mut v: Vec<u64> = chosen.into_iter().collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_order_statistics() {
        let l = levels(5);
        assert_eq!(l, [0.0, 0.25, 0.5, 0.75, 1.0]);
        // numpy.quantile([4, 1, 3, 2], [0, .25, .5, .75, 1]) = [1, 1.75, 2.5, 3.25, 4]
        let q = quantiles(vec![4.0, 1.0, 3.0, 2.0], &l).expect("values");
        assert_eq!(q, [1.0, 1.75, 2.5, 3.25, 4.0]);
        // One value: every level is that value.
        assert_eq!(quantiles(vec![7.0], &l).expect("one"), [7.0; 5]);
        // NaNs are left out; nothing left is None.
        let q = quantiles(vec![f32::NAN, 2.0, -f32::NAN, 0.0], &levels(3));
        assert_eq!(q.expect("values"), [0.0, 1.0, 2.0]);
        assert!(quantiles(vec![f32::NAN], &l).is_none());
        assert!(quantiles(Vec::new(), &l).is_none());
    }

    #[test]
    fn percentiles_interpolate_and_clamp() {
        let l = levels(5);
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&l, &v, 0.0), Some(0.0));
        assert_eq!(percentile(&l, &v, 1.0), Some(0.0));
        assert_eq!(percentile(&l, &v, 1.5), Some(12.5));
        assert_eq!(percentile(&l, &v, 3.0), Some(50.0));
        assert_eq!(percentile(&l, &v, 4.75), Some(93.75));
        assert_eq!(percentile(&l, &v, 5.0), Some(100.0));
        assert_eq!(percentile(&l, &v, 1e9), Some(100.0));
        assert_eq!(percentile(&l, &v, f32::INFINITY), Some(100.0));
        assert_eq!(percentile(&l, &v, f32::NEG_INFINITY), Some(0.0));
        assert_eq!(percentile(&l, &v, f32::NAN), None);
    }

    #[test]
    fn ties_take_the_middle_of_their_plateau() {
        let l = levels(5);
        // A quarter to three quarters of the background scores 0.
        let v = [-1.0, 0.0, 0.0, 0.0, 1.0];
        assert_eq!(percentile(&l, &v, 0.0), Some(50.0));
        // Just below and above the plateau: its ends.
        let below = percentile(&l, &v, -1e-6).expect("a value");
        let above = percentile(&l, &v, 1e-6).expect("a value");
        assert!((below - 25.0).abs() < 1e-3 && (above - 75.0).abs() < 1e-3);
        // A plateau at the minimum.
        assert_eq!(percentile(&l, &[0.0, 0.0, 0.0, 1.0, 2.0], 0.0), Some(25.0));
        // Everything tied.
        assert_eq!(percentile(&l, &[3.0; 5], 3.0), Some(50.0));
    }

    #[test]
    fn percentiles_are_monotone_and_invert_quantiles() {
        let mut rng = SplitMix64(7);
        let mut values: Vec<f32> = (0..5000)
            .map(|_| (rng.next_u64() >> 40) as f32 / 1e5 - 50.0)
            .collect();
        // Some ties.
        values.extend([1.0f32; 300]);
        let l = levels(1001);
        let q = quantiles(values.clone(), &l).expect("values");
        assert!(q.windows(2).all(|w| w[0] <= w[1]), "monotone quantiles");
        let mut last = -1.0;
        for k in -6000..6000 {
            let p = percentile(&l, &q, k as f32 / 100.0).expect("a value");
            assert!((0.0..=100.0).contains(&p) && p >= last, "{k}: {p} < {last}");
            last = p;
        }
        // Round trip at the stored points away from ties.
        for (k, (&lv, &v)) in l.iter().zip(&q).enumerate() {
            if q.iter().filter(|&&x| x == v).count() == 1 {
                let p = percentile(&l, &q, v).expect("a value");
                assert!((p - 100.0 * lv).abs() < 1e-9, "point {k}");
            }
        }
        // The percentile of each background value is its rank, within
        // the resolution of the points (the calibration of its own
        // sample is uniform).
        let mut sorted = values.clone();
        sorted.sort_by(f32::total_cmp);
        let n = sorted.len();
        for (i, &x) in sorted.iter().enumerate().step_by(97) {
            if x == 1.0 {
                continue;
            }
            let p = percentile(&l, &q, x).expect("a value");
            let rank = 100.0 * i as f64 / (n - 1) as f64;
            assert!(
                (p - rank).abs() < 0.1 + 100.0 / n as f64,
                "{x}: {p} vs {rank}"
            );
        }
    }

    #[test]
    fn percentiles_are_written_short() {
        assert_eq!(format_percentile(0.3), "0.3");
        assert_eq!(format_percentile(12.34567), "12.346");
        assert_eq!(format_percentile(100.0), "100");
        assert_eq!(format_percentile(0.0), "0");
        assert_eq!(format_percentile(0.0004), "0");
    }

    #[test]
    fn reservoir_keeps_all_under_the_cap_and_a_uniform_sample_over_it() {
        let mut r = Reservoir::new(10, 1);
        (0..10).for_each(|i| r.push(i as f32));
        assert_eq!(r.values, (0..10).map(|i| i as f32).collect::<Vec<_>>());
        let mut r = Reservoir::new(1000, 1);
        (0..100_000).for_each(|i| r.push(i as f32));
        assert_eq!((r.values.len(), r.seen), (1000, 100_000));
        // A uniform sample of 0..100000: mean near 50000 (sd ~ 913).
        let mean = r.values.iter().map(|&v| f64::from(v)).sum::<f64>() / 1000.0;
        assert!((mean - 50_000.0).abs() < 4000.0, "{mean}");
        // Seeded: the same stream keeps the same values.
        let mut again = Reservoir::new(1000, 1);
        (0..100_000).for_each(|i| again.push(i as f32));
        assert_eq!(again.values, r.values);
    }

    #[test]
    fn samples_are_distinct_sorted_and_seeded() {
        assert_eq!(sample_indices(5, 9, 0), [0, 1, 2, 3, 4]);
        let s = sample_indices(1_000_000, 1000, 3);
        assert_eq!(s.len(), 1000);
        assert!(s.windows(2).all(|w| w[0] < w[1]) && s[999] < 1_000_000);
        assert_eq!(s, sample_indices(1_000_000, 1000, 3));
        assert_ne!(s, sample_indices(1_000_000, 1000, 4));
        // Spread over the range: each tenth holds about a tenth.
        for d in 0..10 {
            let n = s.iter().filter(|&&i| i / 100_000 == d).count();
            assert!((50..150).contains(&n), "decile {d}: {n}");
        }
    }
}
