//! `strand-score`: variant-effect scores of a VCF's alleles against an
//! indexed reference (`strand-score --vcf ...`), saturation mutagenesis
//! tracks of a region (`strand-score ism ...`), and the calibration of
//! scores against a genome background (`strand-score calibrate ...`).
//!
//! - [`variant`]: allele kinds and the window that scores a variant;
//! - [`engine`]: the forward passes behind each score;
//! - [`vcf`]: reading, grouping by window, annotating, writing;
//! - [`ism`] and [`tracks`]: every SNV of a region, as TSV, bedGraph and
//!   bigWig;
//! - [`calibrate`], [`calibration`] and [`quantiles`]: the background's
//!   quantiles per score, their file, and percentiles read off them
//!   (`--calibration`).
//!
//! Each mode's options are checked by one `validate` step ([`Args::validate`])
//! into its `Settings` before any work.

mod annotate;
mod calibrate;
mod calibration;
mod engine;
mod ism;
mod plan;
mod quantiles;
mod tracks;
mod variant;
mod vcf;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser};

use self::calibration::CalibrationArg;
use self::variant::Score;
use crate::args::{
    BatchArgs, ModelArgs, OutputFile, RegionArgs, RunArgs, VcfOutArgs, DEFAULT_WINDOW,
};
use crate::shard::ShardArgs;

pub(crate) const PROG: &str = "strand-score";

/// Score variants with a Caduceus model.
///
/// Adds the scores of every ALT allele of a VCF as INFO fields (and with
/// --tsv as a table). `strand-score ism -r chr:beg-end ...` scores every
/// possible SNV of a region instead (see `strand-score ism --help`), and
/// `strand-score calibrate ...` the scores' distribution over a genome
/// background, which --calibration turns into percentiles. The scores are
/// documented in docs/score.md; a positive llr means the model finds ALT
/// more likely than REF.
#[derive(Parser, Debug)]
#[command(
    name = "strand-score",
    version,
    max_term_width = 100,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    vcf: VcfArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Saturation mutagenesis: score every SNV of a region
    ///
    /// Writes PREFIX.tsv (chrom pos ref alt llr, 1-based), and for each of
    /// A, C, G, T a track of the llr of mutating each position to that base
    /// (PREFIX.A.bedGraph and PREFIX.A.bw, ...; positions whose reference
    /// is that base are left out), plus PREFIX.mean and PREFIX.min tracks:
    /// the mean and the minimum llr over a position's three alternatives.
    #[command(max_term_width = 100)]
    Ism(ism::Args),
    /// Score quantiles over a genome background, for --calibration
    ///
    /// Scores every SNV of the background (all three alternatives at every
    /// A, C, G or T of -r/-R, or of the whole reference) with llr, and a
    /// seeded sample of its positions (--sample) with llr_masked and
    /// embed_dist, in the windows the VCF mode would use, and writes each
    /// score's quantiles (--quantiles, 1,001 by default) with the model's
    /// config and weights digests and the window. `strand-score
    /// --calibration FILE` then adds each score's percentile in this
    /// background (0-100, rising with the score); a calibration made with
    /// another model or window is refused. Percentiles of random-weight
    /// test models mean nothing, and a real model's background depends on
    /// the regions chosen (docs/score.md, section 7).
    #[command(max_term_width = 100)]
    Calibrate(calibrate::Args),
}

/// The command line: `strand-score ism ...`, `strand-score calibrate ...`
/// or `strand-score ...` (VCF).
#[derive(Debug)]
pub enum Args {
    Vcf(VcfArgs),
    Ism(ism::Args),
    Calibrate(calibrate::Args),
}

impl Args {
    /// Parses the process's arguments (clap exits on `--help` or a usage
    /// error). `ism` and `calibrate` are subcommands; without one the VCF
    /// mode's options apply (and are required).
    pub fn from_env() -> Args {
        Args::try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// [`Args::from_env`] of these arguments (the first is the program).
    pub fn try_parse_from<I, T>(argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(argv)?;
        let parsed = match matches.subcommand() {
            Some(("ism", sub)) => ism::Args::from_arg_matches(sub).map(Args::Ism),
            Some(("calibrate", sub)) => calibrate::Args::from_arg_matches(sub).map(Args::Calibrate),
            _ => VcfArgs::from_arg_matches(&matches).map(Args::Vcf),
        };
        parsed.map_err(|e| e.format(&mut Cli::command()))
    }

    /// Checks the options of either mode (see each mode's `validate`).
    pub fn validate(self) -> Result<Settings> {
        match self {
            Args::Vcf(a) => a.validate().map(Settings::Vcf),
            Args::Ism(a) => a.validate().map(Settings::Ism),
            Args::Calibrate(a) => a.validate().map(Settings::Calibrate),
        }
    }
}

/// The command line after [`Args::validate`].
#[derive(Debug)]
pub enum Settings {
    Vcf(vcf::Settings),
    Ism(ism::Settings),
    Calibrate(calibrate::Settings),
}

/// The VCF mode's options: the default, without a subcommand.
#[derive(clap::Args, Debug)]
#[command(mut_arg("output", |a| a.help(
    "Annotated VCF: .gz for BGZF with a .tbi (or .csi) index, .bcf for BCF with a .csi index, - \
     for plain VCF on stdout [default: -]"
)))]
pub struct VcfArgs {
    /// Variants: VCF (plain, gzip or BGZF) or BCF; - for stdin
    #[arg(long, value_name = "VCF", help_heading = "Input")]
    pub vcf: PathBuf,

