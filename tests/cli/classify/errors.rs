//! Bad inputs and usage errors: one line on stderr naming the file and the
//! record, exit code 1 (2 for usage), and nothing left behind.

use super::*;
use crate::util::{dir_entries, Output};

/// Runs `cmd`, which must fail at run time: exit 1, nothing on stdout, one
/// line on stderr starting `strand-classify: ` and containing every
/// needle. Returns the message.
fn fails(cmd: Cmd, needles: &[&str]) -> String {
    let res: Output = cmd.run().exits(1);
    let stderr = &res.stderr;
    assert_eq!(
        stderr.lines().count(),
        1,
        "`{}`: one line on stderr, got:\n{stderr}",
        res.cmdline
    );
    assert!(stderr.starts_with("strand-classify: "), "{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "`{}`: {needle:?} not in:\n{stderr}",
            res.cmdline
        );
    }
    assert!(res.stdout.is_empty(), "stdout: {} bytes", res.stdout.len());
    stderr.trim_end().to_owned()
}

/// Two labels, a few records each, plain ACGT.
fn small_fasta(labels: &[&str]) -> String {
    (0..12)
        .map(|i| {
            format!(
                ">s{i} label={}\nACGTTGCA{}\n",
                labels[i % labels.len()],
                "ACG".repeat(i + 1)
            )
        })
        .collect()
}

fn path_in(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write input");
    p.to_string_lossy().into_owned()
}

/// A failed `train` leaves neither the output folder nor its temporary.
fn train_fails(dir: &Path, args: &[&str], needles: &[&str]) -> String {
    let out = dir.join("head");
    let before = dir_entries(dir);
    let msg = fails(
        classify("train")
            .args(["-m", &model("ps-tiny")])
            .args(args)
            .args(["-o", &out.to_string_lossy()]),
        needles,
    );
    assert_eq!(dir_entries(dir), before, "nothing left behind");
    msg
}

#[test]
fn train_record_without_label() {
    let dir = tempdir();
    let fa = path_in(dir.path(), "t.fa", &small_fasta(&["a", "b"]));
    let labels: String = (0..12)
        .filter(|&i| i != 7)
        .map(|i| format!("s{i}\t{}\n", ["a", "b"][i % 2]))
        .collect();
    let tsv = path_in(dir.path(), "l.tsv", &labels);
    let msg = train_fails(
        dir.path(),
        &["--train", &fa, "--labels", &tsv],
        &["t.fa: record 8 (\"s7\"): no label in", "l.tsv"],
    );
    assert!(!msg.contains('\n'));
    // Without --labels the header must say label=.
    let bare = path_in(dir.path(), "bare.fa", ">x\nACGT\n>y\nACGT\n");
    train_fails(
        dir.path(),
        &["--train", &bare],
        &["bare.fa: record 1 (\"x\"): no label", "label="],
    );
}

#[test]
fn train_single_class() {
    let dir = tempdir();
    let fa = path_in(dir.path(), "t.fa", &small_fasta(&["only"]));
    train_fails(
        dir.path(),
        &["--train", &fa],
        &["t.fa", "\"only\"", "at least two labels"],
    );
}

#[test]
fn train_unknown_label_in_valid() {
    let dir = tempdir();
    let fa = path_in(dir.path(), "t.fa", &small_fasta(&["a", "b"]));
    let valid = path_in(dir.path(), "v.fa", ">v1 label=a\nACGT\n>v2 label=c\nACGT\n");
    train_fails(
        dir.path(),
        &["--train", &fa, "--valid", &valid, "--folds", "2"],
        &["v.fa: record 2 (\"v2\"): unknown label \"c\"", "a, b"],
    );
}

#[test]
fn train_too_few_records_for_the_folds() {
    let dir = tempdir();
    let fa = path_in(dir.path(), "t.fa", &small_fasta(&["a", "b", "b", "b"]));
    train_fails(
        dir.path(),
        &["--train", &fa],
        &["label \"a\" has 3 record(s)", "--folds"],
    );
}

