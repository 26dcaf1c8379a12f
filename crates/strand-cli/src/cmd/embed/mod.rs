//! `strand-embed`: per-base, binned or mean hidden states of FASTA/FASTQ
//! records, indexed-FASTA regions or BAM reads.
//!
//! - [`batch`]: windows, batched passes, stitching, pooling, in order;
//! - [`pool`]: `--pool none|mean|bin:N`;
//! - [`output`]: safetensors / npy / TSV files, one file or one per item;
//! - [`settings`]: the options checked before any work ([`Args::validate`]).
//!
//! Inputs ([`crate::input`]) and shards ([`crate::shard`]) are shared with
//! the other commands.

mod batch;
mod layers;
mod names;
mod output;
mod plan;
mod pool;
mod settings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use strand_core::runner;
use strand_io::Dtype;

pub use self::settings::{Dest, Round, Settings};

use self::batch::Job;
use self::output::{Format, Opts};
use self::pool::Pool;
use crate::args::{join_layers, BatchArgs, LayerArgs, ModelArgs, OutputFile, RunArgs, WindowSpec};
use crate::input::InputArgs;
use crate::progress::Progress;
use crate::shard::ShardArgs;

/// Embed DNA with a Caduceus model.
///
/// Reads FASTA/FASTQ records (plain, gzip or BGZF; - for stdin), regions
/// of an indexed FASTA (-r/-R), or the reads of a BAM file (--bam). Writes
/// one tensor per record or region: [L, W] per-base hidden states (row i
/// is base i), [L/N, W] bin means (--pool bin:N) or [W] (--pool mean). W is
/// the model width: 2 x d_model for PS models, whose two halves are the
/// forward and the reverse-complement strand (d_model with --rc-average).
/// Sequences longer than --window are embedded in overlapping windows and
/// stitched; see README.md. --layer N stores the hidden states after layer
/// N instead of the final ones, as <name>.layer<N>.
#[derive(Parser, Debug)]
#[command(name = "strand-embed", version, max_term_width = 100)]
#[command(group(clap::ArgGroup::new("dest").required(true).args(["output", "out_dir"])))]
#[command(mut_arg("output", |a| a.help("Output file (safetensors or tsv); - for stdout")))]
#[command(mut_arg("batch_tokens", |a| a.help(
    "Tokens per round of batched passes, as strand-score and strand-classify count them \
     [default: 1,048,576 on a GPU, 65,536 on the CPU; at least one window]"
)))]
#[command(mut_arg("layer", |a| a.help(
    "Store the hidden states after layer N instead of the final ones: 0 the embedding, 1 to \
     n_layer-1 the residual stream after block N (before any norm), n_layer the final norm's \
     output (the default); outputs are named <name>.layer<N>, one per layer of a list (8,16)"
)))]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    /// Longest single pass in bases, or max for the longest that fits the
    /// device's free memory; longer sequences are tiled [default: 131072]
    #[arg(long, value_name = "INT|max", help_heading = "Windows")]
    pub window: Option<WindowSpec>,

    /// Bases shared by consecutive windows [default: window / 8]
    #[arg(long, value_name = "INT", value_parser = clap::value_parser!(u64).range(0..=crate::args::MAX_BASES), help_heading = "Windows")]
    pub overlap: Option<u64>,

    /// Deprecated: N windows per round, i.e. --batch-tokens N x --window
    // Hidden: kept so that old command lines still run (with a warning).
    #[arg(long, value_name = "INT", value_parser = crate::args::bases(), conflicts_with = "batch_tokens", hide = true)]
    pub batch_size: Option<u64>,

    #[command(flatten)]
    pub output: OutputFile,

    /// Write one file per record or region into DIR, plus DIR/index.tsv
    #[arg(
        long,
        value_name = "DIR",
        help_heading = "Output",
        conflicts_with = "output"
    )]
    pub out_dir: Option<PathBuf>,

    /// Output format (npy needs --out-dir; tsv needs pooled rows)
    #[arg(long, value_enum, default_value_t = Format::Safetensors, help_heading = "Output")]
    pub format: Format,

    /// none: one row per base; mean: one row per record; bin:N: the mean
    /// of each N bases (the last bin may be shorter)
    #[arg(
        long,
        value_name = "POOL",
        default_value = "none",
        help_heading = "Output"
    )]
    pub pool: Pool,

    /// PS models: store the strand-symmetric embedding, the mean of the
    /// forward half and the channel-reversed reverse-complement half
    #[arg(long, help_heading = "Output")]
    pub rc_average: bool,

    /// Stored element type: f32, f16 or bf16
    #[arg(
        long,
        value_name = "TYPE",
        default_value = "f32",
        help_heading = "Output"
    )]
    pub dtype: Dtype,

    /// Feed what the reference tokenizer produces by default (a trailing
    /// [SEP] token): one extra row at the end, and every row changes
    #[arg(long, help_heading = "Output")]
    pub special_tokens: bool,

    #[command(flatten)]
    pub shard: ShardArgs,

    /// Skip what is already complete: records whose file exists in
    /// --out-dir, or the whole run when -o exists
    #[arg(long, help_heading = "Jobs")]
    pub resume: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub layer: LayerArgs,

    #[command(flatten)]
    pub batch: BatchArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

