//! Opening a sequence stream: compression detection, gzip/BGZF decoding and
//! sniffing the first byte of the text.
//!
//! Detection is by content, never by file name, because genomic files are
//! routinely misnamed (`.fa` that is gzipped, `.gz` that is not) and stdin
//! has no name at all.

use std::io::{self, BufRead, BufReader, Cursor, Read};

use flate2::bufread::MultiGzDecoder;

use crate::error::{Error, Position};

/// Large buffers: sequence files are read front to back in big sweeps.
const BUF_SIZE: usize = 128 * 1024;

/// Enough leading bytes to recognise every format we look for, including
/// the BGZF `BC` extra subfield at offsets 12..14.
const PREFIX_LEN: usize = 16;

/// The 28-byte empty block that bgzip writes at the end of every file
/// (SAM/BAM specification, section 4.1.2).
pub(crate) const BGZF_EOF: [u8; 28] = [
    0x1f, 0x8b, 0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x06, 0x00, 0x42, 0x43, 0x02, 0x00,
    0x1b, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// A decoded text stream, positioned at its first non-blank byte.
pub(super) struct Opened {
    /// The (decompressed) text.
    pub reader: Box<dyn BufRead + Send>,
    /// Whether the input was gzip/BGZF; decides how I/O errors are reported.
    pub gzip: bool,
    /// First non-blank byte, `None` if the text is empty or blank.
    pub first_byte: Option<u8>,
    /// Newlines skipped while looking for that byte, to keep line numbers
    /// right.
    pub skipped_lines: u64,
}

/// Turns an I/O error met while reading `file` into the right [`Error`]:
/// for gzip input the usual causes are a cut-off or damaged file, which
/// the user should be told plainly.
pub(super) fn read_error(file: &str, at: Position, gzip: bool, source: io::Error) -> Error {
    let looks_like_bad_data = matches!(
        source.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
    );
    let file = file.to_owned();
    if gzip && looks_like_bad_data {
        Error::Gzip { file, at, source }
    } else {
        Error::Read { file, at, source }
    }
}

/// Detects the compression of `raw`, wraps it in a decoder if needed and
/// finds the first non-blank byte of the text.
pub(super) fn open(file: &str, mut raw: Box<dyn Read + Send>) -> Result<Opened, Error> {
    let prefix = read_prefix(&mut raw).map_err(|source| Error::Open {
        file: file.to_owned(),
        source,
    })?;
    if let Some(format) = other_compression(&prefix) {
        return Err(Error::UnsupportedCompression {
            file: file.to_owned(),
            format,
        });
    }
    let gzip = prefix.starts_with(&[0x1f, 0x8b]);
    // Put the sniffed bytes back in front of the rest of the stream.
    let stream = Cursor::new(prefix.clone()).chain(raw);
    let mut reader: Box<dyn BufRead + Send> = if gzip {
        let checked = EofMarkerCheck::new(stream, is_bgzf(&prefix));
        // MultiGzDecoder, not GzDecoder: BGZF and `cat a.gz b.gz` are
        // several gzip members back to back, and GzDecoder would silently
        // stop after the first one.
        let decoder = MultiGzDecoder::new(BufReader::with_capacity(BUF_SIZE, checked));
        Box::new(BufReader::with_capacity(BUF_SIZE, decoder))
    } else {
        Box::new(BufReader::with_capacity(BUF_SIZE, stream))
    };

    let mut skipped_lines = 0;
    let first_byte = loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                let at = Position {
                    record: 1,
                    id: None,
                    line: Some(skipped_lines + 1),
                };
                return Err(read_error(file, at, gzip, source));
            }
        };
        if buf.is_empty() {
            break None;
        }
        // Blank lines before the first record are harmless; skip them so
        // that detection looks at the first real character.
        let blank = buf
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .count();
        skipped_lines += buf[..blank].iter().filter(|&&b| b == b'\n').count() as u64;
        let first = buf.get(blank).copied();
        reader.consume(blank);
        if first.is_some() {
            break first;
        }
    };
    Ok(Opened {
        reader,
        gzip,
        first_byte,
        skipped_lines,
    })
}

/// Reads up to [`PREFIX_LEN`] bytes, looping because pipes may deliver
/// fewer bytes per read than are available.
pub(crate) fn read_prefix(raw: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(PREFIX_LEN);
    raw.take(PREFIX_LEN as u64).read_to_end(&mut prefix)?;
    Ok(prefix)
}

