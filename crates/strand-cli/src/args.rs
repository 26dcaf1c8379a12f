//! Options shared by every command.

use anyhow::{bail, Context, Result};
use clap::Args;
use strand_core::DeviceSpec;

/// Model, device and threads.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory (config.json + model.safetensors) or Hugging Face hub
    /// id (ORG/NAME, read offline from the local cache)
    #[arg(short, long, value_name = "DIR|ID", help_heading = "Model")]
    pub model: String,

    /// Where to run: cpu, cuda, cuda:N, or auto (a GPU when usable, else cpu)
    #[arg(
        long,
        default_value = "auto",
        value_name = "DEVICE",
        help_heading = "Model"
    )]
    pub device: String,
}

impl ModelArgs {
    /// The device to use. This build has no GPU backend, so `auto` is the CPU.
    pub fn device(&self) -> Result<DeviceSpec> {
        match self.device.as_str() {
            "auto" => Ok(DeviceSpec::Cpu),
            s => s
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--device: {e}")),
        }
    }

    /// Loads the model, with the argument named in any error.
    pub fn load(&self) -> Result<strand_core::Model> {
        strand_core::Model::load(&self.model, self.device()?)
            .with_context(|| format!("--model {}", self.model))
    }
}

/// Threads and verbosity.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// CPU threads [default: all cores]
    #[arg(short = '@', long, value_name = "INT", help_heading = "Run")]
    pub threads: Option<usize>,

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
            if n == 0 {
                bail!("--threads must be at least 1");
            }
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .context("starting the thread pool")?;
        }
        Ok(())
    }
}
