//! Streaming safetensors writer with bounded memory.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON
//! header giving every tensor's dtype, shape and byte range, then the raw
//! tensor data. The header comes first but is only known once all tensors
//! are in, so tensor data is spooled to an anonymous temporary file as it
//! arrives and copied behind the header at [`Writer::finish`]. Memory use
//! is therefore independent of the output size.
//!
//! Tensors appear in the header and in the data in insertion order.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::Path;

use crate::atomic::{parent_dir, AtomicFile};
use crate::error::Error;

/// Readers (including the reference `safetensors` crate) refuse headers
/// larger than this many bytes.
pub const MAX_HEADER_BYTES: usize = 100_000_000;

/// Name reserved by the format for the string-to-string metadata map.
const METADATA_KEY: &str = "__metadata__";

/// Element types the writer can store. Adding one (e.g. F16 via the `half`
/// crate) means a variant with its name and size here, and an `add_*`
/// method calling [`Writer::add_encoded`] with an encoder such as
/// `f16::to_le_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F32,
}

impl Dtype {
    /// The name the safetensors header uses.
    fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
        }
    }

    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
        }
    }
}

/// Writes a safetensors file one tensor at a time.
///
/// Nothing appears at the destination until [`finish`](Writer::finish)
/// succeeds; dropping the writer before that leaves nothing behind. The
/// destination `-` is standard output, which likewise receives nothing
/// until `finish`.
#[derive(Debug)]
pub struct Writer {
    out: AtomicFile,
    body: Body,
}

/// Everything but the destination: kept apart so that `finish` can write
/// the body into the destination, and tests into a buffer.
#[derive(Debug)]
struct Body {
    /// Destination name for messages.
    file: String,
    /// `"__metadata__":{...}`, or empty when there is no metadata.
    metadata_json: String,
    /// The tensors' header entries so far, comma-separated, in insertion
    /// order. Rendered as tensors arrive (their offsets are known then) so
    /// the header size can be checked before the data is computed.
    tensors_json: String,
    names: HashSet<String>,
    /// Anonymous temporary file holding the tensor data written so far:
    /// the OS removes it even if the process is killed.
    spool: BufWriter<File>,
    /// Bytes of tensor data spooled so far.
    offset: u64,
    /// Reused encoding buffer.
    scratch: Vec<u8>,
    /// Set when a spool write failed part way: offsets are then unknown.
    broken: bool,
}

impl Writer {
    /// Starts a safetensors file at `path` (`-`: standard output) whose
    /// header will carry `metadata` under `__metadata__` (left out when
    /// empty).
    pub fn create(path: &Path, metadata: BTreeMap<String, String>) -> Result<Writer, Error> {
        let out = AtomicFile::create(path)?;
        let file = out.display_name().to_owned();
        let metadata_json = if metadata.is_empty() {
            String::new()
        } else {
            let map = serde_json::to_string(&metadata).map_err(|e| json_error(&file, e))?;
            format!("\"{METADATA_KEY}\":{map}")
        };
        // The spool goes next to the destination, where there is room for
        // the output anyway; for stdout the system temporary directory.
        let spool = if path == Path::new("-") {
            tempfile::tempfile()
        } else {
            tempfile::tempfile_in(parent_dir(path))
        }
        .map_err(|source| Error::Create {
            file: file.clone(),
            source,
        })?;
        Ok(Writer {
            out,
            body: Body {
                file,
                metadata_json,
                tensors_json: String::new(),
                names: HashSet::new(),
                spool: BufWriter::with_capacity(256 * 1024, spool),
                offset: 0,
                scratch: Vec::new(),
                broken: false,
            },
        })
    }

    /// The destination name used in messages.
    pub fn display_name(&self) -> &str {
        self.out.display_name()
    }

    /// Number of tensors added so far.
    pub fn len(&self) -> usize {
        self.body.names.len()
    }

    /// Whether no tensor has been added.
    pub fn is_empty(&self) -> bool {
        self.body.names.is_empty()
    }

    /// Adds a tensor of little-endian `f32` values in row-major order.
    ///
    /// Fails if `name` was used before or is `__metadata__`, or if
    /// `data.len()` is not the product of `shape` (1 for an empty shape).
    pub fn add_f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<(), Error> {
        self.add_encoded(name, Dtype::F32, shape, data, f32::to_le_bytes)
    }

    /// Spools `data`, encoding each value to its `N` little-endian bytes.
    /// Every `add_*` method is this with its dtype and encoder.
    fn add_encoded<T: Copy, const N: usize>(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        data: &[T],
        encode: fn(T) -> [u8; N],
    ) -> Result<(), Error> {
        debug_assert_eq!(N, dtype.size());
        let body = &mut self.body;
        let entry = body.check(name, dtype, shape, data.len())?;
        // Encode in blocks through a small buffer: explicit little-endian
        // bytes without unsafe casts, and no copy of the whole tensor.
        let mut result = Ok(());
        for block in data.chunks(16 * 1024) {
            body.scratch.clear();
            body.scratch.extend(block.iter().flat_map(|&v| encode(v)));
            result = body.spool.write_all(&body.scratch);
            if result.is_err() {
                break;
            }
        }
        body.record(name, entry, result)
    }

    /// Writes the header and data to the destination and commits it.
    pub fn finish(self) -> Result<(), Error> {
        let Writer { mut out, mut body } = self;
        body.write_to(&mut out)?;
        out.commit()
    }
}

