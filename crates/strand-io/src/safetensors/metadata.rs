//! Reading back the `__metadata__` of a safetensors file (its
//! provenance), without reading its data.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::{MAX_HEADER_BYTES, METADATA_KEY};
use crate::error::Error;

/// The string-to-string `__metadata__` of the safetensors file at `path`
/// (empty when it has none). Reads only the header.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    let file = path.display().to_string();
    let invalid = |message: String| Error::InvalidInput {
        file: file.clone(),
        message,
    };
    let mut f = std::fs::File::open(path).map_err(|source| Error::Open {
        file: file.clone(),
        source,
    })?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| invalid(format!("not a safetensors file ({e})")))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER_BYTES as u64 {
        return Err(invalid("not a safetensors file (header too large)".into()));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .map_err(|e| invalid(format!("not a safetensors file ({e})")))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| invalid(format!("not a safetensors file ({e})")))?;
    let mut out = BTreeMap::new();
    if let Some(map) = json.get(METADATA_KEY).and_then(|m| m.as_object()) {
        for (k, v) in map {
            if let Some(v) = v.as_str() {
                out.insert(k.clone(), v.to_owned());
            }
        }
    }
    Ok(out)
}
