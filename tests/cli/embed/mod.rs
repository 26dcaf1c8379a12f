//! `strand-embed` end to end: conformance with the reference goldens from
//! the command line, pooling, every input route, hub ids, and how bad
//! models and bad inputs are reported.

use std::path::{Path, PathBuf};

use crate::util::{
    allclose, assert_no_failures, dir_entries, fasta_records, gzip, root, sha256_hex, tempdir,
    test_data, tolerance, Cmd, Output, SafeFile, Tensor, Tol,
};

const BIN: &str = env!("CARGO_BIN_EXE_strand-embed");

/// The fixture model families; `-cls` folders share their backbone.
const FAMILIES: [Family; 2] = [
    Family {
        name: "ps-tiny",
        width: 48,
        layout: "PS",
    },
    Family {
        name: "ph-tiny",
        width: 24,
        layout: "PH",
    },
];

#[derive(Clone, Copy)]
struct Family {
    name: &'static str,
    /// Hidden-state width W (2 x d_model for PS).
    width: usize,
    /// How the `layout` metadata value starts.
    layout: &'static str,
}

fn family(name: &str) -> Family {
    *FAMILIES
        .iter()
        .find(|f| f.name == name)
        .expect("a fixture family")
}

fn embed() -> Cmd {
    Cmd::new(BIN)
}

/// `test-data/models/<name>`, relative to the workspace root.
fn model(name: &str) -> String {
    test_data(&format!("models/{name}"))
}

fn sequences() -> String {
    test_data("sequences.fa")
}

/// (id, description, sequence) of every record of `sequences.fa`.
fn records() -> Vec<(String, String, Vec<u8>)> {
    fasta_records(&root().join(sequences()))
}

/// Runs `strand-embed ARGS -o <dir>/<name>` and reads the result.
fn embed_to(dir: &Path, name: &str, args: &[&str]) -> SafeFile {
    let out = dir.join(name);
    embed()
        .args(args)
        .args(["-o", &out.to_string_lossy()])
        .run()
        .ok();
    SafeFile::read(&out)
}

/// The reference outputs of one family.
fn goldens(family: &str) -> SafeFile {
    SafeFile::read(&root().join(format!("test-data/goldens/{family}.safetensors")))
}

/// Tensor names are the record ids, in file order, every tensor is F32.
fn assert_records_in_file_order(out: &SafeFile) {
    let ids: Vec<String> = records().into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(out.names(), ids, "tensor names/order vs record ids");
    for t in &out.tensors {
        assert_eq!(t.dtype, safetensors::Dtype::F32, "tensor {}", t.name);
    }
}

