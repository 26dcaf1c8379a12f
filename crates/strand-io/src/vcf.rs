//! VCF as text: records are read as their tab-separated fields and written
//! back with nothing changed but what the caller adds, so every input
//! field survives byte for byte. Output can be BGZF with a tabix (`.tbi`)
//! index built while writing.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use noodles::bgzf;
use noodles::csi::binning_index::index::reference_sequence::bin::Chunk;

use crate::atomic::AtomicFile;
use crate::error::Error;
use crate::seq::input::{is_bgzf, read_prefix, EofMarkerCheck};

mod bcf;
mod index;
mod output;

use self::index::Indexer;
pub use self::index::{IndexFormat, TBI_MAX};
pub use self::output::{Format, Options};

/// A VCF file positioned after its header.
pub struct Reader {
    name: String,
    input: Box<dyn BufRead + Send>,
    /// Meta lines (`##...`), without line breaks.
    pub meta: Vec<String>,
    /// The `#CHROM ...` line.
    pub columns: String,
    line: u64,
    buf: String,
    /// Columns of the `#CHROM` line: every record has exactly as many.
    width: usize,
}

/// One data line: its 1-based line number and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: u64,
    pub fields: Vec<String>,
}

impl Record {
    pub fn chrom(&self) -> &str {
        &self.fields[0]
    }

    /// 1-based position (checked when read).
    pub fn pos(&self) -> u64 {
        self.fields[1].parse().expect("checked when read")
    }

    pub fn reference(&self) -> &str {
        &self.fields[3]
    }

    /// The ALT alleles (empty for `.`).
    pub fn alts(&self) -> Vec<&str> {
        match self.fields[4].as_str() {
            "." => Vec::new(),
            a => a.split(',').collect(),
        }
    }

    /// Appends `key=value` (or a flag) to INFO.
    pub fn add_info(&mut self, entry: &str) {
        let info = &mut self.fields[7];
        if info == "." || info.is_empty() {
            *info = entry.to_owned();
        } else {
            info.push(';');
            info.push_str(entry);
        }
    }
}

