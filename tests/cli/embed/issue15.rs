//! Issue 15, `strand-embed`: outputs that are not regular files, outputs
//! that are inputs, hostile names and sequences, bounded options.

use std::path::Path;

use crate::util::{mkfifo, tempdir, Cmd, SafeFile};

use super::{embed, model, sequences};

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A FIFO as `-o` is written through, never replaced by a regular file.
#[test]
fn issue15_output_fifo_is_written_in_place() {
    let dir = tempdir();
    let fifo = dir.path().join("out.safetensors");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).expect("read the FIFO"))
    };
    let res = embed()
        .args(["-m", &model("ps-tiny"), "-o", &s(&fifo), &sequences()])
        .run();
    // Checked before joining: a replaced FIFO leaves the reader waiting.
    assert!(crate::util::is_fifo(&fifo), "the FIFO was replaced");
    res.ok();
    let bytes = reader.join().expect("reader thread");
    let out = SafeFile::parse(&bytes, "FIFO output");
    assert!(!out.names().is_empty());
    assert_eq!(
        crate::util::dir_entries(dir.path()),
        vec!["out.safetensors"]
    );
}

/// `-o /dev/null` writes to the device and leaves it a character device.
#[test]
fn issue15_output_null_device_stays_a_device() {
    embed()
        .args(["-m", &model("ps-tiny"), "-o", "/dev/null", &sequences()])
        .run()
        .ok();
    assert!(crate::util::is_char_device(Path::new("/dev/null")));
}

/// A directory or a socket as `-o` is one clear line, exit 1, untouched.
#[test]
fn issue15_output_directory_or_socket_is_refused() {
    let dir = tempdir();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    let res = embed()
        .args(["-m", &model("ps-tiny"), "-o", &s(&sub), &sequences()])
        .run()
        .exits(1);
    assert!(res.stderr.contains("is a directory"), "{}", res.stderr);
    assert!(sub.is_dir());

    let sock = dir.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let res = embed()
        .args(["-q", "-m", &model("ps-tiny"), "-o", &s(&sock), &sequences()])
        .run()
        .exits(1);
    assert!(
        res.stderr
            .contains("not a regular file, character device or FIFO"),
        "{}",
        res.stderr
    );
    assert_eq!(res.stderr.trim_end().lines().count(), 1, "{}", res.stderr);
    assert_eq!(crate::util::dir_entries(dir.path()), vec!["sock", "sub"]);
}

/// Huge numbers are usage errors (exit 2), never a panic.
#[test]
fn issue15_numeric_options_are_bounded() {
    for args in [
        ["--pool", "bin:9223372036854775808"],
        ["--pool", "bin:18446744073709551615"],
        ["--window", "18446744073709551615m"],
        ["--overlap", "18446744073709551615"],
        ["--batch-size", "18446744073709551615"],
        ["--shard", "18446744073709551615/18446744073709551615"],
    ] {
        let dir = tempdir();
        let out = dir.path().join("o.safetensors");
        let res = embed()
            .args(["-m", &model("ps-tiny"), "-o", &s(&out)])
            .args(args)
            .args([sequences()])
            .run();
        assert!(
            matches!(res.code, Some(1 | 2)),
            "{args:?}: exit {:?}\n{}",
            res.code,
            res.stderr
        );
        assert!(!res.stderr.contains("panicked"), "{args:?}: {}", res.stderr);
        assert!(!out.exists());
    }
}

/// `-o` naming the input (directly or through a link) is refused before
/// any work; the input is untouched.
#[test]
fn issue15_output_equal_to_the_input_is_refused() {
    let dir = tempdir();
    let input = dir.path().join("in.fa");
    std::fs::write(&input, ">a\nACGTACGT\n").expect("write");
    let link = dir.path().join("link.fa");
    std::os::unix::fs::symlink(&input, &link).expect("symlink");
    for out in [&input, &link] {
        let res = embed()
            .args(["-q", "-m", &model("ps-tiny"), "-o", &s(out), &s(&input)])
            .run()
            .exits(1);
        assert!(
            res.stderr.contains("is the same file as input"),
            "{}",
            res.stderr
        );
        assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
    }
    assert_eq!(std::fs::read(&input).expect("read"), b">a\nACGTACGT\n");
    assert_eq!(
        crate::util::dir_entries(dir.path()),
        vec!["in.fa", "link.fa"]
    );
}

