//! Streaming safetensors writer with bounded memory.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON
//! header giving every tensor's dtype, shape and byte range, then the raw
//! tensor data. The header comes first but is only known once all tensors
//! are in. For a file destination, room for the header is reserved at the
//! start of the output's own temporary file and tensor data is written
//! after it, in place; the header is written into the reserved room at
//! [`Writer::finish`], padded with spaces (which the format allows). When
//! the header outgrows its room, the room is doubled and the data written
//! so far moved up in place, so the output needs only its own size on
//! disk (plus the header's growth), never a second copy of the data.
//! A stream destination (stdout, a FIFO, a device) cannot be written out
//! of order, so there the data is spooled to an anonymous temporary file
//! and copied behind the header at the end. Memory use is independent of
//! the output size either way, and both give the same bytes.
//!
//! Tensors appear in the header and in the data in insertion order. A
//! tensor is either added whole ([`Writer::add_f32`]) or streamed in
//! pieces ([`Writer::begin_tensor`], [`Writer::write`],
//! [`Writer::end_tensor`]) when it is larger than memory should hold.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::Path;

use crate::atomic::AtomicFile;
use crate::dtype::Dtype;
use crate::error::Error;

/// Readers (including the reference `safetensors` crate) refuse headers
/// larger than this many bytes.
pub const MAX_HEADER_BYTES: usize = 100_000_000;

/// Room reserved for the length and header at first (doubled as needed).
const INITIAL_RESERVE: u64 = 4096;

/// Name reserved by the format for the string-to-string metadata map.
const METADATA_KEY: &str = "__metadata__";

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
    /// String-to-string metadata, rendered at `finish` (entries may be
    /// added while tensors arrive).
    metadata: BTreeMap<String, String>,
    /// Length of `metadata` rendered as JSON, kept up to date so the
    /// header limit can be checked as tensors arrive.
    metadata_len: usize,
    /// The tensors' header entries so far, comma-separated, in insertion
    /// order. Rendered as tensors arrive (their offsets are known then) so
    /// the header size can be checked before the data is computed.
    tensors_json: String,
    names: HashSet<String>,
    /// For a stream destination, an anonymous temporary file holding the
    /// tensor data written so far (the OS removes it even if the process
    /// is killed); `None` when data goes into the destination in place.
    spool: Option<BufWriter<File>>,
    /// Bytes before the tensor data: the 8-byte length and the header
    /// padded with spaces. A multiple of 8 that only grows.
    reserved: u64,
    /// Bytes of tensor data written so far.
    offset: u64,
    /// Reused encoding buffer.
    scratch: Vec<u8>,
    /// Set when a spool write failed part way: offsets are then unknown.
    broken: bool,
    /// The tensor being streamed, if any.
    open: Option<OpenTensor>,
}

/// A tensor begun with [`Writer::begin_tensor`] and not yet ended.
#[derive(Debug)]
struct OpenTensor {
    name: String,
    dtype: Dtype,
    entry: TensorEntry,
    /// Values still expected.
    remaining: usize,
}

impl Writer {
    /// Starts a safetensors file at `path` (`-`: standard output) whose
    /// header will carry `metadata` under `__metadata__` (left out when
    /// empty).
    pub fn create(path: &Path, metadata: BTreeMap<String, String>) -> Result<Writer, Error> {
        let mut out = AtomicFile::create(path)?;
        let file = out.display_name().to_owned();
        let spool = if out.is_stream() {
            // In the system temporary directory: a stream's own directory
            // may be /dev, no place for data.
            let spool = tempfile::tempfile().map_err(|source| Error::Create {
                file: file.clone(),
                source,
            })?;
            Some(BufWriter::with_capacity(256 * 1024, spool))
        } else {
            // The room for the header, filled in at `finish`.
            out.write_all(&[b' '; INITIAL_RESERVE as usize])
                .map_err(|e| out.write_error(e))?;
            None
        };
        let mut writer = Writer {
            out,
            body: Body {
                file,
                metadata: BTreeMap::new(),
                metadata_len: 0,
                tensors_json: String::new(),
                names: HashSet::new(),
                spool,
                reserved: INITIAL_RESERVE,
                offset: 0,
                scratch: Vec::new(),
                broken: false,
                open: None,
            },
        };
        for (key, value) in metadata {
            writer.set_metadata(key, value)?;
        }
        Ok(writer)
    }

