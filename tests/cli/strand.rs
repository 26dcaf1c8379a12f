//! `strand doctor` and the device options every command shares.

use crate::util::*;

fn strand() -> Cmd {
    Cmd::new(env!("CARGO_BIN_EXE_strand"))
}

/// `doctor` always succeeds and reports on every CUDA component, found or
/// not, one tab-separated line each.
#[test]
fn doctor_reports_every_gpu_component() {
    let res = strand().args(["doctor"]).run().ok();
    let text = String::from_utf8_lossy(&res.stdout);
    for item in [
        "cpu\t",
        "cuda driver\t",
        "cublas\t",
        "nvrtc\t",
        "hf cache\t",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(item)),
            "no {item:?} line in:\n{text}"
        );
    }
}

/// `--device cuda` without a usable GPU is one clear line and exit 1,
/// never a panic; with a GPU it runs.
#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    let dir = tempdir();
    let out = dir.path().join("o.safetensors");
    let res = Cmd::new(env!("CARGO_BIN_EXE_strand-embed"))
        .args([
            "--device",
            "cuda",
            "-m",
            &test_data("models/ps-tiny"),
            "-o",
            &out.to_string_lossy(),
            &test_data("sequences.fa"),
        ])
        .run();
    if res.code == Some(0) {
        return; // a GPU machine
    }
    let res = res.exits(1);
    assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
    assert!(
        res.stderr.starts_with("strand-embed: cuda: "),
        "{}",
        res.stderr
    );
    assert!(!res.stderr.contains("panicked"), "{}", res.stderr);
    assert!(!out.exists());
}

/// Several GPUs: `cuda:all` without a GPU is one clear line; commands that
/// run on one device refuse a GPU list with the reason.
#[test]
fn several_gpus_are_for_strand_embed() {
    let dir = tempdir();
    let out = dir.path().join("o.safetensors");
    let res = Cmd::new(env!("CARGO_BIN_EXE_strand-embed"))
        .args(["--device", "cuda:all", "-m", &test_data("models/ps-tiny")])
        .args(["-o", &out.to_string_lossy(), &test_data("sequences.fa")])
        .run();
    if res.code != Some(0) {
        let res = res.exits(1);
        assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
        assert!(
            res.stderr.starts_with("strand-embed: cuda: "),
            "{}",
            res.stderr
        );
        assert!(!out.exists());
    }
    let res = Cmd::new(env!("CARGO_BIN_EXE_strand-classify"))
        .args([
            "predict",
            "--device",
            "cuda:0,1",
            "-m",
            &test_data("models/ps-tiny-cls"),
        ])
        .args([test_data("sequences.fa")])
        .run()
        .exits(1);
    assert!(res.stderr.contains("runs on one device"), "{}", res.stderr);
    let res = Cmd::new(env!("CARGO_BIN_EXE_strand-embed"))
        .args(["--device", "cuda:0,0", "-m", "x", "-o", "y", "z"])
        .run()
        .exits(2);
    assert!(res.stderr.contains("names a GPU twice"), "{}", res.stderr);
}

/// `--precision bf16` on the CPU is refused with the reason.
#[test]
fn bf16_on_the_cpu_is_refused() {
    let dir = tempdir();
    let out = dir.path().join("o.safetensors");
    let res = Cmd::new(env!("CARGO_BIN_EXE_strand-embed"))
        .args([
            "--device",
            "cpu",
            "--precision",
            "bf16",
            "-m",
            &test_data("models/ps-tiny"),
            "-o",
            &out.to_string_lossy(),
            &test_data("sequences.fa"),
        ])
        .run()
        .exits(1);
    assert!(
        res.stderr.contains("bf16 runs on a GPU only"),
        "{}",
        res.stderr
    );
}
