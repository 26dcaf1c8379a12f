//! `strand-classify train` on a synthetic task: planted motifs against
//! shuffled sequences of the same composition, with the tiny fixture
//! backbones.

use std::path::{Path, PathBuf};

use strand_core::model::synthetic::Rng;

use super::*;
use crate::util::dir_entries;

mod layers;

/// Motif of each planted class.
const MOTIFS: [(&str, &str); 2] = [("ebox", "CACGTGACGTCA"), ("tata", "TATAAAAGGCGC")];
const LENGTH: usize = 80;

/// `6 * scale` records `(id, label, sequence)`: random sequences with a
/// motif planted at a random place (`ebox`, `tata`), and such sequences
/// with their bases shuffled (`shuffled`: same composition, motif gone),
/// in the ratio 2 : 1 : 3, so the classes' priors differ and the bias-free
/// head has to learn them.
fn motif_task(seed: u64, scale: usize) -> Vec<(String, &'static str, String)> {
    let plan = [0, 0, 1, 2, 2, 2];
    let mut rng = Rng::new(seed);
    let mut pick = |n: usize| (rng.next_u64() % n as u64) as usize;
    (0..6 * scale)
        .map(|i| {
            let class = plan[i % plan.len()];
            let motif = MOTIFS[if class == 2 { i % 2 } else { class }].1.as_bytes();
            let mut seq: Vec<u8> = (0..LENGTH).map(|_| b"ACGT"[pick(4)]).collect();
            let at = pick(LENGTH - motif.len());
            seq[at..at + motif.len()].copy_from_slice(motif);
            let label = match class {
                2 => {
                    for j in (1..seq.len()).rev() {
                        seq.swap(j, pick(j + 1));
                    }
                    "shuffled"
                }
                c => MOTIFS[c].0,
            };
            (
                format!("r{seed}_{i}"),
                label,
                String::from_utf8(seq).expect("ACGT"),
            )
        })
        .collect()
}