impl Reader {
    /// Opens a VCF (plain, gzip or BGZF; `-` for stdin) and reads its header.
    pub fn open(path: &Path) -> Result<Reader, Error> {
        let name = if path == Path::new("-") {
            "<stdin>".to_owned()
        } else {
            path.display().to_string()
        };
        let raw: Box<dyn Read + Send> = if path == Path::new("-") {
            Box::new(io::stdin())
        } else {
            Box::new(File::open(path).map_err(|source| Error::Open {
                file: name.clone(),
                source,
            })?)
        };
        let mut raw = raw;
        let prefix = read_prefix(&mut raw).map_err(|source| Error::Open {
            file: name.clone(),
            source,
        })?;
        let gzip = prefix.starts_with(&[0x1f, 0x8b]);
        let bgzf = is_bgzf(&prefix);
        let raw = io::Cursor::new(prefix).chain(raw);
        let input: Box<dyn BufRead + Send> = if gzip {
            // A BGZF file cut at a block boundary (a killed bgzip)
            // decompresses cleanly; only the missing end-of-file block
            // tells that records are lost, so it is required, as for
            // FASTA and BAM.
            let checked = BufReader::new(EofMarkerCheck::new(raw, bgzf));
            Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(
                checked,
            )))
        } else {
            Box::new(BufReader::new(raw))
        };
        let input = bcf_as_text(&name, input)?;
        let mut r = Reader {
            name,
            input,
            meta: Vec::new(),
            columns: String::new(),
            line: 0,
            buf: String::new(),
            width: 0,
        };
        loop {
            if !r.read_line()? {
                return Err(r.at("missing the #CHROM header line".into()));
            }
            let l = r.buf.trim_end_matches(['\n', '\r']);
            if l.starts_with("##") {
                r.meta.push(l.to_owned());
            } else if l.starts_with("#CHROM") {
                r.columns = l.to_owned();
                r.width = r.columns.split('\t').count();
                if r.width < 8 {
                    return Err(r.at(format!(
                        "the #CHROM line has {} tab-separated columns; a VCF has at least 8",
                        r.width
                    )));
                }
                break;
            } else {
                return Err(r.at(if r.line == 1 {
                    "not a VCF file (no ##fileformat header)".into()
                } else {
                    "expected a header line or the #CHROM line".into()
                }));
            }
        }
        if !r
            .meta
            .first()
            .is_some_and(|m| m.starts_with("##fileformat=VCF"))
        {
            return Err(Error::InvalidAt {
                file: r.name.clone(),
                at: "line 1".into(),
                message: "not a VCF file (no ##fileformat=VCF line)".into(),
            });
        }
        Ok(r)
    }

    pub fn display_name(&self) -> &str {
        &self.name
    }

    fn read_line(&mut self) -> Result<bool, Error> {
        self.buf.clear();
        let n = self
            .input
            .read_line(&mut self.buf)
            .map_err(|e| Error::InvalidAt {
                file: self.name.clone(),
                at: format!("line {}", self.line + 1),
                message: format!("read failed (truncated or corrupt?): {e}"),
            })?;
        if n > 0 {
            self.line += 1;
        }
        Ok(n > 0)
    }

    fn at(&self, message: String) -> Error {
        Error::InvalidAt {
            file: self.name.clone(),
            at: format!("line {}", self.line),
            message,
        }
    }

    /// The next data line, checked: as many fields as the `#CHROM` line
    /// (a record cut short, e.g. by a truncated file, is an error), a
    /// numeric POS, a REF of bases.
    pub fn next_record(&mut self) -> Option<Result<Record, Error>> {
        loop {
            match self.read_line() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
            let l = self.buf.trim_end_matches(['\n', '\r']);
            if l.is_empty() {
                continue;
            }
            let fields: Vec<String> = l.split('\t').map(str::to_owned).collect();
            return Some(self.check(fields));
        }
    }

    fn check(&self, fields: Vec<String>) -> Result<Record, Error> {
        if fields.len() != self.width {
            return Err(self.at(format!(
                "expected {} tab-separated fields (as in the #CHROM line), found {}",
                self.width,
                fields.len()
            )));
        }
        let at = format!("line {} ({}:{})", self.line, fields[0], fields[1]);
        let bad = |message: String| Error::InvalidAt {
            file: self.name.clone(),
            at: at.clone(),
            message,
        };
        match fields[1].parse::<u64>() {
            Ok(p) if p >= 1 => {}
            _ => return Err(bad(format!("POS {:?} is not a position", fields[1]))),
        }
        let r = &fields[3];
        if r.is_empty() || !r.bytes().all(|b| b"ACGTNacgtn".contains(&b)) {
            return Err(bad(format!("REF {r:?} is not a run of bases")));
        }
        Ok(Record {
            line: self.line,
            fields,
        })
    }
}

/// A BCF input (compressed or not) reads as the VCF text it encodes.
fn bcf_as_text(
    name: &str,
    mut input: Box<dyn BufRead + Send>,
) -> Result<Box<dyn BufRead + Send>, Error> {
    let is_bcf = input
        .fill_buf()
        .map(|b| b.starts_with(bcf::MAGIC))
        .map_err(|e| Error::InvalidAt {
            file: name.to_owned(),
            at: "line 1".into(),
            message: format!("read failed (truncated or corrupt?): {e}"),
        })?;
    if !is_bcf {
        return Ok(input);
    }
    let text = bcf::TextReader::new(input).map_err(|e| Error::InvalidAt {
        file: name.to_owned(),
        at: "BCF header".into(),
        message: format!("cannot read the BCF header: {e}"),
    })?;
    Ok(Box::new(text))
}

/// Writes VCF: plain text, BGZF with a `.tbi` (or `.csi`) index next to
/// it, or BCF with a `.csi` index ([`Options`]; by default as the name
/// says: `.gz`, `.bcf`, else text). Nothing appears under the final names
/// until [`Writer::finish`].
pub struct Writer {
    name: String,
    out: Out,
}

