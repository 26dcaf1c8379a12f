//! Pieces of the safetensors JSON header: an entry per tensor, shapes as
//! compact lists, and the (never expected) encoding error.

use crate::error::Error;

/// A tensor's rendered header entry and its data size.
#[derive(Debug)]
pub(super) struct TensorEntry {
    pub json: String,
    pub bytes: u64,
}

/// Formats a shape as a compact JSON list: `[2,3]`.
pub(super) struct JsonList<'a>(pub &'a [usize]);

impl std::fmt::Display for JsonList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Serialising strings to JSON cannot really fail; still, no panics.
pub(super) fn json_error(file: &str, e: serde_json::Error) -> Error {
    Error::InvalidOutput {
        file: file.to_owned(),
        message: format!("cannot encode safetensors header: {e}"),
    }
}
