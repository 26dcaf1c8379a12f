//! Bad models, bad inputs and usage errors: one line on stderr naming the
//! file and the record or tensor, a non-zero exit, and no output left behind.

use super::*;

/// Runs `cmd ARGS -o <dir>/out/out.safetensors`, which must fail at run
/// time: exit code 1, nothing on stdout, exactly one line on stderr that
/// starts with `strand-embed: ` and contains every `needle`, and nothing at
/// all left in the output directory (no output, no temporary file).
/// Runs on `--device cpu`, so that `auto`'s note of the device it chose
/// is not among the lines. Returns the message.
pub(super) fn fails_cleanly(dir: &Path, cmd: Cmd, args: &[&str], needles: &[&str]) -> String {
    let out_dir = dir.join("out");
    std::fs::create_dir(&out_dir).expect("create output dir");
    let out = out_dir.join("out.safetensors");
    let res: Output = cmd
        .args(["--device", "cpu"])
        .args(args)
        .args(["-o", &out.to_string_lossy()])
        .run()
        .exits(1);
    let stderr = &res.stderr;
    assert_eq!(
        stderr.lines().count(),
        1,
        "`{}`: expected one line on stderr, got:\n{stderr}",
        res.cmdline
    );
    assert!(stderr.ends_with('\n'), "{stderr:?}");
    assert!(stderr.starts_with("strand-embed: "), "{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "`{}`: stderr does not mention {needle:?}:\n{stderr}",
            res.cmdline
        );
    }
    assert!(res.stdout.is_empty(), "stdout: {} bytes", res.stdout.len());
    assert!(!out.exists(), "{} was left behind", out.display());
    assert_eq!(dir_entries(&out_dir), Vec::<String>::new(), "stray files");
    stderr.trim_end().to_owned()
}

/// Writes `bytes` to `<dir>/<name>` and runs ps-tiny on it, expecting a
/// clean failure that names the file and contains `needles`.
fn input_failure(dir: &Path, name: &str, bytes: &[u8], needles: &[&str]) -> String {
    let input = dir.join(name);
    std::fs::write(&input, bytes).expect("write input");
    let input = input.to_string_lossy();
    let mut all = vec![&*input];
    all.extend_from_slice(needles);
    fails_cleanly(dir, embed(), &["-m", &model("ps-tiny"), &input], &all)
}

fn fixture_fasta() -> String {
    std::fs::read_to_string(root().join(sequences())).expect("read sequences.fa")
}

