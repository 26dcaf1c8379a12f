//! Indexed FASTA against the committed test genome.

use std::path::{Path, PathBuf};

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
    let f = fa.display();
    assert_eq!(
        e,
        format!("{f}: no index {f}.fai (create it with `samtools faidx {f}`)")
    );
    let e = IndexedFasta::open(&dir.path().join("absent.fa"))
        .expect_err("absent")
        .to_string();
    assert!(e.contains("absent.fa: cannot open"), "{e}");

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
    assert!(
        e.contains("not BGZF") && e.contains("compress with bgzip, not gzip"),
        "{e}"
    );
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
    // Seen at open: the file ends before the last indexed record does.
    let e = IndexedFasta::open(&gz).expect_err("truncated").to_string();
    assert!(
        e.starts_with(&format!("{}: the index ", gz.display()))
            && e.contains("the file ends before the end of its last record \"chrB\""),
        "{e}"
    );
}

#[test]
fn is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<IndexedFasta>();
}

#[test]
fn many_small_fetches_in_any_order() {
    // Neighbouring, overlapping and backward slices (the plain reader moves
    // relative to where it stands and reuses its buffer).
    let mut plain = IndexedFasta::open(&genome("ref.fa")).expect("open");
    let mut bgzf = IndexedFasta::open(&genome("ref.fa.gz")).expect("open");
    let whole = plain.fetch("chrB", 0, 40_000).expect("fetch");
    let mut starts: Vec<u64> = (0..40_000).step_by(997).collect();
    starts.extend([39_000, 5, 70_000 % 40_000, 1_000, 999, 120]);
    for s in starts {
        let e = (s + 1_500).min(40_000);
        let want = &whole[s as usize..e as usize];
        assert_eq!(plain.fetch("chrB", s, e).expect("plain"), want, "{s}-{e}");
        assert_eq!(bgzf.fetch("chrB", s, e).expect("bgzf"), want, "{s}-{e}");
    }
    // Switching contigs and back.
    let len1000 = plain.fetch("len1000", 0, 1000).expect("fetch");
    assert_eq!(plain.fetch("chrA", 3000, 4000).expect("fetch"), len1000);
    assert_eq!(plain.fetch("chrB", 0, 100).expect("fetch"), &whole[..100]);
}

#[test]
fn bad_fetches_and_regions_name_the_region() {
    let mut fa = IndexedFasta::open(&genome("ref.fa")).expect("open");
    let e = fa.fetch("chrA", 5_990, 6_001).expect_err("off").to_string();
    assert_eq!(
        e,
        "ref.fa: region chrA:5991-6001: outside contig chrA of length 6000"
            .replace("ref.fa", &genome("ref.fa").display().to_string())
    );
    let e = fa.fetch("chrZ", 0, 10).expect_err("unknown").to_string();
    assert!(
        e.contains("region chrZ:1-10: unknown contig \"chrZ\""),
        "{e}"
    );
    let e = fa.fetch("chrA", 10, 10).expect_err("empty").to_string();
    assert!(e.contains("empty region"), "{e}");

    // An open-ended region past the end, and an empty one built by hand.
    let e = fa
        .resolve(&Region::parse("chrA:6001-").expect("parse"))
        .expect_err("past end")
        .to_string();
    assert!(
        e.contains("region chrA:6001-: outside contig chrA of length 6000"),
        "{e}"
    );
    let empty = Region {
        contig: "chrA".into(),
        start: 10,
        end: Some(10),
        name: Some("x".into()),
    };
    let e = fa.resolve(&empty).expect_err("empty").to_string();
    assert!(e.contains("empty region"), "{e}");
    // The unknown-contig message lists a few known names.
    let e = fa
        .resolve(&Region::parse("chr9").expect("parse"))
        .expect_err("unknown")
        .to_string();
    assert!(
        e.contains("(the index has len1, len7, len64, len257, len1000, ...)"),
        "{e}"
    );
    // A BED name is carried through.
    let named = Region {
        contig: "chrA".into(),
        start: 3000,
        end: Some(4000),
        name: Some("fixture_len1000".into()),
    };
    let span = fa.resolve(&named).expect("resolve");
    assert_eq!(span.output_name(), "fixture_len1000");
    assert_eq!(span.label(), "chrA:3001-4000");
    assert_eq!(fa.contig_len("chrB"), Some(40_000));
    assert_eq!(fa.contig_len("chrZ"), None);
    assert_eq!(fa.contigs().len(), 8);
}

