//! VCF text reading and BGZF + tabix writing.

use super::*;

const VCF: &str = "##fileformat=VCFv4.2\n##contig=<ID=chrA,length=6000>\n\
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n\
chrA\t10\trs1\tA\tC,G\t50\tPASS\tDP=3\n\
chrA\t20\t.\tAC\tA\t.\t.\t.\n";

fn read_all(text: &str) -> Result<Vec<Record>, Error> {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("x.vcf");
    std::fs::write(&p, text).expect("write");
    let mut r = Reader::open(&p)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record() {
        out.push(rec?);
    }
    Ok(out)
}

#[test]
fn reads_records_as_fields() {
    let recs = read_all(VCF).expect("valid");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].alts(), vec!["C", "G"]);
    assert_eq!(recs[0].pos(), 10);
    assert_eq!(recs[0].line, 4);
    let mut r = recs[1].clone();
    r.add_info("X=1");
    assert_eq!(r.fields[7], "X=1");
}

#[test]
fn bad_lines_name_file_line_and_position() {
    let e = read_all(&VCF.replace("chrA\t20\t", "chrA\tx\t"))
        .expect_err("bad pos")
        .to_string();
    assert!(
        e.contains("x.vcf: line 5 (chrA:x): POS \"x\" is not a position"),
        "{e}"
    );
    let e = read_all(&VCF.replace("\tAC\t", "\tA<\t"))
        .expect_err("bad ref")
        .to_string();
    assert!(e.contains("line 5 (chrA:20): REF"), "{e}");
    let e = read_all(&VCF.replace("\t.\t.\t.\n", "\n"))
        .expect_err("short")
        .to_string();
    assert!(
        e.contains("line 5: expected 8 tab-separated fields (as in the #CHROM line), found 5"),
        "{e}"
    );
    let e = read_all("chrA\t1\n").expect_err("no header").to_string();
    assert!(e.contains("not a VCF file"), "{e}");
}

#[test]
fn bgzf_output_has_a_tabix_index_noodles_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("o.vcf.gz");
    let recs = read_all(VCF).expect("valid");
    let mut w = Writer::create(&out).expect("create");
    for l in VCF.lines().take(3) {
        w.header_line(l).expect("header");
    }
    for r in &recs {
        w.record(r).expect("record");
    }
    w.finish().expect("finish");
    let mut reader = noodles::vcf::io::indexed_reader::Builder::default()
        .build_from_path(&out)
        .expect("indexed reader");
    let header = reader.read_header().expect("header");
    let region = "chrA:15-30".parse().expect("region");
    let hits: Vec<_> = reader
        .query(&header, &region)
        .expect("query")
        .records()
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(hits.len(), 1);
    // Plain text round trip.
    let text = dir.path().join("o.vcf");
    let mut w = Writer::create(&text).expect("create");
    w.header_line("##fileformat=VCFv4.2").expect("h");
    w.record(&recs[0]).expect("r");
    w.finish().expect("finish");
    assert_eq!(
        std::fs::read_to_string(&text).expect("read"),
        "##fileformat=VCFv4.2\nchrA\t10\trs1\tA\tC,G\t50\tPASS\tDP=3\n"
    );
}

/// Issue 15: a record with fewer (or more) columns than the #CHROM line is
/// an error, not a shorter record: the last line of a truncated file.
#[test]
fn issue15_record_width_must_match_the_header() {
    let samples = VCF
        .replace("\tINFO\n", "\tINFO\tFORMAT\tS1\n")
        .replace("DP=3\n", "DP=3\tGT\t0/1\n")
        .replace("\t.\t.\t.\n", "\t.\t.\t.\tGT\t0/1\n");
    assert_eq!(read_all(&samples).expect("complete").len(), 2);
    // The second record loses its last column.
    let cut = samples.replace("\t.\tGT\t0/1\n", "\t.\tGT\n");
    let e = read_all(&cut).expect_err("cut record").to_string();
    assert!(
        e.contains("line 5: expected 10 tab-separated fields (as in the #CHROM line), found 9"),
        "{e}"
    );
}

/// Issue 15: a BGZF VCF without its end-of-file block (cut at a block
/// boundary) is an error, though every block decompresses.
#[test]
fn issue15_bgzf_without_eof_block_is_refused() {
    use crate::seq::input::tests::bgzf;
    let dir = tempfile::tempdir().expect("tempdir");
    let (head, tail) = VCF.split_at(VCF.len() / 2);
    let whole = dir.path().join("whole.vcf.gz");
    std::fs::write(&whole, bgzf(&[head.as_bytes(), tail.as_bytes()], true)).expect("write");
    let mut r = Reader::open(&whole).expect("open");
    let mut n = 0;
    while let Some(rec) = r.next_record() {
        rec.expect("complete file");
        n += 1;
    }
    assert_eq!(n, 2);
    let cut = dir.path().join("cut.vcf.gz");
    std::fs::write(&cut, bgzf(&[head.as_bytes(), tail.as_bytes()], false)).expect("write");
    let mut r = Reader::open(&cut).expect("open");
    let err = loop {
        match r.next_record() {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e.to_string(),
            None => panic!("a cut BGZF file read to its end without an error"),
        }
    };
    assert!(err.contains("end-of-file block is missing"), "{err}");
}
