//! `strand-classify` end to end: `predict` against the reference's
//! classification logits, input routes and shards; `eval` tables and plot;
//! `train` (in `train.rs`) on a planted-motif task; failures (in
//! `errors.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::{
    allclose, assert_no_failures, fasta_records, gzip, root, tempdir, test_data, tolerance, Cmd,
    SafeFile,
};

mod errors;
mod eval;
mod issue15;
mod train;

const BIN: &str = env!("CARGO_BIN_EXE_strand-classify");

/// `strand-classify` on the CPU (so no "device auto" note on stderr).
fn classify(sub: &str) -> Cmd {
    Cmd::new(BIN).args([sub, "--device", "cpu"])
}

/// `test-data/models/<name>`, relative to the workspace root.
fn model(name: &str) -> String {
    test_data(&format!("models/{name}"))
}

fn sequences() -> String {
    test_data("sequences.fa")
}

/// A parsed TSV table: header and rows, every row as long as the header.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn parse(bytes: &[u8]) -> Table {
        let text = std::str::from_utf8(bytes).expect("UTF-8 table");
        assert!(text.ends_with('\n'), "table ends with a newline");
        let mut lines = text
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect::<Vec<_>>());
        let header = lines.next().expect("a header line");
        let rows: Vec<Vec<String>> = lines.collect();
        for r in &rows {
            assert_eq!(r.len(), header.len(), "row {r:?} vs header {header:?}");
        }
        Table { header, rows }
    }

    fn read(path: &Path) -> Table {
        Table::parse(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }

    fn col(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.header))
    }

    /// The values of the label columns (everything between `length` or
    /// `label` and `pred`) of each row, as f32.
    fn values(&self, labels: &[&str]) -> Vec<Vec<f32>> {
        let cols: Vec<usize> = labels.iter().map(|l| self.col(l)).collect();
        self.rows
            .iter()
            .map(|r| {
                cols.iter()
                    .map(|&c| r[c].parse().expect("a number"))
                    .collect()
            })
            .collect()
    }

    fn column(&self, name: &str) -> Vec<String> {
        let c = self.col(name);
        self.rows.iter().map(|r| r[c].clone()).collect()
    }
}

const FIXTURE_LABELS: [&str; 3] = ["LABEL_0", "LABEL_1", "LABEL_2"];

/// `predict --logits --special-tokens` (the reference's input) on the
/// fixture classifier of `family` against golden `<record>.<kind>`.
fn predict_matches(family: &str, extra: &[&str], kind: &str) {
    let m = model(&format!("{family}-cls"));
    let out = classify("predict")
        .args(["-m", &m, "--logits", "--special-tokens"])
        .args(extra)
        .arg_seq()
        .run()
        .ok();
    let table = Table::parse(&out.stdout);
    let mut header = vec!["name", "length"];
    header.extend(FIXTURE_LABELS);
    header.push("pred");
    assert_eq!(table.header, header);
    let records = fasta_records(&root().join(sequences()));
    assert_eq!(
        table.column("name"),
        records.iter().map(|r| r.0.clone()).collect::<Vec<_>>()
    );
    let lengths: Vec<String> = records.iter().map(|r| r.2.len().to_string()).collect();
    assert_eq!(table.column("length"), lengths);
    let gold = SafeFile::read(&root().join(format!("test-data/goldens/{family}.safetensors")));
    let tol = tolerance(kind);
    let mut failures = Vec::new();
    for ((id, _, _), (got, pred)) in records.iter().zip(
        table
            .values(&FIXTURE_LABELS)
            .iter()
            .zip(table.column("pred")),
    ) {
        let want = gold.get(&format!("{id}.{kind}")).f32();
        failures.extend(allclose(
            &format!("{family} {id} {extra:?} vs {kind}"),
            &[3],
            got,
            &want,
            tol,
        ));
        let best = (0..3).fold(0, |b, i| if got[i] > got[b] { i } else { b });
        assert_eq!(pred, FIXTURE_LABELS[best], "{id}: pred is the argmax");
    }
    assert_no_failures(&failures);
}

