//! The one error type of this crate.
//!
//! Every variant names the file it concerns (as the user typed it, or
//! `<stdin>`/`<stdout>`), and where it makes sense the record and line, so
//! the CLI can print the error as is without adding context of its own.

use std::fmt;
use std::io;

/// Where in a sequence file something went wrong.
///
/// Displayed as `record 3 ("chr2"), line 12`; the id is left out when it is
/// not known yet (e.g. the header line itself could not be read) and the
/// line when the caller has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// 1-based number of the record being read.
    pub record: u64,
    /// The record's id, once its header has been read.
    pub id: Option<String>,
    /// 1-based line number in the (decompressed) text, if known.
    pub line: Option<u64>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}", self.record)?;
        if let Some(id) = &self.id {
            // Debug formatting quotes the id and escapes control characters,
            // so a strange id cannot garble the terminal or the message.
            write!(f, " ({})", Name(id))?;
        }
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        Ok(())
    }
}

/// Longest part of a name shown in a message; a name can be megabytes
/// long (a garbled header), which must not flood the terminal or a log.
const NAME_SHOWN: usize = 80;

/// A record or tensor name for a message: quoted and escaped (so a strange
/// name cannot garble the terminal) and cut to [`NAME_SHOWN`] characters,
/// with the full length said.
pub struct Name<'a>(pub &'a str);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(NAME_SHOWN) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}... ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// Shows a byte the way a user would recognise it: `'#'` when printable,
/// `0x1f` otherwise.
pub(crate) struct ShowByte(pub u8);

impl fmt::Display for ShowByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() || self.0 == b' ' {
            write!(f, "'{}'", self.0 as char)
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

/// Errors from reading sequence files and writing output files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input file could not be opened.
    #[error("{file}: cannot open: {source}")]
    Open {
        /// File name as given.
        file: String,
        /// The operating system's error.
        source: io::Error,
    },

    /// Reading failed for a reason other than bad compressed data.
    #[error("{file}: {at}: read failed: {source}")]
    Read {
        /// File name as given.
        file: String,
        /// Where reading stopped.
        at: Position,
        /// The underlying error.
        source: io::Error,
    },

    /// The gzip/BGZF stream is cut short or damaged.
    #[error("{file}: {at}: gzip data is truncated or corrupt ({source})")]
    Gzip {
        /// File name as given.
        file: String,
        /// Where decompression stopped.
        at: Position,
        /// The decompressor's error.
        source: io::Error,
    },

    /// The content is neither FASTA (`>`) nor FASTQ (`@`).
    #[error("{file}: not a FASTA or FASTQ file (first byte {}{})", ShowByte(*first_byte), if *gzip { " after gzip decompression" } else { "" })]
    UnknownFormat {
        /// File name as given.
        file: String,
        /// First non-blank byte of the (decompressed) content.
        first_byte: u8,
        /// Whether the file was gzip-compressed.
        gzip: bool,
    },

    /// Compressed with something other than gzip/BGZF.
    #[error("{file}: {format}-compressed input is not supported (use gzip or bgzip)")]
    UnsupportedCompression {
        /// File name as given.
        file: String,
        /// Name of the compression format found.
        format: &'static str,
    },

    /// The file holds no records at all (empty, or only blank lines).
    #[error("{file}: no records")]
    NoRecords {
        /// File name as given.
        file: String,
    },

    /// A record breaks the FASTA/FASTQ syntax, or a caller rejected it.
    #[error("{file}: {at}: {message}")]
    InvalidRecord {
        /// File name as given.
        file: String,
        /// The offending record.
        at: Position,
        /// What is wrong, lower case, no trailing period.
        message: String,
    },