#[test]
fn train_backbone_that_is_not_caduceus() {
    let dir = tempdir();
    let fa = path_in(dir.path(), "t.fa", &small_fasta(&["a", "b"]));
    let bert = dir.path().join("bert");
    std::fs::create_dir(&bert).unwrap();
    std::fs::write(
        bert.join("config.json"),
        r#"{"model_type": "bert", "architectures": ["BertModel"]}"#,
    )
    .unwrap();
    fails(
        classify("train").args([
            "-m",
            &bert.to_string_lossy(),
            "--train",
            &fa,
            "-o",
            &dir.path().join("h").to_string_lossy(),
        ]),
        &["config.json", "model_type is \"bert\"", "Caduceus"],
    );
    assert!(!dir.path().join("h").exists());
}

#[test]
fn train_output_folder_not_empty() {
    let dir = tempdir();
    let fa = path_in(dir.path(), "t.fa", &small_fasta(&["a", "b"]));
    let out = dir.path().join("head");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    fails(
        classify("train").args([
            "-m",
            &model("ps-tiny"),
            "--train",
            &fa,
            "-o",
            &out.to_string_lossy(),
        ]),
        &["head: folder exists and is not empty"],
    );
    assert_eq!(dir_entries(&out), ["keep.txt"]);
}

#[test]
fn bad_labels_table() {
    let dir = tempdir();
    let fa = path_in(dir.path(), "t.fa", &small_fasta(&["a", "b"]));
    let tsv = path_in(dir.path(), "l.tsv", "s0\ta\ns1 b\n");
    train_fails(
        dir.path(),
        &["--train", &fa, "--labels", &tsv],
        &["l.tsv: line 2: expected 2 tab-separated fields"],
    );
}

#[test]
fn predict_with_a_model_that_is_not_a_classifier() {
    fails(
        classify("predict").args(["-m", &model("ps-tiny"), &sequences()]),
        &[
            "test-data/models/ps-tiny: not a sequence-classification checkpoint",
            "strand-classify train",
        ],
    );
}

#[test]
fn eval_label_the_model_does_not_know() {
    let dir = tempdir();
    let fa = path_in(
        dir.path(),
        "e.fa",
        ">e1 label=LABEL_1\nACGT\n>e2 label=LABEL_9\nACGT\n",
    );
    fails(
        classify("eval").args(["-m", &model("ph-tiny-cls"), "--data", &fa]),
        &[
            "e.fa: record 2 (\"e2\"): unknown label \"LABEL_9\"",
            "LABEL_0, LABEL_1, LABEL_2",
        ],
    );
}

#[test]
fn predict_bad_record_leaves_no_output() {
    let dir = tempdir();
    let fa = path_in(dir.path(), "p.fa", ">p1\nACGT\n>p2\n\n>p3\nAC\n");
    let out = dir.path().join("out.tsv");
    fails(
        classify("predict").args([
            "-m",
            &model("ps-tiny-cls"),
            "-o",
            &out.to_string_lossy(),
            &fa,
        ]),
        &["p.fa: record 2 (\"p2\"): empty sequence"],
    );
    assert_eq!(dir_entries(dir.path()), ["p.fa"]);
}

#[test]
fn usage_errors_exit_2() {
    let (m, seqs) = (model("ps-tiny-cls"), sequences());
    let cases: [(&[&str], &str); 8] = [
        (&["predict", "-m", &m, "--shard", "0/2", &seqs], "--shard"),
        (&["predict", "-m", &m, "--shard", "3/2", &seqs], "--shard"),
        (&["predict", &seqs], "--model"),
        (
            &[
                "train", "-m", &m, "--train", &seqs, "-o", "x", "--folds", "1",
            ],
            "--folds",
        ),
        (
            &[
                "train", "-m", &m, "--train", &seqs, "-o", "x", "--lambda", "-1",
            ],
            "not a positive number",
        ),
        (
            &[
                "train", "-m", &m, "--train", &seqs, "-o", "x", "--lambda", "0",
            ],
            "--lambda",
        ),
        (&["train", "-m", &m, "-o", "x"], "--train"),
        (&["fit", "-m", &m], "fit"),
    ];
    for (args, needle) in cases {
        let res = Cmd::new(BIN).args(args).run().exits(2);
        assert!(res.stderr.contains(needle), "{args:?}: {}", res.stderr);
        assert!(res.stdout.is_empty());
    }
    assert!(!root().join("x").exists());
}
