//! The heads on top of the final hidden states, as free functions of the
//! config and the numbers (no device involved): the strand views the
//! classification head pools, its logits, and the strand-symmetric
//! per-base embedding of a PS model.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::Config;

/// Mean-pooled hidden states `[len, width]` as the classification head
/// sees them: one `d_model` vector per strand view (two for PS, the second
/// with its channels flipped back; one for PH).
pub fn pooled_views(cfg: &Config, hidden: &[f32]) -> Vec<Vec<f32>> {
    let d = cfg.d_model;
    let w = cfg.width();
    let len = hidden.len() / w;
    let mut sums = vec![vec![0.0f64; d]; w / d];
    for row in hidden.chunks_exact(w) {
        for (view, sum) in sums.iter_mut().enumerate() {
            let part = &row[view * d..(view + 1) * d];
            if view == 0 {
                sum.iter_mut().zip(part).for_each(|(s, &x)| *s += x as f64);
            } else {
                // flipLC(outB): position order is irrelevant to a mean,
                // the channel reversal is not.
                sum.iter_mut()
                    .zip(part.iter().rev())
                    .for_each(|(s, &x)| *s += x as f64);
            }
        }
    }
    sums.into_iter()
        .map(|s| s.into_iter().map(|x| (x / len as f64) as f32).collect())
        .collect()
}

/// Classification logits `[num_labels]` of pooled views: the bias-free
/// head `score` (`[num_labels, d_model]`, [`crate::Model::class_head`])
/// on each view, averaged over the views (PS strands, or a PH record and
/// its reverse complement).
pub fn class_logits(cfg: &Config, score: &[f32], views: &[Vec<f32>]) -> Vec<f32> {
    let d = cfg.d_model;
    let mut logits = vec![0.0f32; cfg.num_labels()];
    for v in views {
        for (k, out) in logits.iter_mut().enumerate() {
            let row = &score[k * d..(k + 1) * d];
            *out += row.iter().zip(v).map(|(a, b)| a * b).sum::<f32>();
        }
    }
    let n = views.len() as f32;
    logits.iter_mut().for_each(|x| *x /= n);
    logits
}

/// Strand-symmetric per-base embedding of a PS model, `[len, d_model]`:
/// `(outA[l] + revC(outB[l])) / 2` (spec section 10).
pub fn rc_average(cfg: &Config, hidden: &[f32]) -> Result<Vec<f32>> {
    if !cfg.rcps {
        return Err(Error::Unsupported(
            "reverse-complement averaging needs a PS (rcps) model".into(),
        ));
    }
    let d = cfg.d_model;
    let mut out = vec![0.0f32; hidden.len() / 2];
    // Rows are independent; long windows are worth the threads.
    out.par_chunks_mut(d)
        .zip(hidden.par_chunks_exact(2 * d))
        .for_each(|(o, row)| {
            let (a, b) = row.split_at(d);
            for ((o, x), y) in o.iter_mut().zip(a).zip(b.iter().rev()) {
                *o = (x + y) / 2.0;
            }
        });
    Ok(out)
}
