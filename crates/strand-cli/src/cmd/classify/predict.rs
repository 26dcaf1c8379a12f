//! `strand-classify predict`: class probabilities (or logits) of every
//! record, as a TSV table.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use strand_core::runner::{self, Batcher};
use strand_io::AtomicFile;

use super::records::{batch_logits, Embedder};
use super::{class_labels, describe, prediction_cells, FeedArgs, PROG};
use crate::args::{ModelArgs, RunArgs};
use crate::input::InputArgs;
use crate::shard::ShardArgs;

/// Classify every record with a CaduceusForSequenceClassification model.
///
/// Writes a TSV table with a header: name, length, one column per label
/// (as named in the model's id2label) holding its probability, and pred
/// (the most probable label). The head sees the mean of the final hidden
/// states over all positions, as the reference does.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    /// Output table; - for stdout
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "-",
        help_heading = "Output"
    )]
    pub output: PathBuf,

    /// Raw logits in the label columns instead of probabilities
    #[arg(long, help_heading = "Output")]
    pub logits: bool,

    // Only shard 1 writes the table's header (docs/classify.md).
    #[command(flatten)]
    pub shard: ShardArgs,

    /// Records of equal length are run through the model together, up to
    /// this many tokens per pass (on a GPU; the CPU runs them one by one)
    #[arg(long, value_name = "INT", default_value_t = 1 << 20, value_parser = crate::args::tokens(), help_heading = "Run")]
    pub batch_tokens: usize,

    #[command(flatten)]
    pub feed: FeedArgs,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(args: Args) -> Result<()> {
    args.run.init_threads()?;
    // Input and output first: a typo should not cost a model load.
    let mut inputs = args.input.files();
    inputs.extend(args.model.files());
    crate::args::check_outputs(&[&args.output], &inputs)?;
    let mut input = args.input.open()?;
    let file = input.display_name();
    let selected = match args.shard.shard {
        Some(shard) => Some(
            shard.select(
                &input
                    .lengths()
                    .context("reading the input's lengths for --shard")?,
            ),
        ),
        None => None,
    };
    let mut out = AtomicFile::create(&args.output)?;
    let models = args.model.load_all(PROG, args.run.quiet)?;
    if let Err(m) = runner::check_pass(&models, args.batch_tokens)? {
        anyhow::bail!(
            "a {}-token pass (--batch-tokens) does not fit the free memory of {} (at most {} \
             tokens); use a smaller --batch-tokens",
            args.batch_tokens,
            m.device,
            m.fits
        );
    }
    let labels = class_labels(&models[0])?;
    if args.run.verbose {
        eprintln!("{PROG}: model {}", describe(&models[0]));
    }
    let embedders: Vec<Embedder> = models
        .iter()
        .map(|model| Embedder {
            model,
            special_tokens: args.feed.special_tokens,
            conjoin: args.feed.conjoin,
        })
        .collect();
    if args.shard.shard.is_none_or(|s| s.is_first()) {
        writeln!(out, "name\tlength\t{}\tpred", labels.join("\t"))
            .map_err(|e| out.write_error(e))?;
    }
    let bar = crate::progress::bases(args.run.quiet);
    // Batches of equal-length records, in input order; with several GPUs
    // each takes the next batch when free, and the rows are written in
    // input order (the batches do not depend on the number of GPUs).
    let mut batcher = Batcher::new(args.batch_tokens);
    let mut n = 0u64;
    let batches = std::iter::from_fn(|| loop {
        let Some(next) = input.next_record() else {
            return batcher.finish().map(Ok);
        };
        let rec = match next {
            Ok((_, rec)) => rec,
            Err(e) => return Some(Err(e)),
        };
        n += 1;
        if selected.as_ref().is_some_and(|sel| !sel[n as usize - 1]) {
            continue;
        }
        let len = rec.seq.len();
        if let Some(batch) = batcher.push((n, rec), len) {
            return Some(Ok(batch));
        }
    });
    runner::map_ordered(
        &embedders,
        batches,
        |emb, batch: Vec<(u64, strand_io::Record)>| {
            let logits = batch_logits(emb, &file, &batch)?;
            Ok((batch, logits))
        },
        |(batch, logits)| {
            for ((_, rec), logits) in batch.iter().zip(logits) {
                let cells = prediction_cells(&logits, &labels, args.logits);
                writeln!(out, "{}\t{}\t{cells}", rec.id, rec.seq.len())
                    .map_err(|e| out.write_error(e))?;
                bar.inc(rec.seq.len() as u64);
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    out.commit()?;
    Ok(())
}
