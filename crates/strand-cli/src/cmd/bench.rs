//! `strand bench`: forward-pass throughput and peak memory on random-weight
//! models of the published shape, for `docs/benchmarks.md`; each row is
//! also kept in this machine's calibration file, from which `--dry-run`
//! estimates a run's time ([`crate::dry_run::calibration`]).

use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use strand_core::diag;
use strand_core::model::synthetic::{published_config, write_checkpoint, Rng};
use strand_core::{DeviceSpec, HostBuffer, Model, Out, Placement, Precision};

use crate::args::{DeviceArgs, ThreadsArgs};
use crate::dry_run::calibration::{self, Entry};
use crate::dry_run::{peak_rss_bytes, reset_peak_rss};

/// Measure tokens/s and peak memory of the forward pass.
///
/// Builds random-weight models with the published Caduceus layout
/// (d_model x n_layer, PS and/or PH) and embeds random sequences of each
/// length once after a warm-up. Prints one TSV row per model and length,
/// and keeps each row's tokens/s in strand's cache directory
/// ($STRAND_CACHE_DIR/calibration.tsv, else ~/.cache/strand/...), where
/// --dry-run finds it to estimate a run's time on this machine.
// -@ and --device are every command's, but bench runs on the CPU unless
// told otherwise, and lists its options without headings.
#[derive(ClapArgs, Debug)]
#[command(mut_arg("device", |a| a
    .default_value("cpu")
    .help("Where to run: cpu, cuda, cuda:N")
    .help_heading(None)))]
#[command(mut_arg("threads", |a| a.help_heading(None)))]
pub struct Args {
    /// Model kinds to build
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Kind::Ps, Kind::Ph])]
    pub kind: Vec<Kind>,

    /// Sequence lengths in tokens
    #[arg(long, value_delimiter = ',', default_values_t = [1024, 16384, 131072], value_parser = crate::args::tokens())]
    pub lengths: Vec<usize>,

    #[arg(long, default_value_t = 256, value_parser = small(1 << 16))]
    pub d_model: usize,

    #[arg(long, default_value_t = 16, value_parser = small(1024))]
    pub n_layer: usize,

    /// Time this many runs per length and report the best
    #[arg(long, default_value_t = 1, value_parser = small(1000))]
    pub repeat: usize,

    #[command(flatten)]
    pub threads: ThreadsArgs,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// Precisions to measure (fp32, bf16; bf16 needs a GPU) [default: the device's]
    #[arg(long, value_delimiter = ',')]
    pub precision: Vec<Precision>,

    /// GPU only: run this many sequences of each length as one batch
    /// (tokens/s counts all of them)
    #[arg(long, default_value_t = 1, value_parser = small(1 << 16))]
    pub batch: usize,

    /// GPU only: also copy the hidden states to the host, into a reused
    /// page-locked buffer as strand-embed does (`STRAND_NO_PINNED=1`: into
    /// pageable memory)
    #[arg(long)]
    pub to_host: bool,

    /// GPU only: also print a per-op time breakdown (CUDA events) at this
    /// length, with each op's floor
    #[arg(long, value_name = "TOKENS", value_parser = crate::args::tokens())]
    pub profile: Option<usize>,

    /// Only write the random-weight checkpoints (one folder per kind, e.g.
    /// DIR/ps-256x16) and exit: a published-size model for trying
    /// strand-embed's speed and memory without a download
    #[arg(long, value_name = "DIR")]
    pub save_models: Option<std::path::PathBuf>,
}

/// Value parser for a size from 1 to `max`: bench builds a model and
/// buffers from these, so a huge value must be a usage error, not an
/// allocation failure.
fn small(max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=max)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Ps,
    Ph,
}

/// `strand bench`'s options after [`Args::validate`].
#[derive(Debug)]
pub struct Settings {
    pub kind: Vec<Kind>,
    pub lengths: Vec<usize>,
    pub d_model: usize,
    pub n_layer: usize,
    pub repeat: usize,
    pub threads: ThreadsArgs,
    /// The one device to measure.
    pub device: DeviceSpec,
    /// GPU only: the precisions to measure (bf16 unless `--precision`).
    pub precisions: Vec<Precision>,
    pub batch: usize,
    pub to_host: bool,
    pub profile: Option<usize>,
    pub save_models: Option<std::path::PathBuf>,
}

