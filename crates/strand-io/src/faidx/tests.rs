//! Indexed FASTA against the committed test genome.

use std::path::PathBuf;

use super::*;
use crate::Reader;

fn genome(file: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../test-data/genome"
    ))
    .join(file)
}

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../test-data/sequences.fa"
    ));
    Reader::from_path(&path)
        .expect("open")
        .map(|r| r.map(|r| (r.id, r.seq)).expect("record"))
        .collect()
}

#[test]
fn plain_and_bgzf_give_the_fixture_bases() {
    for file in ["ref.fa", "ref.fa.gz"] {
        let mut fa = IndexedFasta::open(&genome(file)).expect("open");
        for (id, seq) in fixtures() {
            assert_eq!(fa.contig_len(&id), Some(seq.len() as u64), "{file} {id}");
            let got = fa.fetch(&id, 0, seq.len() as u64).expect("fetch");
            assert_eq!(got, seq, "{file} {id}");
        }
        let len1000 = fa.fetch("len1000", 0, 1000).expect("fetch");
        assert_eq!(fa.fetch("chrA", 3000, 4000).expect("fetch"), len1000);
        assert_eq!(fa.contigs().last(), Some(&("chrB".to_string(), 40_000)));
    }
}

#[test]
fn slices_agree_across_block_and_line_borders() {
    let mut plain = IndexedFasta::open(&genome("ref.fa")).expect("open");
    let mut bgzf = IndexedFasta::open(&genome("ref.fa.gz")).expect("open");
    let whole = plain.fetch("chrB", 0, 40_000).expect("fetch");
    for (s, e) in [
        (0, 1),
        (59, 61),
        (1999, 4001),
        (12_345, 31_000),
        (39_999, 40_000),
    ] {
        let want = &whole[s as usize..e as usize];
        assert_eq!(plain.fetch("chrB", s, e).expect("plain"), want, "{s}-{e}");
        assert_eq!(bgzf.fetch("chrB", s, e).expect("bgzf"), want, "{s}-{e}");
    }
}

#[test]
fn regions_are_checked_against_the_index() {
    let fa = IndexedFasta::open(&genome("ref.fa")).expect("open");
    let span = fa
        .resolve(&Region::parse("chrA:3,001-4,000").expect("parse"))
        .expect("resolve");
    assert_eq!((span.start, span.end), (3000, 4000));
    assert_eq!(
        fa.resolve(&Region::parse("chrB").expect("parse"))
            .expect("whole")
            .end,
        40_000
    );
    let off = fa
        .resolve(&Region::parse("chrA:5,990-6,001").expect("parse"))
        .expect_err("off contig")
        .to_string();
    assert!(
        off.contains("ref.fa: region chrA:5990-6001: outside contig chrA of length 6000"),
        "{off}"
    );
    let unknown = fa
        .resolve(&Region::parse("chr9:1-10").expect("parse"))
        .expect_err("unknown")
        .to_string();
    assert!(unknown.contains("unknown contig \"chr9\""), "{unknown}");
}

#[test]
fn missing_indexes_and_plain_gzip_are_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fa = dir.path().join("x.fa");
    std::fs::copy(genome("ref.fa"), &fa).expect("copy");
    let e = IndexedFasta::open(&fa).expect_err("no fai").to_string();
    assert!(
        e.contains("no index") && e.contains("samtools faidx"),
        "{e}"
    );

    let gz = dir.path().join("x.fa.gz");
    std::fs::copy(genome("ref.fa.gz"), &gz).expect("copy");
    std::fs::copy(genome("ref.fa.gz.fai"), dir.path().join("x.fa.gz.fai")).expect("copy");
    let e = IndexedFasta::open(&gz).expect_err("no gzi").to_string();
    assert!(e.contains("x.fa.gz.gzi"), "{e}");

    let plain_gz = dir.path().join("p.fa.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, b">a\nACGT\n").expect("gzip");
    std::fs::write(&plain_gz, enc.finish().expect("gzip")).expect("write");
    let e = IndexedFasta::open(&plain_gz)
        .expect_err("not bgzf")
        .to_string();
    assert!(e.contains("not BGZF"), "{e}");
}

#[test]
fn a_truncated_bgzf_file_is_an_error_naming_the_region() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gz = dir.path().join("t.fa.gz");
    let bytes = std::fs::read(genome("ref.fa.gz")).expect("read");
    std::fs::write(&gz, &bytes[..bytes.len() / 2]).expect("write");
    for ext in [".fai", ".gzi"] {
        std::fs::copy(
            genome(&format!("ref.fa.gz{ext}")),
            dir.path().join(format!("t.fa.gz{ext}")),
        )
        .expect("copy");
    }
    let mut fa = IndexedFasta::open(&gz).expect("open");
    let e = fa
        .fetch("chrB", 30_000, 31_000)
        .expect_err("truncated")
        .to_string();
    assert!(
        e.starts_with(&format!("{}: region chrB:30001-31000", gz.display())),
        "{e}"
    );
}
