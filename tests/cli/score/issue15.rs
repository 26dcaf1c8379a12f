//! Issue 15, `strand-score` and `strand concat`: outputs that are inputs,
//! truncated VCFs, partial outputs.

use std::path::Path;

use crate::util::{dir_entries, root, tempdir, Cmd};

use super::{mixed_vcf, model, reference, s, score};

/// Copies the reference and its index into `dir`.
fn copy_reference(dir: &Path) -> String {
    let fa = dir.join("ref.fa");
    std::fs::copy(root().join(reference()), &fa).expect("copy ref.fa");
    std::fs::copy(root().join(reference() + ".fai"), dir.join("ref.fa.fai")).expect("copy .fai");
    s(&fa)
}

/// Runs strand-score with the usual model and device, expecting exit 1
/// and one line of stderr containing `needle`. The test VCF has a contig
/// the reference lacks: skipped, so only the defect under test can fail.
fn refused(args: &[&str], needle: &str) {
    let res = score()
        .args(["-m", &model("ph-tiny"), "--device", "cpu", "-q"])
        .args(["--skip-missing-contigs"])
        .args(args)
        .run()
        .exits(1);
    assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
    assert!(
        res.stderr.contains(needle),
        "{needle:?} not in {}",
        res.stderr
    );
}

/// `-o` or `--tsv` naming the reference or the VCF is refused before any
/// work, and the input is untouched.
#[test]
fn issue15_output_equal_to_an_input_is_refused() {
    let dir = tempdir();
    let fa = copy_reference(dir.path());
    let input = mixed_vcf(dir.path());
    let before: Vec<Vec<u8>> = [&fa, &input]
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    let same = "is the same file as input";
    refused(&["-f", &fa, "--vcf", &input, "-o", &fa], same);
    refused(&["-f", &fa, "--vcf", &input, "-o", &input], same);
    let out = dir.path().join("out.vcf");
    refused(
        &["-f", &fa, "--vcf", &input, "-o", &s(&out), "--tsv", &input],
        same,
    );
    // Through another spelling of the same path.
    let dotted = format!("{}/./mixed.vcf", dir.path().display());
    refused(&["-f", &fa, "--vcf", &input, "--tsv", &dotted], same);
    // The table and the VCF under one new name.
    refused(
        &[
            "-f",
            &fa,
            "--vcf",
            &input,
            "-o",
            &s(&out),
            "--tsv",
            &s(&out),
        ],
        "is the same file as output",
    );
    let after: Vec<Vec<u8>> = [&fa, &input]
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    assert_eq!(before, after, "an input was changed");
}

/// A BGZF VCF without its end-of-file block, or whose last record lost
/// columns, is an error: nothing is written.
#[test]
fn issue15_truncated_vcf_is_refused() {
    let dir = tempdir();
    let input = mixed_vcf(dir.path());
    let fa = reference();
    // A complete BGZF copy, made by strand concat from the plain VCF.
    let gz = dir.path().join("in.vcf.gz");
    Cmd::new(env!("CARGO_BIN_EXE_strand"))
        .args(["concat", "-o", &s(&gz), &input])
        .run()
        .ok();
    let bytes = std::fs::read(&gz).expect("read");
    let cut_dir = tempdir();
    // Cut at the last block boundary: every block decompresses.
    let cut = cut_dir.path().join("cut.vcf.gz");
    std::fs::write(&cut, &bytes[..bytes.len() - 28]).expect("write");
    let out = cut_dir.path().join("out.vcf.gz");
    let args = ["-f", &fa, "--vcf", &s(&cut), "--window", "1000"];
    refused(
        &[&args[..], &["-o", &s(&out)]].concat(),
        "end-of-file block is missing",
    );
    // The last record cut mid-line (sample column gone).
    let text = std::fs::read_to_string(&input).expect("read");
    let short = cut_dir.path().join("short.vcf");
    std::fs::write(&short, text.trim_end().trim_end_matches("\t0/1")).expect("write");
    refused(
        &["-f", &fa, "--vcf", &s(&short), "-o", &s(&out)],
        "short.vcf: line 12: expected 10 tab-separated fields (as in the #CHROM line), found 9",
    );
    // strand concat refuses both as parts.
    for part in [&cut, &short] {
        let joined = cut_dir.path().join("joined.vcf.gz");
        let res = Cmd::new(env!("CARGO_BIN_EXE_strand"))
            .args(["concat", "-o", &s(&joined), &input, &s(part)])
            .run()
            .exits(1);
        assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
    }
    assert_eq!(dir_entries(cut_dir.path()), vec!["cut.vcf.gz", "short.vcf"]);
}

