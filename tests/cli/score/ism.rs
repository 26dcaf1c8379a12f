//! `strand-score ism`: its TSV equals the llr of the same SNVs scored from a
//! VCF, and its bigWig tracks read back with the same values.

use super::*;

#[test]
fn ism_matches_vcf_llr_and_tracks_read_back() {
    let dir = tempdir();
    let prefix = dir.path().join("ism");
    let region = "chrA:3,001-4,000";
    // Options follow the subcommand name.
    score()
        .args([
            "ism",
            "-m",
            &model("ps-tiny"),
            "--device",
            "cpu",
            "-q",
            "-f",
            &reference(),
        ])
        .args(["-r", region, "--window", "1000", "-o", &s(&prefix)])
        .run()
        .ok();
    let t = table(&dir.path().join("ism.tsv"));
    assert_eq!(t[0], ["chrom", "pos", "ref", "alt", "llr"]);
    // Every SNV of the region as a VCF, scored the VCF way.
    let a = contig("chrA");
    let mut lines = Vec::new();
    for p in 3001..=4000usize {
        let r = a[p - 1].to_ascii_uppercase() as char;
        if !BASES.contains(&r) {
            continue;
        }
        for alt in BASES.iter().filter(|&&b| b != r) {
            lines.push(format!("chrA\t{p}\t.\t{}\t{alt}", a[p - 1] as char));
        }
    }
    let input = vcf(dir.path(), "all.vcf", &lines);
    let tsv = dir.path().join("vcf.tsv");
    ok(
        "ps-tiny",
        &["--vcf", &input, "--window", "1000", "--tsv", &s(&tsv)],
    );
    let v = table(&tsv);
    assert_eq!(t.len(), v.len());
    assert!(t.len() > 2000);
    for (i, v) in t[1..].iter().zip(&v[1..]) {
        assert_eq!((&i[0], &i[1], &i[3]), (&v[0], &v[1], &v[4]));
        assert_eq!(i[4], v[5], "llr at {}:{} -> {}", i[0], i[1], i[3]);
    }
    // Tracks: per alt base, mean and min; bigWig = bedGraph = TSV values.
    for label in ["A", "C", "G", "T", "mean", "min"] {
        let bg = std::fs::read_to_string(dir.path().join(format!("ism.{label}.bedGraph")))
            .expect("bedGraph");
        let mut bw = bigtools::BigWigRead::open_file(dir.path().join(format!("ism.{label}.bw")))
            .expect("bigWig");
        let values: Vec<bigtools::Value> = bw
            .get_interval("chrA", 0, 6000)
            .expect("interval")
            .collect::<Result<_, _>>()
            .expect("values");
        let lines: Vec<&str> = bg.lines().collect();
        assert_eq!(values.len(), lines.len(), "{label}");
        for (v, l) in values.iter().zip(&lines) {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(
                (v.start.to_string(), v.end.to_string()),
                (f[1].to_string(), f[2].to_string())
            );
            assert_eq!(
                v.value,
                f[3].parse::<f32>().expect("value"),
                "{label} at {}",
                v.start
            );
        }
        if label.len() == 1 {
            // The per-base track holds the TSV's llr for that ALT.
            let want: Vec<f32> = t[1..]
                .iter()
                .filter(|r| r[3] == label)
                .map(|r| r[4].parse().expect("llr"))
                .collect();
            let got: Vec<f32> = values.iter().map(|v| v.value).collect();
            assert_eq!(got, want, "{label}");
        }
    }
}

/// `ism` is a real subcommand: `--help` lists it, and it does not mix with
/// the VCF mode's options.
#[test]
fn ism_is_a_subcommand() {
    let res = score().args(["--help"]).run().ok();
    let help = String::from_utf8_lossy(&res.stdout);
    assert!(
        help.lines().any(|l| l.trim_start().starts_with("ism ")),
        "{help}"
    );
    let res = score().args(["--vcf", "x.vcf", "ism"]).run().exits(2);
    assert!(res.stderr.contains("cannot be used with"), "{}", res.stderr);
}
