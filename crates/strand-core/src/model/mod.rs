//! Caduceus checkpoints as data: the config, the safetensors checkpoint
//! and its tensors, Hugging Face hub resolution, the per-block plan, and
//! synthetic test models. The backends read these; the runtime model that
//! drives a backend is [`crate::engine`].

pub mod checkpoint;
pub mod config;
pub mod hub;
pub mod plan;
pub mod synthetic;
pub mod weights;

pub use config::{Arch, Config};
