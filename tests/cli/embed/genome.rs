//! Genome inputs: indexed-FASTA regions and BED, whole contigs through
//! the index, BAM reads, tiling of long sequences, pooling and the
//! strand-symmetric average.

use super::*;

fn genome(file: &str) -> String {
    test_data(&format!("genome/{file}"))
}

/// `strand-embed -m MODEL --device cpu ARGS -o <dir>/<name>`, read back.
fn run(dir: &Path, name: &str, model_name: &str, args: &[&str]) -> SafeFile {
    let m = model(model_name);
    let mut all = vec!["-m", &m, "--device", "cpu", "-q"];
    all.extend_from_slice(args);
    embed_to(dir, name, &all)
}

/// Compares tensor `name` of `out` with golden `<record>.nosep.hidden`.
fn golden_check(out: &SafeFile, name: &str, fam: Family, record: &str) -> Vec<String> {
    let got = out.get(name);
    let want = goldens(fam.name)
        .get(&format!("{record}.nosep.hidden"))
        .clone();
    if got.shape != want.shape {
        return vec![format!(
            "{name}: shape {:?} vs golden {:?}",
            got.shape, want.shape
        )];
    }
    let what = format!("{} {name} vs golden {record}", fam.name);
    allclose(
        &what,
        &got.shape,
        &got.f32(),
        &want.f32(),
        tolerance("nosep.hidden"),
    )
    .into_iter()
    .collect()
}

#[test]
fn embed_region_reproduces_the_one_pass_embedding() {
    let dir = tempdir();
    let mut failures = Vec::new();
    for fam in FAMILIES {
        for fasta in ["ref.fa", "ref.fa.gz"] {
            // len1000 sits at chrA:3001-4000; len257 is a contig of its own.
            let out = run(
                dir.path(),
                "r.safetensors",
                fam.name,
                &[&genome(fasta), "-r", "chrA:3,001-4,000", "-r", "len257"],
            );
            assert_eq!(out.names(), vec!["chrA:3001-4000", "len257:1-257"]);
            failures.extend(golden_check(&out, "chrA:3001-4000", fam, "len1000"));
            failures.extend(golden_check(&out, "len257:1-257", fam, "len257"));
            let coords: serde_json::Value =
                serde_json::from_str(out.meta("coords.chrA:3001-4000")).expect("json");
            assert_eq!(coords["contig"], "chrA");
            assert_eq!(coords["start"], 3000);
            assert_eq!(coords["end"], 4000);
        }
        let bed = run(
            dir.path(),
            "bed.safetensors",
            fam.name,
            &[&genome("ref.fa.gz"), "-R", &genome("regions.bed")],
        );
        assert_eq!(
            bed.names(),
            vec!["fixture_len1000", "b_first", "chrB:20001-20500"]
        );
        failures.extend(golden_check(&bed, "fixture_len1000", fam, "len1000"));
    }
    assert_no_failures(&failures);
}

#[test]
fn embed_indexed_fasta_whole_contigs_match_the_stream() {
    // With a .fai next to it a FASTA is read through the index; names and
    // rows are those of reading it as a stream.
    let dir = tempdir();
    let indexed = run(dir.path(), "i.safetensors", "ph-tiny", &[&genome("ref.fa")]);
    let stream = dir.path().join("ref-copy.fa");
    std::fs::copy(root().join(genome("ref.fa")), &stream).expect("copy");
    let streamed = run(
        dir.path(),
        "s.safetensors",
        "ph-tiny",
        &[&stream.to_string_lossy()],
    );
    assert_eq!(indexed.names(), streamed.names());
    assert_same_tensors(&indexed, &streamed, "indexed vs streamed");
}