/// FASTA text; with `header_labels`, each header carries `label=`.
fn fasta(records: &[(String, &str, String)], header_labels: bool) -> String {
    records
        .iter()
        .map(|(id, label, seq)| {
            let desc = if header_labels {
                format!(" len={} label={label}", seq.len())
            } else {
                String::new()
            };
            format!(">{id}{desc}\n{seq}\n")
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test input");
    p.to_string_lossy().into_owned()
}

/// The `value` of metrics row (split, metric, label).
fn metric(table: &Table, split: &str, metric: &str, label: &str) -> String {
    table
        .rows
        .iter()
        .find(|r| r[0] == split && r[1] == metric && r[2] == label)
        .unwrap_or_else(|| panic!("no metrics row {split} {metric} {label}"))[3]
        .clone()
}

/// The rows of `predictions.tsv` of `split`, cut to predict's columns.
fn predictions_of(head: &Path, split: &str) -> Vec<Vec<String>> {
    let t = Table::read(&head.join("predictions.tsv"));
    let (s, l) = (t.col("split"), t.col("label"));
    t.rows
        .iter()
        .filter(|r| r[s] == split)
        .map(|r| {
            r.iter()
                .enumerate()
                .filter(|&(i, _)| i != s && i != l)
                .map(|(_, v)| v.clone())
                .collect()
        })
        .collect()
}

/// Tensors of a checkpoint by name: (dtype, shape, bytes).
fn tensors(dir: &Path) -> BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> {
    SafeFile::read(&dir.join("model.safetensors"))
        .tensors
        .into_iter()
        .map(|t| (t.name, (t.dtype, t.shape, t.bytes)))
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read JSON")).expect("valid JSON")
}

#[test]
fn train_learns_planted_motifs_and_writes_a_reference_checkpoint() {
    let dir = tempdir();
    let train = motif_task(1, 100);
    let valid = motif_task(2, 50);
    let train_fa = write(dir.path(), "train.fa", &fasta(&train, true));
    let valid_fa = write(dir.path(), "valid.fa", &fasta(&valid, true));
    let head = dir.path().join("head");
    let head_s = head.to_string_lossy().into_owned();
    let res = classify("train")
        .args([
            "-m",
            &model("ps-tiny"),
            "--train",
            &train_fa,
            "--valid",
            &valid_fa,
            "-o",
            &head_s,
        ])
        .run()
        .ok();
    assert!(
        res.stderr.contains("5-fold cross-validation chose lambda"),
        "{}",
        res.stderr
    );
    assert_eq!(
        dir_entries(dir.path()),
        ["head", "train.fa", "valid.fa"],
        "no temporary folder left"
    );
    assert_eq!(
        dir_entries(&head),
        [
            "config.json",
            "cv.tsv",
            "metrics.tsv",
            "model.safetensors",
            "predictions.tsv"
        ]
    );

    // Held-out quality: chance is 0.5 (always "shuffled").
    let m = Table::read(&head.join("metrics.tsv"));
    for split in ["cv", "valid"] {
        let acc: f64 = metric(&m, split, "accuracy", ".").parse().unwrap();
        assert!(acc >= 0.65, "{split} accuracy {acc}");
        for label in ["ebox", "shuffled", "tata"] {
            let auroc: f64 = metric(&m, split, "auroc", label).parse().unwrap();
            assert!(auroc >= 0.8, "{split} AUROC of {label}: {auroc}");
        }
    }
    assert_eq!(metric(&m, "valid", "n", "."), "300");
    assert_eq!(metric(&m, "train", "support", "tata"), "100");
    let cv = Table::read(&head.join("cv.tsv"));
    assert_eq!(cv.rows.len(), 8, "the whole penalty grid");
    let chosen: Vec<String> = cv
        .rows
        .iter()
        .filter(|r| r[cv.col("selected")] == "true")
        .map(|r| r[cv.col("lambda")].clone())
        .collect();
    assert_eq!(chosen, [metric(&m, "fit", "lambda", ".")]);

    // The written head, reloaded by predict, gives exactly the
    // training-time predictions, and eval the training-time metrics.
    let pred = Table::parse(
        &classify("predict")
            .args(["-m", &head_s, &valid_fa])
            .run()
            .ok()
            .stdout,
    );
    assert_eq!(
        pred.header,
        ["name", "length", "ebox", "shuffled", "tata", "pred"]
    );
    assert_eq!(pred.rows, predictions_of(&head, "valid"));
    let ev = Table::parse(
        &classify("eval")
            .args(["-m", &head_s, "--data", &valid_fa])
            .run()
            .ok()
            .stdout,
    );
    for (metric_name, label) in [
        ("accuracy", "."),
        ("macro_f1", "."),
        ("log_loss", "."),
        ("auroc", "tata"),
    ] {
        assert_eq!(
            metric(&ev, "eval", metric_name, label),
            metric(&m, "valid", metric_name, label)
        );
    }

    // Class balance without a bias: on the training data the mean
    // predicted probability of each class is its frequency (the fit's
    // intercept-like coordinate varies by a few percent, hence 0.02).
    let on_train = Table::parse(
        &classify("predict")
            .args(["-m", &head_s, &train_fa])
            .run()
            .ok()
            .stdout,
    );
    for (label, freq) in [
        ("ebox", 2.0 / 6.0),
        ("shuffled", 3.0 / 6.0),
        ("tata", 1.0 / 6.0),
    ] {
        let c = on_train.col(label);
        let mean = on_train
            .rows
            .iter()
            .map(|r| r[c].parse::<f64>().unwrap())
            .sum::<f64>()
            / 600.0;
        assert!(
            (mean - freq).abs() < 0.02,
            "{label}: mean probability {mean}, frequency {freq}"
        );
    }

    // The checkpoint is what Hugging Face writes for this backbone: the
    // fixture classifier shares it, so config and tensor layout must match
    // that one's but for the labels and the head's values.
    let cls = root().join(model("ps-tiny-cls"));
    let mut got = json(&head.join("config.json"));
    let mut want = json(&cls.join("config.json"));
    assert_eq!(
        got["id2label"],
        serde_json::json!({"0": "ebox", "1": "shuffled", "2": "tata"})
    );
    assert_eq!(
        got["label2id"],
        serde_json::json!({"ebox": 0, "shuffled": 1, "tata": 2})
    );
    for c in [&mut got, &mut want] {
        let o = c.as_object_mut().unwrap();
        o.remove("id2label");
        o.remove("label2id");
    }
    assert_eq!(got, want);
    let (written, fixture) = (tensors(&head), tensors(&cls));
    let layout = |t: &BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>| {
        t.iter()
            .map(|(k, v)| (k.clone(), v.0, v.1.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(layout(&written), layout(&fixture));
    let backbone = tensors(&root().join(model("ps-tiny")));
    for (name, t) in &written {
        if name != "score.weight" {
            assert_eq!(t.2, backbone[name].2, "{name} is copied from the backbone");
        }
    }
    let meta = SafeFile::read(&head.join("model.safetensors")).metadata;
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
}

/// PH backbone, labels from a table, reverse-complement averaging, a
/// given penalty, 3 folds, and training data on stdin.
#[test]
fn train_ph_conjoin_with_a_labels_table() {
    let dir = tempdir();
    let train = motif_task(3, 30);
    let valid = motif_task(4, 10);
    let table: String = train
        .iter()
        .chain(&valid)
        .map(|(id, l, _)| format!("{id}\t{l}\n"))
        .collect();
    let labels = write(dir.path(), "labels.tsv", &table);
    let valid_fa = write(dir.path(), "valid.fa", &fasta(&valid, false));
    let head = dir.path().join("head");
    let head_s = head.to_string_lossy().into_owned();
    classify("train")
        .args([
            "-q",
            "-m",
            &model("ph-tiny"),
            "--train",
            "-",
            "--valid",
            &valid_fa,
            "--labels",
            &labels,
        ])
        .args([
            "--conjoin",
            "--lambda",
            "0.01",
            "--folds",
            "3",
            "-o",
            &head_s,
        ])
        .stdin(fasta(&train, false).into_bytes())
        .run()
        .ok();
    let cv = Table::read(&head.join("cv.tsv"));
    assert_eq!(cv.column("lambda"), ["0.01"]);
    assert_eq!(
        metric(&Table::read(&head.join("metrics.tsv")), "fit", "folds", "."),
        "3"
    );

    let conj = Table::parse(
        &classify("predict")
            .args(["-m", &head_s, "--conjoin", &valid_fa])
            .run()
            .ok()
            .stdout,
    );
    assert_eq!(conj.rows, predictions_of(&head, "valid"));
    let plain = Table::parse(
        &classify("predict")
            .args(["-m", &head_s, &valid_fa])
            .run()
            .ok()
            .stdout,
    );
    assert_ne!(plain.rows, conj.rows, "conjoin matters for a PH model");
}

/// Copies `models/<name>` to `<dir>/<name>`, applying `edit` to its
/// tensors and config.
fn edited_model(
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut SafeFile, &mut serde_json::Value),
) -> PathBuf {
    let src = root().join(model(name));
    let dst = dir.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    let mut st = SafeFile::read(&src.join("model.safetensors"));
    let mut cfg = json(&src.join("config.json"));
    edit(&mut st, &mut cfg);
    st.write(&dst.join("model.safetensors"));
    std::fs::write(
        dst.join("config.json"),
        serde_json::to_vec_pretty(&cfg).unwrap(),
    )
    .unwrap();
    dst
}

/// A bare `Caduceus` backbone (keys from `backbone.`) and a classifier
/// (whose head is replaced) both give the reference classifier layout.
#[test]
fn train_accepts_bare_backbones_and_classifiers() {
    let dir = tempdir();
    let data: Vec<_> = motif_task(5, 10)
        .into_iter()
        .filter(|r| r.1 != "tata")
        .collect();
    let train_fa = write(dir.path(), "train.fa", &fasta(&data, true));
    let bare = edited_model(dir.path(), "ps-tiny", |st, cfg| {
        st.tensors
            .retain(|t| t.name.starts_with("caduceus.backbone."));
        for t in &mut st.tensors {
            t.name = t.name.trim_start_matches("caduceus.").to_string();
        }
        cfg["architectures"] = serde_json::json!(["Caduceus"]);
    });
    // Remote code and tokenizer files travel with the checkpoint.
    std::fs::write(bare.join("modeling_caduceus.py"), "# code\n").unwrap();
    std::fs::write(bare.join("tokenizer_config.json"), "{}").unwrap();
    let fixture = tensors(&root().join(model("ps-tiny-cls")));
    for (i, backbone) in [bare.to_string_lossy().into_owned(), model("ps-tiny-cls")]
        .iter()
        .enumerate()
    {
        let head = dir.path().join(format!("head{i}"));
        classify("train")
            .args([
                "-q", "-m", backbone, "--train", &train_fa, "--folds", "2", "--lambda", "0.1",
            ])
            .args(["-o", &head.to_string_lossy()])
            .run()
            .ok();
        let written = tensors(&head);
        assert_eq!(
            written.keys().collect::<Vec<_>>(),
            fixture.keys().collect::<Vec<_>>(),
            "{backbone}"
        );
        assert_eq!(written["score.weight"].1, [2, 24], "{backbone}: two labels");
        assert_eq!(
            json(&head.join("config.json"))["architectures"],
            serde_json::json!(["CaduceusForSequenceClassification"])
        );
        let files = dir_entries(&head);
        let copied = files.iter().any(|f| f == "modeling_caduceus.py")
            && files.iter().any(|f| f == "tokenizer_config.json");
        assert_eq!(
            copied,
            i == 0,
            "{backbone}: support files copied when present: {files:?}"
        );
    }
}
