//! Issue 16: outputs as bcftools users expect: BCF in and out (read back
//! through noodles), `-O v|z|b`, and a `.csi` index where a `.tbi` cannot
//! hold the positions (contigs over 2^29 bases) or when asked for.

use std::io::{Seek, SeekFrom, Write};

use super::*;

/// A VCF on chrA and chrB (declared), SNVs, an indel and a symbolic ALT.
fn small_vcf(dir: &Path) -> String {
    let a = contig("chrA");
    let b = contig("chrB");
    let alt = |c: u8| {
        if c.eq_ignore_ascii_case(&b'A') {
            "C"
        } else {
            "A"
        }
    };
    let mut text = String::from(
        "##fileformat=VCFv4.2\n##contig=<ID=chrA,length=6000>\n##contig=<ID=chrB,length=40000>\n\
         #CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n",
    );
    for p in [100usize, 2500, 3300, 4000, 5900] {
        let r = a[p - 1] as char;
        let alt = if p == 4000 { "<DEL>" } else { alt(a[p - 1]) };
        text.push_str(&format!("chrA\t{p}\ta{p}\t{r}\t{alt}\t30\tPASS\t.\n"));
    }
    for p in [10usize, 20000, 39990] {
        let r = b[p - 1] as char;
        text.push_str(&format!(
            "chrB\t{p}\tb{p}\t{r}{}\t{r}\t.\t.\t.\n",
            b[p] as char
        ));
    }
    let path = dir.join("small.vcf");
    std::fs::write(&path, text).expect("write");
    s(&path)
}

fn gunzip(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut v = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).expect("open"))
        .read_to_end(&mut v)
        .expect("gunzip");
    v
}

#[test]
fn score_bcf_round_trips_through_noodles() {
    let dir = tempdir();
    let input = small_vcf(dir.path());
    let args = [
        "--vcf",
        &input,
        "--window",
        "1000",
        "--scores",
        "llr,embed_dist",
    ];
    let vcf_out = dir.path().join("out.vcf");
    ok("ps-tiny", &[&args[..], &["-o", &s(&vcf_out)]].concat());
    let bcf_out = dir.path().join("out.bcf");
    ok("ps-tiny", &[&args[..], &["-o", &s(&bcf_out)]].concat());

    // BGZF-compressed BCF 2.2 with a .csi, not VCF text.
    assert!(gunzip(&bcf_out).starts_with(b"BCF\x02\x02"));
    assert!(dir.path().join("out.bcf.csi").is_file());

    // noodles reads every record, with our FILTER and INFO values.
    let mut reader = noodles::bcf::io::reader::Builder::default()
        .build_from_path(&bcf_out)
        .expect("bcf reader");
    let header = reader.read_header().expect("bcf header");
    let mut n = 0;
    let text = std::fs::read_to_string(&vcf_out).expect("read");
    let want: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').collect())
        .collect();
    for (rec, w) in reader.record_bufs(&header).zip(&want) {
        let rec = rec.expect("bcf record");
        assert_eq!(rec.reference_sequence_name(), w[0]);
        assert_eq!(
            rec.variant_start().map(usize::from),
            Some(w[1].parse().expect("pos"))
        );
        let filters: Vec<&str> = rec.filters().as_ref().iter().map(String::as_str).collect();
        let filters = if filters.is_empty() {
            ".".to_owned()
        } else {
            filters.join(";")
        };
        assert_eq!(filters, w[6], "FILTER of {}", w[2]);
        for key in ["STRAND_LLR", "STRAND_EMBED_DIST", "STRAND_SKIP"] {
            assert_eq!(
                rec.info().get(key).is_some(),
                w[7].contains(&format!("{key}=")),
                "{key} of {}",
                w[2]
            );
        }
        n += 1;
    }
    assert_eq!(n, want.len());

    // Through the .csi: a region query.
    let mut indexed = noodles::bcf::io::indexed_reader::Builder::default()
        .build_from_path(&bcf_out)
        .expect("indexed bcf reader");
    let header = indexed.read_header().expect("header");
    let region = "chrB:15000-40000".parse().expect("region");
    let hits = indexed
        .query(&header, &region)
        .expect("query")
        .records()
        .count();
    assert_eq!(hits, 2);

    // The BCF reads back as input, and converts back to the same VCF text
    // (strand concat to .vcf): records byte for byte.
    let back = dir.path().join("back.vcf");
    Cmd::new(env!("CARGO_BIN_EXE_strand"))
        .args(["concat", "-o", &s(&back), &s(&bcf_out)])
        .run()
        .ok();
    assert_eq!(vcf_body(&back)[1..], vcf_body(&vcf_out)[1..]);
    // Scoring a BCF input equals scoring the VCF it came from.
    let as_bcf = dir.path().join("in.bcf");
    Cmd::new(env!("CARGO_BIN_EXE_strand"))
        .args(["concat", "-O", "b", "-o", &s(&as_bcf), &input])
        .run()
        .ok();
    let from_bcf = dir.path().join("from-bcf.vcf");
    ok(
        "ps-tiny",
        &[
            "--vcf",
            &s(&as_bcf),
            "--window",
            "1000",
            "--scores",
            "llr,embed_dist",
            "-o",
            &s(&from_bcf),
        ],
    );
    assert_eq!(vcf_body(&from_bcf)[1..], vcf_body(&vcf_out)[1..]);
}