/// `ism` over a region with nothing to mutate (all N) is one line and
/// exit 1 before any work, leaving no file (it used to leave a
/// header-only table and an empty track).
#[test]
fn issue15_ism_all_n_region_leaves_nothing() {
    let dir = tempdir();
    let prefix = dir.path().join("x");
    let res = score()
        .args(["ism", "-m", &model("ps-tiny"), "--device", "cpu", "-q"])
        .args(["-f", &reference(), "-r", "allN:1-40", "--window", "1000"])
        .args(["-o", &s(&prefix)])
        .run()
        .exits(1);
    assert!(
        res.stderr
            .contains("region allN:1-40: no base A, C, G or T to mutate"),
        "{}",
        res.stderr
    );
    assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
    assert!(
        dir_entries(dir.path()).is_empty(),
        "{:?}",
        dir_entries(dir.path())
    );
}

/// A region of one repeated base: its own track is empty, a valid result
/// (empty bedGraph, no bigWig, a note), and every other output is there.
#[test]
fn issue15_ism_empty_track_is_a_valid_result() {
    let dir = tempdir();
    let fa = dir.path().join("poly.fa");
    std::fs::write(&fa, ">polyA\nAAAAAAAAAAAAAAAAAAAA\n").expect("write");
    std::fs::write(dir.path().join("poly.fa.fai"), "polyA\t20\t7\t20\t21\n").expect("write");
    let prefix = dir.path().join("x");
    let res = score()
        .args(["ism", "-m", &model("ps-tiny"), "--device", "cpu"])
        .args(["-f", &s(&fa), "-r", "polyA:1-20", "--window", "1000"])
        .args(["-o", &s(&prefix)])
        .run()
        .ok();
    assert!(
        res.stderr.contains("the A track is empty"),
        "{}",
        res.stderr
    );
    let names = dir_entries(dir.path());
    assert!(names.contains(&"x.A.bedGraph".to_string()), "{names:?}");
    assert!(!names.contains(&"x.A.bw".to_string()), "{names:?}");
    for label in ["C", "G", "T", "mean", "min"] {
        for ext in ["bedGraph", "bw"] {
            let name = format!("x.{label}.{ext}");
            assert!(names.contains(&name), "{name} missing: {names:?}");
        }
    }
    let a = std::fs::read(dir.path().join("x.A.bedGraph")).expect("read");
    assert!(a.is_empty());
    assert_eq!(table_rows(&dir.path().join("x.tsv")), 1 + 20 * 3);
}

fn table_rows(path: &Path) -> usize {
    std::fs::read_to_string(path).expect("read").lines().count()
}

/// A position past the contig's end is `off_contig`, not `ref_mismatch`.
#[test]
fn issue15_position_past_the_contig_end_is_off_contig() {
    let dir = tempdir();
    let input = super::vcf(
        dir.path(),
        "off.vcf",
        &["chrA\t6001\toff\tA\tC".to_string()],
    );
    let out = dir.path().join("out.vcf");
    super::ok(
        "ph-tiny",
        &["--vcf", &input, "--window", "1000", "-o", &s(&out)],
    );
    let text = std::fs::read_to_string(&out).expect("read");
    let rec = text.lines().last().expect("a record");
    assert!(rec.contains("STRAND_FILTER=off_contig"), "{rec}");
}

/// Huge numbers are usage errors (exit 2), never a panic or an overflow.
#[test]
fn issue15_numeric_options_are_bounded() {
    let dir = tempdir();
    let input = mixed_vcf(dir.path());
    for args in [
        ["--window", "18446744073709551615m"],
        ["--batch-tokens", "18446744073709551615"],
        ["--shard", "18446744073709551615/18446744073709551615"],
    ] {
        let out = dir.path().join("out.vcf");
        let res = score()
            .args(["-m", &model("ph-tiny"), "--device", "cpu", "-q"])
            .args(["--skip-missing-contigs"])
            .args(["-f", &reference(), "--vcf", &input, "-o", &s(&out)])
            .args(args)
            .run()
            .exits(2);
        assert!(!res.stderr.contains("panicked"), "{args:?}: {}", res.stderr);
        assert!(!out.exists());
    }
}