    /// Two records share an id where ids must be unique.
    #[error(
        "{file}: record {second} ({}): duplicate id, first used by record {first}",
        Name(id)
    )]
    DuplicateId {
        /// File name as given.
        file: String,
        /// The repeated id.
        id: String,
        /// 1-based number of the first record with this id.
        first: u64,
        /// 1-based number of the repeat.
        second: u64,
    },

    /// An output file (or its temporary file) could not be created.
    #[error("{file}: cannot create: {source}")]
    Create {
        /// Destination as given.
        file: String,
        /// The underlying error.
        source: io::Error,
    },

    /// Writing, flushing or syncing an output failed.
    #[error("{file}: write failed: {source}")]
    Write {
        /// Destination as given.
        file: String,
        /// The underlying error.
        source: io::Error,
    },

    /// The finished temporary file could not be renamed onto the destination.
    #[error("{file}: cannot move finished output into place: {source}")]
    Commit {
        /// Destination as given.
        file: String,
        /// The underlying error.
        source: io::Error,
    },

    /// A tensor handed to the safetensors writer is unacceptable.
    #[error("{file}: tensor {}: {message}", Name(name))]
    Tensor {
        /// Destination as given.
        file: String,
        /// Tensor name.
        name: String,
        /// What is wrong.
        message: String,
    },

    /// The output as a whole cannot be written in the requested format.
    #[error("{file}: {message}")]
    InvalidOutput {
        /// Destination as given.
        file: String,
        /// What is wrong.
        message: String,
    },

    /// An input file as a whole is unusable (missing index, wrong
    /// compression).
    #[error("{file}: {message}")]
    InvalidInput {
        /// File name as given.
        file: String,
        /// What is wrong, and what to do about it.
        message: String,
    },

    /// Something at a place in an input file is wrong: a region off its
    /// contig, a bad BED line, a damaged BAM record.
    #[error("{file}: {at}: {message}")]
    InvalidAt {
        /// File name as given.
        file: String,
        /// Where: `region chr1:1-100`, `line 7`, `record 12 ("read3")`.
        at: String,
        /// What is wrong.
        message: String,
    },

    /// A region as written by the user cannot be parsed.
    #[error("region {text:?}: {message}")]
    InvalidRegion {
        /// The region as given.
        text: String,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// An [`Error::InvalidRecord`] for a record the caller rejects, e.g.
    /// `Error::invalid_record("reads.fa", 3, "chr2", "empty sequence")`
    /// displays as `reads.fa: record 3 ("chr2"): empty sequence`.
    pub fn invalid_record(
        file: impl Into<String>,
        record: u64,
        id: impl Into<String>,
        message: impl Into<String>,
    ) -> Error {
        Error::InvalidRecord {
            file: file.into(),
            at: Position {
                record,
                id: Some(id.into()),
                line: None,
            },
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_display_variants() {
        let full = Position {
            record: 3,
            id: Some("chr2".into()),
            line: Some(12),
        };
        assert_eq!(full.to_string(), r#"record 3 ("chr2"), line 12"#);
        let bare = Position {
            record: 1,
            id: None,
            line: None,
        };
        assert_eq!(bare.to_string(), "record 1");
    }

    /// Issue 15: a huge name is cut in messages, its length said.
    #[test]
    fn issue15_long_names_are_cut_in_messages() {
        let long = "n".repeat(50_000_000);
        let e = Error::invalid_record("reads.fa", 3, long, "empty sequence").to_string();
        assert_eq!(
            e,
            format!(
                "reads.fa: record 3 (\"{}\"... (50000000 bytes)): empty sequence",
                "n".repeat(80)
            )
        );
        assert_eq!(Name("short").to_string(), "\"short\"");
    }

    #[test]
    fn invalid_record_matches_house_style() {
        let e = Error::invalid_record("reads.fa", 3, "chr2", "empty sequence");
        assert_eq!(
            e.to_string(),
            r#"reads.fa: record 3 ("chr2"): empty sequence"#
        );
    }

    #[test]
    fn show_byte_escapes_non_printable() {
        assert_eq!(ShowByte(b'#').to_string(), "'#'");
        assert_eq!(ShowByte(0x1f).to_string(), "0x1f");
        assert_eq!(ShowByte(b'\n').to_string(), "0x0a");
    }

    #[test]
    fn duplicate_id_message() {
        let e = Error::DuplicateId {
            file: "x.fa".into(),
            id: "r1".into(),
            first: 1,
            second: 4,
        };
        assert_eq!(
            e.to_string(),
            r#"x.fa: record 4 ("r1"): duplicate id, first used by record 1"#
        );
    }
}
