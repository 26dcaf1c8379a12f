//! `-o, --output`: one flag, one meaning per kind of command, one type per
//! kind (README, "Flags every command shares"):
//!
//! - [`OutputFile`], `-o FILE`: the command's one output file (strand-embed,
//!   strand-score, strand-classify predict and eval, strand concat);
//! - [`OutputDir`], `-o DIR`: a folder of files that belong together
//!   (strand-classify train's checkpoint);
//! - [`OutputPrefix`], `-o PREFIX`: a set of files named `PREFIX.*`
//!   (strand-score ism's table and tracks).
//!
//! Each command says in its own words what its output holds (clap's
//! `mut_arg("output", ..)` on the command's `Args`); the flag's name, value
//! and meaning come from here. strand-embed's `--out-dir DIR` (one file per
//! record) is its own flag, an alternative to `-o FILE`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

/// `-o FILE`: written under a temporary name and renamed when complete;
/// `-` is stdout (where a stream makes sense: tables, plain VCF).
#[derive(Args, Debug, Clone, Default)]
pub struct OutputFile {
    /// Output file; - for stdout
    #[arg(
        id = "output",
        short = 'o',
        long = "output",
        value_name = "FILE",
        help_heading = "Output"
    )]
    pub path: Option<PathBuf>,
}

impl OutputFile {
    /// The file given, else `-` (stdout): the default of every command
    /// but strand-embed (which needs `-o` or `--out-dir`).
    pub fn or_stdout(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(|| PathBuf::from("-"))
    }
}

/// `-o DIR`: a folder that must not exist or be empty; built as a hidden
/// sibling and renamed into place once complete.
#[derive(Args, Debug, Clone)]
pub struct OutputDir {
    /// Output folder; must not exist, or be empty
    #[arg(
        id = "output",
        short = 'o',
        long = "output",
        value_name = "DIR",
        required = true,
        help_heading = "Output"
    )]
    pub path: PathBuf,
}

impl OutputDir {
    /// Refuses a path that is not a folder, or a folder with anything in
    /// it (checked again when the folder is made: things change).
    pub fn check(&self) -> Result<()> {
        check_empty_dir(&self.path)
    }
}

/// Refuses `dest` unless it does not exist or is an empty folder.
pub fn check_empty_dir(dest: &Path) -> Result<()> {
    let shown = dest.display();
    if dest.exists() {
        if !dest.is_dir() {
            bail!("{shown}: exists and is not a folder");
        }
        let mut entries =
            std::fs::read_dir(dest).with_context(|| format!("{shown}: cannot read"))?;
        if entries.next().is_some() {
            bail!("{shown}: folder exists and is not empty (remove it or choose another --output)");
        }
    }
    Ok(())
}

/// `-o PREFIX`: the files of a set are `PREFIX.<name>`.
#[derive(Args, Debug, Clone)]
pub struct OutputPrefix {
    /// Output prefix
    #[arg(
        id = "output",
        short = 'o',
        long = "output",
        value_name = "PREFIX",
        required = true,
        help_heading = "Output"
    )]
    pub prefix: PathBuf,
}

impl OutputPrefix {
    /// The prefix as text; an empty one or a folder is refused.
    pub fn check(&self) -> Result<String> {
        let prefix = self.prefix.to_string_lossy().into_owned();
        if prefix.is_empty() || self.prefix.is_dir() {
            bail!("-o takes a file prefix (e.g. out/chr7-region), not a directory");
        }
        Ok(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_is_the_default_file() {
        assert_eq!(OutputFile::default().or_stdout(), PathBuf::from("-"));
        let o = OutputFile {
            path: Some("a.tsv".into()),
        };
        assert_eq!(o.or_stdout(), PathBuf::from("a.tsv"));
    }

    #[test]
    fn a_dir_must_be_new_or_empty() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = |p: &Path| OutputDir { path: p.into() };
        assert!(dir(&tmp.path().join("new")).check().is_ok());
        assert!(dir(tmp.path()).check().is_ok(), "empty");
        std::fs::write(tmp.path().join("f"), "x").expect("write");
        let e = dir(tmp.path()).check().unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        let e = dir(&tmp.path().join("f")).check().unwrap_err().to_string();
        assert!(e.contains("is not a folder"), "{e}");
    }

    #[test]
    fn a_prefix_is_not_a_dir() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let p = |p: &Path| OutputPrefix { prefix: p.into() };
        assert!(p(tmp.path()).check().is_err());
        assert!(p(Path::new("")).check().is_err());
        let out = tmp.path().join("run1");
        assert_eq!(
            p(&out).check().expect("a prefix"),
            out.to_string_lossy().into_owned()
        );
    }
}
