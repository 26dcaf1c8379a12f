//! `strand-classify --layer`: a head fitted on other layers' pooled states
//! (a list: concatenated) records them, and predict and eval read them; its
//! logits are the head on what `strand-embed --layer N --pool mean
//! --rc-average` stores; `predict --layer n_layer` is the default output;
//! layers the model or the head cannot take are refused before any work.

use std::path::Path;

use super::{
    classify, fasta, json, metric, model, motif_task, predictions_of, sequences, write, Table,
    FIXTURE_LABELS,
};
use crate::util::{allclose, assert_no_failures, tempdir, Cmd, SafeFile, Tol};

const EMBED: &str = env!("CARGO_BIN_EXE_strand-embed");

/// Trains a head on `backbone`'s `layers` with a fixed penalty.
fn train(dir: &Path, backbone: &str, layers: &str, train_fa: &str, valid_fa: &str) -> String {
    let head = dir.join(format!("head-{backbone}-{layers}"));
    let head = head.to_string_lossy().into_owned();
    classify("train")
        .args(["-q", "-m", &model(backbone), "--layer", layers])
        .args(["--train", train_fa, "--valid", valid_fa, "--lambda", "0.01"])
        .args(["--folds", "3", "-o", &head])
        .run()
        .ok();
    head
}

fn predict(head: &str, extra: &[&str], input: &str) -> Table {
    let out = classify("predict")
        .args(["-m", head])
        .args(extra)
        .args([input])
        .run()
        .ok();
    Table::parse(&out.stdout)
}

fn joined(l: &[usize]) -> String {
    l.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn train_on_layers_records_them_for_predict_and_eval() {
    let dir = tempdir();
    let train_fa = write(dir.path(), "train.fa", &fasta(&motif_task(7, 20), true));
    let valid_fa = write(dir.path(), "valid.fa", &fasta(&motif_task(8, 10), true));
    for (backbone, layers, list, width) in [
        ("ps-tiny", "1", vec![1], 24),
        ("ph-tiny", "2,0", vec![0, 2], 48),
    ] {
        let head = train(dir.path(), backbone, layers, &train_fa, &valid_fa);
        let cfg = json(&Path::new(&head).join("config.json"));
        assert_eq!(cfg["strand_head_layers"], serde_json::json!(list));
        let score = SafeFile::read(&Path::new(&head).join("model.safetensors"));
        assert_eq!(score.get("score.weight").shape, [3, width], "{backbone}");

        // predict and eval read the recorded layers: the training-time
        // predictions and metrics come back exactly.
        let pred = predict(&head, &[], &valid_fa);
        assert_eq!(
            pred.rows,
            predictions_of(Path::new(&head), "valid"),
            "{head}"
        );
        let same = predict(&head, &["--layer", layers], &valid_fa);
        assert_eq!(same.rows, pred.rows, "{head}: --layer as trained");
        let ev = classify("eval")
            .args(["-m", &head, "--data", &valid_fa])
            .run()
            .ok();
        let m = Table::read(&Path::new(&head).join("metrics.tsv"));
        assert_eq!(
            metric(&Table::parse(&ev.stdout), "eval", "log_loss", "."),
            metric(&m, "valid", "log_loss", ".")
        );

        // Another layer than the head's is refused, naming both.
        let e = classify("predict")
            .args(["-m", &head, "--layer", "1,2", &valid_fa])
            .run()
            .exits(1);
        let line = e.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.contains("--layer 1,2") && line.contains(&format!("--layer {}", joined(&list))),
            "{line}"
        );
    }
}

/// The head's logits are its weights on the strand-averaged mean of the
/// layer, as strand-embed stores it (whose layers match the goldens).
#[test]
fn layer_head_logits_are_the_head_on_embedded_layers() {
    let dir = tempdir();
    let train_fa = write(dir.path(), "train.fa", &fasta(&motif_task(9, 10), true));
    let head = train(dir.path(), "ps-tiny", "1", &train_fa, &train_fa);
    let logits = predict(&head, &["--logits"], &sequences());
    let emb = dir.path().join("l1.safetensors");
    Cmd::new(EMBED)
        .args(["-m", &model("ps-tiny"), "--device", "cpu", "--layer", "1"])
        .args([
            "--pool",
            "mean",
            "--rc-average",
            "-o",
            &emb.to_string_lossy(),
        ])
        .args([sequences()])
        .run()
        .ok();
    let emb = SafeFile::read(&emb);
    let w = SafeFile::read(&Path::new(&head).join("model.safetensors"))
        .get("score.weight")
        .f32();
    let labels = ["ebox", "shuffled", "tata"];
    let cfg = json(&Path::new(&head).join("config.json"));
    assert_eq!(
        cfg["id2label"],
        serde_json::json!({"0": "ebox", "1": "shuffled", "2": "tata"})
    );
    let mut failures = Vec::new();
    for (row, got) in logits.rows.iter().zip(logits.values(&labels)) {
        let x = emb.get(&format!("{}.layer1", row[0])).f32();
        let want: Vec<f32> = w
            .chunks_exact(24)
            .map(|wc| wc.iter().zip(&x).map(|(a, b)| a * b).sum())
            .collect();
        let tol = Tol {
            atol: 1e-5,
            rtol: 1e-5,
        };
        failures.extend(allclose(&row[0], &[3], &got, &want, tol));
    }
    assert_no_failures(&failures);
}

#[test]
fn predict_layer_n_layer_is_the_default_and_bad_layers_are_refused() {
    let cls = model("ps-tiny-cls");
    let seqs = sequences();
    let run = |extra: &[&str]| {
        classify("predict")
            .args(["-m", &cls, "--logits"])
            .args(extra)
            .args([&seqs])
            .run()
    };
    let plain = run(&[]).ok().stdout;
    assert_eq!(run(&["--layer", "2"]).ok().stdout, plain, "--layer n_layer");
    // The reference head on another single layer: allowed, and different.
    let other = Table::parse(&run(&["--layer", "1"]).ok().stdout);
    assert_ne!(
        other.values(&FIXTURE_LABELS),
        Table::parse(&plain).values(&FIXTURE_LABELS)
    );
    // A list needs a head trained on it; a layer past n_layer is refused.
    let e = run(&["--layer", "1,2"]).exits(1);
    assert!(
        e.stderr.contains("reads one layer (24 values)"),
        "{}",
        e.stderr
    );
    let e = run(&["--layer", "3"]).exits(1);
    assert!(
        e.stderr.contains("--layer 3") && e.stderr.contains("n_layer 2"),
        "{}",
        e.stderr
    );
    let dir = tempdir();
    let e = classify("train")
        .args(["-m", &model("ps-tiny"), "--layer", "0,7", "--train", &seqs])
        .args(["-o", &dir.path().join("h").to_string_lossy()])
        .run()
        .exits(1);
    assert!(
        e.stderr.contains("--layer 0,7") && e.stderr.contains("n_layer 2"),
        "{}",
        e.stderr
    );
    assert!(!dir.path().join("h").exists());
}