impl Body {
    /// Validates a tensor before any of its bytes are written and returns
    /// its header entry.
    fn check(
        &self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        len: usize,
    ) -> Result<TensorEntry, Error> {
        let tensor_error = |message: String| Error::Tensor {
            file: self.file.clone(),
            name: name.to_owned(),
            message,
        };
        if self.broken {
            return Err(self.broken_error());
        }
        if name == METADATA_KEY {
            return Err(tensor_error(
                "name is reserved by the safetensors format".into(),
            ));
        }
        if self.names.contains(name) {
            return Err(tensor_error("duplicate tensor name".into()));
        }
        let elements = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| tensor_error(format!("shape {shape:?} is too large")))?;
        if elements != len {
            return Err(tensor_error(format!(
                "shape {shape:?} needs {elements} values, got {len}"
            )));
        }
        // `len` values exist in memory, so their byte size fits in u64.
        let bytes = (len * dtype.size()) as u64;
        let name_json = serde_json::to_string(name).map_err(|e| json_error(&self.file, e))?;
        let json = format!(
            "{name_json}:{{\"dtype\":\"{}\",\"shape\":{},\"data_offsets\":[{},{}]}}",
            dtype.name(),
            JsonList(shape),
            self.offset,
            self.offset + bytes
        );
        // Refuse now rather than at `finish`, possibly hours of work later.
        let header_len = self.header_len() + 1 + json.len();
        if header_len > MAX_HEADER_BYTES {
            return Err(tensor_error(format!(
                "the safetensors header would exceed the {MAX_HEADER_BYTES}-byte limit \
                 readers accept ({} tensors so far); write fewer, larger tensors",
                self.names.len()
            )));
        }
        Ok(TensorEntry { json, bytes })
    }

    /// Adds a tensor whose bytes were just spooled (if `written` is ok).
    fn record(
        &mut self,
        name: &str,
        entry: TensorEntry,
        written: io::Result<()>,
    ) -> Result<(), Error> {
        if let Err(source) = written {
            // Part of the tensor may be in the spool; later offsets would
            // be wrong, so refuse all further work.
            self.broken = true;
            return Err(self.write_error(source));
        }
        if !self.tensors_json.is_empty() {
            self.tensors_json.push(',');
        }
        self.tensors_json.push_str(&entry.json);
        self.offset += entry.bytes;
        self.names.insert(name.to_owned());
        Ok(())
    }

    fn write_error(&self, source: io::Error) -> Error {
        Error::Write {
            file: self.file.clone(),
            source,
        }
    }

    fn broken_error(&self) -> Error {
        self.write_error(io::Error::other(
            "an earlier write to the temporary data file failed",
        ))
    }

    /// Length of the unpadded header JSON.
    fn header_len(&self) -> usize {
        let comma = usize::from(!self.metadata_json.is_empty() && !self.tensors_json.is_empty());
        2 + self.metadata_json.len() + comma + self.tensors_json.len()
    }

    /// The JSON header, padded with spaces to a multiple of 8 bytes as the
    /// format requires. Assembled by hand because serde_json's map sorts
    /// keys and the tensors must stay in insertion order.
    fn header(&self) -> String {
        let mut header = String::with_capacity(self.header_len().next_multiple_of(8));
        header.push('{');
        header.push_str(&self.metadata_json);
        if !self.metadata_json.is_empty() && !self.tensors_json.is_empty() {
            header.push(',');
        }
        header.push_str(&self.tensors_json);
        header.push('}');
        let padded = header.len().next_multiple_of(8);
        header.extend(std::iter::repeat_n(' ', padded - header.len()));
        header
    }

    /// Writes length, header and spooled data to `sink`.
    fn write_to(&mut self, sink: &mut dyn Write) -> Result<(), Error> {
        if self.broken {
            return Err(self.broken_error());
        }
        // Metadata alone can exceed the limit; tensors were checked as
        // they came.
        if self.header_len() > MAX_HEADER_BYTES {
            return Err(Error::InvalidOutput {
                file: self.file.clone(),
                message: format!(
                    "the safetensors header would exceed the {MAX_HEADER_BYTES}-byte limit \
                     readers accept"
                ),
            });
        }
        let header = self.header();
        self.spool.flush().map_err(|e| self.write_error(e))?;
        let spool = self.spool.get_mut();
        let copied = spool
            .rewind()
            .and_then(|()| {
                sink.write_all(&(header.len() as u64).to_le_bytes())?;
                sink.write_all(header.as_bytes())?;
                io::copy(&mut Read::by_ref(spool).take(self.offset), sink)
            })
            .map_err(|e| self.write_error(e))?;
        if copied != self.offset {
            return Err(self.write_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "temporary data file holds {copied} bytes, expected {}",
                    self.offset
                ),
            )));
        }
        Ok(())
    }
}

/// A tensor's rendered header entry and its data size.
struct TensorEntry {
    json: String,
    bytes: u64,
}

/// Formats a shape as a compact JSON list: `[2,3]`.
struct JsonList<'a>(&'a [usize]);

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
fn json_error(file: &str, e: serde_json::Error) -> Error {
    Error::InvalidOutput {
        file: file.to_owned(),
        message: format!("cannot encode safetensors header: {e}"),
    }
}

#[cfg(test)]
mod tests;
