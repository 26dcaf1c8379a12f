//! Issue 16: records without a score fail `bcftools view -f PASS` (FILTER
//! `strand_<reason>`), every allele without a value has a reason in the
//! VCF, the TSV and the summary, and REF=N is refused alike by the VCF
//! mode and `ism`.

use super::*;

/// Records of every kind that gets no value with `--scores llr`, next to
/// scored ones; FILTER as given in the input.
fn unscored_vcf(dir: &Path) -> String {
    let a = contig("chrA");
    let base = |p: usize| (a[p - 1] as char).to_string();
    let other = |p: usize| if a[p - 1] == b'A' { "C" } else { "A" };
    assert!(
        base(3080).eq_ignore_ascii_case("N"),
        "chrA:3080 lies in an N run"
    );
    let text = format!(
        "##fileformat=VCFv4.2\n##FILTER=<ID=q10,Description=\"quality below 10\">\n\
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n\
chrA\t3050\tsnv\t{}\t{}\t.\tPASS\t.\n\
chrA\t3060\tmulti\t{}\t{},<DEL>\t.\tPASS\t.\n\
chrA\t3080\tnref\tN\tC\t.\tPASS\t.\n\
chrA\t3200\tdel\t{}{}\t{}\t.\t.\t.\n\
chrA\t3300\tsym\t{}\t<DEL>\t.\tq10\t.\n\
chrA\t3400\tmismatch\t{}\t{}\t.\tPASS\t.\n\
chrA\t3500\tnoalt\t{}\t.\t.\tPASS\t.\n\
chr9\t10\tmissing\tA\tC\t.\tPASS\t.\n",
        base(3050),
        other(3050),
        base(3060),
        other(3060),
        base(3200),
        base(3201),
        base(3200),
        base(3300),
        other(3400),
        base(3400),
        base(3500),
    );
    let path = dir.join("unscored.vcf");
    std::fs::write(&path, text).expect("write");
    s(&path)
}

#[test]
fn score_unscored_records_fail_filter_pass_and_every_allele_has_a_reason() {
    let dir = tempdir();
    let input = unscored_vcf(dir.path());
    let out = dir.path().join("out.vcf");
    let tsv = dir.path().join("out.tsv");
    let res = on_cpu("ps-tiny")
        .args([
            "--vcf",
            &input,
            "--window",
            "1000",
            "--skip-missing-contigs",
        ])
        .args(["--scores", "llr", "-o", &s(&out), "--tsv", &s(&tsv)])
        .run()
        .ok();
    assert!(
        res.stderr.contains(
            "8 records, 2 alleles scored, 6 alleles not scored (1 missing_contig, 1 non_acgt, \
             1 not_snv, 1 ref_mismatch, 2 symbolic)"
        ),
        "{}",
        res.stderr
    );
    let text = std::fs::read_to_string(&out).expect("read");
    for id in [
        "missing_contig",
        "ref_mismatch",
        "symbolic",
        "non_acgt",
        "not_snv",
    ] {
        assert!(
            text.contains(&format!("##FILTER=<ID=strand_{id},")),
            "{id} declared"
        );
    }
    let field = |id: &str, k: usize| -> String {
        text.lines()
            .find(|l| l.split('\t').nth(2) == Some(id))
            .and_then(|l| l.split('\t').nth(k))
            .unwrap_or_else(|| panic!("record {id}"))
            .to_string()
    };
    // What `bcftools view -f PASS` keeps: records with a value.
    let pass: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.split('\t').nth(6) == Some("PASS"))
        .map(|l| l.split('\t').nth(2).expect("id").to_owned())
        .collect();
    assert_eq!(pass, ["snv", "multi"]);
    assert_eq!(field("nref", 6), "strand_non_acgt");
    assert_eq!(field("nref", 7), "STRAND_SKIP=non_acgt");
    assert_eq!(field("del", 6), "strand_not_snv");
    assert_eq!(field("del", 7), "STRAND_SKIP=not_snv");
    // Another filter stays; ours is added.
    assert_eq!(field("sym", 6), "q10;strand_symbolic");
    assert_eq!(field("mismatch", 6), "strand_ref_mismatch");
    assert_eq!(field("mismatch", 7), "STRAND_FILTER=ref_mismatch");
    assert_eq!(field("missing", 6), "strand_missing_contig");
    // A site without ALT has nothing to score: it does not pass either.
    assert_eq!(field("noalt", 6), "strand_no_alt");
    assert_eq!(field("noalt", 7), "STRAND_FILTER=no_alt");
    // One ALT scored: the record passes, the other ALT has its reason.
    assert!(field("multi", 7).starts_with("STRAND_LLR="));
    assert!(field("multi", 7).ends_with(";STRAND_SKIP=.,symbolic"));

    // The TSV: a value or a reason on every row, never both, never neither.
    let t = table(&tsv);
    assert_eq!(t[0].last().map(String::as_str), Some("reason"));
    assert_eq!(t.len() - 1, 8);
    for row in &t[1..] {
        let (llr, reason) = (&row[5], &row[6]);
        assert!(
            (llr == "NA") != (reason == "."),
            "a value or a reason: {row:?}"
        );
    }
    let reason = |id: &str| -> Vec<&str> {
        t.iter()
            .filter(|r| r[2] == id)
            .map(|r| r[6].as_str())
            .collect()
    };
    assert_eq!(reason("nref"), ["non_acgt"]);
    assert_eq!(reason("del"), ["not_snv"]);
    assert_eq!(reason("multi"), [".", "symbolic"]);
    assert_eq!(reason("missing"), ["missing_contig"]);

    // With a score for indels too, the deletion gets a value and passes.
    let both = dir.path().join("both.vcf");
    ok(
        "ps-tiny",
        &[
            "--vcf",
            &input,
            "--window",
            "1000",
            "--skip-missing-contigs",
            "--scores",
            "llr,embed_dist",
            "-o",
            &s(&both),
        ],
    );
    let text = std::fs::read_to_string(&both).expect("read");
    let del = text
        .lines()
        .find(|l| l.split('\t').nth(2) == Some("del"))
        .expect("del");
    assert_eq!(del.split('\t').nth(6), Some("."), "{del}");
    assert!(del.contains("STRAND_EMBED_DIST="), "{del}");
}

