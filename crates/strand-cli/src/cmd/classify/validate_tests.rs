//! strand-classify's `validate` steps: refused combinations and the
//! settings that good ones give.

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use super::cv::LAMBDA_GRID;
use super::{Args, Settings};

fn validate(argv: &[&str]) -> anyhow::Result<Settings> {
    let argv = std::iter::once("strand-classify").chain(argv.iter().copied());
    Args::try_parse_from(argv)?.validate()
}

fn refused(argv: &[&str], words: &str) {
    let e = validate(argv).expect_err("refused").to_string();
    assert!(e.contains(words), "{argv:?}: {e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn the_command_line_is_well_formed() {
    Args::command().debug_assert();
}

#[test]
fn predict() {
    let Settings::Predict(s) = validate(&["predict", "-m", "M", "in.fa"]).expect("ok") else {
        panic!("predict");
    };
    assert_eq!(s.output, PathBuf::from("-"));
    assert_eq!(s.batch_tokens, 1 << 20);
    let argv = [
        "predict",
        "-m",
        "M",
        "in.fa",
        "-o",
        "p.tsv",
        "--batch-tokens",
        "4096",
    ];
    let Settings::Predict(s) = validate(&argv).expect("ok") else {
        panic!("predict");
    };
    assert_eq!((s.output, s.batch_tokens), (PathBuf::from("p.tsv"), 4096));
    refused(
        &["predict", "-m", "M", "--min-mapq", "3", "in.fa"],
        "--min-mapq",
    );
    refused(&["predict", "-m", "M", "--bam", "r.bam", "in.fa"], "--bam");
    refused(&["predict", "-m", "M"], "no input");
}

#[test]
fn train() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("head");
    let out = out.to_string_lossy();
    let Settings::Train(s) =
        validate(&["train", "-m", "M", "--train", "t.fa", "-o", &out]).expect("ok")
    else {
        panic!("train");
    };
    assert_eq!(s.lambdas, LAMBDA_GRID.to_vec());
    assert_eq!(s.folds, 5);
    let Settings::Train(s) = validate(&[
        "train", "-m", "M", "--train", "t.fa", "-o", &out, "--lambda", "0.5", "--folds", "3",
    ])
    .expect("ok") else {
        panic!("train");
    };
    assert_eq!((s.lambdas, s.folds), (vec![0.5], 3));

    std::fs::write(tmp.path().join("file"), "x").expect("write");
    let dir = tmp.path().to_string_lossy();
    refused(
        &["train", "-m", "M", "--train", "t.fa", "-o", &dir],
        "not empty",
    );
    refused(
        &[
            "train", "-m", "M", "--train", "t.fa", "-o", &out, "--device", "cuda:all",
        ],
        "runs on one device",
    );
    // -o is a folder and required.
    assert!(validate(&["train", "-m", "M", "--train", "t.fa"]).is_err());
}

#[test]
fn eval() {
    let Settings::Eval(s) = validate(&["eval", "-m", "M", "--data", "d.fa"]).expect("ok") else {
        panic!("eval");
    };
    assert_eq!(s.output, PathBuf::from("-"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("d.fa");
    std::fs::write(&data, ">a label=x\nACGT\n").expect("write");
    let data = data.to_string_lossy();
    refused(
        &["eval", "-m", "M", "--data", &data, "--plot", &data],
        "same file as input",
    );
    refused(
        &["eval", "-m", "M", "--data", "d.fa", "--device", "cuda:0,1"],
        "runs on one device",
    );
}

/// `--layer` of train and predict, checked against the model (and for
/// predict its head) before any work.
#[test]
fn layers() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test-data/models");
    let (lm, cls) = (format!("{data}/ps-tiny"), format!("{data}/ps-tiny-cls"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("head").to_string_lossy().into_owned();
    let train = |layer: &str| {
        validate(&[
            "train", "-m", &lm, "--train", "t.fa", "-o", &out, "--layer", layer,
        ])
        .map(|s| match s {
            Settings::Train(s) => s.layers,
            _ => panic!("train"),
        })
    };
    assert_eq!(train("2").expect("ok"), None, "n_layer: the final layer");
    assert_eq!(train("2,0").expect("ok"), Some(vec![0, 2]));
    refused(
        &[
            "train", "-m", &lm, "--train", "t.fa", "-o", &out, "--layer", "3",
        ],
        "--layer 3: ",
    );

    let predict = |layer: &str| {
        validate(&["predict", "-m", &cls, "--layer", layer, "in.fa"]).map(|s| match s {
            Settings::Predict(s) => s.layers,
            _ => panic!("predict"),
        })
    };
    assert_eq!(predict("2").expect("ok"), None);
    assert_eq!(predict("0").expect("ok"), Some(vec![0]));
    refused(
        &["predict", "-m", &cls, "--layer", "0,1", "in.fa"],
        "one layer",
    );
    refused(
        &["predict", "-m", &cls, "--layer", "9", "in.fa"],
        "n_layer 2",
    );

    // A head that records its layers takes those alone.
    let head = tmp.path().join("layered");
    std::fs::create_dir(&head).expect("mkdir");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{cls}/config.json")).expect("read config"))
            .expect("JSON");
    cfg["strand_head_layers"] = serde_json::json!([0, 1]);
    std::fs::write(head.join("config.json"), cfg.to_string()).expect("write");
    let head = head.to_string_lossy();
    let Settings::Predict(s) =
        validate(&["predict", "-m", &head, "--layer", "1,0", "in.fa"]).expect("ok")
    else {
        panic!("predict");
    };
    assert_eq!(s.layers, Some(vec![0, 1]));
    refused(
        &["predict", "-m", &head, "--layer", "1", "in.fa"],
        "trained on layer(s) 0,1",
    );
    refused(
        &["predict", "-m", &head, "--layer", "2", "in.fa"],
        "give --layer 0,1",
    );
}