/// Embeds with settings checked by [`Args::validate`].
pub fn run(args: Settings) -> Result<()> {
    args.run.init_threads()?;
    if let Some(format) = args.run.dry_run {
        return plan::dry_run(&args, format);
    }
    if let Round::Windows(n) = args.round {
        eprintln!(
            "strand-embed: warning: --batch-size is deprecated: taken as --batch-tokens of {n} \
             windows ({n} x --window); use --batch-tokens"
        );
    }
    let (dest, to_dir) = match &args.dest {
        Dest::File(f) => (f.clone(), false),
        Dest::Dir(d) => (d.clone(), true),
    };
    if args.resume && !to_dir && dest.is_file() {
        check_resumable(&args, &dest)?;
        if !args.run.quiet {
            eprintln!(
                "strand-embed: {} is complete; nothing to do (--resume)",
                dest.display()
            );
        }
        return Ok(());
    }
    // Open the input before loading the model: a typo should not cost a
    // multi-gigabyte load.
    let mut input = args.input.open()?;
    let (selected, total) = match args.shard {
        Some(shard) => {
            let lengths = input
                .lengths()
                .context("reading the input's lengths for --shard")?;
            let sel = shard.select(&lengths);
            let total = lengths
                .iter()
                .zip(&sel)
                .filter(|(_, &s)| s)
                .map(|(l, _)| l)
                .sum();
            (Some(sel), Some(total))
        }
        None => (None, input.known_total()),
    };

    let models = args.model.load_all("strand-embed", args.run.quiet)?;
    let model = &models[0];
    if args.rc_average && !model.config.rcps {
        bail!("--rc-average needs a PS (rcps) model; {} is PH", model.id);
    }
    let per_token = args.layers.as_ref().map_or(1, Vec::len);
    let window = match args.window {
        WindowSpec::Max => max_window(&models, per_token)? as u64,
        WindowSpec::Bases(w) => w,
    };
    let tiling = args.tiling(window)?;
    let round_tokens = round_tokens(&models, args.round, window, per_token)?;
    if args.run.verbose {
        eprintln!(
            "strand-embed: model {} ({} x {}, {}), device {}, window {window}, \
             overlap {}, batch up to {round_tokens} tokens per round",
            model.id,
            model.config.d_model,
            model.config.n_layer,
            if model.config.rcps { "PS" } else { "PH" },
            models
                .iter()
                .map(|m| m.describe_device())
                .collect::<Vec<_>>()
                .join("; "),
            tiling.overlap()
        );
    }

    let done = if args.resume && to_dir {
        output::Done::in_dir(&dest, args.format)
    } else {
        // Without --resume every item is recomputed.
        output::Done::none()
    };
    let job = Job {
        models: &models,
        done,
        tiling,
        round_tokens,
        pool: args.pool,
        rc_average: args.rc_average,
        special_tokens: args.special_tokens,
        layers: args.layers.clone(),
        selected,
        report_stages: args.run.verbose,
    };
    let opts = Opts {
        format: args.format,
        dtype: args.dtype,
        metadata: metadata(&args, model, &job),
        tsv_header: args.shard.is_none_or(|s| s.is_first()),
        index_name: match args.shard {
            Some(s) => format!("index.shard-{}-of-{}.tsv", s.index, s.count),
            None => "index.tsv".into(),
        },
    };
    let mut sink = if to_dir {
        output::dir(&dest, opts)?
    } else {
        output::file(&dest, opts)?
    };
    let mut progress = Progress::new("strand-embed", args.run.quiet, total);
    let (done, skipped) = job.run(&mut input, sink.as_mut(), &mut progress)?;
    progress.finish();
    sink.finish()?;
    if args.resume && !args.run.quiet {
        eprintln!("strand-embed: {done} embedded, {skipped} already complete (--resume)");
    } else if args.run.verbose {
        eprintln!("strand-embed: {done} embedded");
    }
    args.run.report_peak("strand-embed");
    Ok(())
}

/// Tokens a round may hold so that the rounds in flight take at most half
/// the host's free memory (f32 hidden states of `layers` layers).
fn host_round_cap(models: &[strand_core::Model], layers: usize) -> usize {
    let per_token = 4 * models[0].width() * layers * runner::max_in_flight(models.len());
    strand_core::backend::host_available_bytes()
        .map_or(usize::MAX, |b| (b / 2) as usize / per_token)
}

