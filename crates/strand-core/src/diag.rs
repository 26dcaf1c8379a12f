//! What `strand doctor` and `strand bench` report about the machine and
//! the kernels: the CPU kernels in use, the GPU stack, and the CPU GEMM's
//! throughput. The backends' internals stay private to the crate.

use std::time::Instant;

use crate::backend::{cpu, cuda};
use crate::model::weights::Linear;
use crate::Result;

/// The CPU kernels this machine runs (e.g. `Avx2`).
pub fn cpu_kernels() -> String {
    format!("{:?}", cpu::scan::Isa::detect())
}

/// (item, finding) lines about the CUDA driver, GPUs, cuBLAS, NVRTC and
/// the kernel cache.
pub fn gpu_report() -> Vec<(String, String)> {
    cuda::probe::report()
}

/// GPUs the CUDA driver sees (an error naming why none is usable).
pub fn gpu_count() -> Result<usize> {
    cuda::gpu_count()
}

/// A GPU as `--dry-run` sees it, without compiling or allocating
/// anything on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuMemory {
    /// The device's name, e.g. `NVIDIA H200`.
    pub name: String,
    /// Memory free now, as a context on it sees it.
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// GPU `ordinal`'s name and memory (an error naming why it cannot be
/// opened: no driver, no such GPU, a build without CUDA).
pub fn gpu_memory(ordinal: usize) -> Result<GpuMemory> {
    let (name, free_bytes, total_bytes) = cuda::probe::memory(ordinal)?;
    Ok(GpuMemory {
        name,
        free_bytes,
        total_bytes,
    })
}

/// The CPU's model name as the kernel reports it (`model name` of
/// `/proc/cpuinfo`), e.g. `AMD EPYC 7763 64-Core Processor`.
pub fn cpu_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// FLOPs and nanoseconds spent in the CPU's projection GEMMs since the
/// last [`reset_gemm_stats`] (this process, all threads).
pub fn gemm_stats() -> (u64, u64) {
    cpu::gemm::stats()
}

pub fn reset_gemm_stats() {
    cpu::gemm::reset_stats();
}

/// GFLOP/s of the CPU GEMM on `threads` threads: the best of three
/// 2048³ products, the ceiling the projections are compared with.
pub fn gemm_peak_gflops(threads: usize) -> f64 {
    let n = 2048;
    let a = vec![1.0f32; n * n];
    let w = Linear {
        w: vec![0.5f32; n * n],
        b: None,
        out: n,
        inp: n,
    };
    let mut c = vec![0.0f32; n * n];
    (0..3)
        .map(|_| {
            let t = Instant::now();
            cpu::gemm::linear(n, &a, n, &w, &mut c, n, false, threads);
            2.0 * (n * n * n) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}
