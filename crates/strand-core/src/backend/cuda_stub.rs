//! Stand-in for the CUDA backend in builds without the `cuda` feature:
//! asking for it is an error, and model code does not need to know (no
//! `#[cfg]` outside `backend/mod.rs`).

use std::sync::Arc;

use super::{Backend, Precision, Stream};
use crate::error::{Error, Result};
use crate::model::config::Config;
use crate::model::weights::Weights;

/// Cannot be constructed, so the `Cuda` arms of the engine are unreachable.
#[derive(Debug)]
pub enum CudaBackend {}

impl CudaBackend {
    pub fn new(_: usize, _: &Config, _: Arc<Weights>, _: Precision) -> Result<CudaBackend> {
        Err(Error::CudaNotCompiled)
    }

    pub fn peak_bytes(&self) -> usize {
        match *self {}
    }

    pub fn precision(&self) -> Precision {
        match *self {}
    }

    pub fn profile_start(&self) {
        match *self {}
    }

    pub fn profile_take(&self) -> Result<Vec<(&'static str, f64)>> {
        match *self {}
    }
}

/// The uninhabited state of the stand-in.
pub enum CudaState {}

impl Backend for CudaBackend {
    type State = CudaState;
    fn embed(&self, _: &[u32]) -> Result<CudaState> {
        match *self {}
    }
    fn block(&self, _: usize, _: &mut CudaState) -> Result<()> {
        match *self {}
    }
    fn stream(&self, _: &CudaState) -> Result<Stream> {
        match *self {}
    }
    fn final_norm(&self, _: CudaState) -> Result<Vec<f32>> {
        match *self {}
    }
    fn free_bytes(&self) -> Result<u64> {
        match *self {}
    }
    fn final_norm_discard(&self, _: CudaState) -> Result<()> {
        match *self {}
    }
    fn lm_logits(&self, _: &[f32], _: usize) -> Result<Vec<f32>> {
        match *self {}
    }
    fn describe(&self) -> String {
        match *self {}
    }
}

/// No GPUs in a build without the backend.
pub fn gpu_count() -> Result<usize> {
    Err(crate::error::Error::Cuda(
        "strand was built without the cuda feature; use --device cpu".into(),
    ))
}

/// `strand doctor`'s CUDA findings in a build without the backend.
pub mod probe {
    pub fn memory(_: usize) -> crate::Result<(String, u64, u64)> {
        Err(crate::Error::CudaNotCompiled)
    }

    pub fn report() -> Vec<(String, String)> {
        vec![(
            "cuda".into(),
            "not available: strand was built without the cuda feature".into(),
        )]
    }
}