/// The `__metadata__` that makes an output traceable.
fn assert_metadata(out: &SafeFile, model_arg: &str, fam: Family, pool: &str, special: bool) {
    assert_eq!(out.meta("model"), model_arg);
    let config =
        std::fs::read(root().join(model(fam.name)).join("config.json")).expect("read config.json");
    assert_eq!(out.meta("model_config_sha256"), sha256_hex(&config));
    assert_eq!(out.meta("pool"), pool);
    assert_eq!(out.meta("special_tokens"), special.to_string());
    assert_eq!(out.meta("strand_version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(out.meta("width"), fam.width.to_string());
    assert!(
        out.meta("layout").starts_with(fam.layout),
        "layout {:?}",
        out.meta("layout")
    );
}

/// Compares every record's tensor with golden `<record>.<kind>`: shape
/// [len + extra_rows, W] and values within the manifest's tolerance.
fn golden_failures(out: &SafeFile, fam: Family, kind: &str, extra_rows: usize) -> Vec<String> {
    let gold = goldens(fam.name);
    let tol = tolerance(kind);
    let mut failures = Vec::new();
    for (id, _, seq) in records() {
        let got = out.get(&id);
        let want = gold.get(&format!("{id}.{kind}"));
        let shape = vec![seq.len() + extra_rows, fam.width];
        if got.shape != shape || want.shape != shape {
            failures.push(format!(
                "{id}: shape {:?}, golden {:?}, expected {shape:?}",
                got.shape, want.shape
            ));
            continue;
        }
        let what = format!("{} {id} vs golden {id}.{kind}", fam.name);
        failures.extend(allclose(&what, &shape, &got.f32(), &want.f32(), tol));
    }
    failures
}

fn conformance(fam: Family, special_tokens: bool) {
    let dir = tempdir();
    let m = model(fam.name);
    let mut args = vec!["--model", &m, "--pool", "none"];
    if special_tokens {
        args.push("--special-tokens");
    }
    let seqs = sequences();
    args.push(&seqs);
    let out = embed_to(dir.path(), "out.safetensors", &args);
    assert_records_in_file_order(&out);
    assert_metadata(&out, &m, fam, "none", special_tokens);
    let failures = if special_tokens {
        // The reference tokenizer's default: a trailing [SEP] row.
        golden_failures(&out, fam, "hidden", 1)
    } else {
        golden_failures(&out, fam, "nosep.hidden", 0)
    };
    assert_no_failures(&failures);
}

#[test]
fn embed_matches_reference_ps() {
    conformance(family("ps-tiny"), false);
}

#[test]
fn embed_matches_reference_ph() {
    conformance(family("ph-tiny"), false);
}

#[test]
fn embed_special_tokens_matches_reference_ps() {
    conformance(family("ps-tiny"), true);
}

#[test]
fn embed_special_tokens_matches_reference_ph() {
    conformance(family("ph-tiny"), true);
}

/// A classification checkpoint embeds with its backbone: the same hidden
/// states as the masked-LM checkpoint with the same backbone weights.
fn cls_backbone(fam: Family) {
    let dir = tempdir();
    let (lm_model, cls_model) = (model(fam.name), model(&format!("{}-cls", fam.name)));
    let seqs = sequences();
    let lm = embed_to(dir.path(), "lm.safetensors", &["-m", &lm_model, &seqs]);
    let cls = embed_to(dir.path(), "cls.safetensors", &["-m", &cls_model, &seqs]);
    assert_records_in_file_order(&cls);
    assert_eq!(cls.meta("model"), cls_model);
    let mut failures = golden_failures(&cls, fam, "nosep.hidden", 0);
    let same = Tol {
        atol: 1e-6,
        rtol: 1e-6,
    };
    for (a, b) in cls.tensors.iter().zip(&lm.tensors) {
        assert_eq!(a.shape, b.shape, "{}", a.name);
        let what = format!("{cls_model} vs {lm_model}: {}", a.name);
        failures.extend(allclose(&what, &a.shape, &a.f32(), &b.f32(), same));
    }
    assert_no_failures(&failures);
}

#[test]
fn embed_cls_model_matches_lm_backbone_ps() {
    cls_backbone(family("ps-tiny"));
}

#[test]
fn embed_cls_model_matches_lm_backbone_ph() {
    cls_backbone(family("ph-tiny"));
}

#[test]
fn embed_pool_mean_is_column_mean_of_pool_none() {
    let dir = tempdir();
    let seqs = sequences();
    let mut failures = Vec::new();
    for fam in FAMILIES {
        let m = model(fam.name);
        let none = embed_to(dir.path(), "none.safetensors", &["-m", &m, &seqs]);
        let mean = embed_to(
            dir.path(),
            "mean.safetensors",
            &["-m", &m, "--pool", "mean", &seqs],
        );
        assert_records_in_file_order(&mean);
        assert_metadata(&mean, &m, fam, "mean", false);
        for (n, p) in none.tensors.iter().zip(&mean.tensors) {
            assert_eq!(p.shape, vec![fam.width], "{} {}", fam.name, p.name);
            let rows = n.shape[0] as f64;
            let mut want = vec![0.0f64; fam.width];
            for row in n.f32().chunks_exact(fam.width) {
                want.iter_mut().zip(row).for_each(|(s, &x)| *s += x as f64);
            }
            let want: Vec<f32> = want.into_iter().map(|s| (s / rows) as f32).collect();
            let what = format!("{} {} --pool mean vs column mean", fam.name, p.name);
            // Relative; the tiny absolute term only keeps means near zero
            // from failing on the last bit.
            let tol = Tol {
                atol: 1e-7,
                rtol: 1e-6,
            };
            failures.extend(allclose(&what, &p.shape, &p.f32(), &want, tol));
        }
    }
    assert_no_failures(&failures);
}

/// The plain FASTA run every other input route must reproduce.
fn plain_run(dir: &Path) -> SafeFile {
    embed_to(
        dir,
        "plain.safetensors",
        &["-m", &model("ps-tiny"), &sequences()],
    )
}

/// Same tensors (names, order, shapes, bits); metadata may differ.
fn assert_same_tensors(got: &SafeFile, want: &SafeFile, what: &str) {
    assert_eq!(got.names(), want.names(), "{what}: tensor names");
    for (g, w) in got.tensors.iter().zip(&want.tensors) {
        assert_eq!(g.shape, w.shape, "{what}: shape of {}", g.name);
        assert!(g.bytes == w.bytes, "{what}: values of {} differ", g.name);
    }
}

#[test]
fn embed_stdin_matches_file() {
    let dir = tempdir();
    let plain = plain_run(dir.path());
    let out = dir.path().join("stdin.safetensors");
    let fasta = std::fs::read(root().join(sequences())).expect("read sequences.fa");
    embed()
        .args(["-m", &model("ps-tiny"), "-o", &out.to_string_lossy(), "-"])
        .stdin(fasta)
        .run()
        .ok();
    assert_same_tensors(&SafeFile::read(&out), &plain, "stdin");
}

/// Spaces and tabs inside FASTA sequence lines are layout, not bases: the
/// output keeps one row per base.
#[test]
fn embed_ignores_blanks_inside_sequence_lines() {
    let dir = tempdir();
    let plain = plain_run(dir.path());
    let fasta = std::fs::read_to_string(root().join(sequences())).expect("read sequences.fa");
    let spaced: String = fasta
        .lines()
        .map(|l| {
            if l.starts_with('>') {
                format!("{l}\n")
            } else {
                format!("{} \t\n", l.replace("AC", "A C"))
            }
        })
        .collect();
    let out = dir.path().join("spaced.safetensors");
    embed()
        .args(["-m", &model("ps-tiny"), "-o", &out.to_string_lossy(), "-"])
        .stdin(spaced.into_bytes())
        .run()
        .ok();
    assert_same_tensors(&SafeFile::read(&out), &plain, "blanks in sequence lines");
}

#[test]
fn embed_gzip_matches_plain() {
    let dir = tempdir();
    let plain = plain_run(dir.path());
    let gz = dir.path().join("sequences.fa.gz");
    let fasta = std::fs::read(root().join(sequences())).expect("read sequences.fa");
    std::fs::write(&gz, gzip(&fasta)).expect("write gzip");
    let out = embed_to(
        dir.path(),
        "gz.safetensors",
        &["-m", &model("ps-tiny"), &gz.to_string_lossy()],
    );
    assert_same_tensors(&out, &plain, "gzip input");
}

#[test]
fn embed_fastq_matches_fasta() {
    let dir = tempdir();
    let plain = plain_run(dir.path());
    let mut fastq = String::new();
    for (i, (id, desc, seq)) in records().into_iter().enumerate() {
        // Varied Phred+33 qualities; record 2's quality line starts with
        // '@', which a FASTQ reader must not take for a header.
        let qual: String = (0..seq.len())
            .map(|j| (b'!' + ((j + 31 * i) % 42) as u8) as char)
            .collect();
        let seq = String::from_utf8(seq).expect("ASCII fixture");
        fastq.push_str(&format!("@{id} {desc}\n{seq}\n+\n{qual}\n"));
    }
    assert!(fastq.contains("\n+\n@"), "a quality line starts with '@'");
    let fq = dir.path().join("sequences.fq");
    std::fs::write(&fq, fastq).expect("write FASTQ");
    let out = embed_to(
        dir.path(),
        "fq.safetensors",
        &["-m", &model("ps-tiny"), &fq.to_string_lossy()],
    );
    assert_same_tensors(&out, &plain, "FASTQ input");
}

#[test]
fn embed_stdout_is_byte_identical_to_file() {
    let dir = tempdir();
    let out = dir.path().join("out.safetensors");
    let (m, seqs) = (model("ps-tiny"), sequences());
    embed()
        .args(["-m", &m, "-o", &out.to_string_lossy(), &seqs])
        .run()
        .ok();
    // An explicit device: `auto` would add its note to stderr.
    let piped = embed()
        .args(["--device", "cpu", "-m", &m, "-o", "-", &seqs])
        .run()
        .ok();
    let file = std::fs::read(&out).expect("read output");
    assert!(!file.is_empty());
    assert!(
        piped.stdout == file,
        "stdout ({} bytes) differs from the file ({} bytes)",
        piped.stdout.len(),
        file.len()
    );
    assert!(piped.stderr.is_empty(), "stderr: {}", piped.stderr);
}

/// A Hugging Face cache holding `org/tiny`: `refs/main` names the snapshot
/// with ps-tiny; an older snapshot holds ph-tiny, so ignoring `refs/main`
/// would show.
fn fake_hub_cache(cache: &Path) {
    let repo = cache.join("models--org--tiny");
    let rev = "3f1c2a9b7d5e4c8a0b6f2e1d9c7a5b3e1f0d2c4a";
    let old = "0000000000000000000000000000000000000000";
    for (snapshot, source) in [(rev, "ps-tiny"), (old, "ph-tiny")] {
        let dir = repo.join("snapshots").join(snapshot);
        std::fs::create_dir_all(&dir).expect("create snapshot");
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(root().join(model(source)).join(f), dir.join(f)).expect("copy model");
        }
    }
    std::fs::create_dir_all(repo.join("refs")).expect("create refs");
    std::fs::write(repo.join("refs/main"), format!("{rev}\n")).expect("write refs/main");
}

#[test]
fn embed_hub_id_resolves_from_cache() {
    let dir = tempdir();
    let cache = dir.path().join("hub");
    fake_hub_cache(&cache);
    let plain = plain_run(dir.path());
    let out = dir.path().join("hub.safetensors");
    embed()
        .args([
            "--model",
            "org/tiny",
            "-o",
            &out.to_string_lossy(),
            &sequences(),
        ])
        .env("HF_HUB_CACHE", &cache)
        .run()
        .ok();
    let hub = SafeFile::read(&out);
    assert_same_tensors(&hub, &plain, "hub id");
    assert_eq!(hub.meta("model"), "org/tiny");
    assert_eq!(
        hub.meta("model_config_sha256"),
        plain.meta("model_config_sha256")
    );
}

mod bad_models;
mod errors;
mod genome;
mod issue15;
mod jobs;
mod layers;

/// `--device auto` (the default) says on stderr which device it chose:
/// the GPU when one is usable, else the CPU with the reason; `-q` silences
/// it, and an explicit device never prints it.
#[test]
fn embed_auto_device_says_which_device() {
    let dir = tempdir();
    let out = dir.path().join("o.safetensors");
    let res = embed()
        .args([
            "-m",
            &model("ps-tiny"),
            "-o",
            &out.to_string_lossy(),
            &sequences(),
        ])
        .run()
        .ok();
    let note = res
        .stderr
        .lines()
        .find(|l| l.starts_with("strand-embed: device auto: "))
        .unwrap_or_else(|| panic!("no device note in:\n{}", res.stderr));
    assert!(
        note.contains("cuda:0") || note.contains("cpu (no usable GPU: "),
        "{note}"
    );
    for args in [&["-q"][..], &["--device", "cpu"][..]] {
        let res = embed()
            .args(args)
            .args([
                "-m",
                &model("ps-tiny"),
                "-o",
                &out.to_string_lossy(),
                &sequences(),
            ])
            .run()
            .ok();
        assert!(
            !res.stderr.contains("device auto"),
            "{args:?}: {}",
            res.stderr
        );
    }
}
