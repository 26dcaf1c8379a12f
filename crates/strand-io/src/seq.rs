//! Streaming FASTA/FASTQ reader.
//!
//! Plain, gzip and BGZF input is accepted, detected by content. The parser
//! is written here on top of `flate2` rather than taken from `needletail`
//! because needletail reports I/O errors without any position, rejects a
//! final FASTA record that has a header but no sequence, and pulls in C
//! compression libraries (xz, zstd) the project does not need.
//!
//! Sequence bytes are returned exactly as in the file (case kept, nothing
//! validated); only line breaks (`\n` or `\r\n`) are removed.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::Path;

use crate::error::{Error, Position, ShowByte};

mod ids;
pub(crate) mod input;
#[cfg(test)]
mod tests;

pub use ids::{check_unique_ids, IdSet};

/// One FASTA or FASTQ record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// First whitespace-delimited word of the header.
    pub id: String,
    /// Rest of the header line, trimmed; `None` if empty.
    pub description: Option<String>,
    /// Sequence bytes as in the file, case kept, line breaks removed (and,
    /// in FASTA, spaces and tabs within sequence lines).
    /// Empty for a header without sequence; callers decide whether that is
    /// acceptable.
    pub seq: Vec<u8>,
}

impl Record {
    /// Errors unless the record can go through a model: non-empty, and
    /// ASCII, since the reference tokenizes characters, not bytes (a
    /// multi-byte character would shift every later row against the
    /// bases). `n` is the 1-based record number in `file`, for the message.
    pub fn check_model_input(&self, file: &str, n: u64) -> Result<(), Error> {
        let bad = |msg: String| Error::invalid_record(file, n, self.id.clone(), msg);
        if self.seq.is_empty() {
            return Err(bad("empty sequence".into()));
        }
        // NUL bytes are ASCII but never bases: zero-filled blocks are what
        // a crashed writer or a damaged disk leaves, and must not be
        // embedded as unknown bases.
        match self.seq.iter().position(|&b| !b.is_ascii() || b == 0) {
            Some(p) => Err(bad(format!(
                "{} at position {}",
                bad_byte(self.seq[p]),
                p + 1
            ))),
            None => Ok(()),
        }
    }
}

/// Names a byte that cannot be a base: a NUL (zero-filled corruption) or
/// a non-ASCII byte.
pub fn bad_byte(b: u8) -> String {
    if b == 0 {
        "NUL byte (zero-filled data: a damaged or partly written file?)".into()
    } else {
        format!("non-ASCII byte 0x{b:02x}")
    }
}

/// The text format of a sequence file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Records start with `>`; sequence may span several lines.
    Fasta,
    /// Four-line records: `@id`, sequence, `+`, quality.
    Fastq,
}

/// A streaming reader of FASTA or FASTQ records.
///
/// Iterating yields records in file order. After the first error the
/// iterator ends, because the rest of a damaged stream cannot be trusted.
pub struct Reader {
    /// Name as given (`-` for stdin); used in error messages.
    name: String,
    input: Box<dyn BufRead + Send>,
    format: Format,
    gzip: bool,
    /// Current line, without its line break.
    line_buf: Vec<u8>,
    /// Number of lines consumed so far.
    line: u64,
    /// Number of records returned so far.
    record: u64,
    /// FASTA only: the next record's header (without `>`), read while
    /// looking for the end of the current record.
    pending_header: Option<Vec<u8>>,
    done: bool,
}