/// A `.fai` left over from before a header edit is an error saying to
/// re-index, not bases from the wrong place.
#[test]
fn issue15_stale_fai_is_an_error() {
    let dir = tempdir();
    let fa = dir.path().join("s.fa");
    let text = std::fs::read_to_string(crate::util::root().join("test-data/genome/ref.fa"))
        .expect("read ref.fa");
    std::fs::write(&fa, text.replacen(">chrA", ">chrA edited later", 1)).expect("write");
    std::fs::copy(
        crate::util::root().join("test-data/genome/ref.fa.fai"),
        dir.path().join("s.fa.fai"),
    )
    .expect("copy .fai");
    let out = dir.path().join("o.safetensors");
    let res = embed()
        .args(["-q", "-m", &model("ps-tiny"), "-o", &s(&out)])
        .args(["-r", "chrA:1001-3000", &s(&fa)])
        .run()
        .exits(1);
    assert!(
        res.stderr.contains("re-create it with `samtools faidx"),
        "{}",
        res.stderr
    );
    assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
    assert!(!out.exists());
}

/// A config whose sizes the checkpoint does not hold is refused before
/// anything is allocated from them (`n_layer: 10000000` used to take
/// gigabytes), naming the setting.
#[test]
fn issue15_absurd_model_config_is_refused_before_allocating() {
    for (key, value, needle) in [
        (
            "n_layer",
            10_000_000u64,
            "n_layer is 10000000, more than strand accepts",
        ),
        (
            "n_layer",
            3,
            "config.json says n_layer 3 but the checkpoint holds 2 layers",
        ),
        (
            "d_model",
            1 << 40,
            "d_model is 1099511627776, more than strand accepts",
        ),
        ("d_model", 30, "but config.json says d_model 30"),
    ] {
        let dir = tempdir();
        let m = dir.path().join("model");
        std::fs::create_dir(&m).expect("mkdir");
        let src = crate::util::root().join(model("ps-tiny"));
        std::fs::copy(src.join("model.safetensors"), m.join("model.safetensors")).expect("copy");
        let text = std::fs::read_to_string(src.join("config.json")).expect("config");
        let mut config: serde_json::Value = serde_json::from_str(&text).expect("json");
        config[key] = value.into();
        std::fs::write(m.join("config.json"), config.to_string()).expect("write");
        let out = dir.path().join("o.safetensors");
        let started = std::time::Instant::now();
        let res = embed()
            .args([
                "-q",
                "--device",
                "cpu",
                "-m",
                &s(&m),
                "-o",
                &s(&out),
                &sequences(),
            ])
            .run()
            .exits(1);
        assert!(res.stderr.contains(needle), "{key} {value}: {}", res.stderr);
        assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert!(!out.exists());
    }
}

/// Runs strand-embed on `fasta` (written to a temp dir) with `args`.
fn embed_text(fasta: &[u8], args: &[&str]) -> (tempfile::TempDir, crate::util::Output) {
    let dir = tempdir();
    let input = dir.path().join("in.fa");
    std::fs::write(&input, fasta).expect("write");
    let res = embed()
        .args(["-q", "--device", "cpu", "-m", &model("ps-tiny")])
        .args(args.iter().map(|a| a.replace("DIR", &s(dir.path()))))
        .args([s(&input)])
        .run();
    (dir, res)
}

/// NUL bytes in a sequence are refused, naming file, record and position.
#[test]
fn issue15_nul_bytes_are_refused() {
    let (dir, res) = embed_text(b">a\nACGT\n>b\nAC\0\0GT\n", &["-o", "DIR/o.safetensors"]);
    let res = res.exits(1);
    assert!(
        res.stderr.contains("in.fa: record 2 (\"b\"): NUL byte")
            && res.stderr.contains("at position 3"),
        "{}",
        res.stderr
    );
    assert!(!dir.path().join("o.safetensors").exists());
}

