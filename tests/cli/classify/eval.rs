//! strand-classify eval: metrics, confusion matrix and plot.

use super::*;

#[test]
fn eval_writes_metrics_confusion_and_plot() {
    let dir = tempdir();
    let m = model("ph-tiny-cls");
    // Labels chosen so some predictions are right and some wrong.
    let ids: Vec<String> = fasta_records(&root().join(sequences()))
        .into_iter()
        .map(|r| r.0)
        .collect();
    let truth = [
        "LABEL_0", "LABEL_1", "LABEL_0", "LABEL_2", "LABEL_0", "LABEL_0",
    ];
    let tsv: String = ids
        .iter()
        .zip(truth)
        .map(|(id, l)| format!("{id}\t{l}\n"))
        .collect();
    let labels = dir.path().join("labels.tsv");
    std::fs::write(&labels, format!("name\tlabel\n{tsv}")).expect("write labels");
    let (metrics, confusion, plot) = (
        dir.path().join("m.tsv"),
        dir.path().join("c.tsv"),
        dir.path().join("c.png"),
    );
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let res = classify("eval")
        .args(["-m", &m, "--data", &sequences(), "--labels", &path(&labels)])
        .args([
            "-o",
            &path(&metrics),
            "--confusion",
            &path(&confusion),
            "--plot",
            &path(&plot),
        ])
        .run()
        .ok();
    assert!(res.stdout.is_empty());
    assert!(res.stderr.contains("accuracy"), "{}", res.stderr);

    let preds = Table::parse(&predicted(&m, &[])).column("pred");
    let right = preds.iter().zip(truth).filter(|(p, t)| *p == t).count();
    assert!(
        right > 0 && right < ids.len(),
        "the labels make a non-trivial test ({right} right)"
    );

    let table = Table::read(&metrics);
    assert_eq!(table.header, ["split", "metric", "label", "value"]);
    let get = |metric: &str, label: &str| -> String {
        table
            .rows
            .iter()
            .find(|r| r[1] == metric && r[2] == label)
            .unwrap_or_else(|| panic!("no row {metric} {label}"))[3]
            .clone()
    };
    assert!(table.rows.iter().all(|r| r[0] == "eval"));
    assert_eq!(get("n", "."), "6");
    let acc: f64 = get("accuracy", ".").parse().unwrap();
    assert!((acc - right as f64 / 6.0).abs() < 1e-6, "accuracy {acc}");
    assert_eq!(get("support", "LABEL_0"), "4");
    // Every label occurs at least once and not in every record, so every
    // AUROC is defined.
    for l in FIXTURE_LABELS {
        let recall: f64 = get("recall", l).parse().unwrap();
        let tp = preds
            .iter()
            .zip(truth)
            .filter(|(p, t)| *p == l && *t == l)
            .count() as f64;
        let support = truth.iter().filter(|&&t| t == l).count() as f64;
        assert!((recall - tp / support).abs() < 1e-6, "{l}: recall {recall}");
        let auroc: f64 = get("auroc", l).parse().unwrap();
        assert!((0.0..=1.0).contains(&auroc));
    }

    let c = Table::read(&confusion);
    assert_eq!(
        c.header,
        ["true\\predicted", "LABEL_0", "LABEL_1", "LABEL_2"]
    );
    let mut total = 0;
    for (t, row) in c.rows.iter().enumerate() {
        assert_eq!(row[0], FIXTURE_LABELS[t]);
        for (p, count) in row[1..].iter().enumerate() {
            let n: usize = count.parse().unwrap();
            let want = preds
                .iter()
                .zip(truth)
                .filter(|(pr, tr)| *tr == FIXTURE_LABELS[t] && pr.as_str() == FIXTURE_LABELS[p])
                .count();
            assert_eq!(n, want, "confusion[{t}][{p}]");
            total += n;
        }
    }
    assert_eq!(total, 6);

    let png = std::fs::read(&plot).expect("read plot");
    let mut reader = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    assert!(
        info.width >= 200 && info.height >= 200,
        "{}x{}",
        info.width,
        info.height
    );

    // Metrics to stdout by default, identical to the file.
    let stdout = classify("eval")
        .args([
            "-q",
            "-m",
            &m,
            "--data",
            &sequences(),
            "--labels",
            &path(&labels),
        ])
        .run()
        .ok();
    assert_eq!(stdout.stdout, std::fs::read(&metrics).unwrap());
    assert!(stdout.stderr.is_empty(), "-q: {}", stdout.stderr);
}
