//! What a VCF output is written as: `-O v|z|b` and `-W tbi|csi`, as in
//! bcftools, with the file name's extension as the default.

use std::path::{Path, PathBuf};

use super::index::IndexFormat;

/// The output's encoding (`-O, --output-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain VCF text (`v`).
    Vcf,
    /// BGZF-compressed VCF (`z`), indexed when written to a file.
    Bgzf,
    /// BGZF-compressed BCF (`b`), indexed (`.csi`) when written to a file.
    Bcf,
}

impl Format {
    /// What a name asks for: `.bcf` is BCF, `.gz`/`.bgz` BGZF, anything
    /// else (and `-`) plain text.
    pub fn for_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            _ if path == Path::new("-") => Format::Vcf,
            Some("bcf") => Format::Bcf,
            Some("gz" | "bgz") => Format::Bgzf,
            _ => Format::Vcf,
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v" => Ok(Format::Vcf),
            "z" => Ok(Format::Bgzf),
            "b" => Ok(Format::Bcf),
            "u" => Err("uncompressed BCF (-O u) is not supported; use -O b".into()),
            _ => Err(format!(
                "output type {s:?}: expected v (VCF), z (BGZF VCF) or b (BCF)"
            )),
        }
    }
}

/// How to write an output: its format (None: from the name) and index.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub format: Option<Format>,
    pub index: IndexFormat,
}

impl Options {
    /// Checks the combination before any work: BCF has no `.tbi`.
    pub fn check(&self, path: &Path) -> Result<Format, String> {
        let format = self.format.unwrap_or_else(|| Format::for_path(path));
        if format == Format::Bcf && self.index == IndexFormat::Tbi {
            return Err(
                "a BCF output is indexed with .csi; --write-index=tbi applies to VCF".into(),
            );
        }
        Ok(format)
    }

    /// The index files a writer of `path` may write or replace: `.tbi` and
    /// `.csi` next to a BGZF VCF or BCF file (whichever the run picks, the
    /// other is removed as stale, so both count as outputs); none for text
    /// or stdout.
    pub fn index_paths(&self, path: &Path) -> Vec<PathBuf> {
        let format = self.format.unwrap_or_else(|| Format::for_path(path));
        if path == Path::new("-") || format == Format::Vcf {
            return Vec::new();
        }
        vec![
            crate::faidx::with_suffix(path, ".tbi"),
            crate::faidx::with_suffix(path, ".csi"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_names_and_flags() {
        assert_eq!(Format::for_path(Path::new("x.bcf")), Format::Bcf);
        assert_eq!(Format::for_path(Path::new("x.vcf.gz")), Format::Bgzf);
        assert_eq!(Format::for_path(Path::new("x.vcf")), Format::Vcf);
        assert_eq!(Format::for_path(Path::new("-")), Format::Vcf);
        assert_eq!("b".parse(), Ok(Format::Bcf));
        assert!("u".parse::<Format>().unwrap_err().contains("not supported"));
        let o = Options {
            format: None,
            index: IndexFormat::Tbi,
        };
        assert!(o.check(Path::new("x.bcf")).is_err());
        assert_eq!(o.check(Path::new("x.vcf.gz")), Ok(Format::Bgzf));
        assert_eq!(o.index_paths(Path::new("x.vcf")).len(), 0);
        assert_eq!(o.index_paths(Path::new("x.vcf.gz")).len(), 2);
        let b = Options {
            format: Some(Format::Bcf),
            index: IndexFormat::Auto,
        };
        assert_eq!(b.index_paths(Path::new("x.vcf"))[1], Path::new("x.vcf.csi"));
    }
}
