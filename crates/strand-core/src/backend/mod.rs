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

impl Stream {
    /// The residual stream itself, `hidden + residual` (the embedding
    /// before the first block), into `out` (`len * width` values): what the
    /// next block's norm, or the final norm, adds up and normalises.
    pub fn sum_into(&self, out: &mut [f32]) {
        out.copy_from_slice(&self.hidden);
        if let Some(r) = &self.residual {
            add_into(out, r);
        }
    }
}

/// `out[i] += x[i]` in f32 (f32 addition commutes: the same bits as `x[i] + out[i]`),
/// in parallel chunks.
pub(crate) fn add_into(out: &mut [f32], x: &[f32]) {
    use rayon::prelude::*;
    assert_eq!(out.len(), x.len(), "equal lengths");
    const CHUNK: usize = 1 << 14;
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &x)| *o += x));
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
    /// The residual stream of `state` (see [`Stream::sum_into`]), `[rows,
    /// width]`, into `out[at..]` (`out` already sized): the hidden states
    /// after the blocks run so far, for [`crate::Out::Layers`].
    fn stream_at(&self, state: &Self::State, out: &mut HostBuffer, at: usize) -> Result<()> {
        let s = self.stream(state)?;
        s.sum_into(&mut out[at..at + s.hidden.len()]);
        Ok(())
    }
    /// As [`Backend::final_norm_into`], into `out[at..]` (`out` already
    /// sized): the same numbers, bit for bit.
    fn final_norm_at(&self, state: Self::State, out: &mut HostBuffer, at: usize) -> Result<()> {
        let v = self.final_norm(state)?;
        out[at..at + v.len()].copy_from_slice(&v);
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_residual_stream_is_hidden_plus_residual() {
        let mut s = Stream {
            len: 2,
            width: 2,
            hidden: vec![1.0, 2.0, 3.0, 0.1],
            residual: None,
        };
        let mut out = vec![9.0; 4];
        s.sum_into(&mut out);
        assert_eq!(out, s.hidden, "before the first block: the embedding");
        s.residual = Some(vec![0.5, -2.0, 1e8, 0.2]);
        s.sum_into(&mut out);
        // f32 sums, as the next block's norm forms them.
        assert_eq!(out, [1.5, 0.0, 1e8 + 3.0, 0.1f32 + 0.2f32]);
        // Longer than one parallel chunk.
        let n = 40_000;
        let h: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let r: Vec<f32> = (0..n).map(|i| -(i as f32) / 2.0).collect();
        let mut out = r.clone();
        add_into(&mut out, &h);
        assert!(out.iter().enumerate().all(|(i, &o)| o == i as f32 / 2.0));
    }
}