/// Windows of a sequence of `len` bases and, for every base, the window
/// it must come from: the one where it is farthest from an edge (the
/// first such on a tie). Written from the definition, not from the code.
fn expected_tiling(len: u64, window: u64, overlap: u64) -> (Vec<(u64, u64)>, Vec<usize>) {
    let step = window - overlap;
    let mut starts = vec![0];
    while starts.last().expect("one") + window < len {
        let next = starts.last().expect("one") + step;
        starts.push(next.min(len - window));
    }
    let tiles: Vec<(u64, u64)> = starts.iter().map(|&s| (s, s + window)).collect();
    let owner = (0..len)
        .map(|i| {
            let mut best = (0, 0u64, false);
            for (k, &(s, e)) in tiles.iter().enumerate() {
                if (s..e).contains(&i) {
                    let d = (i - s).min(e - 1 - i);
                    if !best.2 || d > best.1 {
                        best = (k, d, true);
                    }
                }
            }
            best.0
        })
        .collect();
    (tiles, owner)
}

#[test]
fn embed_tiling_takes_each_base_from_its_most_central_window() {
    let dir = tempdir();
    let (window, overlap) = (8192u64, 1024u64);
    let tiled = run(
        dir.path(),
        "t.safetensors",
        "ph-tiny",
        &[
            &genome("ref.fa"),
            "-r",
            "chrB",
            "--window",
            "8192",
            "--overlap",
            "1024",
        ],
    );
    let got = tiled.get("chrB:1-40000").f32();
    let w = 24;
    assert_eq!(got.len(), 40_000 * w);
    let (tiles, owner) = expected_tiling(40_000, window, overlap);
    assert_eq!(tiles.len(), 6);
    let mut failures = Vec::new();
    for (k, &(s, e)) in tiles.iter().enumerate() {
        let region = format!("chrB:{}-{e}", s + 1);
        let one = run(
            dir.path(),
            "w.safetensors",
            "ph-tiny",
            &[&genome("ref.fa"), "-r", &region],
        );
        let pass = one.get(&region).f32();
        let bases: Vec<u64> = (s..e).filter(|&i| owner[i as usize] == k).collect();
        let (first, last) = (bases[0], *bases.last().expect("non-empty"));
        let got_rows = &got[first as usize * w..(last as usize + 1) * w];
        let want_rows = &pass[(first - s) as usize * w..(last - s + 1) as usize * w];
        let shape = [(last - first + 1) as usize, w];
        let what = format!("window {k} ({region}), bases {}-{}", first + 1, last + 1);
        failures.extend(allclose(
            &what,
            &shape,
            got_rows,
            want_rows,
            Tol {
                atol: 0.0,
                rtol: 0.0,
            },
        ));
    }
    assert_no_failures(&failures);
}

#[test]
fn embed_pool_bins_are_means_of_the_per_base_rows() {
    let dir = tempdir();
    let seqs = sequences();
    let none = run(dir.path(), "n.safetensors", "ps-tiny", &[&seqs]);
    let bins = run(
        dir.path(),
        "b.safetensors",
        "ps-tiny",
        &[&seqs, "--pool", "bin:100"],
    );
    let mut failures = Vec::new();
    let w = 48;
    for t in &none.tensors {
        let rows = t.shape[0];
        let b = bins.get(&t.name);
        assert_eq!(b.shape, vec![rows.div_ceil(100), w], "{}", t.name);
        let values = t.f32();
        let mut want = Vec::new();
        for chunk in values.chunks(100 * w) {
            let n = chunk.len() / w;
            let mut sum = vec![0.0f64; w];
            for row in chunk.chunks_exact(w) {
                sum.iter_mut().zip(row).for_each(|(s, &x)| *s += x as f64);
            }
            want.extend(sum.into_iter().map(|s| (s / n as f64) as f32));
        }
        let tol = Tol {
            atol: 1e-7,
            rtol: 1e-6,
        };
        failures.extend(allclose(&t.name, &b.shape, &b.f32(), &want, tol));
        let coords: serde_json::Value =
            serde_json::from_str(bins.meta(&format!("coords.{}", t.name))).expect("json");
        assert_eq!(coords["bin"], 100);
        assert_eq!(
            coords["last_bin"],
            rows - (rows.div_ceil(100) - 1) * 100,
            "{}",
            t.name
        );
    }
    assert_no_failures(&failures);
}

