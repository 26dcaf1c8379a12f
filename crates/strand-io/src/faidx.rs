//! Random access to an indexed FASTA file: plain with a `.fai` index, or
//! BGZF-compressed with `.fai` and `.gzi` (as `samtools faidx` makes them).
//!
//! A slice is read by computing the byte offsets of its first and last
//! bases from the `.fai` line layout and reading just that byte range, so
//! a window of a 250 Mbp chromosome costs the window, not the chromosome.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use noodles::bgzf;
use noodles::fasta::fai;

use crate::error::Error;
use crate::region::{Region, Span};

mod check;

/// An indexed FASTA file open for random access.
///
/// ```
/// # fn main() -> Result<(), strand_io::Error> {
/// use strand_io::faidx::IndexedFasta;
/// use strand_io::region::Region;
///
/// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test-data/genome/ref.fa.gz");
/// let mut fasta = IndexedFasta::open(std::path::Path::new(path))?;
/// let span = fasta.resolve(&Region::parse("chrA:3,001-3,010")?)?;
/// let bases = fasta.fetch(&span.contig, span.start, span.end)?;
/// assert_eq!(bases.len(), 10);
/// # Ok(())
/// # }
/// ```
pub struct IndexedFasta {
    name: String,
    index: Vec<fai::Record>,
    /// Contig name -> position in `index` (assemblies can have many
    /// thousands of contigs, and every fetch looks one up).
    by_name: HashMap<String, usize>,
    source: Source,
    scratch: Vec<u8>,
    /// Records whose index entry was checked against the file (on their
    /// first fetch; see [`check`]).
    checked: Vec<bool>,
    /// The `.fai` path, for messages.
    fai_path: PathBuf,
}

enum Source {
    /// With the offset the reader stands at after the last fetch, so the
    /// next fetch can move relative to it and keep what is buffered (tiling
    /// reads many small neighbouring slices).
    Plain(BufReader<File>, Option<u64>),
    Bgzf(Box<bgzf::io::IndexedReader<File>>),
}