/// Names compression formats we recognise but do not decode, so the user
/// gets "bzip2-compressed" instead of "first byte 'B'".
fn other_compression(prefix: &[u8]) -> Option<&'static str> {
    if prefix.starts_with(b"BZh") {
        Some("bzip2")
    } else if prefix.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some("xz")
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else {
        None
    }
}

/// A BGZF block is a gzip member with FEXTRA set whose first extra
/// subfield is `BC`.
pub(crate) fn is_bgzf(prefix: &[u8]) -> bool {
    prefix.len() >= 14 && prefix[3] & 0x04 != 0 && &prefix[12..14] == b"BC"
}

/// Passes bytes through, remembering the last 28; for BGZF input it turns
/// the end of the stream into an error when the BGZF end-of-file block is
/// missing.
///
/// Why: every BGZF block is a complete gzip member, so a BGZF file cut at a
/// block boundary decompresses without any error and would silently yield
/// fewer records. The trailing empty block is the only evidence that the
/// file is complete (htslib checks it the same way).
pub(crate) struct EofMarkerCheck<R> {
    inner: R,
    check: bool,
    tail: [u8; 28],
}

impl<R: Read> EofMarkerCheck<R> {
    pub(crate) fn new(inner: R, check: bool) -> Self {
        EofMarkerCheck {
            inner,
            check,
            tail: [0; 28],
        }
    }
}

impl<R: Read> Read for EofMarkerCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.check && self.tail != BGZF_EOF {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "bgzf end-of-file block is missing",
            ));
        }
        let tail_len = self.tail.len();
        if n >= tail_len {
            self.tail.copy_from_slice(&buf[n - tail_len..n]);
        } else {
            self.tail.copy_within(n.., 0);
            self.tail[tail_len - n..].copy_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Builds a genuine BGZF file: one member per chunk, each with the `BC`
    /// extra subfield holding the block size, then the end-of-file block.
    pub(crate) fn bgzf(chunks: &[&[u8]], with_eof_block: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks {
            let mut deflate =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            deflate.write_all(chunk).expect("in-memory write");
            let body = deflate.finish().expect("in-memory write");
            let mut crc = flate2::Crc::new();
            crc.update(chunk);
            // Block size - 1, as the BGZF BSIZE field defines it.
            let bsize = (18 + body.len() + 8 - 1) as u16;
            out.extend_from_slice(&[
                0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 6, 0, b'B', b'C', 2, 0,
            ]);
            out.extend_from_slice(&bsize.to_le_bytes());
            out.extend_from_slice(&body);
            out.extend_from_slice(&crc.sum().to_le_bytes());
            out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        }
        if with_eof_block {
            out.extend_from_slice(&BGZF_EOF);
        }
        out
    }

    #[test]
    fn bgzf_helper_ends_with_the_standard_eof_block() {
        // The EOF block is itself a valid, empty BGZF block: our helper must
        // produce byte-identical output for an empty chunk.
        assert_eq!(bgzf(&[b""], false), BGZF_EOF.to_vec());
    }

    #[test]
    fn detects_bgzf_but_not_plain_gzip() {
        assert!(is_bgzf(&bgzf(&[b">a\nA\n"], true)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b">a\nA\n").expect("in-memory write");
        assert!(!is_bgzf(&gz.finish().expect("in-memory write")));
    }

    #[test]
    fn names_other_compressions() {
        assert_eq!(other_compression(b"BZh91AY&SY"), Some("bzip2"));
        assert_eq!(
            other_compression(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some("zstd")
        );
        assert_eq!(
            other_compression(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Some("xz")
        );
        assert_eq!(other_compression(b">chr1"), None);
    }

    #[test]
    fn eof_check_tracks_tail_across_small_reads() {
        let data = bgzf(&[b">a\nACGT\n"], true);
        let mut check = EofMarkerCheck::new(&data[..], true);
        let mut out = Vec::new();
        let mut buf = [0u8; 5];
        loop {
            let n = check.read(&mut buf).expect("marker present");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data);

        let cut = &data[..data.len() - BGZF_EOF.len()];
        let mut check = EofMarkerCheck::new(cut, true);
        let err = io::copy(&mut check, &mut io::sink()).expect_err("marker missing");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
