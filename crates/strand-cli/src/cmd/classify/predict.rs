//! `strand-classify predict`: class probabilities (or logits) of every
//! record, as a TSV table.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use strand_core::runner::{self, Batcher};
use strand_io::AtomicFile;

use super::records::{batch_logits, head_layers, Embedder};
use super::{class_labels, describe, prediction_cells, FeedArgs, PROG};
use crate::args::{
    join_layers, model_config, BatchArgs, LayerArgs, Layers, ModelArgs, OutputFile, RunArgs,
};
use crate::input::InputArgs;
use crate::shard::{Shard, ShardArgs};

/// Classify every record with a CaduceusForSequenceClassification model.
///
/// Writes a TSV table with a header: name, length, one column per label
/// (as named in the model's id2label) holding its probability, and pred
/// (the most probable label). The head sees the mean of the final hidden
/// states over all positions, as the reference does, or of the layers it
/// was trained on (strand-classify train --layer).
#[derive(ClapArgs, Debug)]
#[command(mut_arg("output", |a| a.help("Output table; - for stdout [default: -]")))]
#[command(mut_arg("batch_tokens", |a| a.help(
    "Records of equal length are run through the model together, up to this many tokens per \
     pass (on a GPU; the CPU runs them one by one) [default: 1048576]"
)))]
#[command(mut_arg("layer", |a| a.help(
    "Apply the head to the mean-pooled hidden states after layer N (0 the embedding, 1 to \
     n_layer-1 the residual stream after block N, n_layer the final norm's output) [default: \
     the layers the head was trained on, strand_head_layers in its config.json, else n_layer]; \
     must match a head that records its layers"
)))]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub output: OutputFile,

    /// Raw logits in the label columns instead of probabilities
    #[arg(long, help_heading = "Output")]
    pub logits: bool,

    // Only shard 1 writes the table's header (docs/classify.md).
    #[command(flatten)]
    pub shard: ShardArgs,

    #[command(flatten)]
    pub feed: FeedArgs,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub layer: LayerArgs,

    #[command(flatten)]
    pub batch: BatchArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

/// Tokens per batched pass unless `--batch-tokens` says otherwise.
const DEFAULT_BATCH_TOKENS: usize = 1 << 20;

/// `predict`'s options after [`Args::validate`].
#[derive(Debug)]
pub struct Settings {
    pub input: InputArgs,
    /// `-o`, `-` (stdout) when not given.
    pub output: PathBuf,
    pub logits: bool,
    pub shard: Option<Shard>,
    /// `--batch-tokens`, its default applied.
    pub batch_tokens: usize,
    pub feed: FeedArgs,
    pub model: ModelArgs,
    /// `--layer` checked against the model and its head; `None`: the
    /// head's own layers (see [`head_layers`]).
    pub layers: Option<Vec<usize>>,
    pub run: RunArgs,
}

impl Args {
    /// Refuses, before any work, input options that conflict, an output
    /// that is an input, and layers the model or its head cannot take.
    pub fn validate(self) -> Result<Settings> {
        self.input.check()?;
        let output = self.output.or_stdout();
        let mut inputs = self.input.files();
        inputs.extend(self.model.files());
        crate::args::check_outputs(&[&output], &inputs)?;
        let layers = match &self.layer.layer {
            None => None,
            Some(given) => {
                let m = &self.model.model;
                let cfg = model_config(m)?;
                let layers = self.layer.resolve_with(&cfg, m)?;
                check_head(&cfg, m, given, layers.as_deref())?;
                layers
            }
        };
        Ok(Settings {
            input: self.input,
            output,
            logits: self.logits,
            shard: self.shard.shard,
            batch_tokens: self.batch.tokens_or(DEFAULT_BATCH_TOKENS),
            feed: self.feed,
            model: self.model,
            layers,
            run: self.run,
        })
    }
}

/// `--layer` against the head of `model`: the layers it records
/// (`strand_head_layers`), if any; else (a head on the final layer, as the
/// reference trains them) one layer, whose width the head takes.
fn check_head(
    cfg: &strand_core::Config,
    model: &str,
    given: &Layers,
    layers: Option<&[usize]>,
) -> Result<()> {
    let own = &cfg.head_layers;
    if !own.is_empty() && own[..] != [cfg.n_layer] {
        if layers != Some(&own[..]) {
            bail!(
                "--layer {given}: the head of {model} was trained on layer(s) {} \
                 (strand_head_layers in its config.json): leave --layer out or give --layer {}",
                join_layers(own),
                join_layers(own)
            );
        }
    } else if layers.is_some_and(|l| l.len() > 1) {
        bail!(
            "--layer {given}: the head of {model} reads one layer ({} values): a list needs a \
             head trained on those layers (strand-classify train --layer {given})",
            cfg.d_model
        );
    }
    Ok(())
}

/// Predicts with settings checked by [`Args::validate`].
pub fn run(args: Settings) -> Result<()> {
    args.run.init_threads()?;
    if let Some(format) = args.run.dry_run {
        return super::plan::predict(&args, format);
    }
    // Input and output first: a typo should not cost a model load.
    let mut input = args.input.open()?;
    let file = input.display_name();
    let selected = match args.shard {
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
            layers: args.layers.clone().or_else(|| head_layers(model)),
        })
        .collect();
    if args.shard.is_none_or(|s| s.is_first()) {
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
    args.run.report_peak(PROG);
    Ok(())
}
