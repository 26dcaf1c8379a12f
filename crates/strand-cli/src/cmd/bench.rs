//! `strand bench`: forward-pass throughput and peak memory on random-weight
//! models of the published shape, for `docs/benchmarks.md`.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use strand_core::backend::cpu::gemm;
use strand_core::model::synthetic::{published_config, write_checkpoint, Rng};
use strand_core::{DeviceSpec, Model};

/// Measure tokens/s and peak memory of the forward pass.
///
/// Builds random-weight models with the published Caduceus layout
/// (d_model x n_layer, PS and/or PH) and embeds random sequences of each
/// length once after a warm-up. Prints one TSV row per model and length.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Model kinds to build
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Kind::Ps, Kind::Ph])]
    pub kind: Vec<Kind>,

    /// Sequence lengths in tokens
    #[arg(long, value_delimiter = ',', default_values_t = [1024, 16384, 131072])]
    pub lengths: Vec<usize>,

    #[arg(long, default_value_t = 256)]
    pub d_model: usize,

    #[arg(long, default_value_t = 16)]
    pub n_layer: usize,

    /// Time this many runs per length and report the best
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,

    /// CPU threads [default: all cores]
    #[arg(short = '@', long)]
    pub threads: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Ps,
    Ph,
}

pub fn run(args: Args) -> Result<()> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()?;
    }
    let threads = rayon::current_num_threads();
    let peak = gemm_peak(threads);
    println!("# threads {threads}; machine f32 GEMM peak (2048^3, best of 3): {peak:.1} GFLOP/s");
    println!(
        "model\ttokens\tseconds\ttokens_per_s\tpeak_rss_mib\tproj_gflop_per_s\tproj_share_of_peak"
    );
    let tmp = tempfile_dir()?;
    for kind in &args.kind {
        let rcps = *kind == Kind::Ps;
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
        let model = Model::load_dir(&dir, &name, DeviceSpec::Cpu)?;
        model.forward(&random_ids(512, 1))?; // warm-up: thread pool, page faults
        for &len in &args.lengths {
            let ids = random_ids(len, len as u64);
            let mut best = f64::INFINITY;
            let mut proj = (0, 0);
            reset_peak_rss();
            for _ in 0..args.repeat.max(1) {
                gemm::reset_stats();
                let t = Instant::now();
                let hidden = model.forward(&ids)?;
                let secs = t.elapsed().as_secs_f64();
                drop(hidden);
                if secs < best {
                    best = secs;
                    proj = gemm::stats();
                }
            }
            let proj_gflops = proj.0 as f64 / proj.1.max(1) as f64;
            println!(
                "{name}\t{len}\t{best:.3}\t{:.0}\t{}\t{proj_gflops:.1}\t{:.0}%",
                len as f64 / best,
                peak_rss_mib().map_or("-".to_string(), |m| format!("{m:.0}")),
                100.0 * proj_gflops / peak
            );
        }
    }
    std::fs::remove_dir_all(&tmp).ok();
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

/// The best of three 2048^3 products through the same GEMM library.
fn gemm_peak(threads: usize) -> f64 {
    let n = 2048;
    let a = vec![1.0f32; n * n];
    let w = strand_core::model::weights::Linear {
        w: vec![0.5f32; n * n],
        b: None,
        out: n,
        inp: n,
    };
    let mut c = vec![0.0f32; n * n];
    (0..3)
        .map(|_| {
            let t = Instant::now();
            gemm::linear(n, &a, n, &w, &mut c, n, false, threads);
            2.0 * (n * n * n) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// Resets the kernel's high-water mark of this process (Linux).
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").ok();
}

/// `VmHWM` of this process in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
