//! Where embeddings go: one safetensors or TSV file, or a directory with a
//! file per record (safetensors, npy or TSV) and an `index.tsv`.
//!
//! Every file is written under a temporary name and renamed when complete,
//! so a killed job leaves nothing that looks finished, and `--resume` can
//! trust that a file present under its final name is whole.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use strand_io::{npy, safetensors, AtomicFile, Dtype};

use super::pool::Pool;

/// File format of the stored rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Safetensors,
    Npy,
    Tsv,
}

impl Format {
    pub(super) fn ext(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Npy => "npy",
            Format::Tsv => "tsv",
        }
    }
}

/// What is known about a record's output before any of it is computed.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Tensor or file name.
    pub name: String,
    /// How messages name the item: `in.fa: record 3 ("x")`.
    pub what: String,
    /// Contig (or record id) and 0-based half-open span of the bases.
    pub contig: String,
    pub start: u64,
    pub end: u64,
    /// Rows in, one per token (bases, plus one with special tokens).
    pub tokens: u64,
    pub pool: Pool,
    pub cols: usize,
    /// `--layer`: the layer this output holds, when not the default.
    pub layer: Option<usize>,
}

impl Meta {
    pub fn rows(&self) -> u64 {
        self.pool.out_rows(self.tokens)
    }

    fn shape(&self) -> Vec<usize> {
        match self.pool {
            Pool::Mean => vec![self.cols],
            _ => vec![self.rows() as usize, self.cols],
        }
    }

    fn bin_len(&self) -> u64 {
        self.pool.bin_len(self.tokens)
    }

    /// Bases in the last stored row (shorter than the others when the
    /// record does not divide into whole bins).
    fn last_bin_len(&self) -> u64 {
        self.tokens - (self.rows() - 1) * self.bin_len()
    }

    /// Contig coordinates `[start, end)` of stored row `r`. A special
    /// token's row (past the last base) gets the empty span at the end.
    fn row_span(&self, r: u64) -> (u64, u64) {
        let b = self.bin_len();
        let s = (self.start + r * b).min(self.end);
        (s, (s + b).min(self.end))
    }

    /// The coordinates as stored in safetensors metadata.
    fn coords_json(&self) -> String {
        let mut coords = serde_json::json!({
            "contig": self.contig,
            "start": self.start,
            "end": self.end,
            "pool": self.pool.to_string(),
            "rows": self.rows(),
            "bin": self.bin_len(),
            "last_bin": self.last_bin_len(),
        });
        if let Some(n) = self.layer {
            coords["layer"] = n.into();
        }
        coords.to_string()
    }

    fn index_row(&self, file: &str) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            self.name,
            self.end - self.start,
            file,
            self.contig,
            self.start,
            self.end,
            self.rows(),
            self.bin_len(),
            self.last_bin_len()
        )
    }
}

const INDEX_HEADER: &str = "name\tlength\tfile\tcontig\tstart\tend\trows\tbin\tlast_bin\n";

/// Which records' outputs are already complete (`--resume` with
/// `--out-dir`): those whose file exists under its final name.
#[derive(Debug, Clone)]
pub struct Done {
    dir: Option<(PathBuf, Format)>,
}

impl Done {
    /// Nothing is complete: every record is computed.
    pub fn none() -> Done {
        Done { dir: None }
    }

    pub fn in_dir(dir: &Path, format: Format) -> Done {
        Done {
            dir: Some((dir.to_path_buf(), format)),
        }
    }

    pub fn contains(&self, meta: &Meta) -> bool {
        self.dir
            .as_ref()
            .is_some_and(|(d, f)| d.join(file_name(&meta.name, *f)).is_file())
    }
}

