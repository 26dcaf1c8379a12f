//! Refusing an output that would overwrite an input (or another output).
//!
//! `strand-score -o ref.fa` or `strand-embed -o in.fa in.fa` would read
//! the input while its replacement is written, then rename the result over
//! it: the input is lost. Every command checks its outputs against its
//! inputs here, before any work. Two paths are the same file when they
//! have the same device and inode (hard links, symbolic links, `./x` and
//! `x`), or, for an output that does not exist yet, the same canonical
//! path (two new outputs under one name).

use std::path::{Path, PathBuf};

use crate::atomic::Dest;
use crate::error::Error;

/// How a path is identified.
#[derive(Debug, PartialEq, Eq)]
enum Id {
    /// An existing file: (device, inode).
    Inode(u64, u64),
    /// A name that does not exist yet: its canonical directory + name.
    New(PathBuf),
}

/// The identity of `path`, or `None` for standard input/output and for
/// paths that cannot be resolved (reading or creating them fails later
/// with its own message).
fn id(path: &Path) -> Option<Id> {
    if path == Path::new("-") {
        return None;
    }
    match std::fs::metadata(path) {
        Ok(meta) => inode(&meta),
        Err(_) => {
            let dir = crate::atomic::parent_dir(path).canonicalize().ok()?;
            Some(Id::New(dir.join(path.file_name()?)))
        }
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> Option<Id> {
    use std::os::unix::fs::MetadataExt;
    Some(Id::Inode(meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> Option<Id> {
    None
}

/// Fails when an output is the same file as an input or as an earlier
/// output. Devices and FIFOs are skipped: writing them destroys nothing
/// (`-o /dev/null` with `/dev/null` as input is fine).
pub fn check_outputs(outputs: &[&Path], inputs: &[&Path]) -> Result<(), Error> {
    let inputs: Vec<(&Path, Id)> = inputs.iter().filter_map(|p| Some((*p, id(p)?))).collect();
    let mut seen: Vec<(&Path, Id)> = Vec::new();
    for &out in outputs {
        if Dest::of(out).is_ok_and(Dest::is_stream) {
            continue;
        }
        let Some(out_id) = id(out) else { continue };
        let clash = |what: &str, other: &Path| Error::InvalidOutput {
            file: out.display().to_string(),
            message: format!(
                "is the same file as {what} {}; refusing to overwrite it (choose another output)",
                other.display()
            ),
        };
        if let Some((input, _)) = inputs.iter().find(|(_, i)| *i == out_id) {
            return Err(clash("input", input));
        }
        if let Some((other, _)) = seen.iter().find(|(_, i)| *i == out_id) {
            return Err(clash("output", other));
        }
        seen.push((out, out_id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inode_through_another_name_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("in.fa");
        std::fs::write(&input, ">a\nACGT\n").expect("write");
        let dotted = dir.path().join(".").join("in.fa");
        let err = check_outputs(&[&dotted], &[&input]).expect_err("same file");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: is the same file as input {}; refusing to overwrite it (choose another output)",
                dotted.display(),
                input.display()
            )
        );
        #[cfg(unix)]
        {
            let link = dir.path().join("link.fa");
            std::os::unix::fs::symlink(&input, &link).expect("symlink");
            assert!(check_outputs(&[&link], &[&input]).is_err());
            let hard = dir.path().join("hard.fa");
            std::fs::hard_link(&input, &hard).expect("hard link");
            assert!(check_outputs(&[&hard], &[&input]).is_err());
        }
        // The original is untouched by the check.
        assert_eq!(std::fs::read(&input).expect("read"), b">a\nACGT\n");
    }

    #[test]
    fn two_new_outputs_under_one_name_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = dir.path().join("out.tsv");
        let b = dir.path().join(".").join("out.tsv");
        let err = check_outputs(&[&a, &b], &[]).expect_err("same output");
        assert!(err.to_string().contains("same file as output"), "{err}");
    }

    #[test]
    fn distinct_files_stdio_and_devices_pass() {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("in.fa");
        std::fs::write(&input, ">a\nACGT\n").expect("write");
        let out = dir.path().join("out.safetensors");
        let dash = Path::new("-");
        check_outputs(&[&out, dash], &[&input, dash]).expect("distinct");
        #[cfg(unix)]
        {
            let null = Path::new("/dev/null");
            check_outputs(&[null], &[null]).expect("a device destroys nothing");
        }
    }
}
