//! Exact Caduceus inference.
//!
//! `strand-core` loads Hugging Face Caduceus checkpoints (PS and PH, every
//! config variant the reference code supports), tokenizes DNA exactly as the
//! reference tokenizer does and runs the model on a [`backend`]. The
//! semantics it reproduces are written down in `docs/caduceus-model.md`.
//!
//! ```no_run
//! use strand_core::{Model, DeviceSpec, tokenizer};
//! let model = Model::load("kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16", DeviceSpec::Cpu)?;
//! let ids = tokenizer::encode_bases(b"ACGTNACGT");
//! let hidden = model.forward(&ids)?; // [9, 512]
//! let logits = model.lm_logits(&hidden)?; // [9, 16]
//! # Ok::<(), strand_core::Error>(())
//! ```

pub mod backend;
pub mod cache;
pub mod diag;
pub mod engine;
pub mod error;
pub mod heads;
pub mod memory;
pub mod model;
pub mod runner;
pub mod tokenizer;
mod util;

pub use backend::{DeviceSpec, HostBuffer, Placement, Precision};
pub use engine::{Model, Out};
pub use error::{Error, Result};
pub use model::Config;
