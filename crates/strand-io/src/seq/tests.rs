//! Tests of the sequence reader (kept in their own file only for length).

use std::io::{self, Cursor, Read, Write};

use super::input::tests::bgzf;
use super::*;

fn reader(name: &str, data: &[u8]) -> Result<Reader, Error> {
    Reader::from_reader(name, Box::new(Cursor::new(data.to_vec())))
}

/// Reads everything, stopping at the first error.
fn read_all(name: &str, data: &[u8]) -> Result<Vec<Record>, Error> {
    reader(name, data)?.collect()
}

/// Reads until the first error, returning the good records and the error.
fn read_until_error(name: &str, data: &[u8]) -> (Vec<Record>, Option<Error>) {
    let mut good = Vec::new();
    for item in reader(name, data).expect("opens") {
        match item {
            Ok(r) => good.push(r),
            Err(e) => return (good, Some(e)),
        }
    }
    (good, None)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).expect("in-memory write");
    gz.finish().expect("in-memory write")
}

fn rec(id: &str, description: Option<&str>, seq: &str) -> Record {
    Record {
        id: id.into(),
        description: description.map(Into::into),
        seq: seq.as_bytes().to_vec(),
    }
}

/// Many records, so that compressed data spans many buffer refills.
fn big_fasta(n: usize) -> Vec<u8> {
    let mut fa = Vec::new();
    for i in 0..n {
        fa.extend_from_slice(format!(">r{i} number {i}\nACGTacgtNN{i}\nTTGCA\n").as_bytes());
    }
    fa
}

#[test]
fn fasta_multiline_case_and_description() {
    let recs = read_all("x.fa", b">chr1  first one \nACgt\nnnRY\n>chr2\nTT\n").expect("valid");
    assert_eq!(
        recs,
        vec![
            rec("chr1", Some("first one"), "ACgtnnRY"),
            rec("chr2", None, "TT")
        ]
    );
}

#[test]
fn tab_separates_id_from_description() {
    let recs = read_all("x.fa", b">a\tb c\nA\n").expect("valid");
    assert_eq!(recs, vec![rec("a", Some("b c"), "A")]);
}

#[test]
fn windows_line_endings() {
    let fa = read_all("x.fa", b">a x\r\nAC\r\nGT\r\n>b\r\n\r\n>c\r\nTT").expect("valid");
    assert_eq!(
        fa,
        vec![
            rec("a", Some("x"), "ACGT"),
            rec("b", None, ""),
            rec("c", None, "TT")
        ]
    );
    let fq = read_all("x.fq", b"@r1 d\r\nACG\r\n+\r\nIII\r\n").expect("valid");
    assert_eq!(fq, vec![rec("r1", Some("d"), "ACG")]);
}

#[test]
fn empty_fasta_records_are_returned() {
    let recs = read_all("x.fa", b">a\n>b\nAC\n>c\n").expect("valid");
    assert_eq!(
        recs,
        vec![rec("a", None, ""), rec("b", None, "AC"), rec("c", None, "")]
    );
    // Same without a final newline.
    let recs = read_all("x.fa", b">a\nAC\n>c").expect("valid");
    assert_eq!(recs, vec![rec("a", None, "AC"), rec("c", None, "")]);
}

#[test]
fn blank_lines_are_skipped() {
    let recs = read_all("x.fa", b"\n\n  \n>a\nAC\n\nGT\n\n>b\nTT\n\n").expect("valid");
    assert_eq!(recs, vec![rec("a", None, "ACGT"), rec("b", None, "TT")]);
    let fq = read_all("x.fq", b"\n@a\nAC\n+\nII\n\n@b\nG\n+b\nI\n\n").expect("valid");
    assert_eq!(fq, vec![rec("a", None, "AC"), rec("b", None, "G")]);
}

#[test]
fn fastq_records_and_empty_sequence() {
    let mut r = reader(
        "x.fq",
        b"@a one\nACGT\n+a one\nIIII\n@b\n\n+\n\n@c\nN\n+\n#",
    )
    .expect("opens");
    assert_eq!(r.format(), Format::Fastq);
    assert_eq!(r.record_number(), 0);
    assert_eq!(
        r.next().map(|x| x.ok()),
        Some(Some(rec("a", Some("one"), "ACGT")))
    );
    assert_eq!(r.record_number(), 1);
    let rest: Vec<Record> = r.by_ref().collect::<Result<_, _>>().expect("valid");
    assert_eq!(rest, vec![rec("b", None, ""), rec("c", None, "N")]);
    assert_eq!(r.record_number(), 3);
    assert!(r.next().is_none());
}

#[test]
fn fastq_quality_length_mismatch() {
    let err = read_all("x.fq", b"@a\nAC\n+\nII\n@b\nACGT\n+\nIII\n@c\nA\n+\nI\n").expect_err("bad");
    assert_eq!(
        err.to_string(),
        r#"x.fq: record 2 ("b"), line 8: quality length 3 differs from sequence length 4"#
    );
}

