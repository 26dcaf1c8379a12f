//! The CUDA backend. This build has none: asking for it is an error, and
//! model code does not need to know (no `#[cfg]` outside this file).

use crate::error::{Error, Result};

/// Stand-in for the GPU backend in builds without it; it cannot be
/// constructed, so the `Cuda` arms of the engine are unreachable.
#[derive(Debug)]
pub enum CudaBackend {}

impl CudaBackend {
    pub fn new(_ordinal: usize) -> Result<CudaBackend> {
        Err(Error::CudaNotCompiled)
    }
}
