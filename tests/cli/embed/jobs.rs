//! Job-array use: `--shard`, `--out-dir`, `--resume`, and the npy/TSV
//! formats and storage dtypes they write.

use super::*;

fn genome(file: &str) -> String {
    test_data(&format!("genome/{file}"))
}

/// `strand-embed -m ph-tiny --device cpu -q ARGS`, which must succeed.
fn ok(args: &[&str]) -> Output {
    let m = model("ph-tiny");
    embed()
        .args(["-m", &m, "--device", "cpu", "-q"])
        .args(args)
        .run()
        .ok()
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// An npy file's shape, dtype descriptor and raw data.
fn read_npy(path: &Path) -> (Vec<usize>, String, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0);
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).expect("ascii header");
    let descr = header.split("'descr': '").nth(1).expect("descr");
    let descr = descr[..descr.find('\'').expect("quote")].to_owned();
    let shape = header.split("'shape': (").nth(1).expect("shape");
    let shape = shape[..shape.find(')').expect("paren")]
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| d.trim().parse().expect("dim"))
        .collect();
    (shape, descr, bytes[10 + hlen..].to_vec())
}

/// Every file of a directory except index files, with its bytes.
fn data_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    dir_entries(dir)
        .into_iter()
        .filter(|n| !n.starts_with("index"))
        .map(|n| {
            let b = std::fs::read(dir.join(&n)).expect("read");
            (n, b)
        })
        .collect()
}