/// Receives records' rows, in order (from the writer thread).
pub trait Sink: Send {
    /// Notes a record already complete (it still belongs in the index).
    fn skip(&mut self, meta: &Meta) -> Result<()>;
    fn begin(&mut self, meta: &Meta) -> Result<()>;
    /// Rows of the current record, in order, `meta.cols` values each.
    fn write(&mut self, rows: &[f32]) -> Result<()>;
    fn end(&mut self) -> Result<()>;
    /// Completes the output (renames it into place).
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Options every sink needs.
#[derive(Debug, Clone)]
pub struct Opts {
    pub format: Format,
    pub dtype: Dtype,
    /// File-level safetensors metadata (model, pool, layout...).
    pub metadata: BTreeMap<String, String>,
    /// Write the TSV header line (only the first shard does, so shards
    /// concatenate into the unsharded table).
    pub tsv_header: bool,
    /// Index file name in directory mode.
    pub index_name: String,
}

/// A single output file (`-o FILE`, or `-` for stdout).
pub fn file(path: &Path, opts: Opts) -> Result<Box<dyn Sink>> {
    Ok(match opts.format {
        Format::Safetensors => Box::new(StFile {
            w: safetensors::Writer::create(path, opts.metadata.clone())?,
            dtype: opts.dtype,
        }),
        Format::Tsv => Box::new(TsvFile::create(path, &opts)?),
        Format::Npy => bail!("--format npy writes a directory: give it with --out-dir"),
    })
}

/// A directory with one file per record and an index.
pub fn dir(path: &Path, opts: Opts) -> Result<Box<dyn Sink>> {
    std::fs::create_dir_all(path)
        .with_context(|| format!("{}: cannot create directory", path.display()))?;
    let index = AtomicFile::create(&path.join(&opts.index_name))?;
    Ok(Box::new(Dir {
        dir: path.to_path_buf(),
        opts,
        index,
        index_started: false,
        current: None,
    }))
}

pub use super::names::file_name;

struct StFile {
    w: safetensors::Writer,
    dtype: Dtype,
}

impl Sink for StFile {
    fn skip(&mut self, _: &Meta) -> Result<()> {
        Ok(())
    }
    fn begin(&mut self, meta: &Meta) -> Result<()> {
        self.w
            .set_metadata(format!("coords.{}", meta.name), meta.coords_json())?;
        Ok(self.w.begin_tensor(&meta.name, self.dtype, &meta.shape())?)
    }
    fn write(&mut self, rows: &[f32]) -> Result<()> {
        Ok(self.w.write(rows)?)
    }
    fn end(&mut self) -> Result<()> {
        Ok(self.w.end_tensor()?)
    }
    fn finish(self: Box<Self>) -> Result<()> {
        Ok(self.w.finish()?)
    }
}

/// Pooled rows as a BED-like table: `#chrom start end name` and one column
/// per embedding dimension; coordinates 0-based, end exclusive, so the
/// table joins with BED tracks as it is.
struct TsvFile {
    out: AtomicFile,
    dtype: Dtype,
    meta: Option<Meta>,
    row: u64,
    line: String,
    header: bool,
}

impl TsvFile {
    fn create(path: &Path, opts: &Opts) -> Result<TsvFile> {
        Ok(TsvFile {
            out: AtomicFile::create(path)?,
            dtype: opts.dtype,
            meta: None,
            row: 0,
            line: String::new(),
            header: opts.tsv_header,
        })
    }
}

impl Sink for TsvFile {
    fn skip(&mut self, _: &Meta) -> Result<()> {
        Ok(())
    }
    fn begin(&mut self, meta: &Meta) -> Result<()> {
        if std::mem::take(&mut self.header) {
            let mut h = String::from("#chrom\tstart\tend\tname");
            for j in 0..meta.cols {
                h.push_str(&format!("\te{j}"));
            }
            h.push('\n');
            self.out
                .write_all(h.as_bytes())
                .map_err(|e| self.out.write_error(e))?;
        }
        self.meta = Some(meta.clone());
        self.row = 0;
        Ok(())
    }
    fn write(&mut self, rows: &[f32]) -> Result<()> {
        use std::fmt::Write as _;
        let meta = self.meta.as_ref().expect("begin comes first");
        for row in rows.chunks_exact(meta.cols) {
            let (s, e) = meta.row_span(self.row);
            self.line.clear();
            let _ = write!(self.line, "{}\t{s}\t{e}\t{}", meta.contig, meta.name);
            for &x in row {
                let _ = write!(self.line, "\t{}", stored_value(x, self.dtype));
            }
            self.line.push('\n');
            self.row += 1;
            self.out
                .write_all(self.line.as_bytes())
                .map_err(|e| self.out.write_error(e))?;
        }
        Ok(())
    }
    fn end(&mut self) -> Result<()> {
        self.meta = None;
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<()> {
        Ok(self.out.commit()?)
    }
}

/// A value as `dtype` would store it, printed in the shortest form that
/// reads back to the same number.
fn stored_value(x: f32, dtype: Dtype) -> f32 {
    match dtype {
        Dtype::F32 => x,
        Dtype::F16 => half::f16::from_f32(x).to_f32(),
        Dtype::Bf16 => half::bf16::from_f32(x).to_f32(),
    }
}

struct Dir {
    dir: PathBuf,
    opts: Opts,
    index: AtomicFile,
    index_started: bool,
    current: Option<Box<dyn Sink>>,
}

impl Dir {
    fn path(&self, meta: &Meta) -> PathBuf {
        self.dir.join(file_name(&meta.name, self.opts.format))
    }

