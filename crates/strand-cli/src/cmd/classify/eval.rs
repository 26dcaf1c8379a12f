//! `strand-classify eval`: how well a classifier does on labelled records.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use strand_io::{AtomicFile, Error as IoError, Reader};

use super::labels::Labels;
use super::records::{embed_labelled, head_layers, head_logits, Embedder, Sample};
use super::{class_labels, describe, metrics, plot, FeedArgs, PROG};
use crate::args::{ModelArgs, OutputFile, RunArgs};

/// Score a CaduceusForSequenceClassification model on labelled sequences.
///
/// Writes a metrics table (split, metric, label, value): number of
/// records, accuracy, macro-F1 and log-loss, and per label its support,
/// precision, recall, F1 and one-vs-rest AUROC. Optionally the confusion
/// matrix as TSV and as a PNG heat map.
#[derive(ClapArgs, Debug)]
#[command(mut_arg("output", |a| a.help("Metrics table; - for stdout [default: -]")))]
pub struct Args {
    /// Labelled FASTA or FASTQ, plain or gzip/BGZF; - for stdin
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    pub data: PathBuf,

    /// Labels as name<TAB>label lines [default: label=VALUE in the headers]
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    pub labels: Option<PathBuf>,

    #[command(flatten)]
    pub output: OutputFile,

    /// Also write the confusion matrix (rows: true label, columns:
    /// predicted) as TSV
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub confusion: Option<PathBuf>,

    /// Also draw the confusion matrix as a PNG heat map
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub plot: Option<PathBuf>,

    #[command(flatten)]
    pub feed: FeedArgs,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

/// `eval`'s options after [`Args::validate`].
#[derive(Debug)]
pub struct Settings {
    pub data: PathBuf,
    pub labels: Option<PathBuf>,
    /// `-o`, `-` (stdout) when not given.
    pub output: PathBuf,
    pub confusion: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub feed: FeedArgs,
    pub model: ModelArgs,
    pub run: RunArgs,
}

impl Args {
    /// Refuses, before any work: a GPU list (eval runs on one device) and
    /// outputs that are inputs (or one another).
    pub fn validate(self) -> Result<Settings> {
        self.model.device.one(PROG)?;
        let output = self.output.or_stdout();
        let mut inputs = vec![self.data.clone()];
        inputs.extend(self.labels.clone());
        inputs.extend(self.model.files());
        let mut outputs = vec![output.as_path()];
        outputs.extend(self.confusion.as_deref());
        outputs.extend(self.plot.as_deref());
        crate::args::check_outputs(&outputs, &inputs)?;
        Ok(Settings {
            data: self.data,
            labels: self.labels,
            output,
            confusion: self.confusion,
            plot: self.plot,
            feed: self.feed,
            model: self.model,
            run: self.run,
        })
    }
}

/// Evaluates with settings checked by [`Args::validate`].
pub fn run(args: Settings) -> Result<()> {
    args.run.init_threads()?;
    if let Some(format) = args.run.dry_run {
        return super::plan::eval(&args, format);
    }
    let labels_src = Labels::open(args.labels.as_deref())?;
    let reader = Reader::from_path(&args.data)?;
    let file = reader.display_name().to_string();
    let mut out = AtomicFile::create(&args.output)?;
    let mut confusion_out = args
        .confusion
        .as_deref()
        .map(AtomicFile::create)
        .transpose()?;
    let plot_out = args.plot.as_deref().map(AtomicFile::create).transpose()?;
    let model = args.model.load(PROG, args.run.quiet)?;
    let labels = class_labels(&model)?;
    if args.run.verbose {
        eprintln!("{PROG}: model {}", describe(&model));
    }
    let emb = Embedder {
        model: &model,
        special_tokens: args.feed.special_tokens,
        conjoin: args.feed.conjoin,
        // A head trained on other layers (train --layer) reads those.
        layers: head_layers(&model),
    };
    let bar = crate::progress::bases(args.run.quiet);
    let samples = embed_labelled(reader, &labels_src, &emb, &bar)?;
    bar.finish_and_clear();
    let y = class_indices(&file, &samples, &labels, "the model's labels")?;
    let mut logits = Vec::with_capacity(samples.len() * labels.len());
    for s in &samples {
        logits.extend(head_logits(&model, &s.views)?.iter().map(|&v| v as f64));
    }
    let scores = metrics::score(&logits, &y, labels.len());

    let text = {
        let mut buf = Vec::new();
        writeln!(buf, "{}", metrics::HEADER)?;
        metrics::write_rows(&mut buf, "eval", &labels, &scores)?;
        buf
    };
    out.write_all(&text).map_err(|e| out.write_error(e))?;
    if let Some(c) = confusion_out.as_mut() {
        metrics::write_confusion(c, &labels, &scores.confusion).map_err(|e| c.write_error(e))?;
    }
    let plot_out = match plot_out {
        Some(p) => {
            let title = format!(
                "{file}: {} records, accuracy {:.3}",
                scores.n, scores.accuracy
            );
            Some(plot::confusion_png(p, &labels, &scores.confusion, &title)?)
        }
        None => None,
    };
    // All outputs together, once all are complete.
    strand_io::commit_all(std::iter::once(out).chain(confusion_out).chain(plot_out))?;
    if !args.run.quiet {
        eprintln!(
            "{PROG}: {file}: {} records: {}",
            scores.n,
            metrics::summary(&labels, &scores)
        );
    }
    args.run.report_peak(PROG);
    Ok(())
}

/// Each sample's label as an index into `labels`; a label outside them is
/// an error naming the record (`known` says where `labels` come from).
pub fn class_indices(
    file: &str,
    samples: &[Sample],
    labels: &[String],
    known: &str,
) -> Result<Vec<usize>> {
    let index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    samples
        .iter()
        .map(|s| {
            index.get(s.label.as_str()).copied().ok_or_else(|| {
                IoError::invalid_record(
                    file,
                    s.n,
                    s.id.clone(),
                    format!(
                        "unknown label \"{}\" (not among {known}: {})",
                        s.label,
                        labels.join(", ")
                    ),
                )
                .into()
            })
        })
        .collect()
}
