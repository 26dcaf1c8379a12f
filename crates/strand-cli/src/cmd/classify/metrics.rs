//! Classification metrics from logits and true classes, and their TSV form.
//! Definitions are in `docs/classify.md`.

use std::io::Write;

use super::{argmax, fmt_float};

/// Per-class scores (one-vs-rest).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScores {
    pub support: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// `None` when the class is absent from the data or is all of it.
    pub auroc: Option<f64>,
}

/// Everything reported for one set of predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub n: u64,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Mean cross-entropy, `-ln p(true class)`.
    pub log_loss: f64,
    pub classes: Vec<ClassScores>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

/// Scores `logits` (`n x k`, row-major) against true classes `y`.
pub fn score(logits: &[f64], y: &[usize], k: usize) -> Scores {
    let n = y.len();
    let mut confusion = vec![vec![0u64; k]; k];
    let mut log_loss = 0.0;
    for (l, &c) in logits.chunks_exact(k).zip(y) {
        confusion[c][argmax(l)] += 1;
        log_loss += super::logreg::log_sum_exp(l) - l[c];
    }
    let correct: u64 = (0..k).map(|c| confusion[c][c]).sum();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let classes: Vec<ClassScores> = (0..k)
        .map(|c| {
            let tp = confusion[c][c];
            let support: u64 = confusion[c].iter().sum();
            let predicted: u64 = (0..k).map(|t| confusion[t][c]).sum();
            let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            // Rank by the class's probability, not its raw logit: with
            // more than two classes the two order records differently, and
            // the probability is what the predictions table shows.
            let prob: Vec<f64> = logits
                .chunks_exact(k)
                .map(|l| (l[c] - super::logreg::log_sum_exp(l)).exp())
                .collect();
            let positive: Vec<bool> = y.iter().map(|&t| t == c).collect();
            ClassScores {
                support,
                precision,
                recall,
                f1,
                auroc: auroc(&prob, &positive),
            }
        })
        .collect();
    // Macro average over the classes that occur in the data or the
    // predictions; a class that never occurs in either has no F1.
    let present: Vec<usize> = (0..k)
        .filter(|&c| classes[c].support > 0 || (0..k).any(|t| confusion[t][c] > 0))
        .collect();
    let macro_f1 =
        present.iter().map(|&c| classes[c].f1).sum::<f64>() / present.len().max(1) as f64;
    Scores {
        n: n as u64,
        accuracy: ratio(correct, n as u64),
        macro_f1,
        log_loss: log_loss / n.max(1) as f64,
        classes,
        confusion,
    }
}

/// Area under the ROC curve: the probability that a random positive
/// scores higher than a random negative, ties counting half
/// (Mann-Whitney U with mid-ranks). `None` without both kinds.
pub fn auroc(score: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && score[order[j + 1]] == score[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mid * order[i..=j].iter().filter(|&&r| positive[r]).count() as f64;
        i = j + 1;
    }
    let (p, q) = (n_pos as f64, n_neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * q))
}

/// Writes `scores` as rows `split metric label value` (no header; see
/// [`HEADER`]). Whole-set metrics have label `.`; an undefined AUROC is
/// `NA`.
pub fn write_rows(
    out: &mut impl Write,
    split: &str,
    labels: &[String],
    s: &Scores,
) -> std::io::Result<()> {
    writeln!(out, "{split}\tn\t.\t{}", s.n)?;
    writeln!(
        out,
        "{split}\taccuracy\t.\t{}",
        fmt_float(s.accuracy as f32)
    )?;
    writeln!(
        out,
        "{split}\tmacro_f1\t.\t{}",
        fmt_float(s.macro_f1 as f32)
    )?;
    writeln!(
        out,
        "{split}\tlog_loss\t.\t{}",
        fmt_float(s.log_loss as f32)
    )?;
    for (label, c) in labels.iter().zip(&s.classes) {
        writeln!(out, "{split}\tsupport\t{label}\t{}", c.support)?;
        writeln!(
            out,
            "{split}\tprecision\t{label}\t{}",
            fmt_float(c.precision as f32)
        )?;
        writeln!(
            out,
            "{split}\trecall\t{label}\t{}",
            fmt_float(c.recall as f32)
        )?;
        writeln!(out, "{split}\tf1\t{label}\t{}", fmt_float(c.f1 as f32))?;
        let auroc = c.auroc.map_or_else(|| "NA".into(), |a| fmt_float(a as f32));
        writeln!(out, "{split}\tauroc\t{label}\t{auroc}")?;
    }
    Ok(())
}

