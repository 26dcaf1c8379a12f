//! `--dry-run` on every command: a plan on stdout and exit 0, with
//! nothing written (no output, no temporary file, no index, no cache);
//! its CPU memory estimate against the peak a real run measures; its
//! device memory from the runner's formula; its time from the throughput
//! `strand bench` keeps in the cache directory.

use std::collections::BTreeMap;
use std::path::Path;

use strand_core::memory::{self, Engine, PassMemory};
use strand_core::model::synthetic::Rng;
use strand_core::{Config, Precision};

use crate::util::*;

const EMBED: &str = env!("CARGO_BIN_EXE_strand-embed");
const SCORE: &str = env!("CARGO_BIN_EXE_strand-score");
const CLASSIFY: &str = env!("CARGO_BIN_EXE_strand-classify");
const STRAND: &str = env!("CARGO_BIN_EXE_strand");

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The `key<TAB>value` lines of `--dry-run=tsv`, every key once.
fn plan(out: &Output) -> BTreeMap<String, String> {
    let text = String::from_utf8(out.stdout.clone()).expect("UTF-8 plan");
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let (k, v) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("not key<TAB>value: {line:?} in\n{text}"));
        assert!(
            map.insert(k.to_owned(), v.to_owned()).is_none(),
            "{k} twice"
        );
    }
    map
}

fn number(plan: &BTreeMap<String, String>, key: &str) -> f64 {
    let v = plan
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {plan:?}"));
    v.parse()
        .unwrap_or_else(|_| panic!("{key} is {v:?}, not a number"))
}

