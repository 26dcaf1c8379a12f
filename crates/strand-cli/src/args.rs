//! Options shared by every command: each flag is declared once, in a
//! group that the commands flatten, and means the same everywhere.
//! `-o` has one type per kind of output: [`OutputFile`], [`OutputDir`], [`OutputPrefix`].

mod layer;
mod output;

pub use self::layer::{join as join_layers, model_config, LayerArgs, Layers};
pub use self::output::{check_empty_dir, OutputDir, OutputFile, OutputPrefix};

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use strand_core::{DeviceSpec, Placement, Precision};
use strand_io::region::Region;

/// Model, device and precision.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory (config.json + model.safetensors) or Hugging Face hub
    /// id (ORG/NAME, read offline from the local cache)
    #[arg(short, long, value_name = "DIR|ID", help_heading = "Model")]
    pub model: String,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// Arithmetic precision: fp32, or bf16 (GPU only) [default: bf16 on a GPU, fp32 on the CPU]
    #[arg(long, value_name = "PREC", help_heading = "Model")]
    pub precision: Option<Precision>,
}

/// `--device`: where to run (also `strand bench`'s, with its own default).
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where to run: auto (a GPU when usable, else the CPU), cpu, cuda,
    /// cuda:N; strand-embed, strand-score and strand-classify predict also
    /// take cuda:all or cuda:0,2,3 (one worker per GPU)
    #[arg(
        id = "device",
        long = "device",
        default_value = "auto",
        value_name = "DEVICE",
        help_heading = "Model"
    )]
    pub devices: Devices,
}

impl DeviceArgs {
    /// The one device of a command that runs on one (`prog` names it in
    /// the error for a GPU list).
    pub fn one(&self, prog: &str) -> Result<DeviceSpec> {
        match self.devices {
            Devices::One(device) => Ok(device),
            _ => bail!(
                "{prog} runs on one device: give --device cuda:N (several GPUs: strand-embed, \
                 strand-score, strand-classify predict)"
            ),
        }
    }
}

/// `--device`: one device, or several GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Devices {
    One(DeviceSpec),
    /// These GPUs (`cuda:0,2,3`).
    Gpus(Vec<usize>),
    /// Every GPU the driver sees (`cuda:all`).
    AllGpus,
}

impl std::str::FromStr for Devices {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "cuda:all" {
            return Ok(Devices::AllGpus);
        }
        if let Some(list) = s.strip_prefix("cuda:").filter(|l| l.contains(',')) {
            let gpus = list
                .split(',')
                .map(|n| n.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| format!("unknown device \"{s}\" (cuda:all or cuda:0,1,...)"))?;
            let mut seen = gpus.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != gpus.len() {
                return Err(format!("\"{s}\" names a GPU twice"));
            }
            return Ok(Devices::Gpus(gpus));
        }
        s.parse::<DeviceSpec>()
            .map(Devices::One)
            .map_err(|e| e.replace("cuda:N)", "cuda:N, cuda:all, cuda:0,2)"))
    }
}

impl ModelArgs {
    /// Loads the model on one device. Its errors name the directory or hub
    /// id already. With `--device auto`, says on stderr which device it
    /// chose (unless `quiet`).
    pub fn load(&self, prog: &str, quiet: bool) -> Result<strand_core::Model> {
        let device = self.device.one(prog)?;
        self.load_on(prog, quiet, device)
    }