#[test]
fn fastq_structural_errors() {
    let err = read_all("x.fq", b"@a\nAC\n+\nII\n@b\nAC\n").expect_err("truncated");
    assert_eq!(
        err.to_string(),
        r#"x.fq: record 2 ("b"), line 6: truncated record: missing '+' line"#
    );
    let err = read_all("x.fq", b"@a\nAC\n").expect_err("truncated");
    assert!(err.to_string().contains("missing '+' line"), "{err}");
    let err = read_all("x.fq", b"@a\nAC\n+\n").expect_err("truncated");
    assert!(err.to_string().contains("missing quality line"), "{err}");
    let err = read_all("x.fq", b"@a\n").expect_err("truncated");
    assert!(err.to_string().contains("missing sequence line"), "{err}");
    let err = read_all("x.fq", b"@a\nAC\nGT\n+\nIIII\n").expect_err("multi-line");
    assert_eq!(
        err.to_string(),
        r#"x.fq: record 1 ("a"), line 3: expected '+' line, found 'G' (multi-line FASTQ is not supported)"#
    );
    let err = read_all("x.fq", b"@a\nA\n+\nI\n>b\nA\n").expect_err("mixed");
    assert_eq!(
        err.to_string(),
        "x.fq: record 2, line 5: expected '@' at the start of a FASTQ record, found '>'"
    );
}

#[test]
fn not_fasta_or_fastq() {
    let err = read_all("x.vcf", b"##fileformat=VCFv4.2\n").expect_err("vcf");
    assert_eq!(
        err.to_string(),
        "x.vcf: not a FASTA or FASTQ file (first byte '#')"
    );
    let err = read_all("x.bin", &[0x00, 0x01, 0x02]).expect_err("binary");
    assert_eq!(
        err.to_string(),
        "x.bin: not a FASTA or FASTQ file (first byte 0x00)"
    );
    let err = read_all("x.gz", &gzip(b"chrom\tpos\n")).expect_err("gzipped text");
    assert_eq!(
        err.to_string(),
        "x.gz: not a FASTA or FASTQ file (first byte 'c' after gzip decompression)"
    );
}

#[test]
fn empty_inputs_have_no_records() {
    for data in [&b""[..], b"\n\n", b" \r\n\t\n"] {
        let err = read_all("x.fa", data).expect_err("empty");
        assert_eq!(err.to_string(), "x.fa: no records");
    }
    let err = read_all("x.fa.gz", &gzip(b"")).expect_err("empty gzip");
    assert_eq!(err.to_string(), "x.fa.gz: no records");
}

#[test]
fn other_compression_is_named() {
    let err = read_all("x.fa.bz2", b"BZh91AY&SY\x00\x00").expect_err("bzip2");
    assert_eq!(
        err.to_string(),
        "x.fa.bz2: bzip2-compressed input is not supported (use gzip or bgzip)"
    );
}

#[test]
fn gzip_single_and_multi_member() {
    let plain = big_fasta(3000);
    let expected = read_all("x.fa", &plain).expect("valid");
    assert_eq!(expected.len(), 3000);
    assert_eq!(read_all("x.fa.gz", &gzip(&plain)).expect("valid"), expected);
    // `cat a.gz b.gz`, split mid-record: members are one stream of text.
    let (a, b) = plain.split_at(plain.len() / 2 + 3);
    let mut cat = gzip(a);
    cat.extend_from_slice(&gzip(b));
    assert_eq!(read_all("x.fa.gz", &cat).expect("valid"), expected);
}

#[test]
fn bgzf_blocks() {
    let plain = big_fasta(3000);
    let expected = read_all("x.fa", &plain).expect("valid");
    let chunks: Vec<&[u8]> = plain.chunks(60_000).collect();
    assert!(chunks.len() > 1);
    let data = bgzf(&chunks, true);
    assert_eq!(read_all("x.fa.gz", &data).expect("valid"), expected);
}

