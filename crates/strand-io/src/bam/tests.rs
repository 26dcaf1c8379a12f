use super::*;

/// Reads a damaged BAM (its header intact) to the end: the error it
/// stops with.
fn last_error(path: &std::path::Path) -> String {
    let results: Vec<Result<Record, Error>> = BamReader::open(path, BamOptions::default())
        .expect("header is intact")
        .collect();
    results
        .last()
        .expect("some")
        .as_ref()
        .expect_err("error")
        .to_string()
}

fn bam(file: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../test-data/genome"
    ))
    .join(file)
}

fn ids(opts: BamOptions) -> Vec<String> {
    BamReader::open(&bam("reads.bam"), opts)
        .expect("open")
        .map(|r| r.expect("read").id)
        .collect()
}

#[test]
fn all_reads_with_unique_names_and_default_filters() {
    let all = ids(BamOptions::default());
    // 30 + pair + unmapped; secondary and supplementary skipped.
    assert_eq!(all.len(), 33, "{all:?}");
    assert!(all.contains(&"pair1".to_string()) && all.contains(&"pair1.2".to_string()));
    assert!(all.contains(&"unmapped1".to_string()));
    assert!(!all.iter().any(|n| n == "sec1" || n == "supp1"));
    let with = ids(BamOptions {
        include_secondary: true,
        include_supplementary: true,
        ..Default::default()
    });
    assert_eq!(with.len(), 35);
    let q = ids(BamOptions {
        min_mapq: 30,
        ..Default::default()
    });
    assert!(!q.contains(&"unmapped1".to_string()));
    assert_eq!(q.len(), 10 + 2, "{q:?}");
}

#[test]
fn region_queries_read_only_overlapping_reads() {
    let region = Region::parse("chrA:3,150-3,350").expect("parse");
    let reads: Vec<Record> = BamReader::open(
        &bam("reads.bam"),
        BamOptions {
            region: Some(region),
            ..Default::default()
        },
    )
    .expect("open")
    .map(|r| r.expect("read"))
    .collect();
    let names: Vec<&str> = reads.iter().map(|r| r.id.as_str()).collect();
    assert!(names.contains(&"pair1"), "{names:?}");
    assert!(
        !names.contains(&"pair1.2"),
        "the mate starts at 3401: {names:?}"
    );
    // Every read's bases are the reference's at its position.
    let sam = std::fs::read_to_string(bam("reads.sam")).expect("sam");
    for r in &reads {
        let line = sam
            .lines()
            .find(|l| l.starts_with(&format!("{}\t", r.id)))
            .expect("in sam");
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f[2], "chrA");
        let pos: u64 = f[3].parse().expect("pos");
        let end = pos + r.seq.len() as u64 - 1;
        assert!(pos <= 3350 && end >= 3150, "{} at {pos}-{end}", r.id);
    }
}

#[test]
fn bad_bams_are_explained() {
    let e = BamReader::open(
        &bam("reads-noindex.bam"),
        BamOptions {
            region: Some(Region::parse("chrA:1-100").expect("parse")),
            ..Default::default()
        },
    )
    .err()
    .expect("no index")
    .to_string();
    assert!(
        e.contains("no index") && e.contains("samtools index"),
        "{e}"
    );
    let e = BamReader::open(
        &bam("reads.bam"),
        BamOptions {
            region: Some(Region::parse("chr9:1-100").expect("parse")),
            ..Default::default()
        },
    )
    .err()
    .expect("unknown contig")
    .to_string();
    assert!(e.contains("unknown contig \"chr9\""), "{e}");

    let dir = tempfile::tempdir().expect("tempdir");
    let cut = dir.path().join("cut.bam");
    let bytes = std::fs::read(bam("reads.bam")).expect("read");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).expect("write");
    let e = last_error(&cut);
    assert!(e.contains("cut.bam: record"), "{e}");
}

/// (name, flag, contig, 1-based start, length) of every line of reads.sam.
fn sam_lines() -> Vec<(String, u16, String, u64, u64)> {
    std::fs::read_to_string(bam("reads.sam"))
        .expect("sam")
        .lines()
        .filter(|l| !l.starts_with('@'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_string(),
                f[1].parse().expect("flag"),
                f[2].to_string(),
                f[3].parse().expect("pos"),
                f[9].len() as u64,
            )
        })
        .collect()
}

fn reads(path: &std::path::Path, opts: BamOptions) -> Vec<Record> {
    BamReader::open(path, opts)
        .expect("open")
        .map(|r| r.expect("read"))
        .collect()
}

fn with_region(text: &str) -> BamOptions {
    BamOptions {
        region: Some(Region::parse(text).expect("parse")),
        ..Default::default()
    }
}

#[test]
fn is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<BamReader>();
}

#[test]
fn sequences_are_stored_bases_in_reference_orientation() {
    let mut fa = crate::faidx::IndexedFasta::open(&bam("../genome/ref.fa")).expect("fasta");
    let all = reads(&bam("reads.bam"), BamOptions::default());
    let lines = sam_lines();
    let mut reverse = 0;
    for (read, (name, flag, contig, pos, len)) in all.iter().zip(
        lines
            .iter()
            .filter(|(_, flag, ..)| flag & (256 | 2048) == 0),
    ) {
        assert!(read.id.starts_with(name.as_str()), "{} vs {name}", read.id);
        assert_eq!(read.description, None);
        assert_eq!(read.seq.len() as u64, *len, "{name}");
        if flag & 4 != 0 {
            continue;
        }
        reverse += usize::from(flag & 16 != 0);
        let want = fa.fetch(contig, pos - 1, pos - 1 + len).expect("fetch");
        assert_eq!(read.seq, want.to_ascii_uppercase(), "{name}");
    }
    assert!(reverse >= 5, "{reverse} reverse-strand reads");
    assert_eq!(all.last().map(|r| r.id.as_str()), Some("unmapped1"));
}

