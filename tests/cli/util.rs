//! Helpers shared by the command tests: running a binary, temporary
//! directories, reading safetensors output and comparing with tolerances.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use safetensors::{Dtype, SafeTensors};

/// The workspace root; commands run here so `test-data/...` paths work.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

/// A path under `test-data/`, relative to the workspace root (as a user
/// would type it there).
pub fn test_data(rel: &str) -> String {
    format!("test-data/{rel}")
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strand-cli-test.")
        .tempdir()
        .expect("create a temporary directory")
}

/// What a finished command left behind.
pub struct Output {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// The command line, for failure messages.
    pub cmdline: String,
}

impl Output {
    /// Panics unless the command exited 0; returns `self` for chaining.
    pub fn ok(self) -> Output {
        assert_eq!(
            self.code,
            Some(0),
            "`{}` failed\nstderr:\n{}",
            self.cmdline,
            self.stderr
        );
        self
    }

    /// Panics unless the command exited with `code`.
    pub fn exits(self, code: i32) -> Output {
        assert_eq!(
            self.code,
            Some(code),
            "`{}`: expected exit code {code}\nstderr:\n{}",
            self.cmdline,
            self.stderr
        );
        self
    }
}

/// A command to run: a binary, its arguments, environment and stdin.
pub struct Cmd {
    bin: &'static str,
    args: Vec<String>,
    env: Vec<(String, PathBuf)>,
    stdin: Option<Vec<u8>>,
    /// A shell redirection of stdout applied before the binary starts
    /// (`>&-` closes it); its output then is not captured.
    stdout_redirect: Option<&'static str>,
}

impl Cmd {
    /// `bin` is `env!("CARGO_BIN_EXE_<name>")`.
    pub fn new(bin: &'static str) -> Cmd {
        Cmd {
            bin,
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            stdout_redirect: None,
        }
    }

    /// Starts the binary through `bash` with stdout redirected by
    /// `redirect` (`>&-` closes it, `>/dev/null` discards it).
    pub fn stdout_redirect(mut self, redirect: &'static str) -> Cmd {
        self.stdout_redirect = Some(redirect);
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Cmd {
        self.args.extend(
            args.into_iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        );
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<PathBuf>) -> Cmd {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub fn stdin(mut self, bytes: Vec<u8>) -> Cmd {
        self.stdin = Some(bytes);
        self
    }

    /// Runs to completion in the workspace root. The Hugging Face cache
    /// variables are cleared unless set with [`Cmd::env`], so no test
    /// depends on the machine's cache.
    pub fn run(self) -> Output {
        let name = Path::new(self.bin)
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let cmdline = std::iter::once(name)
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = match self.stdout_redirect {
            Some(redirect) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!("exec \"$0\" \"$@\" {redirect}"))
                    .arg(self.bin);
                c
            }
            None => Command::new(self.bin),
        };
        cmd.args(&self.args)
            .current_dir(root())
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_HOME")
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
        // Feed stdin from a thread so a child that writes a lot before it
        // has read everything cannot deadlock us.
        let feeder = self.stdin.map(|bytes| {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            std::thread::spawn(move || {
                // The child may stop reading early (e.g. on an error).
                let _ = pipe.write_all(&bytes);
            })
        });
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for `{cmdline}`: {e}"));
        if let Some(f) = feeder {
            f.join().expect("stdin feeder thread");
        }
        Output {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmdline,
        }
    }
}

/// Names of the entries of `dir`, sorted (hidden files included).
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Makes a FIFO at `path` with the `mkfifo` command.
pub fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo")
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

/// Whether `path` is a FIFO (not following a replacement by a file).
pub fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// Whether `path` is a character device.
pub fn is_char_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

/// One tensor of a safetensors file.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Raw little-endian bytes.
    pub bytes: Vec<u8>,
}

impl Tensor {
    /// The values of an F32 tensor.
    pub fn f32(&self) -> Vec<f32> {
        assert_eq!(self.dtype, Dtype::F32, "tensor {} is not F32", self.name);
        self.bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4")))
            .collect()
    }
}

/// A whole safetensors file: metadata and tensors in file (data) order.
#[derive(Debug, Clone, PartialEq)]
pub struct SafeFile {
    pub metadata: HashMap<String, String>,
    pub tensors: Vec<Tensor>,
}

impl SafeFile {
    pub fn parse(bytes: &[u8], what: &str) -> SafeFile {
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .unwrap_or_else(|e| panic!("{what}: not a valid safetensors file: {e}"));
        let st = SafeTensors::deserialize(bytes).expect("header already checked");
        let tensors = meta
            .offset_keys()
            .into_iter()
            .map(|name| {
                let t = st.tensor(&name).expect("listed tensor");
                Tensor {
                    dtype: t.dtype(),
                    shape: t.shape().to_vec(),
                    bytes: t.data().to_vec(),
                    name,
                }
            })
            .collect();
        SafeFile {
            metadata: meta.metadata().clone().unwrap_or_default(),
            tensors,
        }
    }