#[test]
fn embed_rc_average_is_the_mean_of_the_strand_halves() {
    let dir = tempdir();
    let seqs = sequences();
    let none = run(dir.path(), "n.safetensors", "ps-tiny", &[&seqs]);
    let avg = run(
        dir.path(),
        "a.safetensors",
        "ps-tiny",
        &[&seqs, "--rc-average"],
    );
    assert_eq!(avg.meta("width"), "24");
    let mut failures = Vec::new();
    for t in &none.tensors {
        let want: Vec<f32> = t
            .f32()
            .chunks_exact(48)
            .flat_map(|row| {
                let (a, b) = row.split_at(24);
                a.iter()
                    .zip(b.iter().rev())
                    .map(|(x, y)| (x + y) / 2.0)
                    .collect::<Vec<_>>()
            })
            .collect();
        let got = avg.get(&t.name);
        assert_eq!(got.shape, vec![t.shape[0], 24]);
        failures.extend(allclose(
            &t.name,
            &got.shape,
            &got.f32(),
            &want,
            Tol {
                atol: 0.0,
                rtol: 0.0,
            },
        ));
    }
    assert_no_failures(&failures);
    // A PH model has no strand halves.
    let m = model("ph-tiny");
    let out = dir.path().join("ph.safetensors");
    let res = embed()
        .args(["-m", &m, "--device", "cpu", &seqs, "--rc-average", "-o"])
        .args([&out])
        .run()
        .exits(1);
    assert!(
        res.stderr.contains("--rc-average needs a PS"),
        "{}",
        res.stderr
    );
}

#[test]
fn embed_bam_reads_with_filters_and_regions() {
    let dir = tempdir();
    let bam = genome("reads.bam");
    let all = run(dir.path(), "all.safetensors", "ph-tiny", &["--bam", &bam]);
    let names = all.names();
    assert_eq!(names.len(), 33, "{names:?}");
    assert!(names.contains(&"pair1") && names.contains(&"pair1.2"));
    assert!(!names.contains(&"sec1") && !names.contains(&"supp1"));
    let q = run(
        dir.path(),
        "q.safetensors",
        "ph-tiny",
        &["--bam", &bam, "--min-mapq", "30"],
    );
    assert_eq!(q.names().len(), 12);
    let r = run(
        dir.path(),
        "r.safetensors",
        "ph-tiny",
        &[
            "--bam",
            &bam,
            "-r",
            "chrA:3,150-3,350",
            "--include-secondary",
        ],
    );
    assert!(
        r.names().contains(&"pair1") && r.names().contains(&"sec1"),
        "{:?}",
        r.names()
    );
    // A read's rows are those of its bases embedded as a FASTA record.
    let sam = std::fs::read_to_string(root().join(genome("reads.sam"))).expect("sam");
    let seq = sam
        .lines()
        .find(|l| l.starts_with("pair1\t"))
        .and_then(|l| l.split('\t').nth(9))
        .expect("pair1 in sam");
    let fa = dir.path().join("pair1.fa");
    std::fs::write(&fa, format!(">pair1\n{seq}\n")).expect("write");
    let one = run(
        dir.path(),
        "one.safetensors",
        "ph-tiny",
        &[&fa.to_string_lossy()],
    );
    assert_eq!(one.get("pair1").bytes, all.get("pair1").bytes);
}

#[test]
fn embed_batching_does_not_change_results() {
    let dir = tempdir();
    let bam = genome("reads.bam");
    let batched = run(dir.path(), "b.safetensors", "ps-tiny", &["--bam", &bam]);
    let single = run(
        dir.path(),
        "s.safetensors",
        "ps-tiny",
        &["--bam", &bam, "--batch-size", "1"],
    );
    assert_same_tensors(&batched, &single, "default batching vs --batch-size 1");
    // Rounds of a few hundred tokens: many rounds, the same tensors.
    let small = run(
        dir.path(),
        "t.safetensors",
        "ps-tiny",
        &["--bam", &bam, "--batch-tokens", "300"],
    );
    assert_same_tensors(&batched, &small, "default batching vs --batch-tokens 300");
}