    /// Loads the model on every device asked for: one model per GPU for
    /// `cuda:all` / `cuda:0,2,3`, sharing the host weights.
    pub fn load_all(&self, prog: &str, quiet: bool) -> Result<Vec<strand_core::Model>> {
        let gpus = match &self.device.devices {
            Devices::One(d) => return Ok(vec![self.load_on(prog, quiet, *d)?]),
            Devices::Gpus(g) => g.clone(),
            Devices::AllGpus => (0..strand_core::diag::gpu_count()?).collect(),
        };
        let place = |g: usize| Placement {
            device: DeviceSpec::Cuda(g),
            precision: self.precision,
        };
        let first = strand_core::Model::load(&self.model, place(gpus[0]))?;
        let mut models = vec![first];
        for &g in &gpus[1..] {
            models.push(models[0].replicate(place(g))?);
        }
        if !quiet {
            let names: Vec<String> = models.iter().map(|m| m.describe_device()).collect();
            eprintln!("{prog}: {} GPUs: {}", models.len(), names.join("; "));
        }
        Ok(models)
    }

    fn load_on(&self, prog: &str, quiet: bool, device: DeviceSpec) -> Result<strand_core::Model> {
        let place = Placement {
            device,
            precision: self.precision,
        };
        let model = strand_core::Model::load(&self.model, place)?;
        if device == DeviceSpec::Auto && !quiet {
            match model.gpu_fallback() {
                Some(why) => {
                    // The reason as `--device cuda` would print it, minus
                    // the advice to use the CPU, which auto just took.
                    let why = why.strip_prefix("cuda: ").unwrap_or(why);
                    let why = why.trim_end_matches("; use --device cpu");
                    eprintln!("{prog}: device auto: cpu (no usable GPU: {why})")
                }
                None => eprintln!("{prog}: device auto: {}", model.describe_device()),
            }
        }
        Ok(model)
    }
}

impl ModelArgs {
    /// The files of a model directory (none for a hub id), for
    /// [`check_outputs`].
    pub fn files(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(&self.model) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// `path` and the index files next to it that exist (`.fai`, `.gzi`,
/// `.bai`, `.tbi`, `.csi`), for [`check_outputs`].
pub fn with_indexes(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    for ext in ["fai", "gzi", "bai", "tbi", "csi"] {
        let mut name = path.as_os_str().to_owned();
        name.push(".");
        name.push(ext);
        let index = PathBuf::from(name);
        if index.is_file() {
            files.push(index);
        }
    }
    files
}

/// Refuses, before any work, an output that is one of the inputs (or
/// another output): the one check every command makes (see
/// [`strand_io::check_outputs`]).
pub fn check_outputs(outputs: &[&Path], inputs: &[PathBuf]) -> Result<()> {
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    strand_io::check_outputs(outputs, &inputs)?;
    Ok(())
}

/// `-r` and `-R`: regions to work on.
#[derive(Args, Debug, Clone, Default)]
pub struct RegionArgs {
    /// Region chr:beg-end (1-based, inclusive; commas allowed) or a whole
    /// contig; repeatable
    #[arg(
        short = 'r',
        long = "region",
        value_name = "REGION",
        help_heading = "Input"
    )]
    pub regions: Vec<String>,

    /// Regions from a BED file (0-based, half-open; 4th column names the
    /// output)
    #[arg(short = 'R', long, value_name = "BED", help_heading = "Input")]
    pub regions_file: Option<PathBuf>,
}

impl RegionArgs {
    /// The BED file, if any, for [`check_outputs`].
    pub fn files(&self) -> Vec<PathBuf> {
        self.regions_file.iter().cloned().collect()
    }

    /// The `-r` regions, then the BED file's, parsed (not yet checked
    /// against a reference).
    pub fn regions(&self) -> Result<Vec<Region>> {
        let mut regions: Vec<Region> = self
            .regions
            .iter()
            .map(|r| Region::parse(r))
            .collect::<Result<_, _>>()?;
        if let Some(bed) = &self.regions_file {
            regions.extend(strand_io::bed::read_bed(bed)?);
        }
        Ok(regions)
    }
}