impl Cmd {
    /// Appends the fixture sequences as the input.
    fn arg_seq(self) -> Cmd {
        self.args([sequences()])
    }
}

/// Standard output of `strand-classify predict -m model ARGS` on the
/// fixture sequences (which must succeed).
fn predicted(model: &str, args: &[&str]) -> Vec<u8> {
    classify("predict")
        .args(["-m", model])
        .args(args)
        .arg_seq()
        .run()
        .ok()
        .stdout
}

#[test]
fn predict_matches_reference_ps() {
    predict_matches("ps-tiny", &[], "class_logits");
}

#[test]
fn predict_matches_reference_ph() {
    predict_matches("ph-tiny", &[], "class_logits");
}

#[test]
fn predict_conjoin_matches_reference_ph() {
    predict_matches("ph-tiny", &["--conjoin"], "class_logits_conjoin");
}

/// PS logits average both strands already; the reference ignores conjoin
/// for PS models, and so does predict.
#[test]
fn predict_conjoin_changes_nothing_for_ps() {
    let m = model("ps-tiny-cls");
    assert_eq!(predicted(&m, &[]), predicted(&m, &["--conjoin"]));
}

#[test]
fn predict_probabilities_are_the_softmax_of_the_logits() {
    for family in ["ps-tiny-cls", "ph-tiny-cls"] {
        let m = model(family);
        let probs = Table::parse(&predicted(&m, &[]));
        let logits = Table::parse(&predicted(&m, &["--logits"]));
        assert_eq!(probs.column("pred"), logits.column("pred"), "{family}");
        for (p, l) in probs
            .values(&FIXTURE_LABELS)
            .iter()
            .zip(logits.values(&FIXTURE_LABELS))
        {
            let m = l.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
            let z: f64 = l.iter().map(|&x| (x as f64 - m).exp()).sum();
            for (pi, li) in p.iter().zip(&l) {
                let want = (*li as f64 - m).exp() / z;
                assert!(
                    (*pi as f64 - want).abs() <= 1e-7 * want.max(1e-30) + 1e-12,
                    "{family}: {pi} vs {want}"
                );
            }
            let sum: f64 = p.iter().map(|&x| x as f64).sum();
            assert!(
                (sum - 1.0).abs() < 1e-6,
                "{family}: probabilities sum to {sum}"
            );
        }
    }
}

/// stdin, gzip and FASTQ input give the table of the plain file; shards
/// partition it.
#[test]
fn predict_input_routes_and_shards() {
    let dir = tempdir();
    let m = model("ps-tiny-cls");
    let plain = predicted(&m, &[]);
    let fasta = std::fs::read(root().join(sequences())).expect("read sequences.fa");
    let stdin = classify("predict")
        .args(["-m", &m, "-"])
        .stdin(fasta.clone())
        .run()
        .ok()
        .stdout;
    assert_eq!(stdin, plain, "stdin");
    let gz = dir.path().join("seqs.fa.gz");
    std::fs::write(&gz, gzip(&fasta)).expect("write gzip");
    let gz_out = dir.path().join("out.tsv");
    classify("predict")
        .args([
            "-m",
            &m,
            "-o",
            &gz_out.to_string_lossy(),
            &gz.to_string_lossy(),
        ])
        .run()
        .ok();
    assert_eq!(
        std::fs::read(&gz_out).expect("read output"),
        plain,
        "gzip input, file output"
    );
    let fastq: String = fasta_records(&root().join(sequences()))
        .iter()
        .map(|(id, _, s)| {
            format!(
                "@{id}\n{}\n+\n{}\n",
                String::from_utf8_lossy(s),
                "I".repeat(s.len())
            )
        })
        .collect();
    let fq = classify("predict")
        .args(["-m", &m, "-"])
        .stdin(fastq.into_bytes())
        .run()
        .ok()
        .stdout;
    assert_eq!(fq, plain, "FASTQ");

    // Shards are contiguous runs of records; their tables concatenate
    // into the whole table (only shard 1 writes the header).
    let mut cat = Vec::new();
    for i in 1..=4 {
        let shard = format!("{i}/4");
        cat.extend(
            classify("predict")
                .args(["-m", &m, "--shard", &shard])
                .arg_seq()
                .run()
                .ok()
                .stdout,
        );
    }
    assert_eq!(cat, plain, "cat of the 4 shards vs the whole table");
}