#[test]
fn score_output_types_follow_o_and_refuse_what_they_cannot_write() {
    let dir = tempdir();
    let input = small_vcf(dir.path());
    // -O b to stdout: BCF bytes, no index.
    let out = on_cpu("ps-tiny")
        .args(["-q"])
        .args(["--vcf", &input, "--window", "1000", "-O", "b"])
        .run()
        .ok();
    assert!(out.stdout.starts_with(&[0x1f, 0x8b]));
    // -O z beats a plain name.
    let z = dir.path().join("z.vcf");
    ok(
        "ps-tiny",
        &["--vcf", &input, "--window", "1000", "-O", "z", "-o", &s(&z)],
    );
    assert!(std::fs::read(&z).expect("read").starts_with(&[0x1f, 0x8b]));
    // What cannot be written is a usage error, before any work.
    for (args, needle) in [
        (&["-O", "u"][..], "-O u) is not supported"),
        (
            &["-O", "x"][..],
            "expected v (VCF), z (BGZF VCF) or b (BCF)",
        ),
        (
            &["-W=tbi", "-o", "x.bcf"][..],
            "BCF output is indexed with .csi",
        ),
    ] {
        let res = on_cpu("ps-tiny")
            .args(["-q"])
            .args(["--vcf", &input])
            .args(args)
            .run()
            .exits(2);
        assert!(
            res.stderr.contains(needle),
            "{needle:?} not in {}",
            res.stderr
        );
    }
    // strand concat shares the options and the checks.
    let res = Cmd::new(env!("CARGO_BIN_EXE_strand"))
        .args([
            "concat",
            "-W=tbi",
            "-o",
            &s(&dir.path().join("c.bcf")),
            &input,
        ])
        .run()
        .exits(2);
    assert!(
        res.stderr.contains("BCF output is indexed with .csi"),
        "{}",
        res.stderr
    );
    assert!(!dir.path().join("c.bcf").exists());
}

/// A reference with one contig of `len` bases, stored sparsely: real
/// bases only around `at` (1-based), a hole elsewhere, one sequence line.
fn sparse_reference(dir: &Path, len: u64, at: u64) -> (String, Vec<u8>) {
    let path = dir.join("big.fa");
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(b">big\n").expect("write");
    f.set_len(5 + len + 1).expect("sparse file");
    let start = at - 4000;
    let bases: Vec<u8> = (0..8000u64)
        .map(|i| b"ACGT"[((i * 7 + i / 3) % 4) as usize])
        .collect();
    f.seek(SeekFrom::Start(5 + start)).expect("seek");
    f.write_all(&bases).expect("write");
    f.seek(SeekFrom::Start(5 + len)).expect("seek");
    f.write_all(b"\n").expect("write");
    std::fs::write(
        dir.join("big.fa.fai"),
        format!("big\t{len}\t5\t{len}\t{}\n", len + 1),
    )
    .expect("fai");
    // `bases` sit at 1-based positions start+1 ..= start+8000.
    (s(&path), bases)
}

