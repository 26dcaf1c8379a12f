//! Output files that appear only when complete.
//!
//! [`AtomicFile`] writes to a hidden temporary file next to the destination
//! and renames it into place on [`AtomicFile::commit`]. A job that fails or
//! is killed therefore never leaves a file under the final name that looks
//! finished but is short; at most a `.<name>.strand-tmp.XXXXXX` file
//! remains after a hard kill.
//!
//! Only regular files (or new names) go through a temporary file. A
//! character device (`/dev/null`, a terminal) or a FIFO is written in
//! place: renaming a file over it would delete the device or the pipe a
//! reader is waiting on (as root, `-o /dev/null` would replace the null
//! device with a regular file). Any other kind of path (a directory, a
//! socket, a block device) is refused. The rename at commit replaces only
//! a regular file or a link, so nothing we did not create is removed.

use std::fs::File;
use std::io::{self, BufWriter, Stdout, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::Error;

/// Output buffer size; outputs are written in large sequential chunks.
const BUF_SIZE: usize = 256 * 1024;

/// A buffered output file that only appears under its final name once
/// [`commit`](AtomicFile::commit)ted. The destination `-` is standard
/// output, written directly (commit just flushes).
///
/// Errors from the [`Write`] methods are plain [`io::Error`]s; wrap them
/// with [`AtomicFile::write_error`] to name the file.
pub struct AtomicFile {
    /// Name used in messages: the path as given, or `<stdout>`.
    display: String,
    target: Target,
}

enum Target {
    File {
        writer: BufWriter<NamedTempFile>,
        dest: PathBuf,
    },
    /// A character device or FIFO, written in place.
    Direct(BufWriter<File>),
    Stdout(BufWriter<Stdout>),
}

/// What an output path names, as far as writing it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// `-`: standard output.
    Stdout,
    /// A regular file or a name that does not exist yet: written through a
    /// temporary file and renamed into place.
    File,
    /// A character device or FIFO: written in place, as a stream.
    Stream,
}