#[test]
fn region_query_returns_exactly_the_overlapping_mapped_reads() {
    let lines = sam_lines();
    for (text, contig, beg, end) in [
        ("chrA:3,150-3,350", "chrA", 3150, 3350),
        ("chrA:4,400-", "chrA", 4400, u64::MAX),
        ("chrB", "chrB", 1, u64::MAX),
        ("chrB:30,000-34,662", "chrB", 30_000, 34_662),
        ("len64", "len64", 1, u64::MAX),
    ] {
        let mut want: Vec<&str> = lines
            .iter()
            .filter(|(_, flag, c, pos, len)| {
                flag & (4 | 256 | 2048) == 0 && c == contig && *pos <= end && pos + len > beg
            })
            .map(|(n, ..)| n.as_str())
            .collect();
        let got = reads(&bam("reads.bam"), with_region(text));
        let mut got: Vec<&str> = got
            .iter()
            .map(|r| r.id.split('.').next().expect("name"))
            .collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "{text}");
    }
    // The query reads only the indexed chunks, and no unmapped read.
    let q = reads(&bam("reads.bam"), with_region("chrA:1-6000"));
    assert_eq!(
        q.len(),
        20 + 2,
        "{:?}",
        q.iter().map(|r| &r.id).collect::<Vec<_>>()
    );
    assert!(!q.iter().any(|r| r.id == "unmapped1"));
    // Secondary/supplementary on request, in a region too.
    let opts = BamOptions {
        include_secondary: true,
        include_supplementary: true,
        min_mapq: 60,
        ..with_region("chrA:3,150-3,350")
    };
    let mut ids: Vec<String> = reads(&bam("reads.bam"), opts)
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["pair1", "r20", "sec1", "supp1"]);
}

#[test]
fn mapq_filter_follows_samtools() {
    for (min, want) in [(0u8, 33), (1, 22), (10, 22), (11, 12), (60, 12), (61, 0)] {
        let got = ids(BamOptions {
            min_mapq: min,
            ..Default::default()
        });
        assert_eq!(got.len(), want, "min_mapq {min}: {got:?}");
    }
}

#[test]
fn ids_stay_unique_when_a_suffix_is_taken() {
    let mut r = BamReader::open(&bam("reads.bam"), BamOptions::default()).expect("open");
    let names = ["a", "a.2", "a", "a", "b", "a.2"];
    let got: Vec<String> = names
        .iter()
        .map(|n| r.unique_id(n.as_bytes().to_vec()))
        .collect();
    assert_eq!(got, ["a", "a.2", "a.3", "a.4", "b", "a.2.2"]);
}

#[test]
fn regions_off_the_contig_and_wrong_formats_are_explained() {
    let e = BamReader::open(&bam("reads.bam"), with_region("chrA:6001-6100"))
        .err()
        .expect("past end")
        .to_string();
    assert!(
        e.contains("reads.bam: region chrA:6001-6100: outside contig chrA of length 6000"),
        "{e}"
    );
    let e = BamReader::open(&bam("reads-noindex.bam"), with_region("chrA:1-100"))
        .err()
        .expect("no index")
        .to_string();
    let f = bam("reads-noindex.bam").display().to_string();
    assert_eq!(
        e,
        format!(
            "{f}: no index {f}.bai (create it with `samtools index {f}`), needed for region chrA:1-100"
        )
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let sam = dir.path().join("text.bam");
    std::fs::copy(bam("reads.sam"), &sam).expect("copy");
    let e = BamReader::open(&sam, BamOptions::default())
        .err()
        .expect("sam")
        .to_string();
    assert!(e.contains("looks like SAM text"), "{e}");
    let cram = dir.path().join("x.bam");
    std::fs::write(&cram, b"CRAM\x03\x00rest").expect("write");
    let e = BamReader::open(&cram, BamOptions::default())
        .err()
        .expect("cram")
        .to_string();
    assert!(e.contains("CRAM is not supported"), "{e}");
    let e = BamReader::open(&dir.path().join("absent.bam"), BamOptions::default())
        .err()
        .expect("absent")
        .to_string();
    assert!(e.contains("absent.bam: cannot open"), "{e}");
}

#[test]
fn a_bam_cut_at_a_block_border_is_truncated_too() {
    // Block borders from the BGZF headers (BSIZE at bytes 16..18).
    let bytes = std::fs::read(bam("reads.bam")).expect("read");
    let mut borders = vec![0];
    let mut at = 0;
    while at < bytes.len() {
        at += usize::from(u16::from_le_bytes([bytes[at + 16], bytes[at + 17]])) + 1;
        borders.push(at);
    }
    assert!(borders.len() >= 3, "{borders:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    // Without the EOF block only, and without the last data block too.
    for cut in [&borders[borders.len() - 2], &borders[borders.len() - 3]] {
        let path = dir.path().join("cut.bam");
        std::fs::write(&path, &bytes[..*cut]).expect("write");
        let e = last_error(&path);
        assert!(
            e.contains("cut.bam: record ") && e.contains("truncated"),
            "{e}"
        );
    }
}
