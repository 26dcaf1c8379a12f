//! `strand-embed`: per-base (or pooled) hidden states of every record of a
//! FASTA/FASTQ file, written as one safetensors file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use strand_core::tokenizer;
use strand_io::{safetensors::Writer, IdSet, Reader};

use crate::args::{ModelArgs, RunArgs};

/// Embed DNA sequences with a Caduceus model.
///
/// Writes one float32 tensor per record, named by the record id: [L, W]
/// per-base hidden states (row i is base i), or [W] with --pool mean.
/// W is the model width (2 x d_model for PS models, whose two halves are
/// the forward and reverse-complement strands).
#[derive(Parser, Debug)]
#[command(name = "strand-embed", version, max_term_width = 100)]
pub struct Args {
    /// FASTA or FASTQ, plain or gzip/BGZF; - for stdin
    #[arg(value_name = "IN")]
    pub input: PathBuf,

    /// Output safetensors file; - for stdout
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    pub output: PathBuf,

    /// none: one row per base; mean: the mean over the record's rows
    #[arg(long, value_enum, default_value_t = Pool::None, help_heading = "Output")]
    pub pool: Pool,

    /// Feed what the reference tokenizer produces by default (a trailing
    /// [SEP] token): one extra row at the end, and every row changes
    #[arg(long, help_heading = "Output")]
    pub special_tokens: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pool {
    None,
    Mean,
}

impl Pool {
    fn name(self) -> &'static str {
        match self {
            Pool::None => "none",
            Pool::Mean => "mean",
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    args.run.init_threads()?;
    // Open the input and output before loading the model: a typo should
    // not cost a multi-gigabyte load.
    let reader = Reader::from_path(&args.input)?;
    let file = reader.display_name().to_string();
    let model = args.model.load("strand-embed", args.run.quiet)?;
    if args.run.verbose {
        eprintln!(
            "strand-embed: model {} ({} x {}, {}), device {}",
            model.id,
            model.config.d_model,
            model.config.n_layer,
            if model.config.rcps { "PS" } else { "PH" },
            model.describe_device()
        );
    }
    let metadata = BTreeMap::from([
        (
            "strand_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("model".to_string(), model.id.clone()),
        (
            "model_config_sha256".to_string(),
            model.config.sha256.clone(),
        ),
        ("pool".to_string(), args.pool.name().to_string()),
        (
            "special_tokens".to_string(),
            args.special_tokens.to_string(),
        ),
        ("width".to_string(), model.width().to_string()),
        ("layout".to_string(), layout(&model.config)),
    ]);
    let mut out = Writer::create(&args.output, metadata)?;
    let mut ids = IdSet::new(file.clone());
    let bar = crate::progress::bases(args.run.quiet);

    for (i, rec) in reader.enumerate() {
        let rec = rec?;
        let n = i as u64 + 1;
        ids.insert(&rec.id, n)?;
        rec.check_model_input(&file, n)?;
        let tokens = if args.special_tokens {
            tokenizer::encode_with_specials(&rec.seq)
        } else {
            tokenizer::encode_bases(&rec.seq)
        };
        let hidden = model
            .forward(&tokens)
            .with_context(|| format!("{file}: record {n} (\"{}\")", rec.id))?;
        let w = model.width();
        match args.pool {
            Pool::None => out.add_f32(&rec.id, &[tokens.len(), w], &hidden)?,
            Pool::Mean => out.add_f32(&rec.id, &[w], &mean_rows(&hidden, w))?,
        }
        bar.inc(rec.seq.len() as u64);
    }
    bar.finish_and_clear();
    out.finish()?;
    Ok(())
}

/// How to read the columns, for the file's metadata.
fn layout(cfg: &strand_core::Config) -> String {
    if cfg.rcps {
        format!(
            "PS: columns 0..{d} forward strand, {d}..{w} reverse-complement strand channel-reversed; \
             (a[j] + b[{d}-1-j])/2 is the strand-symmetric embedding",
            d = cfg.d_model,
            w = 2 * cfg.d_model
        )
    } else {
        format!("PH: columns 0..{}", cfg.d_model)
    }
}

/// Column means of a row-major `[rows, w]` matrix, summed in f64.
fn mean_rows(m: &[f32], w: usize) -> Vec<f32> {
    let rows = m.len() / w;
    let mut sum = vec![0.0f64; w];
    for row in m.chunks_exact(w) {
        for (s, &x) in sum.iter_mut().zip(row) {
            *s += x as f64;
        }
    }
    sum.into_iter().map(|s| (s / rows as f64) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_rows_is_the_column_mean() {
        assert_eq!(mean_rows(&[1.0, 2.0, 3.0, 6.0], 2), vec![2.0, 4.0]);
    }
}
