//! Backends run the model's forward pass; the model code above them
//! (`crate::model`) decides what to run and never matches on a device
//! inside a loop.
//!
//! The operation set is the block structure of Caduceus itself: embedding,
//! one residual block at a time, the final norm, and the heads' projection.
//! That granularity lets each backend fuse what it can (the CPU fuses the
//! scan with `dt_proj` and gating; a GPU backend fuses further) while the
//! reference semantics live in one place, [`crate::model::plan`].

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_stub.rs"]
pub mod cuda;
mod host;

use crate::error::Result;
pub use host::HostBuffer;

/// The residual stream between blocks, in host memory: `hidden` and
/// `residual`, both `[len, width]` row-major.
#[derive(Clone, Debug)]
pub struct Stream {
    pub len: usize,
    pub width: usize,
    pub hidden: Vec<f32>,
    /// `None` before the first block (the reference's `residual = None`).
    pub residual: Option<Vec<f32>>,
}

/// What every backend provides.
pub trait Backend: Send + Sync {
    /// The backend's own residual stream (device memory for a GPU).
    type State;
    /// Embeds token ids (`[len]`) into a fresh stream.
    fn embed(&self, ids: &[u32]) -> Result<Self::State>;
    /// Embeds `nseq` sequences of equal length, concatenated in `ids`, into
    /// one stream that the other calls then process as a batch (one pass
    /// for all); `None` where the backend runs one sequence at a time.
    fn embed_batch(&self, ids: &[u32], nseq: usize) -> Result<Option<Self::State>> {
        let _ = (ids, nseq);
        Ok(None)
    }
    /// Runs block `layer` in place.
    fn block(&self, layer: usize, state: &mut Self::State) -> Result<()>;
    /// Copies the stream to the host (for tracing and tests).
    fn stream(&self, state: &Self::State) -> Result<Stream>;
    /// Final add + norm: the hidden states `[len, width]`.
    fn final_norm(&self, state: Self::State) -> Result<Vec<f32>>;
    /// As [`Backend::final_norm`], into `out` (resized to fit): a buffer
    /// reused from pass to pass costs no allocation and no page faults,
    /// and a GPU backend keeps it page-locked (see [`HostBuffer`]).
    fn final_norm_into(&self, state: Self::State, out: &mut HostBuffer) -> Result<()> {
        out.copy_from(&self.final_norm(state)?);
        Ok(())
    }
    /// Final add + norm, waiting for the result but not copying it to the
    /// host (benchmarks time the device's work alone with this).
    fn final_norm_discard(&self, state: Self::State) -> Result<()> {
        self.final_norm(state).map(drop)
    }
    /// Masked-LM logits `[len, vocab]` of final hidden states.
    fn lm_logits(&self, hidden: &[f32], len: usize) -> Result<Vec<f32>>;
    /// A short description for logs, e.g. `cpu (2 threads, avx2)`.
    fn describe(&self) -> String;
    /// Bytes of this backend's memory free now for a forward pass (what
    /// one costs is [`crate::memory::PassMemory`], from the config).
    fn free_bytes(&self) -> Result<u64>;
}

/// Memory the operating system says can be allocated without swapping
/// (`MemAvailable`); `None` where it cannot be read (not Linux).
pub fn host_available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Where to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// GPU 0 when one is usable, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device \"{s}\" (auto, cpu, cuda, cuda:N)")),
        }
    }
}

/// Arithmetic precision of activations and GEMM operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout (the CPU's only mode; on a GPU, GEMMs without TF32).
    F32,
    /// bf16 activations and weights in GEMMs with f32 accumulation; norms,
    /// the residual stream and the scan stay f32 (GPU only).
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fp32" | "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision \"{s}\" (fp32, bf16)")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "fp32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// Device and precision of a model; `precision: None` is the device's
/// default (bf16 on a GPU, fp32 on the CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub device: DeviceSpec,
    pub precision: Option<Precision>,
}

impl From<DeviceSpec> for Placement {
    fn from(device: DeviceSpec) -> Self {
        Placement {
            device,
            precision: None,
        }
    }
}