    /// Sets a metadata entry (replacing an earlier value of `key`).
    pub fn set_metadata(&mut self, key: String, value: String) -> Result<(), Error> {
        let body = &mut self.body;
        let json_len = |k: &str, v: &str| -> Result<usize, Error> {
            let k = serde_json::to_string(k).map_err(|e| json_error(&body.file, e))?;
            let v = serde_json::to_string(v).map_err(|e| json_error(&body.file, e))?;
            Ok(k.len() + v.len() + 1)
        };
        let added = json_len(&key, &value)?;
        let removed = match body.metadata.get(&key) {
            Some(old) => json_len(&key, old)?,
            None => 0,
        };
        body.metadata_len = body.metadata_len + added - removed;
        body.metadata.insert(key, value);
        Ok(())
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
        self.add(name, Dtype::F32, shape, data)
    }

    /// Adds a tensor stored as `dtype`, converting from `f32`.
    pub fn add(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        data: &[f32],
    ) -> Result<(), Error> {
        let elements = self.body.elements(name, shape)?;
        if elements != data.len() {
            return Err(self.body.tensor_error(
                name,
                format!(
                    "shape {shape:?} needs {elements} values, got {}",
                    data.len()
                ),
            ));
        }
        self.begin_tensor(name, dtype, shape)?;
        self.write(data)?;
        self.end_tensor()
    }