#[test]
fn a_corrupt_bgzf_block_is_an_error_naming_the_region() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gz = dir.path().join("c.fa.gz");
    let mut bytes = std::fs::read(genome("ref.fa.gz")).expect("read");
    // Damage compressed data in the middle of the file.
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&gz, &bytes).expect("write");
    for ext in [".fai", ".gzi"] {
        std::fs::copy(
            genome(&format!("ref.fa.gz{ext}")),
            dir.path().join(format!("c.fa.gz{ext}")),
        )
        .expect("copy");
    }
    let mut fa = IndexedFasta::open(&gz).expect("open");
    let e = fa
        .fetch("chrB", 0, 40_000)
        .expect_err("corrupt")
        .to_string();
    assert!(
        e.starts_with(&format!("{}: region chrB:1-40000: ", gz.display())) && e.contains("corrupt"),
        "{e}"
    );
}

/// Copies `ref.fa` and its index into `dir`, editing the FASTA text (not
/// the index) with `edit`.
fn stale_copy(dir: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let fa = dir.join("s.fa");
    let text = std::fs::read_to_string(genome("ref.fa")).expect("read");
    std::fs::write(&fa, edit(&text)).expect("write");
    std::fs::copy(genome("ref.fa.fai"), dir.join("s.fa.fai")).expect("copy");
    fa
}

/// Issue 15: an index left over from before an edit of the FASTA shifts
/// every base; it must be an error saying to re-index, not other bases.
#[test]
fn issue15_a_stale_index_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = fixtures()[0].0.clone();
    // A longer header: every offset after it is off by 13 bytes, while
    // the file's end moves too (caught at open).
    let fa = stale_copy(dir.path(), |t| {
        t.replacen(&format!(">{first}"), &format!(">{first} description"), 1)
    });
    let e = IndexedFasta::open(&fa).expect_err("stale").to_string();
    assert!(e.contains("re-create it with `samtools faidx"), "{e}");
    // A header renamed in place, same length: the file's end is right,
    // the record's header is not.
    let renamed: String = first.chars().rev().collect();
    assert_ne!(renamed, first);
    let fa = stale_copy(dir.path(), |t| {
        t.replacen(&format!(">{first}\n"), &format!(">{renamed}\n"), 1)
    });
    let mut fasta = IndexedFasta::open(&fa).expect("the file's end is right");
    let e = fasta.fetch(&first, 0, 1).expect_err("stale").to_string();
    assert!(
        e.contains(&format!("contig {first}: its header line is not the one"))
            && e.contains("re-create it with `samtools faidx"),
        "{e}"
    );
    // Lines rewrapped (same bases, different layout).
    let fa = stale_copy(dir.path(), |t| t.replacen("\n", "\n\n", 2));
    let e = IndexedFasta::open(&fa).expect_err("stale").to_string();
    assert!(e.contains("re-create it with `samtools faidx"), "{e}");
}

/// Issue 15: the same checks hold for BGZF: the good file passes every
/// record's check.
#[test]
fn issue15_checks_accept_good_plain_and_bgzf_files() {
    for file in ["ref.fa", "ref.fa.gz"] {
        let mut fa = IndexedFasta::open(&genome(file)).expect("open");
        for (name, len) in fa.contigs() {
            fa.fetch(&name, len - 1, len).expect("last base");
        }
    }
}

/// Issue 15: an index entry off by one byte is caught in a BGZF file too
/// (read back through the .gzi), on the record's first fetch.
#[test]
fn issue15_a_stale_index_of_a_bgzf_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gz = dir.path().join("s.fa.gz");
    std::fs::copy(genome("ref.fa.gz"), &gz).expect("copy");
    std::fs::copy(genome("ref.fa.gz.gzi"), dir.path().join("s.fa.gz.gzi")).expect("copy");
    let fai = std::fs::read_to_string(genome("ref.fa.gz.fai")).expect("read");
    let shifted: String = fai
        .lines()
        .map(|l| {
            let mut f: Vec<String> = l.split('\t').map(str::to_owned).collect();
            if f[0] == "chrA" {
                f[2] = (f[2].parse::<u64>().expect("offset") + 1).to_string();
            }
            f.join("\t") + "\n"
        })
        .collect();
    std::fs::write(dir.path().join("s.fa.gz.fai"), shifted).expect("write");
    let mut fa = IndexedFasta::open(&gz).expect("the file's end is right");
    fa.fetch("chrB", 0, 10).expect("chrB is indexed right");
    let e = fa.fetch("chrA", 1000, 3000).expect_err("stale").to_string();
    assert!(
        e.contains("contig chrA: no line break before its first base")
            && e.contains("re-create it with `samtools faidx"),
        "{e}"
    );
}
