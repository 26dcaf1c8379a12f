//! RMSNorm / LayerNorm of one row, with the channel reversals of the RCPS
//! layout folded into the indexing instead of materialised.

use crate::model::weights::Norm;

/// Where a channel reversal sits relative to the normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flip {
    /// `out = Norm_w(x)`
    None,
    /// `out = Norm_w(revC x)`: the input is read reversed.
    Input,
    /// `out = revC(Norm_w(revC x)) = Norm_{revC w, revC b}(x)`.
    Weight,
}

/// Normalises `x` into `out` (same length) with `eps`.
///
/// Statistics are accumulated in f64: a row is at most a few thousand
/// values, and this keeps the result at the reference's rounding level
/// whatever the summation order.
pub fn norm_row(x: &[f32], norm: &Norm, eps: f32, flip: Flip, out: &mut [f32]) {
    let d = x.len();
    debug_assert_eq!(out.len(), d);
    let (mean, rstd) = match norm.bias {
        None => {
            let ms = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / d as f64;
            (0.0f32, (1.0 / (ms + eps as f64).sqrt()) as f32)
        }
        Some(_) => {
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = x
                .iter()
                .map(|&v| {
                    let c = v as f64 - mean;
                    c * c
                })
                .sum::<f64>()
                / d as f64;
            (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
        }
    };
    let w = &norm.weight;
    let bias = |j: usize| norm.bias.as_ref().map_or(0.0, |b| b[j]);
    for (j, o) in out.iter_mut().enumerate() {
        let (xi, wi) = match flip {
            Flip::None => (j, j),
            Flip::Input => (d - 1 - j, j),
            Flip::Weight => (j, d - 1 - j),
        };
        *o = (x[xi] - mean) * rstd * w[wi] + bias(wi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_agree_with_explicit_reversal() {
        let x = [1.0f32, -2.0, 3.0, 0.5];
        let norm = Norm {
            weight: vec![1.0, 2.0, 3.0, 4.0],
            bias: Some(vec![0.1, 0.2, 0.3, 0.4]),
        };
        let rev = |v: &[f32]| v.iter().rev().copied().collect::<Vec<_>>();
        let mut a = [0.0; 4];
        let mut b = [0.0; 4];
        norm_row(&x, &norm, 1e-5, Flip::Input, &mut a);
        norm_row(&rev(&x), &norm, 1e-5, Flip::None, &mut b);
        assert_eq!(a, b);
        norm_row(&x, &norm, 1e-5, Flip::Weight, &mut a);
        norm_row(&rev(&x), &norm, 1e-5, Flip::None, &mut b);
        assert_eq!(a.to_vec(), rev(&b));
    }

    #[test]
    fn rms_norm_value() {
        let norm = Norm {
            weight: vec![1.0, 1.0],
            bias: None,
        };
        let mut out = [0.0; 2];
        norm_row(&[3.0, 4.0], &norm, 0.0, Flip::None, &mut out);
        let r = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / r).abs() < 1e-6 && (out[1] - 4.0 / r).abs() < 1e-6);
    }
}
