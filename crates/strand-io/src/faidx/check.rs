//! Cheap checks that a `.fai` index still describes its FASTA file.
//!
//! A header edited (or a record added) after `samtools faidx` ran shifts
//! every later offset: without a check, `-r chrA:1001-3000` would silently
//! return other bases. Reading a few bytes around each offset is enough
//! to notice: the byte before a record's first base ends its `>name`
//! header line, and its first line is as long as the index says. These
//! checks run once per record, on its first fetch, so opening a genome of
//! many thousands of contigs stays instant; the file's end is checked
//! against the last record's extent when the file is opened.

use std::io;

use noodles::fasta::fai;

/// How far back the header line of a record is looked for. A longer
/// description is not checked (nothing in it can be verified cheaply).
const MAX_HEADER: u64 = 64 * 1024;

/// Trailing bytes accepted after the last record (line breaks, blank
/// lines); more than this means records were added after indexing.
const MAX_TRAILER: usize = 4096;

/// Something that can read bytes at an offset of the (decompressed) file.
pub(super) trait ReadAt {
    /// Reads up to `buf.len()` bytes at `pos`; fewer only at the end of
    /// the file.
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// Byte offset of base `pos` (0-based) of `rec`.
pub(super) fn offset(rec: &fai::Record, pos: u64) -> u64 {
    let (bases, width) = (rec.line_base_count().get(), rec.line_width().get());
    rec.position() + pos / bases * width + pos % bases
}

/// Checks that `rec`'s header line ends right before its offset and that
/// its first line of bases has the indexed length. Returns what is wrong.
pub(super) fn record(file: &mut dyn ReadAt, rec: &fai::Record) -> io::Result<Option<String>> {
    let start = rec.position();
    let name = rec.name();
    // The header line: `>name`, maybe a description, then a line break.
    let back = start.min(MAX_HEADER);
    let mut head = vec![0u8; back as usize];
    let n = file.read_at(start - back, &mut head)?;
    head.truncate(n);
    if n as u64 != back || head.last() != Some(&b'\n') {
        return Ok(Some("no line break before its first base".into()));
    }
    let line = head[..head.len() - 1]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..head.len() - 1]);
    let bad = match line.iter().rposition(|&b| b == b'\n') {
        Some(i) => check_header(&line[i + 1..], name),
        // The whole window is one line: the file's first line, or a
        // description too long to check.
        None if back == start => check_header(line, name),
        None => None,
    };
    match bad {
        Some(bad) => Ok(Some(bad)),
        None => first_line(file, rec),
    }
}

fn check_header(line: &[u8], name: &[u8]) -> Option<String> {
    let ok = line.first() == Some(&b'>')
        && line[1..].starts_with(name)
        && line[1 + name.len()..]
            .first()
            .is_none_or(|b| b.is_ascii_whitespace());
    (!ok).then(|| "its header line is not the one the index points at".into())
}

/// The first line holds `min(length, line bases)` bases and then a line
/// break (or the file ends).
fn first_line(file: &mut dyn ReadAt, rec: &fai::Record) -> io::Result<Option<String>> {
    let bases = rec.line_base_count().get().min(rec.length());
    let mut line = vec![0u8; bases as usize + 1];
    let n = file.read_at(rec.position(), &mut line)?;
    let body_ok = n as u64 >= bases
        && !line[..bases as usize]
            .iter()
            .any(|&b| matches!(b, b'\n' | b'\r' | b'>'));
    let end_ok = n as u64 == bases || matches!(line[bases as usize], b'\n' | b'\r');
    Ok((!(body_ok && end_ok))
        .then(|| format!("its first line does not hold the {bases} bases the index says")))
}

/// Checks that the file ends where the last record ends (plus line
/// breaks): a longer file had records added after indexing, a shorter one
/// was cut. Returns what is wrong.
pub(super) fn file_end(file: &mut dyn ReadAt, last: &fai::Record) -> io::Result<Option<String>> {
    if last.length() == 0 {
        return Ok(None);
    }
    let end = offset(last, last.length() - 1) + 1;
    let mut probe = [0u8; 1];
    if file.read_at(end - 1, &mut probe)? != 1 {
        return Ok(Some(format!(
            "the file ends before the end of its last record {:?}: truncated or corrupt?",
            String::from_utf8_lossy(last.name())
        )));
    }
    let mut trailer = vec![0u8; MAX_TRAILER + 1];
    let n = file.read_at(end, &mut trailer)?;
    if n > MAX_TRAILER || !trailer[..n].iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(format!(
            "the file goes on after the end of its last indexed record {:?}",
            String::from_utf8_lossy(last.name())
        )));
    }
    Ok(None)
}
