//! `strand-classify predict`: class probabilities (or logits) of every
//! record, as a TSV table.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use strand_io::{AtomicFile, Reader};

use super::records::{each_record, head_logits, Batcher, Embedder, Shard};
use super::{class_labels, describe, prediction_cells, FeedArgs, PROG};
use crate::args::{ModelArgs, RunArgs};

/// Classify every record with a CaduceusForSequenceClassification model.
///
/// Writes a TSV table with a header: name, length, one column per label
/// (as named in the model's id2label) holding its probability, and pred
/// (the most probable label). The head sees the mean of the final hidden
/// states over all positions, as the reference does.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// FASTA or FASTQ, plain or gzip/BGZF; - for stdin
    #[arg(value_name = "IN")]
    pub input: PathBuf,

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

    /// Only records I, I+N, I+2N, ... (1-based): N jobs with 1/N .. N/N
    /// together cover the file once
    #[arg(long, value_name = "I/N", help_heading = "Input")]
    pub shard: Option<Shard>,

    /// Records of equal length are run through the model together, up to
    /// this many tokens per pass (on a GPU; the CPU runs them one by one)
    #[arg(long, value_name = "INT", default_value_t = 1 << 20, help_heading = "Run")]
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
    let reader = Reader::from_path(&args.input)?;
    let file = reader.display_name().to_string();
    let mut out = AtomicFile::create(&args.output)?;
    let model = args.model.load(PROG, args.run.quiet)?;
    let labels = class_labels(&model)?;
    if args.run.verbose {
        eprintln!("{PROG}: model {}", describe(&model));
    }
    let emb = Embedder {
        model: &model,
        special_tokens: args.feed.special_tokens,
        conjoin: args.feed.conjoin,
    };
    writeln!(out, "name\tlength\t{}\tpred", labels.join("\t")).map_err(|e| out.write_error(e))?;
    let bar = crate::progress::bases(args.run.quiet);
    let mut write_batch = |batch: Vec<(u64, strand_io::Record)>| -> Result<()> {
        for ((_, rec), views) in batch.iter().zip(emb.views_batch(&file, &batch)?) {
            let logits = head_logits(&model, &views)?;
            let cells = prediction_cells(&logits, &labels, args.logits);
            writeln!(out, "{}\t{}\t{cells}", rec.id, rec.seq.len())
                .map_err(|e| out.write_error(e))?;
            bar.inc(rec.seq.len() as u64);
        }
        Ok(())
    };
    let mut batcher = Batcher::new(args.batch_tokens);
    each_record(reader, args.shard, |n, rec| match batcher.push(n, rec) {
        Some(batch) => write_batch(batch),
        None => Ok(()),
    })?;
    if let Some(batch) = batcher.finish() {
        write_batch(batch)?;
    }
    bar.finish_and_clear();
    out.commit()?;
    Ok(())
}