/// Threads and verbosity.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub threads: ThreadsArgs,

    /// No progress output
    #[arg(short, long, help_heading = "Run")]
    pub quiet: bool,

    /// Also log the device and model on stderr
    #[arg(short, long, help_heading = "Run")]
    pub verbose: bool,

    /// Print what the run would do and need (records, windows, tokens,
    /// passes, memory per device, output size, time) and exit without
    /// running or writing anything; --dry-run=tsv prints key<TAB>value
    /// lines
    #[arg(
        long,
        value_name = "FORMAT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "table",
        help_heading = "Run"
    )]
    pub dry_run: Option<crate::dry_run::Format>,
}

impl RunArgs {
    /// Sizes the global thread pool; call once, before any work.
    pub fn init_threads(&self) -> Result<()> {
        self.threads.init()
    }

    /// With `-v`, says on stderr the most memory the process held (its
    /// peak resident set, `VmHWM`): what `--dry-run`'s `host_memory`
    /// estimates. Call at the end of a run.
    pub fn report_peak(&self, prog: &str) {
        if let (true, Some(peak)) = (self.verbose, crate::dry_run::peak_rss_bytes()) {
            eprintln!(
                "{prog}: peak memory {} ({peak} bytes resident, VmHWM)",
                crate::dry_run::bytes(peak)
            );
        }
    }
}

/// `-@, --threads` (also `strand bench`'s).
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct ThreadsArgs {
    /// CPU threads [default: all cores]
    #[arg(short = '@', long, value_name = "INT", value_parser = clap::value_parser!(u16).range(1..), help_heading = "Run")]
    pub threads: Option<u16>,
}

impl ThreadsArgs {
    /// Sizes the global thread pool; call once, before any work.
    pub fn init(&self) -> Result<()> {
        if let Some(n) = self.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n.into())
                .build_global()
                .context("starting the thread pool")?;
        }
        Ok(())
    }
}

/// `--batch-tokens`: how many tokens one batched pass (strand-embed: one
/// round of windows) may hold. It never changes the output beyond float
/// rounding, only speed and memory. Each command says its default in its
/// help (`mut_arg`) and applies it in its `validate`.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct BatchArgs {
    /// Tokens per batched pass
    #[arg(long, value_name = "INT", value_parser = tokens(), help_heading = "Run")]
    pub batch_tokens: Option<usize>,
}

impl BatchArgs {
    /// The budget given, else `default`.
    pub fn tokens_or(&self, default: usize) -> usize {
        self.batch_tokens.unwrap_or(default)
    }
}

/// The largest base count any option takes (windows, bins, overlaps,
/// token budgets): 2^32, longer than any chromosome. Bounding every number
/// keeps arithmetic on it (products with the model width, divisions by a
/// bin length) far from overflow, so a huge value is a usage error, never
/// a panic.
pub const MAX_BASES: u64 = 1 << 32;

/// Value parser for a count of bases or tokens, 1 to [`MAX_BASES`].
pub fn bases() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=MAX_BASES)
}

/// Value parser for a token count held as `usize`, 1 to [`MAX_BASES`].
pub fn tokens() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_BASES)
}

/// How a VCF output is written, as in bcftools: `-O v|z|b`, `-W tbi|csi`.
#[derive(Args, Debug, Clone)]
pub struct VcfOutArgs {
    /// Output type: v (VCF), z (BGZF VCF, indexed), b (BCF, indexed)
    /// [default: from the name: .gz or .bgz is z, .bcf is b, else v]
    #[arg(short = 'O', long, value_name = "v|z|b", help_heading = "Output")]
    pub output_type: Option<strand_io::vcf::Format>,

    /// Index a BGZF or BCF output with tbi or csi (-W alone: csi)
    /// [default: .tbi for VCF unless a record lies past 2^29, then .csi;
    /// .csi for BCF]
    #[arg(
        short = 'W',
        long,
        value_name = "tbi|csi",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "csi",
        help_heading = "Output"
    )]
    pub write_index: Option<strand_io::vcf::IndexFormat>,
}