enum Out {
    Plain(AtomicFile),
    // Boxed: the indexers are large.
    Bgzf(Box<BgzfOut>),
    Bcf(Box<bcf::Out>),
}

struct BgzfOut {
    writer: bgzf::io::Writer<AtomicFile>,
    /// None when writing to stdout.
    indexer: Option<Indexer>,
    path: std::path::PathBuf,
}

impl Writer {
    /// A writer of the format the name asks for.
    pub fn create(path: &Path) -> Result<Writer, Error> {
        Writer::create_with(path, Options::default())
    }

    /// A writer of the format and index that `options` ask for.
    pub fn create_with(path: &Path, options: Options) -> Result<Writer, Error> {
        let format = options.check(path).map_err(|message| Error::InvalidAt {
            file: path.display().to_string(),
            at: "output".into(),
            message,
        })?;
        let file = AtomicFile::create(path)?;
        let name = file.display_name().to_owned();
        let to_file = path != Path::new("-");
        let out = match format {
            Format::Vcf => Out::Plain(file),
            Format::Bgzf => Out::Bgzf(Box::new(BgzfOut {
                writer: bgzf::io::Writer::new(file),
                indexer: to_file.then(|| Indexer::new(options.index, true)),
                path: path.to_owned(),
            })),
            Format::Bcf => Out::Bcf(Box::new(bcf::Out::new(
                file,
                path,
                to_file.then(|| Indexer::new(options.index, false)),
            ))),
        };
        Ok(Writer { name, out })
    }

    fn write_error(&self, source: io::Error) -> Error {
        Error::Write {
            file: self.name.clone(),
            source,
        }
    }

    /// Writes a header line (without its line break).
    pub fn header_line(&mut self, line: &str) -> Result<(), Error> {
        let r = match &mut self.out {
            Out::Plain(w) => writeln!(w, "{line}"),
            Out::Bgzf(b) => writeln!(b.writer, "{line}"),
            Out::Bcf(b) => {
                b.header_line(line);
                Ok(())
            }
        };
        r.map_err(|e| self.write_error(e))
    }

    /// Writes a record (and indexes it when writing BGZF).
    pub fn record(&mut self, rec: &Record) -> Result<(), Error> {
        let text = rec.fields.join("\t");
        match &mut self.out {
            Out::Plain(w) => writeln!(w, "{text}").map_err(|e| Error::Write {
                file: self.name.clone(),
                source: e,
            }),
            Out::Bgzf(b) => {
                let BgzfOut {
                    writer, indexer, ..
                } = &mut **b;
                let start_vp = writer.virtual_position();
                writeln!(writer, "{text}").map_err(|e| Error::Write {
                    file: self.name.clone(),
                    source: e,
                })?;
                let end_vp = writer.virtual_position();
                let Some(indexer) = indexer else {
                    return Ok(());
                };
                let pos = rec.pos();
                let end = pos + rec.reference().len() as u64 - 1;
                indexer
                    .add(rec.chrom(), None, pos, end, Chunk::new(start_vp, end_vp))
                    .map_err(|message| Error::InvalidAt {
                        file: self.name.clone(),
                        at: format!("input line {} ({}:{})", rec.line, rec.chrom(), pos),
                        message,
                    })
            }
            Out::Bcf(b) => b.record(&rec.fields, rec.line),
        }
    }

    /// Completes the output: the index first, then the VCF under its name.
    pub fn finish(self) -> Result<(), Error> {
        match self.out {
            Out::Plain(w) => w.commit(),
            Out::Bgzf(b) => {
                let BgzfOut {
                    writer,
                    indexer,
                    path,
                } = *b;
                let file = writer.finish().map_err(|source| Error::Write {
                    file: self.name.clone(),
                    source,
                })?;
                match indexer {
                    Some(ix) => ix.commit_with(file, &path, 0).map(drop),
                    None => file.commit(),
                }
            }
            Out::Bcf(b) => b.finish(),
        }
    }
}

#[cfg(test)]
mod tests;
