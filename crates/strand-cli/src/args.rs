//! Options shared by every command.

use anyhow::{bail, Context, Result};
use clap::Args;
use strand_core::{DeviceSpec, Placement, Precision};

/// Model, device and threads.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory (config.json + model.safetensors) or Hugging Face hub
    /// id (ORG/NAME, read offline from the local cache)
    #[arg(short, long, value_name = "DIR|ID", help_heading = "Model")]
    pub model: String,

    /// Where to run: auto (a GPU when usable, else the CPU), cpu, cuda, cuda:N
    #[arg(
        long,
        default_value = "auto",
        value_name = "DEVICE",
        help_heading = "Model"
    )]
    pub device: DeviceSpec,

    /// Arithmetic precision: fp32, or bf16 (GPU only) [default: bf16 on a GPU, fp32 on the CPU]
    #[arg(long, value_name = "PREC", help_heading = "Model")]
    pub precision: Option<Precision>,
}

impl ModelArgs {
    /// Loads the model. Its errors name the directory or hub id already.
    /// With `--device auto`, says on stderr which device it chose (unless
    /// `quiet`).
    pub fn load(&self, prog: &str, quiet: bool) -> Result<strand_core::Model> {
        let place = Placement {
            device: self.device,
            precision: self.precision,
        };
        let model = strand_core::Model::load(&self.model, place)?;
        if self.device == DeviceSpec::Auto && !quiet {
            match &model.gpu_unused {
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

/// Threads and verbosity.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// CPU threads [default: all cores]
    #[arg(short = '@', long, value_name = "INT", value_parser = clap::value_parser!(u16).range(1..), help_heading = "Run")]
    pub threads: Option<u16>,

    /// No progress output
    #[arg(short, long, help_heading = "Run")]
    pub quiet: bool,

    /// Also log the device and model on stderr
    #[arg(short, long, help_heading = "Run")]
    pub verbose: bool,
}

impl RunArgs {
    /// Sizes the global thread pool; call once, before any work.
    pub fn init_threads(&self) -> Result<()> {
        if let Some(n) = self.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n.into())
                .build_global()
                .context("starting the thread pool")?;
        }
        Ok(())
    }
}

/// `131072`, `131,072` or `128k`.
pub fn parse_count(s: &str) -> Result<u64> {
    let t = s.replace(',', "").to_ascii_lowercase();
    let (num, mult) = match t.strip_suffix('k') {
        Some(n) => (n, 1024),
        None => match t.strip_suffix('m') {
            Some(n) => (n, 1024 * 1024),
            None => (t.as_str(), 1),
        },
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n * mult),
        _ => bail!("expected a positive number of bases (e.g. 131072 or 128k) or max"),
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
    }
}