/// `--window max`: the longest pass every device (and the host) can hold.
fn max_window(models: &[strand_core::Model], layers: usize) -> Result<usize> {
    let w = host_round_cap(models, layers).min(runner::max_pass(models)?);
    Ok(w / 1024 * 1024)
}

/// The tokens of a round: as asked (or the devices' default), within what
/// the devices and the host can hold, and at least one window (which must
/// fit).
fn round_tokens(
    models: &[strand_core::Model],
    round: Round,
    window: u64,
    layers: usize,
) -> Result<usize> {
    let window = window as usize;
    let host = host_round_cap(models, layers);
    if let Err(m) = runner::check_pass(models, window)? {
        bail!(
            "--window {window} does not fit the free memory of {} (at most {} tokens in one \
             pass); use a smaller --window or --window max",
            m.device,
            m.fits
        );
    }
    if window > host {
        bail!(
            "--window {window} needs more host memory than is free ({} rounds of hidden states \
             in flight, at most {host} tokens each); use a smaller --window",
            runner::max_in_flight(models.len())
        );
    }
    let limit = runner::batch_limit(models)?.min(host);
    let asked = match round {
        Round::Default => runner::default_round_tokens(models),
        Round::Tokens(t) => t,
        Round::Windows(n) => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .saturating_mul(window),
    };
    Ok(asked.min(limit).max(window))
}

/// `--resume -o FILE` keeps FILE only when it was made by the same model
/// with the same settings: its provenance metadata must match this run's
/// (the model's config, pooling, special tokens, dtype, layout). A TSV
/// carries no metadata and is kept as it is.
fn check_resumable(args: &Settings, dest: &Path) -> Result<()> {
    if args.format != Format::Safetensors {
        return Ok(());
    }
    let have = strand_io::safetensors::read_metadata(dest)?;
    let dir = strand_core::model::hub::resolve(&args.model.model)?;
    let cfg = strand_core::Config::from_file(&dir.join("config.json"))?;
    let want = [
        ("model_config_sha256", Some(cfg.sha256.clone())),
        ("pool", Some(args.pool.to_string())),
        ("special_tokens", Some(args.special_tokens.to_string())),
        ("dtype", Some(args.dtype.to_string())),
        (
            "layout",
            Some(layout(&cfg, args.rc_average, args.layers.is_some())),
        ),
        // Absent: the final layer alone.
        ("layers", args.layers.as_deref().map(join_layers)),
    ];
    for (key, value) in want {
        let old = have.get(key).map_or("(none)", String::as_str);
        let value = value.as_deref().unwrap_or("(none)");
        if old != value {
            bail!(
                "{}: exists but was made with {key} {old:?}, this run has {value:?}; --resume \
                 keeps only an output of the same model and settings (remove it, or choose \
                 another -o)",
                dest.display()
            );
        }
    }
    Ok(())
}

fn metadata(args: &Settings, model: &strand_core::Model, job: &Job) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::from([
        (
            "strand_version".into(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("model".into(), model.id.clone()),
        ("model_config_sha256".into(), model.config.sha256.clone()),
        ("pool".into(), args.pool.to_string()),
        ("special_tokens".into(), args.special_tokens.to_string()),
        ("width".into(), job.cols().to_string()),
        ("window".into(), job.tiling.window().to_string()),
        ("overlap".into(), job.tiling.overlap().to_string()),
        ("dtype".into(), args.dtype.to_string()),
        (
            "layout".into(),
            layout(&model.config, args.rc_average, args.layers.is_some()),
        ),
    ]);
    if let Some(layers) = &args.layers {
        meta.insert("layers".into(), join_layers(layers));
    }
    meta
}

/// How to read the columns, for the file's metadata; `layers`: the
/// outputs are layers asked for with `--layer`.
fn layout(cfg: &strand_core::Config, rc_average: bool, layers: bool) -> String {
    if layers && cfg.rcps {
        return format!(
            "PS, per layer N: {}; a and b are in the reference's layout after N blocks, each of \
             which exchanges the halves: for even N a = forward strand, b = reverse-complement \
             strand channel-reversed, for odd N the other way round (N = 0: the embedding, \
             n_layer: the final norm's output)",
            if rc_average {
                format!(
                    "columns 0..{d} are (a[j] + b[{d}-1-j])/2 of the two halves a, b",
                    d = cfg.d_model
                )
            } else {
                format!(
                    "columns 0..{d} half a, {d}..{w} half b; (a[j] + b[{d}-1-j])/2 is the \
                     strand-symmetric embedding",
                    d = cfg.d_model,
                    w = 2 * cfg.d_model
                )
            }
        );
    }
    if rc_average {
        format!(
            "PS, strand-symmetric: columns 0..{} are (a[j] + b[{}-1-j])/2 of the two halves",
            cfg.d_model, cfg.d_model
        )
    } else if cfg.rcps {
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