impl Args {
    /// Refuses a GPU list (bench measures one device) and applies the
    /// defaults.
    pub fn validate(self) -> Result<Settings> {
        Ok(Settings {
            device: self.device.one("strand bench")?,
            precisions: if self.precision.is_empty() {
                vec![Precision::Bf16]
            } else {
                self.precision
            },
            kind: self.kind,
            lengths: self.lengths,
            d_model: self.d_model,
            n_layer: self.n_layer,
            repeat: self.repeat,
            threads: self.threads,
            batch: self.batch,
            to_host: self.to_host,
            profile: self.profile,
            save_models: self.save_models,
        })
    }
}

/// Measures with settings checked by [`Args::validate`].
pub fn run(args: Settings) -> Result<()> {
    args.threads.init()?;
    if let Some(dir) = &args.save_models {
        for kind in &args.kind {
            let (name, path) = build_model(&args, *kind, dir)?;
            println!("{name}\t{}", path.display());
        }
        return Ok(());
    }
    if args.device != DeviceSpec::Cpu {
        return run_gpu(&args);
    }
    let threads = rayon::current_num_threads();
    let peak = diag::gemm_peak_gflops(threads);
    println!("# threads {threads}; machine f32 GEMM peak (2048^3, best of 3): {peak:.1} GFLOP/s");
    println!(
        "model\ttokens\tseconds\ttokens_per_s\tpeak_rss_mib\tproj_gflop_per_s\tproj_share_of_peak"
    );
    let tmp = tempfile_dir()?;
    let device = calibration::cpu_device(threads);
    let mut measured = Vec::new();
    for kind in &args.kind {
        let (name, dir) = build_model(&args, *kind, &tmp)?;
        let model = Model::load_dir(&dir, &name, DeviceSpec::Cpu)?;
        model.forward(&random_ids(512, 1))?; // warm-up: thread pool, page faults
        for &len in &args.lengths {
            let ids = random_ids(len, len as u64);
            let mut best = f64::INFINITY;
            let mut proj = (0, 0);
            reset_peak_rss();
            for _ in 0..args.repeat.max(1) {
                diag::reset_gemm_stats();
                let t = Instant::now();
                let hidden = model.forward(&ids)?;
                let secs = t.elapsed().as_secs_f64();
                drop(hidden);
                if secs < best {
                    best = secs;
                    proj = diag::gemm_stats();
                }
            }
            let proj_gflops = proj.0 as f64 / proj.1.max(1) as f64;
            measured.push(entry(&device, &model, Precision::F32, len, 1, best));
            println!(
                "{name}\t{len}\t{best:.3}\t{:.0}\t{}\t{proj_gflops:.1}\t{:.0}%",
                len as f64 / best,
                peak_rss_bytes().map_or("-".to_string(), |b| format!("{}", b >> 20)),
                100.0 * proj_gflops / peak
            );
        }
    }
    std::fs::remove_dir_all(&tmp).ok();
    save(&measured)
}