#[test]
fn score_ref_n_is_refused_by_both_modes_alike() {
    let dir = tempdir();
    // Every SNV from an N: none scored, each with its reason.
    let lines: Vec<String> = ["A", "C", "G", "T"]
        .iter()
        .map(|alt| format!("chrA\t3080\tn{alt}\tN\t{alt}"))
        .collect();
    let input = vcf(dir.path(), "n.vcf", &lines);
    let res = on_cpu("ph-tiny")
        .args([
            "--vcf",
            &input,
            "--window",
            "1000",
            "-o",
            &s(&dir.path().join("n.out.vcf")),
        ])
        .run()
        .ok();
    assert!(
        res.stderr
            .contains("4 records, 0 alleles scored, 4 alleles not scored (4 non_acgt)"),
        "{}",
        res.stderr
    );
    // ism over the same N run (chrA:3071-3098) and a little around it.
    let prefix = dir.path().join("ism");
    let res = score()
        .args([
            "ism",
            "-m",
            &model("ph-tiny"),
            "--device",
            "cpu",
            "-f",
            &reference(),
        ])
        .args([
            "-r",
            "chrA:3061-3110",
            "--window",
            "1000",
            "-o",
            &s(&prefix),
        ])
        .run()
        .ok();
    assert!(
        res.stderr.contains(
            "22 positions of chrA:3061-3110, 66 SNVs scored, 28 positions not scored (28 non_acgt)"
        ),
        "{}",
        res.stderr
    );
    let t = table(&dir.path().join("ism.tsv"));
    assert!(t[1..].iter().all(|r| r[2] != "N" && r[2] != "n"));
    assert_eq!(t.len() - 1, 66);
}

#[test]
fn score_contig_jobs_and_the_missing_contigs_job_cover_every_record() {
    // A workflow's jobs: one per reference contig (-r), one for the rest.
    let dir = tempdir();
    let input = mixed_vcf(dir.path());
    let args = [
        "--vcf",
        &input,
        "--window",
        "1000",
        "--skip-missing-contigs",
    ];
    let whole = dir.path().join("whole.vcf.gz");
    ok("ps-tiny", &[&args[..], &["-o", &s(&whole)]].concat());
    let mut parts = Vec::new();
    for c in ["len1", "chrA", "chrB"] {
        let part = dir.path().join(format!("{c}.vcf.gz"));
        ok(
            "ps-tiny",
            &[&args[..], &["-r", c, "-o", &s(&part)]].concat(),
        );
        parts.push(s(&part));
    }
    let rest = dir.path().join("rest.vcf.gz");
    ok(
        "ps-tiny",
        &[&args[..], &["--missing-contigs-only", "-o", &s(&rest)]].concat(),
    );
    assert_eq!(vcf_body(&rest).len(), 2, "#CHROM and the chr9 record");
    parts.push(s(&rest));
    let merged = dir.path().join("merged.vcf.gz");
    Cmd::new(env!("CARGO_BIN_EXE_strand"))
        .args(["concat", "-o", &s(&merged)])
        .args(&parts)
        .run()
        .ok();
    assert_eq!(vcf_body(&merged), vcf_body(&whole));

    // Without --skip-missing-contigs the job fails as a whole run does.
    let res = on_cpu("ps-tiny")
        .args(["-q"])
        .args(["--vcf", &input, "--missing-contigs-only", "-o", "-"])
        .run()
        .exits(1);
    assert!(
        res.stderr
            .contains("line 12 (chr9:10): contig \"chr9\" is not in the reference"),
        "{}",
        res.stderr
    );
    // It takes no regions.
    score()
        .args(["-m", &model("ps-tiny"), "-f", &reference(), "--vcf", &input])
        .args(["--missing-contigs-only", "-r", "chrA"])
        .run()
        .exits(2);
}