    /// Starts a tensor whose values arrive in pieces through
    /// [`write`](Writer::write), in row-major order; memory use stays
    /// independent of its size.
    pub fn begin_tensor(&mut self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<(), Error> {
        let body = &mut self.body;
        if let Some(open) = &body.open {
            return Err(body.tensor_error(
                name,
                format!("tensor {:?} is still being written", open.name),
            ));
        }
        let remaining = body.elements(name, shape)?;
        let entry = body.check(name, dtype, shape, remaining)?;
        // Room for the header with this entry, before its data is written.
        let header = body.header_len() + 1 + entry.json.len();
        reserve(&mut self.out, body, header)?;
        let body = &mut self.body;
        body.open = Some(OpenTensor {
            name: name.to_owned(),
            dtype,
            entry,
            remaining,
        });
        Ok(())
    }

    /// Appends values to the tensor begun last.
    pub fn write(&mut self, values: &[f32]) -> Result<(), Error> {
        let body = &mut self.body;
        if body.broken {
            return Err(body.broken_error());
        }
        let sink: &mut dyn Write = match &mut body.spool {
            Some(spool) => spool,
            None => &mut self.out,
        };
        let Some(open) = body.open.as_mut() else {
            return Err(Error::InvalidOutput {
                file: body.file.clone(),
                message: "values written with no tensor begun".into(),
            });
        };
        if values.len() > open.remaining {
            let (name, remaining) = (open.name.clone(), open.remaining);
            return Err(body.tensor_error(
                &name,
                format!("{} values written, {remaining} expected", values.len()),
            ));
        }
        open.remaining -= values.len();
        let dtype = open.dtype;
        // Encode in blocks through a small buffer: explicit little-endian
        // bytes without unsafe casts, and no copy of the whole tensor.
        for block in values.chunks(16 * 1024) {
            body.scratch.clear();
            dtype.encode(block, &mut body.scratch);
            if let Err(source) = sink.write_all(&body.scratch) {
                // Part of the tensor may be written; later offsets would
                // be wrong, so refuse all further work.
                body.broken = true;
                return Err(body.write_error(source));
            }
        }
        Ok(())
    }

    /// Ends the tensor begun last; fails if fewer values than its shape
    /// needs were written.
    pub fn end_tensor(&mut self) -> Result<(), Error> {
        let body = &mut self.body;
        let Some(open) = body.open.take() else {
            return Err(Error::InvalidOutput {
                file: body.file.clone(),
                message: "no tensor to end".into(),
            });
        };
        if open.remaining != 0 {
            body.broken = true;
            return Err(body.tensor_error(
                &open.name,
                format!("ended with {} values missing", open.remaining),
            ));
        }
        body.record(&open.name, open.entry);
        Ok(())
    }

    /// Writes the header and data to the destination and commits it.
    pub fn finish(self) -> Result<(), Error> {
        let Writer { mut out, mut body } = self;
        if let Some(open) = &body.open {
            return Err(body.tensor_error(&open.name, "not ended".into()));
        }
        body.check_header_limit()?;
        let header = body.header_len();
        reserve(&mut out, &mut body, header)?;
        if body.spool.is_some() {
            body.write_to(&mut out)?;
        } else {
            body.write_header_in_place(&mut out)?;
        }
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
        let tensor_error = |message: String| self.tensor_error(name, message);
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
        let bytes = (len as u64)
            .checked_mul(dtype.size() as u64)
            .ok_or_else(|| tensor_error(format!("shape {shape:?} is too large")))?;
        let name_json = serde_json::to_string(name).map_err(|e| json_error(&self.file, e))?;
        let json = format!(
            "{name_json}:{{\"dtype\":\"{}\",\"shape\":{},\"data_offsets\":[{},{}]}}",
            dtype.safetensors_name(),
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

    /// Number of values a tensor of `shape` holds.
    fn elements(&self, name: &str, shape: &[usize]) -> Result<usize, Error> {
        shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| self.tensor_error(name, format!("shape {shape:?} is too large")))
    }

    fn tensor_error(&self, name: &str, message: String) -> Error {
        Error::Tensor {
            file: self.file.clone(),
            name: name.to_owned(),
            message,
        }
    }

    /// Adds a tensor whose bytes were all spooled.
    fn record(&mut self, name: &str, entry: TensorEntry) {
        if !self.tensors_json.is_empty() {
            self.tensors_json.push(',');
        }
        self.tensors_json.push_str(&entry.json);
        self.offset += entry.bytes;
        self.names.insert(name.to_owned());
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
        // `"__metadata__":{` + entries and their commas + `}`.
        let metadata = if self.metadata.is_empty() {
            0
        } else {
            METADATA_KEY.len() + 5 + self.metadata_len + self.metadata.len() - 1
        };
        let comma = usize::from(metadata > 0 && !self.tensors_json.is_empty());
        2 + metadata + comma + self.tensors_json.len()
    }

    /// The JSON header, padded with spaces to a multiple of 8 bytes as the
    /// format requires. Assembled by hand because serde_json's map sorts
    /// keys and the tensors must stay in insertion order.
    fn header(&self) -> Result<String, Error> {
        let mut header = String::with_capacity(self.header_len().next_multiple_of(8));
        header.push('{');
        if !self.metadata.is_empty() {
            let map =
                serde_json::to_string(&self.metadata).map_err(|e| json_error(&self.file, e))?;
            header.push_str(&format!("\"{METADATA_KEY}\":{map}"));
            if !self.tensors_json.is_empty() {
                header.push(',');
            }
        }
        header.push_str(&self.tensors_json);
        header.push('}');
        let padded = header.len().next_multiple_of(8);
        header.extend(std::iter::repeat_n(' ', padded - header.len()));
        Ok(header)
    }

    /// Metadata alone can exceed the header limit; tensors were checked
    /// as they came.
    fn check_header_limit(&self) -> Result<(), Error> {
        if self.broken {
            return Err(self.broken_error());
        }
        if self.header_len() > MAX_HEADER_BYTES {
            return Err(Error::InvalidOutput {
                file: self.file.clone(),
                message: format!(
                    "the safetensors header would exceed the {MAX_HEADER_BYTES}-byte limit \
                     readers accept"
                ),
            });
        }
        Ok(())
    }

    /// Writes length, header and spooled data to `sink`.
    fn write_to(&mut self, sink: &mut dyn Write) -> Result<(), Error> {
        self.check_header_limit()?;
        let head = self.head()?;
        let Some(spool) = self.spool.as_mut() else {
            return Err(self.write_error(io::Error::other("no spooled data")));
        };
        let copied = spool
            .flush()
            .and_then(|()| {
                let spool = spool.get_mut();
                spool.rewind()?;
                sink.write_all(&head)?;
                io::copy(&mut Read::by_ref(spool).take(self.offset), sink)
            })
            .map_err(|e| Error::Write {
                file: self.file.clone(),
                source: e,
            })?;
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

mod json;
use json::{json_error, JsonList, TensorEntry};
mod metadata;
mod room;
pub use metadata::read_metadata;
use room::reserve;

#[cfg(test)]
mod tests;
