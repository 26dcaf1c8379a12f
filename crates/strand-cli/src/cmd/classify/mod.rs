//! `strand-classify`: run Caduceus sequence classifiers (`predict`), train a
//! linear head on a pretrained backbone (`train`), and score a classifier
//! on labelled data (`eval`). Formulas are in `docs/classify.md`.

pub mod cv;
pub mod eval;
pub mod head;
pub mod labels;
pub mod logreg;
pub mod metrics;
mod plan;
pub mod plot;
pub mod predict;
pub mod records;
pub mod train;
#[cfg(test)]
mod validate_tests;

use anyhow::{bail, Result};
use clap::{Args as ClapArgs, Parser, Subcommand};
use strand_core::model::Arch;
use strand_core::Model;

/// Classify DNA sequences with Caduceus models.
///
/// predict runs a fine-tuned CaduceusForSequenceClassification checkpoint;
/// train fits a classification head (a linear probe) on a pretrained
/// backbone and writes it as such a checkpoint; eval scores a classifier
/// on labelled sequences.
#[derive(Parser, Debug)]
#[command(name = "strand-classify", version, max_term_width = 100)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Class probabilities (or logits) of every record
    Predict(predict::Args),
    /// Fit a classification head on a backbone's pooled embeddings
    Train(train::Args),
    /// Accuracy, macro-F1, per-class precision/recall and confusion matrix
    Eval(eval::Args),
}

/// A subcommand's options after its `validate` step.
#[derive(Debug)]
pub enum Settings {
    Predict(predict::Settings),
    Train(train::Settings),
    Eval(eval::Settings),
}

impl Args {
    /// Checks the subcommand's options (see each one's `validate`).
    pub fn validate(self) -> Result<Settings> {
        Ok(match self.command {
            Command::Predict(a) => Settings::Predict(a.validate()?),
            Command::Train(a) => Settings::Train(a.validate()?),
            Command::Eval(a) => Settings::Eval(a.validate()?),
        })
    }
}

/// Runs a subcommand with settings checked by [`Args::validate`].
pub fn run(settings: Settings) -> Result<()> {
    match settings {
        Settings::Predict(s) => predict::run(s),
        Settings::Train(s) => train::run(s),
        Settings::Eval(s) => eval::run(s),
    }
}

/// How records are fed to the model; must match between `train` and
/// `predict`/`eval` of the head it wrote.
#[derive(ClapArgs, Debug, Clone)]
pub struct FeedArgs {
    /// Feed what the reference tokenizer produces by default (a trailing
    /// [SEP] token), to reproduce the reference's logits exactly
    #[arg(long, help_heading = "Input")]
    pub special_tokens: bool,

    /// PH models: average the logits of each record and its reverse
    /// complement (the reference's conjoin mode). PS models are
    /// strand-symmetric already: accepted, and changes nothing
    #[arg(long, help_heading = "Input")]
    pub conjoin: bool,
}

/// The program name used in messages.
pub const PROG: &str = "strand-classify";

/// Checks that `model` carries a classification head with labels that
/// can be written as TSV columns, and returns them.
pub fn class_labels(model: &Model) -> Result<Vec<String>> {
    labels_of(&model.config, &model.id)
}

/// [`class_labels`] of a config (`id` names the model in errors).
pub fn labels_of(cfg: &strand_core::Config, id: &str) -> Result<Vec<String>> {
    if cfg.arch != Arch::SequenceClassification {
        bail!(
            "{id}: not a sequence-classification checkpoint (architectures[0] is not \
             CaduceusForSequenceClassification); fit a head with `strand-classify train`"
        );
    }
    let labels = cfg.id2label.clone();
    for (i, l) in labels.iter().enumerate() {
        if l.is_empty() || l.contains(['\t', '\n', '\r']) {
            bail!("{id}: id2label[{i}] {l:?} cannot be a TSV column name");
        }
        if let Some(j) = labels[..i].iter().position(|m| m == l) {
            bail!("{id}: id2label[{j}] and id2label[{i}] are both {l:?}");
        }
    }
    Ok(labels)
}

/// The model and device, for `--verbose`.
pub fn describe(model: &Model) -> String {
    let labels = match model.config.num_labels() {
        0 => String::new(),
        n => format!(", {n} labels"),
    };
    format!(
        "{} ({} x {}, {}{labels}), device {}",
        model.id,
        model.config.d_model,
        model.config.n_layer,
        if model.config.rcps { "PS" } else { "PH" },
        model.describe_device()
    )
}

/// Index of the largest value; the first on ties (and NaN never wins
/// over a number).
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let is_nan = |x: &T| x.partial_cmp(x).is_none();
    let mut best = 0;
    for (i, x) in v.iter().enumerate().skip(1) {
        if *x > v[best] || (is_nan(&v[best]) && !is_nan(x)) {
            best = i;
        }
    }
    best
}

/// Softmax of f32 logits, computed in f64 (shifted by the maximum, so it
/// neither overflows nor underflows to all zeros).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let e: Vec<f64> = logits.iter().map(|&x| (x as f64 - m).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// A number for a TSV cell: the shortest decimal that reads back as the
/// same f32, in exponent form when very small or large (Rust's plain form
/// would print every zero of `1e-30`).
pub fn fmt_float(x: f32) -> String {
    let a = x.abs();
    if a == 0.0 || (1e-4..1e15).contains(&a) || !a.is_finite() {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// One line of a predictions table: the label columns (probabilities or
/// logits) and the predicted label.
pub fn prediction_cells(logits: &[f32], labels: &[String], raw: bool) -> String {
    let cells: Vec<String> = if raw {
        logits.iter().map(|&x| fmt_float(x)).collect()
    } else {
        softmax(logits)
            .iter()
            .map(|&p| fmt_float(p as f32))
            .collect()
    };
    format!("{}\t{}", cells.join("\t"), labels[argmax(logits)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_normalised() {
        let p = softmax(&[1000.0, 1000.0, -f32::MAX]);
        assert_eq!(p, [0.5, 0.5, 0.0]);
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!((p[2] - 1.0 / (1.0 + (-1f64).exp() + (-2f64).exp())).abs() < 1e-15);
    }

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0]), 1);
        assert_eq!(argmax(&[1.0, f32::NAN]), 0);
    }

    #[test]
    fn floats_round_trip() {
        assert_eq!(fmt_float(0.25), "0.25");
        assert_eq!(fmt_float(-3.0), "-3");
        assert_eq!(fmt_float(1e-30), "1e-30");
        assert_eq!(fmt_float(0.0), "0");
        let x = 0.123_456_79f32;
        assert_eq!(fmt_float(x).parse::<f32>().unwrap(), x);
    }

    #[test]
    fn prediction_cells_hold_probabilities_or_logits() {
        let labels = ["a".to_string(), "b".to_string()];
        assert_eq!(prediction_cells(&[0.0, 0.0], &labels, false), "0.5\t0.5\ta");
        assert_eq!(prediction_cells(&[-1.5, 2.0], &labels, true), "-1.5\t2\tb");
    }
}