    /// A record without a name has no file name (it would become a hidden
    /// `.safetensors`), so it is an error naming the record.
    fn check_name(meta: &Meta) -> Result<()> {
        if meta.name.is_empty() {
            anyhow::bail!(
                "{}: empty name: --out-dir names each file after its record; give the record \
                 a name",
                meta.what
            );
        }
        Ok(())
    }

    fn index(&mut self, meta: &Meta) -> Result<()> {
        let mut text = String::new();
        if !std::mem::replace(&mut self.index_started, true) {
            text.push_str(INDEX_HEADER);
        }
        text.push_str(&meta.index_row(&file_name(&meta.name, self.opts.format)));
        self.index
            .write_all(text.as_bytes())
            .map_err(|e| self.index.write_error(e))?;
        Ok(())
    }
}

impl Sink for Dir {
    fn skip(&mut self, meta: &Meta) -> Result<()> {
        Dir::check_name(meta)?;
        self.index(meta)
    }
    fn begin(&mut self, meta: &Meta) -> Result<()> {
        Dir::check_name(meta)?;
        let path = self.path(meta);
        let mut sink: Box<dyn Sink> = match self.opts.format {
            Format::Npy => Box::new(NpyFile(npy::Writer::create(
                &path,
                self.opts.dtype,
                &meta.shape(),
            )?)),
            Format::Safetensors | Format::Tsv => {
                let opts = Opts {
                    tsv_header: true,
                    ..self.opts.clone()
                };
                file(&path, opts)?
            }
        };
        sink.begin(meta)?;
        self.current = Some(sink);
        self.index(meta)
    }
    fn write(&mut self, rows: &[f32]) -> Result<()> {
        self.current
            .as_mut()
            .expect("begin comes first")
            .write(rows)
    }
    fn end(&mut self) -> Result<()> {
        let mut sink = self.current.take().expect("begin comes first");
        sink.end()?;
        sink.finish()
    }
    fn finish(mut self: Box<Self>) -> Result<()> {
        if !self.index_started {
            self.index
                .write_all(INDEX_HEADER.as_bytes())
                .map_err(|e| self.index.write_error(e))?;
        }
        Ok(self.index.commit()?)
    }
}

struct NpyFile(npy::Writer);

impl Sink for NpyFile {
    fn skip(&mut self, _: &Meta) -> Result<()> {
        Ok(())
    }
    fn begin(&mut self, _: &Meta) -> Result<()> {
        Ok(())
    }
    fn write(&mut self, rows: &[f32]) -> Result<()> {
        Ok(self.0.write(rows)?)
    }
    fn end(&mut self) -> Result<()> {
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<()> {
        Ok(self.0.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_distinct() {
        assert_eq!(
            file_name("chr1:10001-20000", Format::Npy),
            "chr1:10001-20000.npy"
        );
        assert_eq!(file_name("read/1", Format::Tsv), "read%2F1.tsv");
        assert_ne!(
            file_name("a/b", Format::Npy),
            file_name("a%2Fb", Format::Npy)
        );
        assert_eq!(file_name("..", Format::Npy), "%2E..npy");
    }

    #[test]
    fn bin_coordinates() {
        let m = Meta {
            name: "r".into(),
            what: "test".into(),
            contig: "chr2".into(),
            start: 1000,
            end: 1300,
            tokens: 300,
            pool: Pool::Bin(128),
            cols: 4,
            layer: None,
        };
        assert_eq!(m.rows(), 3);
        assert_eq!(m.row_span(0), (1000, 1128));
        assert_eq!(m.row_span(2), (1256, 1300));
        assert_eq!(m.last_bin_len(), 44);
        assert_eq!(m.shape(), vec![3, 4]);
        assert!(!m.coords_json().contains("layer"));
        let m = Meta {
            layer: Some(8),
            ..m
        };
        assert!(m
            .coords_json()
            .ends_with(r#""layer":8,"pool":"bin:128","rows":3,"start":1000}"#));
    }
}