impl VcfOutArgs {
    /// The writer's options for `output`; a combination that cannot be
    /// written is a usage error (exit 2), found before any work.
    pub fn options(&self, output: &std::path::Path) -> strand_io::vcf::Options {
        let o = strand_io::vcf::Options {
            format: self.output_type,
            index: self.write_index.unwrap_or_default(),
        };
        if let Err(message) = o.check(output) {
            clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                format!("{message}\n"),
            )
            .exit();
        }
        o
    }

    /// `output` and the index files written next to it, to be checked
    /// against the inputs.
    pub fn outputs(&self, output: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut v = vec![output.to_owned()];
        v.extend(self.options(output).index_paths(output));
        v
    }
}

/// The published models' training length: every command's default
/// window.
pub const DEFAULT_WINDOW: u64 = 131_072;

/// A `--window`: a number of bases (`131072`, `128k`), or `max`, the
/// longest pass that fits the devices' free memory (strand-embed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    Bases(u64),
    Max,
}

impl std::str::FromStr for WindowSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<WindowSpec, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(WindowSpec::Max);
        }
        parse_count(s)
            .map(WindowSpec::Bases)
            .map_err(|e| format!("{e}, or max"))
    }
}

/// `--window` for commands whose windows are a number of bases (no
/// `max`).
pub fn window_bases(s: &str) -> std::result::Result<u64, String> {
    if s.eq_ignore_ascii_case("max") {
        return Err(
            "max is strand-embed's only (the longest pass that fits); give a number of bases"
                .into(),
        );
    }
    parse_count(s).map_err(|e| e.to_string())
}

/// `131072`, `131,072` or `128k`, at most [`MAX_BASES`].
pub fn parse_count(s: &str) -> Result<u64> {
    let t = s.replace(',', "").to_ascii_lowercase();
    let (num, mult) = match t.strip_suffix('k') {
        Some(n) => (n, 1024),
        None => match t.strip_suffix('m') {
            Some(n) => (n, 1024 * 1024),
            None => (t.as_str(), 1),
        },
    };
    match num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
        Some(n) if n > 0 && n <= MAX_BASES => Ok(n),
        Some(n) if n > MAX_BASES => bail!("{n} is more than the most bases allowed ({MAX_BASES})"),
        _ => bail!("expected a positive number of bases (e.g. 131072 or 128k)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse() {
        assert_eq!(parse_count("131,072").expect("ok"), 131_072);
        assert_eq!(parse_count("128k").expect("ok"), 131_072);
        assert_eq!(parse_count("1M").expect("ok"), 1 << 20);
        assert!(parse_count("0").is_err());
        assert!(parse_count("big").is_err());
        // Neither a product that overflows nor one past the bound.
        assert!(parse_count("18446744073709551615m").is_err());
        assert!(parse_count("4097m").is_err());
        assert_eq!(parse_count("4096m").expect("ok"), MAX_BASES);
        assert_eq!("max".parse(), Ok(WindowSpec::Max));
        assert_eq!("128k".parse(), Ok(WindowSpec::Bases(131_072)));
        assert!("0".parse::<WindowSpec>().is_err());
        assert_eq!(window_bases("1,000"), Ok(1000));
        assert!(window_bases("max").unwrap_err().contains("strand-embed"));
    }
}

#[cfg(test)]
mod device_tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!("cuda:all".parse(), Ok(Devices::AllGpus));
        assert_eq!("cuda:0,2,3".parse(), Ok(Devices::Gpus(vec![0, 2, 3])));
        assert_eq!("cuda:1".parse(), Ok(Devices::One(DeviceSpec::Cuda(1))));
        assert_eq!("cpu".parse(), Ok(Devices::One(DeviceSpec::Cpu)));
        assert!("cuda:0,0".parse::<Devices>().is_err());
        assert!("cuda:0,x".parse::<Devices>().is_err());
        assert!("tpu".parse::<Devices>().unwrap_err().contains("cuda:all"));
    }
}