#[test]
fn score_positions_past_2_29_get_a_csi_index() {
    let dir = tempdir();
    let (len, at) = (600_000_000u64, 550_000_000u64);
    assert!(at > 1 << 29);
    let (fa, bases) = sparse_reference(dir.path(), len, at);
    let base = |p: u64| bases[(p - (at - 4000) - 1) as usize] as char;
    let mut text = format!(
        "##fileformat=VCFv4.2\n##contig=<ID=big,length={len}>\n\
         #CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    );
    for p in [at - 100, at, at + 100] {
        let alt = if base(p) == 'A' { 'C' } else { 'A' };
        text.push_str(&format!("big\t{p}\tv{p}\t{}\t{alt}\t.\t.\t.\n", base(p)));
    }
    let input = dir.path().join("big.vcf");
    std::fs::write(&input, text).expect("write");
    let run = |extra: &[&str]| {
        score()
            .args(["-m", &model("ps-tiny"), "--device", "cpu", "-q", "-f", &fa])
            .args(["--vcf", &s(&input), "--window", "1000"])
            .args(extra)
            .run()
    };
    let out = dir.path().join("big.vcf.gz");
    // A stale .tbi from an earlier run must not survive next to a .csi.
    std::fs::write(dir.path().join("big.vcf.gz.tbi"), b"stale").expect("write");
    run(&["-o", &s(&out)]).ok();
    assert!(dir.path().join("big.vcf.gz.csi").is_file());
    assert!(!dir.path().join("big.vcf.gz.tbi").exists());
    let body = vcf_body(&out);
    assert_eq!(body.len(), 4);
    assert!(body[1..].iter().all(|l| l.contains("STRAND_LLR=")));

    // noodles queries it through the .csi.
    let mut reader = noodles::vcf::io::indexed_reader::Builder::default()
        .build_from_path(&out)
        .expect("indexed reader");
    let header = reader.read_header().expect("header");
    let region = format!("big:{}-{}", at - 10, at + 200)
        .parse()
        .expect("region");
    let n = reader
        .query(&header, &region)
        .expect("query")
        .records()
        .count();
    assert_eq!(n, 2);

    // strand concat keeps it indexable; BCF too.
    for name in ["joined.vcf.gz", "joined.bcf"] {
        let joined = dir.path().join(name);
        Cmd::new(env!("CARGO_BIN_EXE_strand"))
            .args(["concat", "-o", &s(&joined), &s(&out)])
            .run()
            .ok();
        assert!(dir.path().join(format!("{name}.csi")).is_file(), "{name}");
    }

    // A .tbi asked for cannot hold it: a one-line error, nothing written.
    let tbi_out = dir.path().join("tbi.vcf.gz");
    let res = run(&["-W=tbi", "-o", &s(&tbi_out)]).exits(1);
    assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
    assert!(
        res.stderr
            .contains(&format!("big:{} lies past 2^29", at - 100))
            && res.stderr.contains("--write-index=csi")
            && !res.stderr.contains("sorted"),
        "{}",
        res.stderr
    );
    assert!(!tbi_out.exists() && !dir.path().join("tbi.vcf.gz.tbi").exists());
}

#[test]
fn score_write_index_csi_on_request() {
    let dir = tempdir();
    let input = small_vcf(dir.path());
    let out = dir.path().join("o.vcf.gz");
    ok(
        "ps-tiny",
        &["--vcf", &input, "--window", "1000", "-W", "-o", &s(&out)],
    );
    assert!(dir.path().join("o.vcf.gz.csi").is_file());
    assert!(!dir.path().join("o.vcf.gz.tbi").exists());
    let mut reader = noodles::vcf::io::indexed_reader::Builder::default()
        .build_from_path(&out)
        .expect("indexed reader");
    let header = reader.read_header().expect("header");
    let region = "chrA:1-3000".parse().expect("region");
    assert_eq!(
        reader
            .query(&header, &region)
            .expect("query")
            .records()
            .count(),
        2
    );
    // The default stays .tbi.
    let out = dir.path().join("t.vcf.gz");
    ok(
        "ps-tiny",
        &["--vcf", &input, "--window", "1000", "-o", &s(&out)],
    );
    assert!(dir.path().join("t.vcf.gz.tbi").is_file());
}