    #[command(flatten)]
    pub common: Common,

    /// Only the variants inside these regions
    #[command(flatten)]
    pub region: RegionArgs,

    /// Leave variants on contigs missing from the reference unscored
    /// (FILTER strand_missing_contig) instead of failing
    #[arg(long, help_heading = "Input")]
    pub skip_missing_contigs: bool,

    /// Only the variants on contigs missing from the reference: the job
    /// that workflows scoring contig by contig (-r) add for the rest, so
    /// that no record is dropped (it fails on the first such variant
    /// unless --skip-missing-contigs, as a whole run would)
    #[arg(long, help_heading = "Input", conflicts_with_all = ["regions", "regions_file"])]
    pub missing_contigs_only: bool,

    #[command(flatten)]
    pub output: OutputFile,

    #[command(flatten)]
    pub output_format: VcfOutArgs,

    /// Also write the scores as a table: chrom pos id ref alt, then one
    /// column per score
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub tsv: Option<PathBuf>,

    /// Scores to compute
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Score::Llr], help_heading = "Scores")]
    pub scores: Vec<Score>,

    #[command(flatten)]
    pub calibration: CalibrationArg,

    #[command(flatten)]
    pub shard: ShardArgs,
}

/// Options shared by every mode.
#[derive(clap::Args, Debug, Clone)]
#[command(mut_arg("batch_tokens", |a| a.help(
    "Tokens per batched pass (reference, masked and alternate windows); host memory holds one \
     pass's hidden states (this × the model's width × 4 bytes) [default: 1048576]"
)))]
pub struct Common {
    /// Indexed reference FASTA (.fai; .gzi too when BGZF-compressed)
    #[arg(short = 'f', long, value_name = "FASTA", help_heading = "Input")]
    pub reference: PathBuf,

    /// Window in bases (128k and 1M are accepted) [default: 131072]
    #[arg(long, value_name = "INT", value_parser = crate::args::window_bases, help_heading = "Scores")]
    pub window: Option<u64>,

    /// Give every variant its own window centred on it, instead of sharing
    /// grid windows (one pass per position: slower)
    #[arg(long, help_heading = "Scores")]
    pub centred: bool,

    /// PH models: also score the reverse-complement window and average
    /// (PS models are strand-symmetric already)
    #[arg(long, help_heading = "Scores")]
    pub rc_average: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub batch: BatchArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

/// Tokens per batched pass unless `--batch-tokens` says otherwise.
const DEFAULT_BATCH_TOKENS: usize = 1 << 20;

/// The options of both modes after `validate`.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    pub reference: PathBuf,
    /// `--window`, its default applied.
    pub window: u64,
    pub centred: bool,
    pub rc_average: bool,
    /// `--batch-tokens`, its default applied.
    pub batch_tokens: usize,
    pub model: ModelArgs,
    pub run: RunArgs,
}

impl Common {
    /// The defaults applied (clap has checked each value).
    fn validate(self) -> CommonSettings {
        CommonSettings {
            reference: self.reference,
            window: self.window.unwrap_or(DEFAULT_WINDOW),
            centred: self.centred,
            rc_average: self.rc_average,
            batch_tokens: self.batch.tokens_or(DEFAULT_BATCH_TOKENS),
            model: self.model,
            run: self.run,
        }
    }
}

/// The largest pass a run may make: one window, or a batch of whole
/// windows up to `--batch-tokens` (what [`check_memory`] checks and
/// `--dry-run` plans).
fn largest_pass(c: &CommonSettings) -> usize {
    let window = usize::try_from(c.window).unwrap_or(usize::MAX);
    window.max(c.batch_tokens / window.max(1) * window)
}

/// Checks before any work that every device has room for the largest pass
/// ([`largest_pass`]), naming the device that has not.
fn check_memory(models: &[strand_core::Model], c: &CommonSettings) -> Result<()> {
    let window = usize::try_from(c.window).unwrap_or(usize::MAX);
    let need = largest_pass(c);
    if let Err(m) = strand_core::runner::check_pass(models, need)? {
        anyhow::bail!(
            "a {need}-token pass (--window {window}, --batch-tokens {}) does not fit the free \
             memory of {} (at most {} tokens); use a smaller --batch-tokens or --window",
            c.batch_tokens,
            m.device,
            m.fits
        );
    }
    Ok(())
}

/// Scores with settings checked by [`Args::validate`].
pub fn run(settings: Settings) -> Result<()> {
    match settings {
        Settings::Ism(s) => ism::run(s),
        Settings::Vcf(s) => vcf::run(s),
        Settings::Calibrate(s) => calibrate::run(s),
    }
}

#[cfg(test)]
mod tests;
