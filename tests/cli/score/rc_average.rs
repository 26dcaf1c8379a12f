//! `--rc-average`: the mean of both strands.

use super::*;

/// `--rc-average` on a PH model is the mean of the scores on the two
/// strands: the same SNVs scored on a contig and, mirrored and
/// complemented, on its reverse complement (each in one window covering
/// its contig, so the windows mirror exactly).
#[test]
fn score_rc_average_is_the_mean_of_both_strands() {
    let dir = tempdir();
    let comp = |b: u8| match b {
        b'A' => b'T',
        b'C' => b'G',
        b'G' => b'C',
        b'T' => b'A',
        other => other,
    };
    let fw: Vec<u8> = contig("len1000").to_ascii_uppercase();
    let rc: Vec<u8> = fw.iter().rev().map(|&b| comp(b)).collect();
    let len = fw.len();
    let fasta = dir.path().join("two.fa");
    let mut text = Vec::new();
    for (name, seq) in [("fw", &fw), ("rc", &rc)] {
        text.extend_from_slice(format!(">{name}\n").as_bytes());
        text.extend_from_slice(seq);
        text.push(b'\n');
    }
    std::fs::write(&fasta, text).expect("write fasta");
    let fai = format!(
        "fw\t{len}\t4\t{len}\t{}\nrc\t{len}\t{}\t{len}\t{}\n",
        len + 1,
        len + 9,
        len + 1
    );
    std::fs::write(dir.path().join("two.fa.fai"), fai).expect("write fai");

    let (mut fw_lines, mut rc_lines) = (Vec::new(), Vec::new());
    for i in (3..len).step_by(37) {
        let r = fw[i];
        if !b"ACGT".contains(&r) {
            continue;
        }
        let a = *b"ACGT"
            .iter()
            .find(|&&a| a != r && a != comp(r))
            .expect("a transversion");
        let (r, a) = (r as char, a as char);
        fw_lines.push(format!("fw\t{}\t.\t{r}\t{a}", i + 1));
        rc_lines.push(format!(
            "rc\t{}\t.\t{}\t{}",
            len - i,
            comp(r as u8) as char,
            comp(a as u8) as char
        ));
    }
    // The reverse-complement VCF must be in position order.
    rc_lines.reverse();
    let run = |vcf_lines: &[String], name: &str, extra: &[&str]| {
        let input = vcf(dir.path(), &format!("{name}.vcf"), vcf_lines);
        let tsv = dir.path().join(format!("{name}.tsv"));
        score()
            .args([
                "-m",
                &model("ph-tiny"),
                "--device",
                "cpu",
                "-q",
                "-f",
                &s(&fasta),
            ])
            .args([
                "--vcf",
                &input,
                "--window",
                "2048",
                "--scores",
                "llr,llr_masked",
            ])
            .args([
                "--tsv",
                &s(&tsv),
                "-o",
                &s(&dir.path().join(format!("{name}.vcf.gz"))),
            ])
            .args(extra)
            .run()
            .ok();
        let rows: Vec<(f64, f64)> = table(&tsv)[1..]
            .iter()
            .map(|row| {
                (
                    row[5].parse().expect("llr"),
                    row[6].parse().expect("llr_masked"),
                )
            })
            .collect();
        rows
    };
    let forward = run(&fw_lines, "fw", &[]);
    let mut reverse = run(&rc_lines, "rc", &[]);
    reverse.reverse();
    let both = run(&fw_lines, "both", &["--rc-average"]);
    assert_eq!(both.len(), fw_lines.len());
    assert!(both.len() > 20);
    for (k, ((f, r), b)) in forward.iter().zip(&reverse).zip(&both).enumerate() {
        for (what, f, r, b) in [("llr", f.0, r.0, b.0), ("llr_masked", f.1, r.1, b.1)] {
            let want = (f + r) / 2.0;
            assert!(
                (b - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{}: {what} {b} vs mean of {f} and {r}",
                fw_lines[k]
            );
        }
    }
    // The strands really differ (PH is not strand-symmetric).
    assert!(forward
        .iter()
        .zip(&reverse)
        .any(|(f, r)| (f.0 - r.0).abs() > 1e-3));
}