/// Index rows (without header) of every index file in `dir`, in order of
/// the file names.
fn index_rows(dir: &Path) -> Vec<String> {
    dir_entries(dir)
        .into_iter()
        .filter(|n| n.starts_with("index"))
        .flat_map(|n| {
            let text = std::fs::read_to_string(dir.join(n)).expect("read index");
            let mut lines = text.lines();
            assert_eq!(
                lines.next(),
                Some("name\tlength\tfile\tcontig\tstart\tend\trows\tbin\tlast_bin")
            );
            lines.map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn embed_sharded_and_resumed_runs_equal_the_unsharded_run() {
    let dir = tempdir();
    let fa = genome("ref.fa");
    let common = ["--format", "npy", "--pool", "bin:64", "--window", "4096"];
    let whole = dir.path().join("whole");
    ok(&[&[fa.as_str(), "--out-dir", &s(&whole)][..], &common].concat());
    let sharded = dir.path().join("sharded");
    for i in 1..=3 {
        let shard = format!("{i}/3");
        ok(&[
            &[fa.as_str(), "--out-dir", &s(&sharded), "--shard", &shard][..],
            &common,
        ]
        .concat());
    }
    let want = data_files(&whole);
    assert_eq!(want.len(), 8, "one file per contig");
    assert_eq!(data_files(&sharded), want, "union of shards vs unsharded");
    assert_eq!(index_rows(&sharded), index_rows(&whole));

    // A task killed mid-way: one of its files is missing and a temporary
    // file is left over. Rerunning it with --resume redoes only that file.
    let victim = sharded.join("chrB.npy");
    assert!(victim.is_file());
    std::fs::remove_file(&victim).expect("remove");
    std::fs::write(sharded.join(".chrB.npy.strand-tmp.abc123"), b"half").expect("stray");
    let kept = sharded.join("chrA.npy");
    let before = std::fs::metadata(&kept)
        .expect("meta")
        .modified()
        .expect("mtime");
    let shard_of_chr_b = (1..=3)
        .find(|i| {
            let idx = sharded.join(format!("index.shard-{i}-of-3.tsv"));
            std::fs::read_to_string(idx)
                .expect("index")
                .contains("\nchrB\t")
        })
        .expect("chrB in some shard");
    let res = ok(&[
        &[
            fa.as_str(),
            "--out-dir",
            &s(&sharded),
            "--shard",
            &format!("{shard_of_chr_b}/3"),
            "--resume",
        ][..],
        &common,
    ]
    .concat());
    let _ = res;
    let after = std::fs::metadata(&kept)
        .expect("meta")
        .modified()
        .expect("mtime");
    assert_eq!(before, after, "a complete file was rewritten");
    let mut got = data_files(&sharded);
    got.retain(|(n, _)| !n.contains("strand-tmp"));
    assert_eq!(got, want, "after --resume");
}

#[test]
fn embed_resume_reports_what_it_skipped() {
    let dir = tempdir();
    let out = dir.path().join("o");
    let m = model("ph-tiny");
    let fa = genome("ref.fa");
    let args = [
        "-m",
        &m,
        "--device",
        "cpu",
        &fa,
        "--out-dir",
        &s(&out),
        "--resume",
        "--pool",
        "mean",
    ];
    let first = embed().args(args).run().ok();
    assert!(
        first.stderr.contains("8 embedded, 0 already complete"),
        "{}",
        first.stderr
    );
    let second = embed().args(args).run().ok();
    assert!(
        second.stderr.contains("0 embedded, 8 already complete"),
        "{}",
        second.stderr
    );
}

#[test]
fn embed_tsv_shards_concatenate_to_the_unsharded_table() {
    let dir = tempdir();
    let fa = genome("ref.fa.gz");
    let whole = dir.path().join("whole.tsv");
    ok(&[
        &fa,
        "--format",
        "tsv",
        "--pool",
        "bin:500",
        "-o",
        &s(&whole),
    ]);
    let mut cat = Vec::new();
    for i in 1..=4 {
        let part = dir.path().join(format!("part{i}.tsv"));
        ok(&[
            &fa,
            "--format",
            "tsv",
            "--pool",
            "bin:500",
            "--shard",
            &format!("{i}/4"),
            "-o",
            &s(&part),
        ]);
        cat.extend(std::fs::read(&part).expect("read part"));
    }
    let want = std::fs::read(&whole).expect("read whole");
    assert!(
        cat == want,
        "cat of 4 shards differs from the unsharded table"
    );
    let text = String::from_utf8(want).expect("utf8");
    let mut lines = text.lines();
    assert!(lines
        .next()
        .expect("header")
        .starts_with("#chrom\tstart\tend\tname\te0\t"));
    // BED coordinates: chrA's 6,000 bases in 12 bins of 500.
    let chr_a: Vec<&str> = lines.filter(|l| l.starts_with("chrA\t")).collect();
    assert_eq!(chr_a.len(), 12);
    assert!(chr_a[0].starts_with("chrA\t0\t500\tchrA\t"));
    assert!(chr_a[11].starts_with("chrA\t5500\t6000\tchrA\t"));
}

#[test]
fn embed_single_file_shards_hold_the_unsharded_tensors() {
    let dir = tempdir();
    let fa = genome("ref.fa");
    let whole = dir.path().join("whole.safetensors");
    ok(&[&fa, "--pool", "mean", "-o", &s(&whole)]);
    let mut union = Vec::new();
    for i in 1..=3 {
        let part = dir.path().join(format!("p{i}.safetensors"));
        ok(&[
            &fa,
            "--pool",
            "mean",
            "--shard",
            &format!("{i}/3"),
            "-o",
            &s(&part),
        ]);
        union.extend(SafeFile::read(&part).tensors);
    }
    assert_eq!(union, SafeFile::read(&whole).tensors);
    // --resume with a complete output does nothing.
    let res = ok(&[&fa, "--pool", "mean", "-o", &s(&whole), "--resume"]);
    let _ = res;
}

#[test]
fn embed_npy_and_narrow_dtypes_store_the_same_values() {
    let dir = tempdir();
    let seqs = sequences();
    let st = dir.path().join("x.safetensors");
    ok(&[&seqs, "-o", &s(&st)]);
    let reference = SafeFile::read(&st);
    let npy = dir.path().join("npy");
    ok(&[&seqs, "--format", "npy", "--out-dir", &s(&npy)]);
    let half = dir.path().join("half");
    ok(&[
        &seqs,
        "--format",
        "npy",
        "--dtype",
        "f16",
        "--out-dir",
        &s(&half),
    ]);
    let bf = dir.path().join("bf.safetensors");
    ok(&[&seqs, "--dtype", "bf16", "-o", &s(&bf)]);
    let bf = SafeFile::read(&bf);
    let index = std::fs::read_to_string(npy.join("index.tsv")).expect("index");
    assert_eq!(index.lines().count(), 1 + reference.tensors.len());
    for t in &reference.tensors {
        let values = t.f32();
        let (shape, descr, data) = read_npy(&npy.join(format!("{}.npy", t.name)));
        assert_eq!((shape.clone(), descr.as_str()), (t.shape.clone(), "<f4"));
        assert_eq!(data, t.bytes, "{}: npy data", t.name);
        let (hshape, hdescr, hdata) = read_npy(&half.join(format!("{}.npy", t.name)));
        assert_eq!((hshape, hdescr.as_str()), (t.shape.clone(), "<f2"));
        let want: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(hdata, want, "{}: f16 is the rounded f32", t.name);
        let b = bf.get(&t.name);
        assert_eq!(b.dtype, safetensors::Dtype::BF16);
        let want: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(b.bytes, want, "{}: bf16 is the rounded f32", t.name);
        assert!(index.contains(&format!("{}\t{}\t{}.npy\t", t.name, t.shape[0], t.name)));
    }
}

/// `-v` ends with each stage's busy time: what limits a long run.
#[test]
fn embed_verbose_reports_each_stage() {
    let dir = tempdir();
    let out = embed()
        .args(["-m", &model("ph-tiny"), "--device", "cpu", "-v"])
        .args(["--window", "300", "--batch-size", "2"])
        .args([
            "-o",
            &s(&dir.path().join("o.safetensors")),
            &genome("ref.fa"),
        ])
        .run()
        .ok();
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("busy time of each stage"))
        .unwrap_or_else(|| panic!("no stage line in:\n{}", out.stderr));
    // Several rounds (two windows each) on the one CPU device.
    let rounds: u64 = line
        .split("device 0 ")
        .nth(1)
        .and_then(|r| r.split('(').nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no round count in {line:?}"));
    assert!(rounds > 10, "{line}");
    assert!(
        line.contains("reading ") && line.contains("writing "),
        "{line}"
    );
    assert!(!line.contains("page-locked"), "a CPU locks nothing: {line}");
}