/// A FASTA of one record of `len` random bases.
fn random_fasta(path: &Path, len: usize) {
    let mut rng = Rng::new(7);
    let seq: Vec<u8> = (0..len)
        .map(|_| b"ACGT"[(rng.next_u64() % 4) as usize])
        .collect();
    let mut text = b">r\n".to_vec();
    for line in seq.chunks(60) {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    std::fs::write(path, text).expect("write FASTA");
}

/// Every command and mode, in both formats, leaves its directory (outputs,
/// inputs without an index, the cache) exactly as it was.
#[test]
fn every_command_plans_and_writes_nothing() {
    let dir = tempdir();
    let d = dir.path();
    let out = |name: &str| s(&d.join(name));
    let fa = d.join("in.fa");
    random_fasta(&fa, 5000);
    let vcf = d.join("in.vcf");
    std::fs::write(
        &vcf,
        "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n\
         chrA\t101\t.\tA\tC,G\t.\t.\t.\nchrA\t2001\t.\tAC\tA\t.\t.\t.\n",
    )
    .expect("write VCF");
    let (ps, cls) = (test_data("models/ps-tiny"), test_data("models/ps-tiny-cls"));
    let reference = test_data("genome/ref.fa");
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            EMBED,
            vec![
                "-m".into(),
                ps.clone(),
                "-o".into(),
                out("e.safetensors"),
                s(&fa),
            ],
        ),
        (
            EMBED,
            vec![
                "-m".into(),
                ps.clone(),
                "--out-dir".into(),
                out("edir"),
                "--format".into(),
                "npy".into(),
                "-R".into(),
                test_data("genome/regions.bed"),
                reference.clone(),
            ],
        ),
        (
            SCORE,
            [
                "-m",
                &ps,
                "-f",
                &reference,
                "--vcf",
                &s(&vcf),
                "-o",
                &out("s.vcf.gz"),
                "--tsv",
                &out("s.tsv"),
                "--scores",
                "llr,llr_masked,embed_dist",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            SCORE,
            [
                "ism",
                "-m",
                &ps,
                "-f",
                &reference,
                "-r",
                "chrA:100-400",
                "-o",
                &out("ism"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            SCORE,
            [
                "calibrate",
                "-m",
                &ps,
                "-f",
                &reference,
                "-r",
                "chrA:1-2000",
                "--sample",
                "20",
                "-o",
                &out("calib.tsv"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            CLASSIFY,
            ["predict", "-m", &cls, &s(&fa), "-o", &out("p.tsv")]
                .map(String::from)
                .to_vec(),
        ),
        (
            CLASSIFY,
            ["train", "-m", &ps, "--train", &s(&fa), "-o", &out("head")]
                .map(String::from)
                .to_vec(),
        ),
        (
            CLASSIFY,
            [
                "eval",
                "-m",
                &cls,
                "--data",
                &s(&fa),
                "-o",
                &out("m.tsv"),
                "--confusion",
                &out("c.tsv"),
                "--plot",
                &out("c.png"),
            ]
            .map(String::from)
            .to_vec(),
        ),
    ];
    let before = dir_entries(d);
    for (bin, args) in &cases {
        for flag in ["--dry-run", "--dry-run=tsv"] {
            let res = Cmd::new(bin)
                .args(args)
                .args(["--device", "cpu", flag])
                .env("STRAND_CACHE_DIR", d.join("cache"))
                .run()
                .ok();
            let text = String::from_utf8_lossy(&res.stdout).into_owned();
            if flag == "--dry-run=tsv" {
                let p = plan(&res);
                for key in [
                    "model",
                    "devices",
                    "tokens",
                    "passes",
                    "host_memory",
                    "output",
                ] {
                    assert!(p.contains_key(key), "{}: no {key}:\n{text}", res.cmdline);
                }
                assert!(number(&p, "tokens") > 0.0 && number(&p, "host_memory") > 0.0);
                assert_eq!(p["time_s"], "NA", "{}: nothing calibrated yet", res.cmdline);
            } else {
                assert!(text.contains("--dry-run: the plan"), "{text}");
                assert!(text.contains("not measured"), "{text}");
            }
            assert_eq!(dir_entries(d), before, "{} wrote something", res.cmdline);
        }
    }
}

/// What a run holds at its peak, as `-v` reports it (`VmHWM`).
fn measured_peak(res: &Output) -> f64 {
    let at = res
        .stderr
        .find("bytes resident")
        .unwrap_or_else(|| panic!("no peak memory line in:\n{}", res.stderr));
    let n = res.stderr[..at].rsplit('(').next().expect("a number");
    n.trim().parse().expect("bytes")
}

/// The issue's test: on the CPU, the dry run's host memory is within 20 %
/// of the peak resident memory of the real run, for three window sizes
/// (a round of several windows, one window a round, and a window larger
/// than the default round).
#[test]
fn the_cpu_memory_estimate_is_within_a_fifth_of_the_measured_peak() {
    let dir = tempdir();
    let fa = dir.path().join("long.fa");
    random_fasta(&fa, 300_000);
    let mut report = Vec::new();
    let mut failed = false;
    for window in ["16384", "65536", "262144"] {
        let args = [
            "-m",
            &test_data("models/ps-tiny"),
            "--device",
            "cpu",
            "--window",
            window,
            "-o",
            &s(&dir.path().join("e.safetensors")),
            &s(&fa),
        ];
        let p = plan(
            &Cmd::new(EMBED)
                .args(args)
                .args(["--dry-run=tsv"])
                .run()
                .ok(),
        );
        let estimate = number(&p, "host_memory");
        let peak = measured_peak(&Cmd::new(EMBED).args(args).args(["-q", "-v"]).run().ok());
        let ratio = estimate / peak;
        failed |= !(0.8..=1.2).contains(&ratio);
        report.push(format!(
            "window {window}: estimate {:.1} MiB, peak {:.1} MiB, ratio {ratio:.3}",
            estimate / 1048576.0,
            peak / 1048576.0
        ));
    }
    assert!(!failed, "{}", report.join("\n"));
    eprintln!("{}", report.join("\n"));
}

/// A GPU's memory is the runner's formula (weights, the largest pass and
/// the reserve), whether or not this machine has the GPU: planning a job
/// for another machine works.
#[test]
fn gpu_memory_is_the_runners_formula() {
    let dir = tempdir();
    let model = test_data("models/ph-tiny");
    let res = Cmd::new(EMBED)
        .args(["-m", &model, "--device", "cuda", "--precision", "fp32"])
        .args([
            "--window",
            "100000",
            "--batch-tokens",
            "300000",
            "--dry-run=tsv",
        ])
        .args([
            "-o",
            &s(&dir.path().join("e.st")),
            &test_data("genome/ref.fa"),
        ])
        .run()
        .ok();
    let p = plan(&res);
    let cfg = Config::from_file(&root().join(&model).join("config.json")).expect("config");
    let engine = Engine::Cuda(Precision::F32);
    let rows = number(&p, "largest_pass") as u64;
    let want = memory::weight_bytes(&cfg, engine) + PassMemory::of(&cfg, engine).bytes(rows, 1);
    assert_eq!(number(&p, "memory:cuda:0") as u64, want, "{p:?}");
    // The genome's contigs, all shorter than the window: one window each,
    // batched by length in one round.
    assert_eq!(p["windows"], p["records"]);
    assert!(dir_entries(dir.path()).is_empty());
}

/// Without calibration the time is "not measured"; `strand bench` keeps a
/// line for the shape, precision and device in the cache directory, and
/// the same plan then has a time.
#[test]
fn bench_calibrates_the_time() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let plan_args = [
        "-m",
        &test_data("models/ps-tiny"),
        "--device",
        "cpu",
        "-@",
        "2",
        "-o",
        &s(&dir.path().join("e.st")),
        &test_data("genome/ref.fa"),
        "--dry-run=tsv",
    ];
    let before = plan(
        &Cmd::new(EMBED)
            .args(plan_args)
            .env("STRAND_CACHE_DIR", &cache)
            .run()
            .ok(),
    );
    assert_eq!(before["time_s"], "NA");
    Cmd::new(STRAND)
        .args(["bench", "--kind", "ps", "--d-model", "24", "--n-layer", "2"])
        .args(["--lengths", "2048,8192", "-@", "2"])
        .env("STRAND_CACHE_DIR", &cache)
        .run()
        .ok();
    let lines = std::fs::read_to_string(cache.join("calibration.tsv")).expect("calibration kept");
    let rows: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains("\tps-24x2\tfp32\t"))
        .collect();
    assert_eq!(rows.len(), 2, "{lines}");
    assert!(rows[0].contains("(2 threads,"), "{lines}");
    let after = plan(
        &Cmd::new(EMBED)
            .args(plan_args)
            .env("STRAND_CACHE_DIR", &cache)
            .run()
            .ok(),
    );
    let secs = number(&after, "time_s");
    assert!(secs > 0.0 && secs < 60.0, "{after:?}");
    // Another thread count is another device: not measured.
    let mut other = plan_args.to_vec();
    other[5] = "1";
    let other = plan(
        &Cmd::new(EMBED)
            .args(other)
            .env("STRAND_CACHE_DIR", &cache)
            .run()
            .ok(),
    );
    assert_eq!(other["time_s"], "NA");
}

/// A plan of stdin does not read it: the counts are unknown, the memory of
/// a window is still planned.
#[test]
fn stdin_is_left_to_the_run() {
    let dir = tempdir();
    let res = Cmd::new(EMBED)
        .args([
            "-m",
            &test_data("models/ps-tiny"),
            "--device",
            "cpu",
            "--dry-run=tsv",
        ])
        .args(["-o", &s(&dir.path().join("e.st")), "-"])
        .stdin(b">a\nACGT\n".to_vec())
        .run()
        .ok();
    let p = plan(&res);
    assert_eq!(p["records"], "NA");
    assert_eq!(p["time_s"], "NA");
    assert!(number(&p, "host_memory") > 0.0);
    assert!(dir_entries(dir.path()).is_empty());
}
