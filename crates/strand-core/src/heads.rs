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

/// [`pooled_views`] of several layers' hidden states (each `[len,
/// width]`), joined per view: view `v` is the layers' `v`-th views one
/// after the other, as a head that reads those layers
/// ([`Config::head_layers`]) sees them.
pub fn pooled_layer_views(cfg: &Config, layers: &[&[f32]]) -> Vec<Vec<f32>> {
    let mut out: Vec<Vec<f32>> = Vec::new();
    for hidden in layers {
        for (i, view) in pooled_views(cfg, hidden).into_iter().enumerate() {
            match out.get_mut(i) {
                Some(o) => o.extend(view),
                None => out.push(view),
            }
        }
    }
    out
}

/// Classification logits `[num_labels]` of pooled views: the bias-free
/// head `score` (`[num_labels, head_width]`, [`crate::Model::class_head`])
/// on each view, averaged over the views (PS strands, or a PH record and
/// its reverse complement). A view is `d_model` wide, or for a head that
/// reads several layers ([`Config::head_layers`]) their pooled views one
/// after the other.
pub fn class_logits(cfg: &Config, score: &[f32], views: &[Vec<f32>]) -> Vec<f32> {
    let d = cfg.head_width();
    assert!(
        views.iter().all(|v| v.len() == d),
        "views as wide as the head's input"
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let json = format!(
            r#"{{"d_model": 2, "n_layer": 2, "vocab_size": 16, "rcps": true,
            "complement_map": {{"7": 10, "10": 7}},
            "architectures": ["CaduceusForSequenceClassification"],
            "id2label": {{"0": "a", "1": "b"}}{extra}}}"#
        );
        Config::from_json(json.as_bytes(), std::path::Path::new("config.json")).unwrap()
    }

    #[test]
    fn layer_views_are_joined_per_view() {
        let cfg = config("");
        // Two rows of a PS stream [a0 a1 | b0 b1]: view B is channel-reversed.
        let l1 = [1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 5.0, 6.0];
        let l2 = [0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 1.0, 0.0];
        assert_eq!(pooled_views(&cfg, &l1), [[2.0, 3.0], [5.0, 4.0]]);
        let joined = pooled_layer_views(&cfg, &[&l1, &l2]);
        assert_eq!(joined, [[2.0, 3.0, 0.0, 1.0], [5.0, 4.0, 0.0, 1.0]]);
        assert_eq!(pooled_layer_views(&cfg, &[&l1]), pooled_views(&cfg, &l1));

        // A head over two layers is twice as wide, and averages the views.
        let cfg = config(r#", "strand_head_layers": [1, 2]"#);
        let score = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        assert_eq!(class_logits(&cfg, &score, &joined), [3.5, 1.0]);
    }
}