/// Equal-length records are batched (runs of equal length, up to
/// `--batch-tokens`); the table is the same, in input order, whatever the
/// batch size, and on whatever device runs it.
#[test]
fn predict_batches_equal_lengths_without_changing_results() {
    let dir = tempdir();
    let fa = dir.path().join("eq.fa");
    let mut text = String::new();
    let bases = b"ACGT";
    for i in 0..9u32 {
        // Three runs of equal length, then one odd record.
        let len = if i < 8 { 40 + 10 * (i / 3) as usize } else { 7 };
        let seq: String = (0..len)
            .map(|j| bases[(j * 7 + i as usize * 3 + j / 5) % 4] as char)
            .collect();
        text.push_str(&format!(">r{i}\n{seq}\n"));
    }
    std::fs::write(&fa, text).unwrap();
    let fa = fa.to_string_lossy().to_string();
    let run = |extra: &[&str]| {
        classify("predict")
            .args(["-m", &model("ph-tiny-cls"), "--conjoin", "--logits"])
            .args(extra)
            .args([&fa])
            .run()
            .ok()
            .stdout
    };
    let one = run(&["--batch-tokens", "1"]);
    let many = run(&[]);
    let two = run(&["--batch-tokens", "100"]);
    let (a, b, c) = (Table::parse(&one), Table::parse(&many), Table::parse(&two));
    assert_eq!(a.rows.len(), 9);
    for (t, name) in [(&b, "default"), (&c, "100 tokens")] {
        assert_eq!(t.header, a.header, "{name}");
        for (ra, rb) in a.rows.iter().zip(&t.rows) {
            assert_eq!(ra[..2], rb[..2], "{name}: order");
            for (x, y) in ra[2..ra.len() - 1].iter().zip(&rb[2..rb.len() - 1]) {
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                    "{name}: {x} vs {y}"
                );
            }
        }
    }
}

/// Regions of an indexed FASTA, BED regions and BAM reads go through
/// `predict` as they go through `strand-embed`: a region holding a record's
/// bases gets that record's row.
#[test]
fn predict_reads_regions_bed_and_bam() {
    let m = model("ph-tiny-cls");
    let plain = Table::parse(
        &classify("predict")
            .args(["-m", &m])
            .arg_seq()
            .run()
            .ok()
            .stdout,
    );
    let row = |t: &Table, name: &str| -> Vec<String> {
        t.rows
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row {name}"))[1..]
            .to_vec()
    };
    let fa = test_data("genome/ref.fa.gz");
    let regions = Table::parse(
        &classify("predict")
            .args(["-m", &m, &fa, "-r", "chrA:3,001-4,000", "-R"])
            .args([test_data("genome/regions.bed")])
            .run()
            .ok()
            .stdout,
    );
    let names: Vec<&str> = regions.rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "chrA:3001-4000",
            "fixture_len1000",
            "b_first",
            "chrB:20001-20500"
        ]
    );
    assert_eq!(row(&regions, "chrA:3001-4000"), row(&plain, "len1000"));
    assert_eq!(row(&regions, "fixture_len1000"), row(&plain, "len1000"));

    let bam = Table::parse(
        &classify("predict")
            .args(["-m", &m, "--bam"])
            .args([test_data("genome/reads.bam")])
            .args(["--min-mapq", "30"])
            .run()
            .ok()
            .stdout,
    );
    assert_eq!(bam.rows.len(), 12);
    assert!(bam.rows.iter().any(|r| r[0] == "pair1.2"));
}