impl Reader {
    /// Opens `path`; `-` means standard input.
    pub fn from_path(path: &Path) -> Result<Reader, Error> {
        if path == Path::new("-") {
            return Reader::from_reader("-", Box::new(io::stdin()));
        }
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| Error::Open {
            file: name.clone(),
            source,
        })?;
        // On Unix a directory opens fine and only the first read fails;
        // say what is wrong up front instead.
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Error::Open {
                file: name,
                source: io::ErrorKind::IsADirectory.into(),
            });
        }
        Reader::from_reader(name, Box::new(file))
    }

    /// Reads records from `r`; `name` is used in error messages (`-` is
    /// shown as `<stdin>`).
    ///
    /// Fails at once if the input is empty ([`Error::NoRecords`]), neither
    /// FASTA nor FASTQ, or compressed with something other than gzip.
    pub fn from_reader(name: impl Into<String>, r: Box<dyn Read + Send>) -> Result<Reader, Error> {
        let name = name.into();
        let display = display_name(&name).to_owned();
        let opened = input::open(&display, r)?;
        let format = match opened.first_byte {
            Some(b'>') => Format::Fasta,
            Some(b'@') => Format::Fastq,
            Some(first_byte) => {
                return Err(Error::UnknownFormat {
                    file: display,
                    first_byte,
                    gzip: opened.gzip,
                })
            }
            None => return Err(Error::NoRecords { file: display }),
        };
        Ok(Reader {
            name,
            input: opened.reader,
            format,
            gzip: opened.gzip,
            line_buf: Vec::new(),
            line: opened.skipped_lines,
            record: 0,
            pending_header: None,
            done: false,
        })
    }

    /// The name used in messages: the path as given, or `<stdin>`.
    pub fn display_name(&self) -> &str {
        display_name(&self.name)
    }

    /// Whether the input is FASTA or FASTQ.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Number of records returned so far, i.e. the 1-based number of the
    /// record most recently returned (0 before the first). Use it for
    /// messages about a record and with [`IdSet::insert`].
    pub fn record_number(&self) -> u64 {
        self.record
    }

    /// Reads the next line into `line_buf` without its line break; `false`
    /// at end of input.
    fn read_line(&mut self, id: Option<&str>) -> Result<bool, Error> {
        self.line_buf.clear();
        let n = loop {
            match self.input.read_until(b'\n', &mut self.line_buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(self.io_error(source, id)),
            }
        };
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.line_buf.last() == Some(&b'\n') {
            self.line_buf.pop();
        }
        // Windows line endings.
        if self.line_buf.last() == Some(&b'\r') {
            self.line_buf.pop();
        }
        Ok(true)
    }

    fn io_error(&self, source: io::Error, id: Option<&str>) -> Error {
        let at = Position {
            record: self.record + 1,
            id: id.map(str::to_owned),
            line: Some(self.line + 1),
        };
        input::read_error(self.display_name(), at, self.gzip, source)
    }

    fn invalid(&self, id: Option<&str>, message: String) -> Error {
        Error::InvalidRecord {
            file: self.display_name().to_owned(),
            at: Position {
                record: self.record + 1,
                id: id.map(str::to_owned),
                line: Some(self.line),
            },
            message,
        }
    }

    fn next_fasta(&mut self) -> Result<Option<Record>, Error> {
        let header = match self.pending_header.take() {
            Some(header) => header,
            None => {
                // Only for the first record: opening left the stream at the
                // first non-blank byte, which was '>'.
                if !self.read_line(None)? {
                    return Ok(None);
                }
                match self.line_buf.split_first() {
                    Some((b'>', rest)) => rest.to_vec(),
                    _ => return Err(self.invalid(None, "expected '>' header line".into())),
                }
            }
        };
        let (id, description) = split_header(&header);
        let mut seq = Vec::new();
        while self.read_line(Some(&id))? {
            if let Some((b'>', rest)) = self.line_buf.split_first() {
                self.pending_header = Some(rest.to_vec());
                break;
            }
            // Blank lines inside a record add nothing, which is what
            // removing line breaks means for them. Spaces and tabs inside
            // sequence lines (trailing blanks from editors, column
            // layouts) are not bases either: dropping them keeps row i of
            // every output equal to base i, as Biopython's reader does.
            seq.extend(self.line_buf.iter().filter(|&&b| b != b' ' && b != b'\t'));
        }
        self.record += 1;
        Ok(Some(Record {
            id,
            description,
            seq,
        }))
    }

    fn next_fastq(&mut self) -> Result<Option<Record>, Error> {
        // Blank lines between records (e.g. a trailing empty line) are
        // tolerated.
        loop {
            if !self.read_line(None)? {
                return Ok(None);
            }
            if !self.line_buf.is_empty() {
                break;
            }
        }
        let header = match self.line_buf.split_first() {
            Some((b'@', rest)) => rest.to_vec(),
            _ => {
                let found = ShowByte(self.line_buf[0]);
                return Err(self.invalid(
                    None,
                    format!("expected '@' at the start of a FASTQ record, found {found}"),
                ));
            }
        };
        let (id, description) = split_header(&header);
        let truncated = |this: &Self, what: &str| {
            this.invalid(Some(&id), format!("truncated record: missing {what} line"))
        };

        if !self.read_line(Some(&id))? {
            return Err(truncated(self, "sequence"));
        }
        let seq = std::mem::take(&mut self.line_buf);

        if !self.read_line(Some(&id))? {
            return Err(truncated(self, "'+'"));
        }
        if self.line_buf.first() != Some(&b'+') {
            let found = match self.line_buf.first() {
                Some(&b) => ShowByte(b).to_string(),
                None => "an empty line".to_owned(),
            };
            return Err(self.invalid(
                Some(&id),
                format!("expected '+' line, found {found} (multi-line FASTQ is not supported)"),
            ));
        }

        // A record with an empty sequence may legitimately end right after
        // the '+' line when the file has no final newline.
        if !self.read_line(Some(&id))? && !seq.is_empty() {
            return Err(truncated(self, "quality"));
        }
        if self.line_buf.len() != seq.len() {
            return Err(self.invalid(
                Some(&id),
                format!(
                    "quality length {} differs from sequence length {}",
                    self.line_buf.len(),
                    seq.len()
                ),
            ));
        }
        self.record += 1;
        Ok(Some(Record {
            id,
            description,
            seq,
        }))
    }
}

impl Iterator for Reader {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = match self.format {
            Format::Fasta => self.next_fasta(),
            Format::Fastq => self.next_fastq(),
        };
        match result {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for Reader {}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("gzip", &self.gzip)
            .field("line", &self.line)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

fn display_name(name: &str) -> &str {
    if name == "-" {
        "<stdin>"
    } else {
        name
    }
}

/// Splits a header (without `>`/`@`) into id and description. Non-UTF-8
/// bytes are escaped (`\xNN`) rather than rejected: ids only label output,
/// but distinct ids must stay distinct (replacing every bad byte with one
/// replacement character made different names collide as duplicates).
fn split_header(header: &[u8]) -> (String, Option<String>) {
    let header = header.trim_ascii();
    let end = header
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(header.len());
    let id = escape_utf8(&header[..end]);
    let rest = header[end..].trim_ascii();
    let description = (!rest.is_empty()).then(|| escape_utf8(rest));
    (id, description)
}

/// `bytes` as text, each byte of an invalid UTF-8 sequence as `\xNN`.
fn escape_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}
