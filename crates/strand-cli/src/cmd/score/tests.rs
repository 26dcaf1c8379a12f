//! strand-score's `validate` steps: refused combinations and the settings
//! that good ones give.

use clap::CommandFactory;

use super::*;

fn validate(argv: &[&str]) -> anyhow::Result<Settings> {
    let argv = std::iter::once("strand-score").chain(argv.iter().copied());
    Args::try_parse_from(argv)?.validate()
}

fn refused(argv: &[&str], words: &str) {
    let e = validate(argv).expect_err("refused").to_string();
    assert!(e.contains(words), "{argv:?}: {e}");
}

#[test]
fn the_command_line_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn vcf_defaults() {
    let Settings::Vcf(s) = validate(&["--vcf", "in.vcf", "-f", "ref.fa", "-m", "M"]).expect("ok")
    else {
        panic!("the VCF mode");
    };
    assert_eq!(s.output, PathBuf::from("-"));
    assert_eq!(s.common.window, DEFAULT_WINDOW);
    assert_eq!(s.common.batch_tokens, 1 << 20);
    assert_eq!(s.scores, vec![Score::Llr]);
    assert!(s.shard.is_none());
}

#[test]
fn vcf_options_are_checked() {
    let base = ["--vcf", "in.vcf", "-f", "ref.fa", "-m", "M"];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let args = with(&["-o", "o.bcf", "--window", "1k", "--batch-tokens", "5000"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Settings::Vcf(s) = validate(&args).expect("ok") else {
        panic!("the VCF mode");
    };
    assert_eq!(s.output, PathBuf::from("o.bcf"));
    assert_eq!((s.common.window, s.common.batch_tokens), (1024, 5000));

    refused(
        &["--vcf", "-", "-f", "r.fa", "-m", "M", "--shard", "1/2"],
        "--shard needs the VCF as a file",
    );
    // Two outputs that are one file.
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("o.vcf");
    std::fs::write(&out, "").expect("write");
    let out = out.to_string_lossy();
    let args = with(&["-o", &out, "--tsv", &out]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&args, "same file as output");
    // The VCF options are clap's: not beside ism, and --vcf is required.
    assert!(validate(&["ism", "--vcf", "x", "-r", "c:1-2", "-o", "p"]).is_err());
    assert!(validate(&["-f", "ref.fa", "-m", "M"]).is_err());
}

#[test]
fn ism_options_are_checked() {
    let ism = |extra: &[&str]| {
        let mut argv = vec!["ism", "-f", "ref.fa", "-m", "M", "-r", "chr1:11-20"];
        argv.extend_from_slice(extra);
        validate(&argv)
    };
    let Ok(Settings::Ism(s)) = ism(&["-o", "out/x", "--masked", "--window", "2k"]) else {
        panic!("the ism mode");
    };
    assert_eq!(s.prefix, "out/x");
    assert_eq!(s.score, Score::LlrMasked);
    assert_eq!((s.region.start, s.region.end), (10, Some(20)));
    assert_eq!(s.common.window, 2048);
    let Ok(Settings::Ism(s)) = ism(&["-o", "p"]) else {
        panic!("the ism mode");
    };
    assert_eq!(s.score, Score::Llr);

    let tmp = tempfile::tempdir().expect("temp dir");
    let e = ism(&["-o", &tmp.path().to_string_lossy()]).expect_err("a folder");
    assert!(e.to_string().contains("-o takes a file prefix"), "{e}");
    let e = ism(&["-o", "p", "-r", "chr1:20-10"]);
    assert!(e.is_err(), "a region that ends before it starts");
    // -o is required, and means PREFIX.
    assert!(ism(&[]).is_err());
}

#[test]
fn calibrate_options_are_checked() {
    let cal = |extra: &[&str]| {
        let mut argv = vec!["calibrate", "-f", "ref.fa", "-m", "M"];
        argv.extend_from_slice(extra);
        validate(&argv)
    };
    let Ok(Settings::Calibrate(s)) = cal(&["-o", "m.calib.tsv"]) else {
        panic!("the calibrate mode");
    };
    assert_eq!(s.output, PathBuf::from("m.calib.tsv"));
    assert_eq!((s.sample, s.seed, s.quantiles), (2000, 0, 1001));
    assert_eq!(s.scores, [Score::Llr, Score::LlrMasked, Score::EmbedDist]);
    assert_eq!(s.common.window, DEFAULT_WINDOW);
    assert!(s.region.regions.is_empty() && s.region.regions_file.is_none());
    let args = [
        "-o",
        "c.tsv",
        "-R",
        "bg.bed",
        "--sample",
        "50",
        "--seed",
        "3",
        "--quantiles",
        "101",
        "--scores",
        "embed_dist,llr,embed_dist",
        "--window",
        "1k",
    ];
    let Ok(Settings::Calibrate(s)) = cal(&args) else {
        panic!("the calibrate mode");
    };
    assert_eq!((s.sample, s.seed, s.quantiles), (50, 3, 101));
    // Each score once, in the order given.
    assert_eq!(s.scores, [Score::EmbedDist, Score::Llr]);
    assert_eq!(s.region.regions_file, Some(PathBuf::from("bg.bed")));
    assert_eq!(s.common.window, 1024);
    // -o is required; a sample of none and fewer than 3 quantiles are not
    // calibrations; the output must not be an input.
    assert!(cal(&[]).is_err());
    assert!(cal(&["-o", "c.tsv", "--sample", "0"]).is_err());
    assert!(cal(&["-o", "c.tsv", "--quantiles", "2"]).is_err());
    let tmp = tempfile::tempdir().expect("temp dir");
    let fa = tmp.path().join("ref.fa");
    std::fs::write(&fa, ">a\nACGT\n").expect("write");
    let fa = fa.to_string_lossy();
    let e = validate(&["calibrate", "-f", &fa, "-m", "M", "-o", &fa]).expect_err("refused");
    assert!(e.to_string().contains("same file as"), "{e}");
    // Not beside the VCF mode's options.
    assert!(validate(&["calibrate", "--vcf", "x", "-f", "r", "-m", "M", "-o", "c"]).is_err());
}

#[test]
fn a_calibration_is_read_and_checked_before_any_work() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let calib = tmp.path().join("m.calib.tsv");
    std::fs::write(
        &calib,
        "#strand_calibration=1\n#model_config_sha256=a\n#model_weights_sha256=b\n#window=1024\n\
         #windows=grid\n#rc_average=false\nquantile\tllr\n0\t-1\n1\t1\n",
    )
    .expect("write");
    let c = calib.to_string_lossy();
    let vcf = [
        "--vcf",
        "in.vcf",
        "-f",
        "ref.fa",
        "-m",
        "M",
        "--calibration",
        &c,
    ];
    let Ok(Settings::Vcf(s)) = validate(&[&vcf[..], &["--window", "1k"]].concat()) else {
        panic!("the VCF mode");
    };
    assert_eq!(
        s.calibration.expect("read").percentile("llr", 0.0),
        Some(50.0)
    );
    refused(
        &vcf,
        "calibrated with --window 1024 (grid windows), this run has --window 131072",
    );
    refused(
        &[&vcf[..], &["--window", "1k", "--scores", "llr,embed_dist"]].concat(),
        "no embed_dist column",
    );
    let ism = [
        "ism",
        "-f",
        "ref.fa",
        "-m",
        "M",
        "-r",
        "c:1-9",
        "-o",
        "p",
        "--calibration",
        &c,
    ];
    let Ok(Settings::Ism(s)) = validate(&[&ism[..], &["--window", "1k"]].concat()) else {
        panic!("the ism mode");
    };
    assert!(s.calibration.is_some());
    refused(
        &[&ism[..], &["--window", "1k", "--masked"]].concat(),
        "no llr_masked column",
    );
    let missing = tmp.path().join("none.tsv");
    refused(
        &[
            "--vcf",
            "in.vcf",
            "-f",
            "r.fa",
            "-m",
            "M",
            "--calibration",
            &missing.to_string_lossy(),
        ],
        "none.tsv: cannot read",
    );
}