/// A calibration line for a pass of `batch` sequences of `len` tokens
/// that took `secs`.
fn entry(
    device: &str,
    model: &Model,
    prec: Precision,
    len: usize,
    batch: usize,
    secs: f64,
) -> Entry {
    Entry {
        device: device.to_string(),
        shape: calibration::shape(&model.config),
        precision: prec.to_string(),
        tokens: len as u64,
        batch: batch as u64,
        tokens_per_s: (len * batch) as f64 / secs,
        date: calibration::today(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Keeps the measurements in this machine's calibration file.
fn save(measured: &[Entry]) -> Result<()> {
    match calibration::path() {
        Some(path) => {
            calibration::update(&path, measured)?;
            eprintln!(
                "# calibration: {} line(s) kept in {} (read by --dry-run)",
                measured.len(),
                path.display()
            );
        }
        None => {
            eprintln!("# calibration: not kept (no cache directory: set STRAND_CACHE_DIR or HOME)")
        }
    }
    Ok(())
}

/// Writes the random-weight checkpoint of `kind`; returns its name and dir.
fn build_model(
    args: &Settings,
    kind: Kind,
    tmp: &std::path::Path,
) -> Result<(String, std::path::PathBuf)> {
    let rcps = kind == Kind::Ps;
    let name = format!(
        "{}-{}x{}",
        if rcps { "ps" } else { "ph" },
        args.d_model,
        args.n_layer
    );
    let dir = tmp.join(&name);
    write_checkpoint(
        &dir,
        &published_config(rcps, args.d_model, args.n_layer),
        42,
    )?;
    Ok((name, dir))
}

/// GPU rows: the forward pass up to hidden states in device memory (the
/// copy to the host is left out, as upstream's figures leave it out,
/// unless `--to-host`), and
/// the GPU's peak memory in use (whole device, as nvidia-smi counts it).
fn run_gpu(args: &Settings) -> Result<()> {
    println!("model\tprecision\tbatch\ttokens\tseconds\ttokens_per_s\tpeak_gpu_mib");
    let batch = args.batch.max(1);
    let tmp = tempfile_dir()?;
    let precisions = &args.precisions;
    let ordinal = match args.device {
        DeviceSpec::Cuda(n) => n,
        _ => 0,
    };
    let device = calibration::gpu_device(&diag::gpu_memory(ordinal)?.name);
    let mut measured = Vec::new();
    for kind in &args.kind {
        let (name, dir) = build_model(args, *kind, &tmp)?;
        for &prec in precisions {
            let place = Placement {
                device: args.device,
                precision: Some(prec),
            };
            let model = Model::load_dir(&dir, &name, place)?;
            let copy = if args.to_host {
                ", hidden states copied to the host"
            } else {
                ""
            };
            eprintln!("# {name} {prec} on {}{copy}", model.describe_device());
            let mut host = HostBuffer::new();
            let mut pass = |seqs: &[&[u32]]| -> Result<()> {
                if args.to_host {
                    Ok(model.run(seqs, Out::Host(&mut host))?)
                } else {
                    Ok(model.run(seqs, Out::Discard)?)
                }
            };
            for &len in &args.lengths {
                let seqs: Vec<Vec<u32>> = (0..batch)
                    .map(|i| random_ids(len, (len + i) as u64))
                    .collect();
                let seqs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
                pass(&seqs)?; // warm-up: allocation, caches, page-locking
                let mut best = f64::INFINITY;
                for _ in 0..args.repeat.max(1) {
                    let t = Instant::now();
                    pass(&seqs)?;
                    best = best.min(t.elapsed().as_secs_f64());
                }
                measured.push(entry(&device, &model, prec, len, batch, best));
                let peak = model.peak_gpu_bytes().unwrap_or(0) as f64 / (1 << 20) as f64;
                println!(
                    "{name}\t{prec}\t{batch}\t{len}\t{best:.4}\t{:.0}\t{peak:.0}",
                    (batch * len) as f64 / best
                );
            }
            if let Some(len) = args.profile {
                print_profile(&model, args, *kind, prec, len)?;
            }
        }
    }
    std::fs::remove_dir_all(&tmp).ok();
    save(&measured)
}

/// Measured ceilings of the H100 this was tuned on (docs/benchmarks.md):
/// device-to-device copy bandwidth, dense bf16 tensor-core and plain f32
/// FMA throughput, and MUFU special-function rate.
const HBM_BYTES_PER_S: f64 = 3.0e12;
const BF16_FLOP_PER_S: f64 = 790e12;
const F32_FLOP_PER_S: f64 = 60e12;
const SFU_PER_S: f64 = 4.06e12;

/// Per-token work of each op: (bytes moved, GEMM FLOPs, special-function
/// evaluations), summed over the whole forward pass.
fn op_work(args: &Settings, kind: Kind, prec: Precision) -> Vec<(&'static str, f64, f64, f64)> {
    let (d, layers) = (args.d_model as f64, args.n_layer as f64);
    let (di, n, r) = (2.0 * d, 16.0, (args.d_model as f64 / 16.0).ceil());
    let xdw = r + 2.0 * n;
    let ab = if prec == Precision::Bf16 { 2.0 } else { 4.0 };
    let halves = if kind == Kind::Ps { 2.0 } else { 1.0 };
    let passes = 2.0 * halves * layers; // scan passes per token
    let width = d * halves;
    let k_out = if prec == Precision::Bf16 {
        2.0 * di
    } else {
        di
    };
    vec![
        ("embed", width * ab, 0.0, 0.0),
        ("norm", layers * width * (2.0 * ab + 8.0), 0.0, 0.0),
        (
            "in_proj",
            halves * layers * (d + 2.0 * di) * ab,
            halves * layers * 2.0 * d * 2.0 * di,
            0.0,
        ),
        ("conv", passes * 2.0 * di * ab, 0.0, passes * di * 2.0),
        (
            "x_proj",
            passes * (di + xdw) * ab,
            passes * 2.0 * di * xdw,
            0.0,
        ),
        // bf16 on sm_80+: conv + x_proj fused, x read once for both
        // directions of a half, u never stored; one MUFU tanh per SiLU.
        (
            "conv_xproj",
            halves * layers * (di + 2.0 * xdw) * ab,
            passes * 2.0 * di * xdw,
            passes * di,
        ),
        // One exp2 per state update, plus softplus, the conv's SiLU and the
        // gate per (step, channel).
        (
            "scan",
            passes * (3.0 * di + xdw) * ab,
            0.0,
            passes * di * (n + 6.0),
        ),
        // bf16: both directions' outputs side by side, K = 2·d_inner; f32:
        // the outputs are summed first ("combine"), K = d_inner.
        ("combine", halves * layers * 3.0 * di * ab, 0.0, 0.0),
        (
            "out_proj",
            halves * layers * (k_out + d) * ab,
            halves * layers * 2.0 * k_out * d,
            0.0,
        ),
    ]
}

/// Per-op GPU time of one pass at `len` tokens against each op's floor.
fn print_profile(
    model: &Model,
    args: &Settings,
    kind: Kind,
    prec: Precision,
    len: usize,
) -> Result<()> {
    let ids = random_ids(len, len as u64);
    let Some(times) = model.profile_forward(&ids)? else {
        return Ok(());
    };
    let total: f64 = times.iter().map(|t| t.1).sum();
    let flops = if prec == Precision::Bf16 {
        BF16_FLOP_PER_S
    } else {
        F32_FLOP_PER_S
    };
    println!(
        "# profile {} {prec} {len} tokens: {total:.2} ms in timed ops",
        model.id
    );
    println!("op\tms\tshare\tfloor_ms\tbound\tx_floor");
    let work = op_work(args, kind, prec);
    for (op, ms) in times {
        let (bytes, fl, sfu) = work
            .iter()
            .find(|w| w.0 == op)
            .map_or((0.0, 0.0, 0.0), |w| (w.1, w.2, w.3));
        let tok = len as f64;
        let floors = [
            ("hbm", bytes * tok / HBM_BYTES_PER_S),
            ("flops", fl * tok / flops),
            ("sfu", sfu * tok / SFU_PER_S),
        ];
        let (bound, floor) = floors
            .into_iter()
            .fold(("-", 0.0), |a, b| if b.1 > a.1 { b } else { a });
        let floor_ms = floor * 1e3;
        println!(
            "{op}\t{ms:.3}\t{:.1}%\t{floor_ms:.3}\t{bound}\t{}",
            100.0 * ms / total,
            if floor_ms > 0.0 {
                format!("{:.1}", ms / floor_ms)
            } else {
                "-".into()
            }
        );
    }
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("strand-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Uniform A/C/G/T token ids.
fn random_ids(len: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| 7 + (rng.next_u64() % 4) as u32).collect()
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// `strand bench`'s options as the subcommand parses them.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn validate(argv: &[&str]) -> Result<Settings> {
        let argv = std::iter::once("bench").chain(argv.iter().copied());
        Cli::try_parse_from(argv)?.args.validate()
    }

    #[test]
    fn the_cpu_unless_told() {
        Cli::command().debug_assert();
        let s = validate(&[]).expect("ok");
        assert_eq!(s.device, DeviceSpec::Cpu);
        assert_eq!(s.precisions, vec![Precision::Bf16]);
        assert_eq!(s.threads.threads, None);
        let s =
            validate(&["--device", "cuda:1", "--precision", "fp32,bf16", "-@", "2"]).expect("ok");
        assert_eq!(s.device, DeviceSpec::Cuda(1));
        assert_eq!(s.precisions, vec![Precision::F32, Precision::Bf16]);
        assert_eq!(s.threads.threads, Some(2));
    }

    #[test]
    fn one_device_only() {
        for list in ["cuda:all", "cuda:0,1"] {
            let e = validate(&["--device", list]).expect_err("a GPU list");
            assert!(e.to_string().contains("runs on one device"), "{e}");
        }
        assert!(validate(&["-@", "0"]).is_err());
    }
}
