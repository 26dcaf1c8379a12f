//! Bad inputs: one-line errors, non-zero exits.

use super::*;

/// Runs a failing command: exit 1, one line naming `needles`, and no
/// output file left.
fn fails(args: &[&str], needles: &[&str]) {
    let dir = tempdir();
    let out = dir.path().join("out.vcf.gz");
    let res = score()
        .args(["-m", &model("ph-tiny"), "--device", "cpu", "-q"])
        .args(args)
        .args(["-o", &s(&out)])
        .run()
        .exits(1);
    assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
    for n in needles {
        assert!(res.stderr.contains(n), "{n:?} not in {}", res.stderr);
    }
    assert!(
        crate::util::dir_entries(dir.path()).is_empty(),
        "left behind"
    );
}

#[test]
fn score_bad_inputs_are_one_line_errors() {
    let dir = tempdir();
    let input = mixed_vcf(dir.path());
    let fa = reference();
    fails(
        &["-f", &fa, "--vcf", &input],
        &[
            "mixed.vcf: line 12 (chr9:10): contig \"chr9\" is not in the reference",
            "--skip-missing-contigs",
        ],
    );
    let bad = dir.path().join("bad.vcf");
    std::fs::write(&bad, format!("{HEADER}chrA\tten\t.\tA\tC\t.\t.\t.\n")).expect("write");
    fails(
        &["-f", &fa, "--vcf", &s(&bad)],
        &["bad.vcf: line 3 (chrA:ten): POS \"ten\" is not a position"],
    );
    let noindex = dir.path().join("noindex.fa");
    std::fs::copy(root().join(&fa), &noindex).expect("copy");
    fails(
        &["-f", &s(&noindex), "--vcf", &input],
        &["noindex.fa: no index"],
    );
}
