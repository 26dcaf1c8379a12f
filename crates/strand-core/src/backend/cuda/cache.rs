//! The on-disk kernel cache, safe to share between many nodes (a cluster
//! home directory) and robust to damage.
//!
//! Each entry is one file: a header line, a line with the cubin's size and
//! SHA-256, then the cubin. It is written to a temporary file named after
//! the host, the process and a random number (so two nodes, or two
//! processes of one node, never write the same temporary file), synced,
//! and renamed into place: readers see a whole entry or none. An entry
//! that does not check out (cut short, damaged, written by an older strand
//! without the header) is not an error: the kernels are recompiled and the
//! entry replaced. Nothing but our own temporary file is ever removed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::util::sha256_hex;

/// First line of every entry: the format, so a future change is detected.
const MAGIC: &[u8] = b"strand-kernel-cache v1\n";

/// The cubin stored at `path`, or `None` when there is none or it fails
/// validation (then the caller recompiles and [`store`]s a fresh one).
pub fn load(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    decode(&bytes)
}

/// Stores `cubin` at `path` atomically (see the module docs).
pub fn store(path: &Path, cubin: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a cache entry lives in a directory"))?;
    std::fs::create_dir_all(dir)?;
    let (tmp, mut file) = create_temp(path)?;
    let written = (|| {
        file.write_all(&encode(cubin))?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        // Ours alone: the name is unique to this host, process and call.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn encode(cubin: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(format!("{} {}\n", cubin.len(), sha256_hex(cubin)).as_bytes());
    out.extend_from_slice(cubin);
    out
}

fn decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&rest[..nl]).ok()?;
    let (len, hash) = line.split_once(' ')?;
    let data = &rest[nl + 1..];
    (len.parse::<usize>().ok()? == data.len() && hash == sha256_hex(data)).then(|| data.to_vec())
}

/// Creates `.<name>.<host>.<pid>.<random>.tmp` next to `path`, failing
/// rather than opening a file that exists.
fn create_temp(path: &Path) -> io::Result<(PathBuf, File)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let host = hostname();
    let pid = std::process::id();
    loop {
        let tmp = dir.join(format!(".{name}.{host}.{pid}.{:016x}.tmp", random()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// This machine's name, reduced to file-name-safe characters.
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "host".into()
    } else {
        name
    }
}

/// A random 64-bit number: the standard library's randomly keyed hasher
/// over the time and a counter (no dependency needed for a file name).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn round_trip_leaves_only_the_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("sm_90-abc.cubin");
        let cubin: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        store(&path, &cubin).expect("store");
        assert_eq!(load(&path), Some(cubin));
        assert_eq!(names(&dir.path().join("sub")), vec!["sm_90-abc.cubin"]);
    }

    #[test]
    fn damaged_entries_are_misses_and_get_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.cubin");
        let cubin = b"\x7fELF pretend cubin".to_vec();
        store(&path, &cubin).expect("store");
        let good = std::fs::read(&path).expect("read");
        // A flipped byte, a cut, an entry from before the header, empty.
        let mut flipped = good.clone();
        *flipped.last_mut().expect("non-empty") ^= 1;
        let cases = [
            flipped,
            good[..good.len() - 3].to_vec(),
            cubin.clone(),
            Vec::new(),
        ];
        for bad in cases {
            std::fs::write(&path, &bad).expect("damage");
            assert_eq!(load(&path), None, "{bad:?}");
            store(&path, &cubin).expect("replace");
            assert_eq!(load(&path), Some(cubin.clone()));
        }
        assert_eq!(load(&dir.path().join("absent.cubin")), None);
    }

    #[test]
    fn concurrent_writers_never_expose_a_partial_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.cubin");
        let cubin: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..5 {
                        store(&path, &cubin).expect("store");
                        // Any reader sees a whole entry.
                        assert_eq!(load(&path).as_deref(), Some(&cubin[..]));
                    }
                });
            }
        });
        assert_eq!(names(dir.path()), vec!["k.cubin"]);
    }

    #[test]
    fn temporary_names_are_unique_and_a_failed_store_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.cubin");
        let (a, _fa) = create_temp(&path).expect("temp");
        let (b, _fb) = create_temp(&path).expect("temp");
        assert_ne!(a, b);
        let a_name = a.file_name().expect("name").to_string_lossy().into_owned();
        assert!(a_name.starts_with(&format!(".k.cubin.{}.{}.", hostname(), std::process::id())));
        std::fs::remove_file(&a).expect("rm");
        std::fs::remove_file(&b).expect("rm");
        // The destination is a directory: the rename fails, the temporary
        // file goes, the directory stays.
        std::fs::create_dir(&path).expect("mkdir");
        std::fs::write(path.join("x"), b"keep").expect("write");
        assert!(store(&path, b"cubin").is_err());
        assert_eq!(names(dir.path()), vec!["k.cubin"]);
        assert!(path.join("x").is_file());
    }
}
