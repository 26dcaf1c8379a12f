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
        "calibration\t",
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
/// run on one device (`strand-classify train` and `eval`) refuse a GPU
/// list with the reason.
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
            "eval",
            "--device",
            "cuda:0,1",
            "-m",
            &test_data("models/ps-tiny-cls"),
        ])
        .args(["--data", &test_data("sequences.fa")])
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

/// Issue 15: test.sh never modifies system devices. With the null device
/// broken (a regular file in its place, simulated through
/// STRAND_NULL_DEVICE) it stops at once with a clear message and exit 1,
/// leaving the file alone.
#[test]
fn issue15_test_script_stops_when_null_is_not_a_device() {
    let script = std::fs::read_to_string(root().join("test.sh")).expect("read test.sh");
    for forbidden in ["mknod", "rm -f /dev", "rm /dev"] {
        assert!(
            !script.contains(forbidden),
            "test.sh contains {forbidden:?}"
        );
    }
    let dir = tempdir();
    let fake = dir.path().join("null");
    std::fs::write(&fake, "collected output").expect("write");
    let mut child = std::process::Command::new("bash")
        .arg(root().join("test.sh"))
        .env("STRAND_NULL_DEVICE", &fake)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run test.sh");
    // It must stop before any real work; a script that goes on (into pip
    // and cargo) is killed and fails the test.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().expect("kill test.sh");
            child.wait().expect("reap");
            panic!("test.sh did not stop on a broken null device");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not a character device"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&fake).expect("read"),
        "collected output"
    );
}