/// An empty record name in --out-dir mode is an error naming the record
/// (it used to become a hidden `.safetensors`).
#[test]
fn issue15_empty_name_in_out_dir_is_refused() {
    let (dir, res) = embed_text(b">a\nACGT\n>\nACGT\n", &["--out-dir", "DIR/out"]);
    let res = res.exits(1);
    assert!(
        res.stderr.contains("in.fa: record 2 (\"\"): empty name"),
        "{}",
        res.stderr
    );
    // Records before it may be complete (--out-dir publishes each record
    // for --resume), but no hidden file and no index.
    let out = dir.path().join("out");
    if out.exists() {
        let names = crate::util::dir_entries(&out);
        assert!(
            names
                .iter()
                .all(|n| !n.starts_with('.') && n != "index.tsv"),
            "{names:?}"
        );
    }
}

/// Names that differ only in invalid UTF-8 bytes are distinct records, not
/// a "duplicate id".
#[test]
fn issue15_non_utf8_names_are_not_duplicates() {
    let (dir, res) = embed_text(
        b">r\xff\nACGT\n>r\xfe\nACGT\n",
        &["-o", "DIR/o.safetensors"],
    );
    res.ok();
    let out = SafeFile::read(&dir.path().join("o.safetensors"));
    assert_eq!(out.names(), vec!["r\\xff", "r\\xfe"]);
}

/// A huge name is cut in messages; a long name gets a short, hashed file
/// name in --out-dir while index.tsv keeps it whole.
#[test]
fn issue15_long_names() {
    let huge = "n".repeat(1_000_000);
    let (_dir, res) = embed_text(
        format!(">{huge}\n\n").as_bytes(),
        &["-o", "DIR/o.safetensors"],
    );
    let res = res.exits(1);
    assert!(
        res.stderr.len() < 1000,
        "{} bytes of stderr",
        res.stderr.len()
    );
    assert!(res.stderr.contains("(1000000 bytes)"), "{}", res.stderr);

    let long = format!("{}-end", "L".repeat(300));
    let (dir, res) = embed_text(
        format!(">{long}\nACGT\n>short\nACGT\n").as_bytes(),
        &["--out-dir", "DIR/out", "--pool", "mean"],
    );
    res.ok();
    let out = dir.path().join("out");
    let names = crate::util::dir_entries(&out);
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| n.len() < 240), "{names:?}");
    let index = std::fs::read_to_string(out.join("index.tsv")).expect("index");
    assert!(index.contains(&long), "{index}");
}

/// `-o -` with standard output closed is an error (exit 1), not exit 0
/// with the output lost.
#[test]
fn issue15_closed_stdout_is_an_error() {
    let res = Cmd::new(super::BIN)
        .args([
            "-q",
            "--device",
            "cpu",
            "-m",
            &model("ps-tiny"),
            "-o",
            "-",
            &sequences(),
        ])
        .stdout_redirect(">&-")
        .run()
        .exits(1);
    assert!(
        res.stderr
            .contains("<stdout>: cannot create: standard output is closed"),
        "{}",
        res.stderr
    );
    // Redirected to /dev/null by the shell, it is an ordinary write.
    Cmd::new(super::BIN)
        .args([
            "-q",
            "--device",
            "cpu",
            "-m",
            &model("ps-tiny"),
            "-o",
            "-",
            &sequences(),
        ])
        .stdout_redirect(">/dev/null")
        .run()
        .ok();
}

/// `--resume -o` keeps an existing output only when it was made by the
/// same model and settings; otherwise it refuses, leaving it untouched.
#[test]
fn issue15_resume_refuses_an_output_of_other_settings() {
    let dir = tempdir();
    let out = dir.path().join("o.safetensors");
    let run = |extra: &[&str]| {
        embed()
            .args(["-q", "--device", "cpu", "-o", &s(&out), "--resume"])
            .args(extra)
            .args([sequences()])
            .run()
    };
    run(&["-m", &model("ps-tiny")]).ok();
    let before = std::fs::read(&out).expect("read");
    // Same model and settings: complete, nothing to do.
    run(&["-m", &model("ps-tiny")]).ok();
    for (extra, key) in [
        (vec!["-m", &model("ps-tiny"), "--pool", "mean"], "pool"),
        (vec!["-m", &model("ph-tiny")], "model_config_sha256"),
        (vec!["-m", &model("ps-tiny"), "--dtype", "f16"], "dtype"),
    ] {
        let res = run(&extra).exits(1);
        assert!(
            res.stderr
                .contains(&format!("exists but was made with {key} ")),
            "{extra:?}: {}",
            res.stderr
        );
        assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
    }
    assert_eq!(std::fs::read(&out).expect("read"), before);
}