    pub fn read(path: &Path) -> SafeFile {
        let bytes =
            std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        SafeFile::parse(&bytes, &path.display().to_string())
    }

    pub fn names(&self) -> Vec<&str> {
        self.tensors.iter().map(|t| t.name.as_str()).collect()
    }

    pub fn get(&self, name: &str) -> &Tensor {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tensor {name:?} (have {:?})", self.names()))
    }

    pub fn meta(&self, key: &str) -> &str {
        self.metadata
            .get(key)
            .unwrap_or_else(|| panic!("no metadata key {key:?} in {:?}", self.metadata))
    }

    /// Writes the tensors (and metadata) with the reference `safetensors`
    /// crate, which sorts them its own way.
    pub fn write(&self, path: &Path) {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|t| {
                let view = safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                    .unwrap_or_else(|e| panic!("tensor {}: {e}", t.name));
                (t.name.clone(), view)
            })
            .collect();
        let metadata = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        safetensors::serialize_to_file(views, metadata, path)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

/// An element-wise tolerance: `|got - want| <= atol + rtol * |want|`.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

/// Compares `got` with `want` (row-major, `shape`). `None` if every element
/// is within `tol`; otherwise a message with the number of bad elements,
/// the largest error and where it is.
pub fn allclose(
    what: &str,
    shape: &[usize],
    got: &[f32],
    want: &[f32],
    tol: Tol,
) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!(
            "{what}: {} values, expected {} (shape {shape:?})",
            got.len(),
            want.len()
        ));
    }
    let mut bad = 0usize;
    // The largest error and where it is; NaN counts as an infinite error.
    let (mut max_err, mut at) = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        let err = (g - w).abs();
        let err = if err.is_nan() { f64::INFINITY } else { err };
        if err > tol.atol + tol.rtol * w.abs() {
            bad += 1;
        }
        if err > max_err {
            (max_err, at) = (err, i);
        }
    }
    if bad == 0 {
        return None;
    }
    Some(format!(
        "{what}: {bad} of {} values differ by more than atol {:e} + rtol {:e} * |want|; \
         max error {max_err:e} at index {:?} (flat {at}): got {} want {}",
        got.len(),
        tol.atol,
        tol.rtol,
        unflatten(at, shape),
        got[at],
        want[at],
    ))
}

/// Panics with every message if any comparison failed.
pub fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} comparison(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Row-major flat index to a multi-index.
fn unflatten(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &n) in shape.iter().enumerate().rev() {
        if n > 0 {
            idx[k] = i % n;
            i /= n;
        }
    }
    idx
}

#[test]
fn allclose_reports_max_error_and_index() {
    let tol = Tol {
        atol: 1e-3,
        rtol: 0.0,
    };
    assert!(allclose(
        "x",
        &[2, 2],
        &[1.0, 2.0, 3.0, 4.0],
        &[1.0, 2.0, 3.0, 4.0005],
        tol
    )
    .is_none());
    let msg = allclose(
        "x",
        &[2, 2],
        &[1.0, 2.1, 3.0, 4.5],
        &[1.0, 2.0, 3.0, 4.0],
        tol,
    )
    .expect("differs");
    assert!(msg.contains("2 of 4 values"), "{msg}");
    assert!(msg.contains("index [1, 1] (flat 3)"), "{msg}");
    assert!(msg.contains("max error 5e-1"), "{msg}");
    let msg = allclose("x", &[1], &[f32::NAN], &[1.0], tol).expect("NaN is never close");
    assert!(msg.contains("1 of 1"), "{msg}");
}

/// The records of a simple FASTA file: (id, description, sequence), in
/// file order.
pub fn fasta_records(path: &Path) -> Vec<(String, String, Vec<u8>)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out: Vec<(String, String, Vec<u8>)> = Vec::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix('>') {
            let (id, desc) = header.split_once(' ').unwrap_or((header, ""));
            out.push((id.to_owned(), desc.to_owned(), Vec::new()));
        } else {
            out.last_mut()
                .expect("sequence before the first header")
                .2
                .extend_from_slice(line.trim().as_bytes());
        }
    }
    out
}

/// `bytes` gzip-compressed (a single member, like `gzip`).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("in-memory write");
    enc.finish().expect("in-memory write")
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `recommended_tolerance[kind]` of the goldens' manifest.
pub fn tolerance(kind: &str) -> Tol {
    let path = root().join("test-data/goldens/manifest.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read manifest.json"))
            .expect("manifest.json is JSON");
    let t = &manifest["recommended_tolerance"][kind];
    Tol {
        atol: t["atol"].as_f64().expect("atol"),
        rtol: t["rtol"].as_f64().expect("rtol"),
    }
}