#[test]
fn bgzf_cut_at_block_boundary_is_an_error() {
    let plain = big_fasta(3000);
    let chunks: Vec<&[u8]> = plain.chunks(60_000).collect();
    // Drop the last data block and the EOF block: every remaining member
    // is intact, so only the missing EOF block reveals the truncation.
    let whole = bgzf(&chunks[..chunks.len() - 1], false);
    let (good, err) = read_until_error("x.fa.gz", &whole);
    let err = err.expect("truncation must be reported");
    assert!(matches!(err, Error::Gzip { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("bgzf end-of-file block is missing"),
        "{err}"
    );
    assert!(good.len() < 3000);
}

#[test]
fn truncated_gzip_is_an_error_not_fewer_records() {
    let data = gzip(&big_fasta(3000));
    // Cuts inside the trailer (CRC/size) and inside the deflate data.
    for cut in [1, 4, 8, 9, 100, data.len() / 2] {
        let (good, err) = read_until_error("x.fa.gz", &data[..data.len() - cut]);
        let err = err.unwrap_or_else(|| panic!("cut {cut}: got {} records, no error", good.len()));
        assert!(matches!(err, Error::Gzip { .. }), "cut {cut}: {err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("x.fa.gz: record "), "{msg}");
        assert!(msg.contains("gzip data is truncated or corrupt"), "{msg}");
    }
    let bgz = bgzf(&[&big_fasta(3000)], true);
    let (_, err) = read_until_error("x.fa.gz", &bgz[..bgz.len() - 40]);
    assert!(matches!(err, Some(Error::Gzip { .. })), "{err:?}");
}

#[test]
fn corrupt_gzip_is_an_error() {
    let mut data = gzip(&big_fasta(3000));
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    let (_, err) = read_until_error("x.fa.gz", &data);
    assert!(matches!(err, Some(Error::Gzip { .. })), "{err:?}");
}

/// Delivers one byte per read, like a slow pipe.
struct Trickle(Cursor<Vec<u8>>);

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(1);
        self.0.read(&mut buf[..n])
    }
}

#[test]
fn slow_pipe_still_detects_gzip() {
    let plain = big_fasta(50);
    let r = Reader::from_reader("-", Box::new(Trickle(Cursor::new(gzip(&plain))))).expect("opens");
    assert_eq!(r.display_name(), "<stdin>");
    let recs: Vec<Record> = r.collect::<Result<_, _>>().expect("valid");
    assert_eq!(recs, read_all("x", &plain).expect("valid"));
}

/// Fails after `ok` bytes, like a disk error.
struct Failing(Cursor<Vec<u8>>, usize);

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.position() as usize >= self.1 {
            return Err(io::Error::other("device error"));
        }
        let n = buf.len().min(self.1 - self.0.position() as usize);
        self.0.read(&mut buf[..n])
    }
}

#[test]
fn read_errors_carry_position() {
    let data = b">a\nACGT\n>b\nACGTACGTACGT\n".to_vec();
    // Past the 16 bytes sniffed when opening, inside record 2.
    let r = Reader::from_reader("x.fa", Box::new(Failing(Cursor::new(data), 16))).expect("opens");
    let (good, err): (Vec<_>, Vec<_>) = r.partition(Result::is_ok);
    assert_eq!(good.len(), 1);
    let err = err.into_iter().next().and_then(Result::err).expect("error");
    assert!(matches!(err, Error::Read { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        r#"x.fa: record 2 ("b"), line 4: read failed: device error"#
    );
}

#[test]
fn from_path_files_and_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("reads.fq.gz");
    std::fs::write(&path, gzip(b"@a\nAC\n+\nII\n")).expect("write");
    let recs: Vec<Record> = Reader::from_path(&path)
        .expect("opens")
        .collect::<Result<_, _>>()
        .expect("valid");
    assert_eq!(recs, vec![rec("a", None, "AC")]);

    let missing = dir.path().join("missing.fa");
    let err = Reader::from_path(&missing).expect_err("missing");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot open: ", missing.display())),
        "{msg}"
    );
    assert!(msg.contains("os error 2"), "{msg}");

    let err = Reader::from_path(dir.path()).expect_err("directory");
    assert!(
        err.to_string().ends_with(": cannot open: is a directory"),
        "{err}"
    );
}

#[test]
fn non_utf8_header_is_escaped_not_rejected() {
    let recs = read_all("x.fa", b">r\xff1 d\xfe\nA\n").expect("valid");
    assert_eq!(recs[0].id, "r\\xff1");
    assert_eq!(recs[0].description.as_deref(), Some("d\\xfe"));
}

/// Issue 15: ids differing only in invalid UTF-8 bytes stay distinct (they
/// used to collapse into one replacement character: a false duplicate).
#[test]
fn issue15_distinct_non_utf8_ids_are_not_duplicates() {
    let recs = read_all("x.fa", b">r\xff\nA\n>r\xfe\nC\n").expect("valid");
    assert_ne!(recs[0].id, recs[1].id);
    crate::check_unique_ids("x.fa", recs.iter().map(|r| r.id.as_str())).expect("unique");
}

/// Issue 15: a NUL byte in a sequence (zero-filled corruption) is an
/// error naming the file, record and position.
#[test]
fn issue15_nul_bytes_are_refused() {
    let recs = read_all("z.fa", b">a\nAC\x00\x00GT\n").expect("read");
    let e = recs[0]
        .check_model_input("z.fa", 1)
        .expect_err("NUL")
        .to_string();
    assert!(
        e.starts_with("z.fa: record 1 (\"a\"): NUL byte") && e.ends_with("at position 3"),
        "{e}"
    );
}

#[test]
fn blanks_inside_fasta_sequence_lines_are_not_bases() {
    let recs = read_all("blanks.fa", b">a\nAC GT \nA\tC\n").unwrap();
    assert_eq!(recs[0].seq, b"ACGTAC".to_vec());
}