impl IndexedFasta {
    /// Opens `path` and its index (`path.fai`, plus `path.gzi` when the
    /// file is BGZF-compressed).
    pub fn open(path: &Path) -> Result<IndexedFasta, Error> {
        let name = path.display().to_string();
        let invalid = |message: String| Error::InvalidInput {
            file: name.clone(),
            message,
        };
        let mut file = File::open(path).map_err(|source| Error::Open {
            file: name.clone(),
            source,
        })?;
        let mut magic = [0u8; 18];
        let n = read_up_to(&mut file, &mut magic).map_err(|source| Error::Open {
            file: name.clone(),
            source,
        })?;
        let gzip = n >= 2 && magic[..2] == [0x1f, 0x8b];
        // BGZF: gzip with FEXTRA and a "BC" subfield first.
        let bgzf = gzip && n >= 18 && magic[3] & 4 != 0 && magic[12..14] == *b"BC";
        if gzip && !bgzf {
            return Err(invalid(format!(
                "gzip-compressed but not BGZF, so it cannot be indexed: compress with bgzip, \
                 not gzip (`gunzip -c {name} | bgzip > x.fa.gz`), then run `samtools faidx`"
            )));
        }
        let fai_path = with_suffix(path, ".fai");
        let index = match fai::fs::read(&fai_path) {
            Ok(index) => Vec::from(index),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(invalid(format!(
                    "no index {} (create it with `samtools faidx {name}`)",
                    fai_path.display()
                )))
            }
            Err(e) => return Err(invalid(format!("bad index {}: {e}", fai_path.display()))),
        };
        file.seek(SeekFrom::Start(0))
            .map_err(|source| Error::Open {
                file: name.clone(),
                source,
            })?;
        let mut source = if bgzf {
            let gzi_path = with_suffix(path, ".gzi");
            let gzi = match bgzf::gzi::fs::read(&gzi_path) {
                Ok(gzi) => gzi,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(invalid(format!(
                        "BGZF-compressed but no index {} (create it with `samtools faidx {name}`)",
                        gzi_path.display()
                    )))
                }
                Err(e) => return Err(invalid(format!("bad index {}: {e}", gzi_path.display()))),
            };
            Source::Bgzf(Box::new(bgzf::io::IndexedReader::new(file, gzi)))
        } else {
            Source::Plain(BufReader::with_capacity(64 * 1024, file), None)
        };
        let mut by_name = HashMap::with_capacity(index.len());
        for (i, r) in index.iter().enumerate() {
            let contig = String::from_utf8_lossy(r.name()).into_owned();
            if by_name.insert(contig.clone(), i).is_some() {
                return Err(invalid(format!(
                    "index {} lists contig {contig:?} twice",
                    fai_path.display()
                )));
            }
        }
        if let Some(last) = index.last() {
            let bad = check::file_end(&mut source, last).map_err(|e| {
                invalid(format!(
                    "cannot check it against {}: {e}",
                    fai_path.display()
                ))
            })?;
            if let Some(bad) = bad {
                return Err(invalid(stale(&fai_path, &name, &bad)));
            }
        }
        Ok(IndexedFasta {
            name,
            checked: vec![false; index.len()],
            index,
            by_name,
            source,
            scratch: Vec::new(),
            fai_path,
        })
    }

    /// The file name as given, for messages.
    pub fn display_name(&self) -> &str {
        &self.name
    }

    /// Contig names and lengths, in index order.
    pub fn contigs(&self) -> Vec<(String, u64)> {
        self.index
            .iter()
            .map(|r| (r.name().to_string(), r.length()))
            .collect()
    }

    /// Every non-empty contig as a whole span, in index order.
    pub fn whole_contigs(&self) -> Vec<Span> {
        self.contigs()
            .into_iter()
            .filter(|(_, len)| *len > 0)
            .map(|(contig, len)| Span {
                contig,
                start: 0,
                end: len,
                name: None,
            })
            .collect()
    }

    fn record(&self, contig: &str) -> Option<&fai::Record> {
        self.by_name.get(contig).map(|&i| &self.index[i])
    }

    /// The length of `contig`, if the index has it.
    pub fn contig_len(&self, contig: &str) -> Option<u64> {
        self.record(contig).map(fai::Record::length)
    }

    /// Checks `region` against the index: the contig must be known, the
    /// region inside it and not empty; an open end becomes the contig's
    /// end. Errors name the region as the user wrote it (1-based).
    pub fn resolve(&self, region: &Region) -> Result<Span, Error> {
        let at = |message: String| Error::InvalidAt {
            file: self.name.clone(),
            at: format!("region {}", region.label()),
            message,
        };
        let Some(len) = self.contig_len(&region.contig) else {
            let known: Vec<String> = self
                .index
                .iter()
                .take(5)
                .map(|r| r.name().to_string())
                .collect();
            let more = if self.index.len() > 5 { ", ..." } else { "" };
            return Err(at(format!(
                "unknown contig {:?} (the index has {}{more})",
                region.contig,
                known.join(", ")
            )));
        };
        let end = region.end.unwrap_or(len);
        if region.start >= len || end > len {
            return Err(at(format!(
                "outside contig {} of length {len}",
                region.contig
            )));
        }
        if end <= region.start {
            return Err(at("empty region".into()));
        }
        Ok(Span {
            contig: region.contig.clone(),
            start: region.start,
            end,
            name: region.name.clone(),
        })
    }

    /// Bases `[start, end)` of `contig` (0-based, half-open) as stored:
    /// case kept, line breaks removed. Only those bytes are read (seeking
    /// through the `.gzi` for BGZF), however long the contig.
    pub fn fetch(&mut self, contig: &str, start: u64, end: u64) -> Result<Vec<u8>, Error> {
        let at = format!("{contig}:{}-{end}", start + 1);
        let err = |message: String| Error::InvalidAt {
            file: self.name.clone(),
            at: format!("region {at}"),
            message,
        };
        let i = *self
            .by_name
            .get(contig)
            .ok_or_else(|| err(format!("unknown contig {contig:?}")))?;
        let rec = &self.index[i];
        if !self.checked[i] {
            let bad = check::record(&mut self.source, rec)
                .map_err(|e| err(format!("read failed: {e}")))?;
            if let Some(bad) = bad {
                return Err(err(stale(
                    &self.fai_path,
                    &self.name,
                    &format!("contig {contig}: {bad}"),
                )));
            }
            self.checked[i] = true;
        }
        if end > rec.length() {
            return Err(err(format!(
                "outside contig {contig} of length {}",
                rec.length()
            )));
        }
        if start >= end {
            return Err(err("empty region".into()));
        }
        let (first, last) = (check::offset(rec, start), check::offset(rec, end - 1) + 1);
        let bytes = (last - first) as usize;
        self.scratch.resize(bytes, 0);
        let read = match &mut self.source {
            Source::Plain(r, pos) => {
                let moved = match *pos {
                    // Keeps the buffer when the target is inside it.
                    Some(p) => r.seek_relative(first as i64 - p as i64),
                    None => r.seek(SeekFrom::Start(first)).map(drop),
                };
                *pos = None;
                let read = moved.and_then(|_| r.read_exact(&mut self.scratch));
                if read.is_ok() {
                    *pos = Some(last);
                }
                read
            }
            Source::Bgzf(r) => r
                .seek(SeekFrom::Start(first))
                .and_then(|_| r.read_exact(&mut self.scratch)),
        };
        let bgzf = matches!(self.source, Source::Bgzf(_));
        read.map_err(|e| {
            err(match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    "the file ends early: truncated or corrupt (or the index belongs to \
                     another file)"
                        .to_string()
                }
                _ if bgzf => format!("cannot read: truncated or corrupt BGZF data ({e})"),
                _ => format!("read failed: {e}"),
            })
        })?;
        let seq: Vec<u8> = self
            .scratch
            .iter()
            .copied()
            .filter(|&b| b != b'\n' && b != b'\r')
            .collect();
        if seq.len() as u64 != end - start || seq.contains(&b'>') {
            return Err(err(
                "the file does not match its .fai index (re-create it with `samtools faidx`)"
                    .into(),
            ));
        }
        Ok(seq)
    }
}

impl std::fmt::Debug for IndexedFasta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexedFasta")
            .field("name", &self.name)
            .field("contigs", &self.index.len())
            .finish_non_exhaustive()
    }
}

/// The message for an index that no longer describes its file.
fn stale(fai: &Path, file: &str, what: &str) -> String {
    format!(
        "the index {} does not match the file ({what}): the index is stale or the file was \
         cut; re-create it with `samtools faidx {file}`",
        fai.display()
    )
}

impl check::ReadAt for Source {
    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(r, at) => {
                *at = None;
                r.seek(SeekFrom::Start(pos))?;
                read_up_to(r, buf)
            }
            Source::Bgzf(r) => {
                // Past the end the .gzi seek itself may fail: no bytes.
                if r.seek(SeekFrom::Start(pos)).is_err() {
                    return Ok(0);
                }
                read_up_to(r, buf)
            }
        }
    }
}

/// `path` with `suffix` appended to its file name (`ref.fa` -> `ref.fa.fai`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