/// Header line of a metrics table.
pub const HEADER: &str = "split\tmetric\tlabel\tvalue";

/// Writes the confusion matrix: a header `true\predicted` and the labels,
/// then one row per true label.
pub fn write_confusion(
    out: &mut impl Write,
    labels: &[String],
    confusion: &[Vec<u64>],
) -> std::io::Result<()> {
    writeln!(out, "true\\predicted\t{}", labels.join("\t"))?;
    for (label, row) in labels.iter().zip(confusion) {
        let counts: Vec<String> = row.iter().map(u64::to_string).collect();
        writeln!(out, "{label}\t{}", counts.join("\t"))?;
    }
    Ok(())
}

/// One line for a person: accuracy, macro-F1 and the AUROC of each class.
pub fn summary(labels: &[String], s: &Scores) -> String {
    let aurocs: Vec<String> = labels
        .iter()
        .zip(&s.classes)
        .map(|(l, c)| match c.auroc {
            Some(a) => format!("{l} {a:.3}"),
            None => format!("{l} NA"),
        })
        .collect();
    format!(
        "accuracy {:.3}, macro-F1 {:.3}, AUROC {}",
        s.accuracy,
        s.macro_f1,
        aurocs.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_counts_ties_half() {
        let pos = [true, false, true, false];
        assert_eq!(auroc(&[0.9, 0.1, 0.8, 0.2], &pos), Some(1.0));
        assert_eq!(auroc(&[0.1, 0.9, 0.2, 0.8], &pos), Some(0.0));
        assert_eq!(auroc(&[0.5, 0.5, 0.5, 0.5], &pos), Some(0.5));
        // positives 0.8, 0.5; negatives 0.5, 0.1: pairs (0.8>0.5, 0.8>0.1,
        // 0.5=0.5 -> 1/2, 0.5>0.1) = 3.5 of 4.
        assert_eq!(auroc(&[0.8, 0.5, 0.5, 0.1], &pos), Some(0.875));
        assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn scores_of_a_small_confusion() {
        // true: a a a b b c ; predicted: a a b b c c
        let logit = |c: usize| {
            let mut l = vec![0.0; 3];
            l[c] = 2.0;
            l
        };
        let y = [0, 0, 0, 1, 1, 2];
        let pred = [0, 0, 1, 1, 2, 2];
        let logits: Vec<f64> = pred.iter().flat_map(|&c| logit(c)).collect();
        let s = score(&logits, &y, 3);
        assert_eq!(s.n, 6);
        assert!((s.accuracy - 4.0 / 6.0).abs() < 1e-15);
        assert_eq!(
            s.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        let c = &s.classes;
        assert_eq!((c[0].precision, c[0].recall), (1.0, 2.0 / 3.0));
        assert_eq!((c[1].precision, c[1].recall), (0.5, 0.5));
        assert_eq!((c[2].precision, c[2].recall), (0.5, 1.0));
        let f1 = [0.8, 0.5, 2.0 / 3.0];
        for (got, want) in c.iter().zip(f1) {
            assert!((got.f1 - want).abs() < 1e-12);
        }
        assert!((s.macro_f1 - f1.iter().sum::<f64>() / 3.0).abs() < 1e-12);
        let e = (2f64.exp() + 2.0).ln();
        let want = (4.0 * (e - 2.0) + 2.0 * e) / 6.0;
        assert!((s.log_loss - want).abs() < 1e-12);
    }

    #[test]
    fn rows_and_confusion_are_tab_separated() {
        let labels = vec!["x".to_string(), "y".to_string()];
        let s = score(&[1.0, 0.0, 0.0, 1.0], &[0, 1], 2);
        let mut buf = Vec::new();
        write_rows(&mut buf, "cv", &labels, &s).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with("cv\tn\t.\t2\ncv\taccuracy\t.\t1\n"),
            "{text}"
        );
        assert!(text.contains("cv\tauroc\ty\t1\n"), "{text}");
        let mut buf = Vec::new();
        write_confusion(&mut buf, &labels, &s.confusion).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "true\\predicted\tx\ty\nx\t1\t0\ny\t0\t1\n"
        );
    }
}