#[test]
fn bad_input_duplicate_ids() {
    let dir = tempdir();
    let text = fixture_fasta() + ">len7 the same id again\nACGT\n";
    input_failure(
        dir.path(),
        "dup.fa",
        text.as_bytes(),
        &[r#"record 7 ("len7")"#, "duplicate", "record 2"],
    );
}

#[test]
fn bad_input_empty_record() {
    let dir = tempdir();
    let text = fixture_fasta().replacen(">len64", ">hollow header only\n>len64", 1);
    input_failure(
        dir.path(),
        "empty.fa",
        text.as_bytes(),
        &[r#"record 3 ("hollow")"#, "empty"],
    );
}

#[test]
fn bad_input_truncated_gzip() {
    let dir = tempdir();
    let gz = gzip(fixture_fasta().as_bytes());
    input_failure(
        dir.path(),
        "cut.fa.gz",
        &gz[..gz.len() - 20],
        &["record ", "line ", "gzip", "truncated"],
    );
}

#[test]
fn bad_input_not_fasta_or_fastq() {
    let dir = tempdir();
    let vcf = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n\
               chr1\t100\t.\tA\tG\t.\tPASS\t.\n";
    input_failure(
        dir.path(),
        "calls.vcf",
        vcf.as_bytes(),
        &["not a FASTA or FASTQ"],
    );
}

#[test]
fn bad_input_missing_file() {
    let dir = tempdir();
    let missing = dir.path().join("no-such.fa");
    let missing = missing.to_string_lossy();
    fails_cleanly(
        dir.path(),
        embed(),
        &["-m", &model("ps-tiny"), &missing],
        &[&missing, "cannot open"],
    );
}

#[test]
fn bad_input_non_ascii_byte() {
    let dir = tempdir();
    let text = ">ok first\nACGTACGT\n>accent second\nACGTN\nACé\n>after\nGGG\n";
    input_failure(
        dir.path(),
        "accent.fa",
        text.as_bytes(),
        &[r#"record 2 ("accent")"#, "non-ASCII", "0xc3", "position 8"],
    );
}

#[test]
fn bad_input_keeps_existing_output() {
    let dir = tempdir();
    let input = dir.path().join("dup.fa");
    std::fs::write(&input, fixture_fasta() + ">len1\nA\n").expect("write input");
    let out = dir.path().join("out.safetensors");
    std::fs::write(&out, b"previous result").expect("write old output");
    embed()
        .args([
            "-m",
            &model("ps-tiny"),
            "-o",
            &out.to_string_lossy(),
            &input.to_string_lossy(),
        ])
        .run()
        .exits(1);
    assert_eq!(std::fs::read(&out).expect("read"), b"previous result");
    assert_eq!(dir_entries(dir.path()), ["dup.fa", "out.safetensors"]);
}

#[test]
fn bad_input_with_stdout_output_writes_nothing() {
    // Tensors of the first records are ready before the bad one is read;
    // none of them may reach stdout.
    let text = fixture_fasta() + ">len1\nA\n";
    let res = embed()
        .args(["--device", "cpu", "-m", &model("ps-tiny"), "-o", "-", "-"])
        .stdin(text.into_bytes())
        .run()
        .exits(1);
    assert!(res.stdout.is_empty(), "stdout: {} bytes", res.stdout.len());
    assert_eq!(
        res.stderr,
        "strand-embed: <stdin>: record 7 (\"len1\"): duplicate id, first used by record 1\n"
    );
}

#[test]
fn bad_output_directory_missing() {
    let dir = tempdir();
    let out = dir.path().join("no-such-dir").join("out.safetensors");
    let res = embed()
        .args([
            "--device",
            "cpu",
            "-m",
            &model("ps-tiny"),
            "-o",
            &out.to_string_lossy(),
            &sequences(),
        ])
        .run()
        .exits(1);
    assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
    assert!(
        res.stderr
            .starts_with(&format!("strand-embed: {}: ", out.display())),
        "{}",
        res.stderr
    );
    assert_eq!(dir_entries(dir.path()), Vec::<String>::new());
}

#[test]
fn usage_error_exits_2() {
    let (m, seqs) = (model("ps-tiny"), sequences());
    let cases: [(&[&str], &str); 5] = [
        (&["-m", &m, &seqs], "--output"),
        (&["-m", &m, "-o", "-", "--pool", "max", &seqs], "--pool"),
        (&["-o", "-", &seqs], "--model"),
        (&["-m", &m, "-o", "-", "--device", "gpu", &seqs], "--device"),
        (&["-m", &m, "-o", "-", "--threads", "0", &seqs], "--threads"),
    ];
    for (args, needle) in cases {
        let res = embed().args(args).run().exits(2);
        assert!(res.stderr.contains(needle), "{}", res.stderr);
        assert!(res.stdout.is_empty());
    }
}

#[test]
fn embed_hub_id_missing_says_how_to_download() {
    let dir = tempdir();
    let cache = dir.path().join("hub");
    fake_hub_cache(&cache);
    let msg = fails_cleanly(
        dir.path(),
        embed().env("HF_HUB_CACHE", &cache),
        &["--model", "org/absent", &sequences()],
        &["org/absent", "huggingface-cli download org/absent"],
    );
    assert!(msg.contains(&cache.display().to_string()), "{msg}");
}

fn genome(file: &str) -> String {
    test_data(&format!("genome/{file}"))
}

#[test]
fn bad_region_off_the_contig() {
    let dir = tempdir();
    let m = model("ph-tiny");
    let fa = genome("ref.fa");
    fails_cleanly(
        dir.path(),
        embed(),
        &["-m", &m, &fa, "-r", "chrA:5,990-6,010"],
        &["ref.fa: region chrA:5990-6010: outside contig chrA of length 6000"],
    );
}

#[test]
fn bad_region_unknown_contig() {
    let dir = tempdir();
    let m = model("ph-tiny");
    let fa = genome("ref.fa.gz");
    fails_cleanly(
        dir.path(),
        embed(),
        &["-m", &m, &fa, "-r", "chr7:1-100"],
        &["ref.fa.gz: region chr7:1-100: unknown contig \"chr7\""],
    );
}

#[test]
fn bad_region_malformed_and_bed_line() {
    let m = model("ph-tiny");
    let fa = genome("ref.fa");
    fails_cleanly(
        tempdir().path(),
        embed(),
        &["-m", &m, &fa, "-r", "chrA:0-10"],
        &["region \"chrA:0-10\"", "1-based"],
    );
    let dir = tempdir();
    let bed = dir.path().join("bad.bed");
    std::fs::write(&bed, "chrA\t10\t20\nchrA\t300\t200\tx\n").expect("write");
    fails_cleanly(
        tempdir().path(),
        embed(),
        &["-m", &m, &fa, "-R", &bed.to_string_lossy()],
        &["bad.bed: line 2: end 200 is before start 300"],
    );
}

#[test]
fn bad_input_region_without_index() {
    let dir = tempdir();
    let m = model("ph-tiny");
    let fa = dir.path().join("noindex.fa");
    std::fs::copy(root().join(genome("ref.fa")), &fa).expect("copy");
    fails_cleanly(
        dir.path(),
        embed(),
        &["-m", &m, &fa.to_string_lossy(), "-r", "chrA"],
        &["noindex.fa: no index", "samtools faidx"],
    );
}

#[test]
fn bad_input_truncated_bgzf_fasta() {
    let dir = tempdir();
    let m = model("ph-tiny");
    let gz = dir.path().join("cut.fa.gz");
    let bytes = std::fs::read(root().join(genome("ref.fa.gz"))).expect("read");
    std::fs::write(&gz, &bytes[..bytes.len() / 2]).expect("write");
    for ext in ["fai", "gzi"] {
        std::fs::copy(
            root().join(genome(&format!("ref.fa.gz.{ext}"))),
            dir.path().join(format!("cut.fa.gz.{ext}")),
        )
        .expect("copy index");
    }
    fails_cleanly(
        dir.path(),
        embed(),
        &["-m", &m, &gz.to_string_lossy(), "-r", "chrB:30,001-31,000"],
        // Seen when the file is opened: it ends before its last record.
        &["cut.fa.gz: the index", "truncated or corrupt"],
    );
}

#[test]
fn bad_input_bam_region_without_index() {
    let dir = tempdir();
    let m = model("ph-tiny");
    let bam = genome("reads-noindex.bam");
    fails_cleanly(
        dir.path(),
        embed(),
        &["-m", &m, "--bam", &bam, "-r", "chrA:1-100"],
        &[
            "reads-noindex.bam: no index",
            "samtools index",
            "chrA:1-100",
        ],
    );
}

#[test]
fn bad_options_are_refused_before_any_work() {
    let m = model("ph-tiny");
    let seqs = sequences();
    fails_cleanly(
        tempdir().path(),
        embed(),
        &["-m", &m, &seqs, "--format", "tsv"],
        &["--format tsv stores pooled rows"],
    );
    fails_cleanly(
        tempdir().path(),
        embed(),
        &["-m", &m, &seqs, "--window", "100", "--overlap", "100"],
        &["overlap (100) must be smaller than the window (100)"],
    );
    fails_cleanly(
        tempdir().path(),
        embed(),
        &["-m", &m, &seqs, "--special-tokens", "--window", "64"],
        &[
            "record 4 (\"len257\")",
            "longer than the window (64)",
            "--special-tokens",
        ],
    );
}
