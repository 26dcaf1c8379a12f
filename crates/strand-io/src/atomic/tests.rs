//! Atomic outputs: temporary files, streams, refusals, commits.

use super::*;

use crate::test_util::names_in;

#[test]
fn commit_moves_temp_into_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("out.tsv");
    let mut f = AtomicFile::create(&dest).expect("create");
    f.write_all(b"hello\n").expect("write");
    // Before commit only the hidden temporary exists.
    let names = names_in(dir.path());
    assert_eq!(names.len(), 1);
    assert!(names[0].starts_with(".out.tsv.strand-tmp."), "{names:?}");
    assert_eq!(names[0].len(), ".out.tsv.strand-tmp.".len() + 6);
    f.commit().expect("commit");
    assert_eq!(names_in(dir.path()), vec!["out.tsv"]);
    assert_eq!(std::fs::read(&dest).expect("read"), b"hello\n");
}

#[test]
fn commit_replaces_existing_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("out.tsv");
    std::fs::write(&dest, b"old").expect("write");
    let mut f = AtomicFile::create(&dest).expect("create");
    f.write_all(b"new").expect("write");
    // Until commit the old content stays intact.
    assert_eq!(std::fs::read(&dest).expect("read"), b"old");
    f.commit().expect("commit");
    assert_eq!(std::fs::read(&dest).expect("read"), b"new");
}

#[test]
fn drop_without_commit_leaves_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("out.tsv");
    let mut f = AtomicFile::create(&dest).expect("create");
    f.write_all(&[7u8; 1_000_000]).expect("write");
    drop(f);
    assert!(names_in(dir.path()).is_empty());
}

#[cfg(unix)]
#[test]
fn committed_file_is_not_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("out.tsv");
    AtomicFile::create(&dest)
        .expect("create")
        .commit()
        .expect("commit");
    let mode = std::fs::metadata(&dest).expect("stat").permissions().mode();
    // Readable by the owner at least, and not narrowed to 0600 by us:
    // the group/other bits follow the umask.
    assert_eq!(mode & 0o600, 0o600);
}

#[test]
fn create_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = AtomicFile::create(dir.path()).expect_err("directory");
    assert_eq!(
        err.to_string(),
        format!("{}: cannot create: is a directory", dir.path().display())
    );
    let dest = dir.path().join("missing").join("out.tsv");
    let err = AtomicFile::create(&dest).expect_err("missing dir");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot create: ", dest.display())),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn fifo_is_written_in_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).expect("read fifo"))
    };
    let mut f = AtomicFile::create(&fifo).expect("create");
    assert!(f.is_stream());
    f.write_all(b"through the pipe").expect("write");
    f.commit().expect("commit");
    assert_eq!(reader.join().expect("reader"), b"through the pipe");
    assert_eq!(names_in(dir.path()), vec!["pipe"]);
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(&fifo).expect("stat").file_type();
    assert!(kind.is_fifo());
}

#[cfg(unix)]
#[test]
fn null_device_is_written_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let null = Path::new("/dev/null");
    let mut f = AtomicFile::create(null).expect("create");
    f.write_all(b"discarded").expect("write");
    f.commit().expect("commit");
    let kind = std::fs::metadata(null).expect("stat").file_type();
    assert!(kind.is_char_device());
}

#[cfg(unix)]
#[test]
fn socket_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let err = AtomicFile::create(&sock).expect_err("socket");
    assert!(
        err.to_string()
            .ends_with("not a regular file, character device or FIFO"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn commit_does_not_replace_what_appeared_meanwhile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("out");
    let f = AtomicFile::create(&dest).expect("create");
    std::fs::create_dir(&dest).expect("mkdir");
    let err = f.commit().expect_err("not replaced");
    assert!(
        err.to_string().contains("no longer a regular file"),
        "{err}"
    );
    assert!(dest.is_dir());
    assert_eq!(names_in(dir.path()), vec!["out"]);
}

/// Makes a FIFO with the `mkfifo` command (no libc binding needed).
#[cfg(unix)]
fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo")
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

#[test]
fn commit_all_publishes_all_or_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files: Vec<AtomicFile> = ["a.tsv", "b.bedGraph"]
        .iter()
        .map(|n| {
            let mut f = AtomicFile::create(&dir.path().join(n)).expect("create");
            f.write_all(n.as_bytes()).expect("write");
            f
        })
        .collect();
    commit_all(files).expect("commit");
    assert_eq!(names_in(dir.path()), vec!["a.tsv", "b.bedGraph"]);
    // Dropped before commit_all (an error on the way): nothing.
    let other = tempfile::tempdir().expect("temp dir");
    let f = AtomicFile::create(&other.path().join("c.tsv")).expect("create");
    let ready = f.prepare().expect("prepare");
    drop(ready);
    assert!(names_in(other.path()).is_empty());
}

#[test]
fn bare_file_name_uses_current_dir() {
    assert_eq!(parent_dir(Path::new("out.tsv")), Path::new("."));
    assert_eq!(parent_dir(Path::new("a/out.tsv")), Path::new("a"));
}

#[test]
fn stdout_target() {
    let mut f = AtomicFile::create(Path::new("-")).expect("stdout");
    assert_eq!(f.display_name(), "<stdout>");
    f.write_all(b"").expect("write");
    f.commit().expect("flush");
}

#[test]
fn write_error_names_file() {
    let f = AtomicFile::create(Path::new("-")).expect("stdout");
    let e = f.write_error(io::ErrorKind::BrokenPipe.into());
    assert_eq!(e.to_string(), "<stdout>: write failed: broken pipe");
}
