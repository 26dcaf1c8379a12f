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