impl Dest {
    /// Classifies `path`, refusing kinds that cannot be written: a
    /// directory, a socket, a block device. Symbolic links are followed.
    pub fn of(path: &Path) -> Result<Dest, Error> {
        if path == Path::new("-") {
            return Ok(Dest::Stdout);
        }
        let create_error = |source| Error::Create {
            file: path.display().to_string(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Dest::File),
            Err(e) => return Err(create_error(e)),
        };
        let kind = meta.file_type();
        if kind.is_file() {
            return Ok(Dest::File);
        }
        if kind.is_dir() {
            return Err(create_error(io::ErrorKind::IsADirectory.into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if kind.is_char_device() || kind.is_fifo() {
                return Ok(Dest::Stream);
            }
        }
        Err(create_error(io::Error::other(
            "not a regular file, character device or FIFO",
        )))
    }

    /// Whether the destination can only be written front to back (no
    /// seeking, nothing can be rewritten).
    pub fn is_stream(self) -> bool {
        self != Dest::File
    }
}

impl AtomicFile {
    /// Starts writing `path` (or standard output for `-`).
    ///
    /// Fails early, before any work is done, if the destination is a
    /// directory (or another kind of path that cannot be written, see
    /// [`Dest::of`]) or its directory is missing or not writable. A
    /// character device or FIFO is opened for writing in place (for a
    /// FIFO this waits for a reader, as any writer does).
    pub fn create(path: &Path) -> Result<AtomicFile, Error> {
        let display = path.display().to_string();
        let create_error = |source| Error::Create {
            file: display.clone(),
            source,
        };
        match Dest::of(path)? {
            Dest::Stdout => {
                if stdout_was_closed() {
                    return Err(Error::Create {
                        file: "<stdout>".into(),
                        source: io::Error::other(
                            "standard output is closed, so the output would be lost; \
                             redirect it to a file or a pipe, or use -o FILE",
                        ),
                    });
                }
                return Ok(AtomicFile {
                    display: "<stdout>".to_owned(),
                    target: Target::Stdout(BufWriter::with_capacity(BUF_SIZE, io::stdout())),
                });
            }
            Dest::Stream => {
                // No truncate: a device or pipe has no contents to cut.
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(create_error)?;
                return Ok(AtomicFile {
                    display,
                    target: Target::Direct(BufWriter::with_capacity(BUF_SIZE, file)),
                });
            }
            Dest::File => {}
        }
        let file_name = path
            .file_name()
            .ok_or_else(|| create_error(io::Error::other("not a file name")))?;
        let temp = create_temp(file_name, parent_dir(path)).map_err(create_error)?;
        Ok(AtomicFile {
            display,
            target: Target::File {
                writer: BufWriter::with_capacity(BUF_SIZE, temp),
                dest: path.to_path_buf(),
            },
        })
    }

    /// The name used in messages: the path as given, or `<stdout>`.
    pub fn display_name(&self) -> &str {
        &self.display
    }

    /// Whether this output is written in place as a stream (standard
    /// output, a device, a FIFO) rather than through a temporary file.
    pub fn is_stream(&self) -> bool {
        !matches!(self.target, Target::File { .. })
    }

    /// The temporary file behind a regular-file output, flushed so that
    /// its contents and cursor are current: for writers that must seek
    /// back (to fill in a header). `None` for streams.
    pub fn temp_file(&mut self) -> io::Result<Option<&mut File>> {
        match &mut self.target {
            Target::File { writer, .. } => {
                writer.flush()?;
                Ok(Some(writer.get_mut().as_file_mut()))
            }
            _ => Ok(None),
        }
    }

    /// Wraps an I/O error from writing to this file so that it names the
    /// file.
    pub fn write_error(&self, source: io::Error) -> Error {
        Error::Write {
            file: self.display.clone(),
            source,
        }
    }

    /// Flushes, syncs the data to disk and renames the temporary file onto
    /// the destination, replacing any existing file. For standard output it
    /// only flushes.
    pub fn commit(self) -> Result<(), Error> {
        self.prepare()?.publish()
    }

    /// The first half of [`commit`](AtomicFile::commit): flushes and syncs
    /// (every write error surfaces here) but publishes nothing yet. See
    /// [`commit_all`].
    pub fn prepare(self) -> Result<Ready, Error> {
        let display = self.display;
        let write_error = |source| Error::Write {
            file: display.clone(),
            source,
        };
        match self.target {
            Target::Stdout(mut writer) => writer.flush().map_err(write_error)?,
            Target::Direct(mut writer) => writer.flush().map_err(write_error)?,
            Target::File { writer, dest } => {
                let temp = writer
                    .into_inner()
                    .map_err(|e| write_error(e.into_error()))?;
                // Sync before the rename: otherwise a crash shortly after
                // could leave the final name pointing at an empty file.
                temp.as_file().sync_all().map_err(write_error)?;
                return Ok(Ready(Some((display, temp, dest))));
            }
        }
        Ok(Ready(None))
    }
}

/// An output whose data is complete and on disk, waiting to be renamed
/// into place by [`Ready::publish`] (dropping it removes the temporary
/// file). `None` for streams, which have nothing to publish.
#[derive(Debug)]
pub struct Ready(Option<(String, NamedTempFile, PathBuf)>);

impl Ready {
    /// Renames the temporary file onto the destination.
    pub fn publish(self) -> Result<(), Error> {
        let Some((display, temp, dest)) = self.0 else {
            return Ok(());
        };
        // Something may have appeared under the name since `create` (a
        // FIFO, a directory): the rename would delete it, and we replace
        // only what can be an earlier output.
        if let Ok(meta) = std::fs::symlink_metadata(&dest) {
            let kind = meta.file_type();
            if !kind.is_file() && !kind.is_symlink() {
                return Err(Error::Commit {
                    file: display,
                    source: io::Error::other(
                        "the destination is no longer a regular file; left untouched",
                    ),
                });
            }
        }
        temp.persist(&dest).map_err(|e| Error::Commit {
            file: display,
            source: e.error,
        })?;
        sync_dir(parent_dir(&dest));
        Ok(())
    }
}

/// Commits a command's outputs together: all are flushed and synced
/// first, so a write error (a full disk) publishes none of them; only then
/// are they renamed into place, in order. A command that fails before
/// this publishes nothing at all.
pub fn commit_all(files: impl IntoIterator<Item = AtomicFile>) -> Result<(), Error> {
    let ready: Vec<Ready> = files
        .into_iter()
        .map(AtomicFile::prepare)
        .collect::<Result<_, _>>()?;
    ready.into_iter().try_for_each(Ready::publish)
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.target {
            Target::File { writer, .. } => writer.write(buf),
            Target::Direct(writer) => writer.write(buf),
            Target::Stdout(writer) => writer.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // Forwarded explicitly so BufWriter's fast path is used.
        match &mut self.target {
            Target::File { writer, .. } => writer.write_all(buf),
            Target::Direct(writer) => writer.write_all(buf),
            Target::Stdout(writer) => writer.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.target {
            Target::File { writer, .. } => writer.flush(),
            Target::Direct(writer) => writer.flush(),
            Target::Stdout(writer) => writer.flush(),
        }
    }
}

impl std::fmt::Debug for AtomicFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicFile")
            .field("display", &self.display)
            .finish_non_exhaustive()
    }
}

// Dropping without commit needs no code: dropping the NamedTempFile
// deletes the temporary file.

/// Whether the process started with standard output closed.
///
/// Writing to a closed descriptor would fail (EBADF), but the Rust runtime
/// reopens a closed fd 0-2 on `/dev/null` (read-write) before `main`, so
/// the output would vanish with exit 0. That reopened descriptor is what
/// we look for: `/dev/null` open for reading and writing. (A caller that
/// hands us such a descriptor on purpose, e.g. Python's
/// `subprocess.DEVNULL`, should use `-o /dev/null` instead.)
#[cfg(target_os = "linux")]
fn stdout_was_closed() -> bool {
    let is_null = std::fs::read_link("/proc/self/fd/1").is_ok_and(|p| p == Path::new("/dev/null"));
    if !is_null {
        return false;
    }
    // `flags:\t0100002`: octal open flags; the access mode is the low bits.
    std::fs::read_to_string("/proc/self/fdinfo/1").is_ok_and(|info| {
        info.lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .is_some_and(|flags| flags & 0o3 == 0o2)
    })
}

#[cfg(not(target_os = "linux"))]
fn stdout_was_closed() -> bool {
    false
}

/// The directory a destination lives in; `.` for a bare file name.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Creates `.<file name>.strand-tmp.XXXXXX` in `dir`: hidden, and
/// recognisably ours if a hard kill leaves it behind.
fn create_temp(file_name: &std::ffi::OsStr, dir: &Path) -> io::Result<NamedTempFile> {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(file_name);
    prefix.push(".strand-tmp.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).rand_bytes(6);
    // tempfile creates files 0600 for privacy; an output file should get
    // the usual 0666 minus umask, like any file the user creates.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// Makes a rename durable. Best effort: some file systems cannot sync a
/// directory, and the data itself is already safe.
#[cfg(unix)]
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) {}

#[cfg(test)]
mod tests;
