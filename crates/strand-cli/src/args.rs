//! Options shared by every command.

use anyhow::{Context, Result};
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
    #[arg(long, default_value = "auto", value_name = "DEVICE", value_parser = parse_device, help_heading = "Model")]
    pub device: Device,
}

/// `--device` as given: `auto` or a concrete device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Auto,
    Spec(DeviceSpec),
}

fn parse_device(s: &str) -> Result<Device, String> {
    match s {
        "auto" => Ok(Device::Auto),
        s => s.parse().map(Device::Spec),
    }
}

impl ModelArgs {
    /// The device to use. This build has no GPU backend, so `auto` is the CPU.
    pub fn device(&self) -> DeviceSpec {
        match self.device {
            Device::Auto => DeviceSpec::Cpu,
            Device::Spec(d) => d,
        }
    }

    /// Loads the model. Its errors name the directory or hub id already.
    pub fn load(&self) -> Result<strand_core::Model> {
        Ok(strand_core::Model::load(&self.model, self.device())?)
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
