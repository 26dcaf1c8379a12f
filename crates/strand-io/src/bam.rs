//! Read sequences from a BAM file, all of them or those overlapping a
//! region (through the `.bai` or `.csi` index, reading only the indexed
//! chunks).
//!
//! Sequences are returned as stored: BAM keeps reverse-strand reads
//! reverse-complemented into reference orientation, so that orientation is
//! what is embedded (not the read as sequenced).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use noodles::bam;
use noodles::bgzf;
use noodles::core::region::Interval;
use noodles::core::Position;
use noodles::csi::binning_index::index::reference_sequence::bin::Chunk;
use noodles::csi::BinningIndex;
use noodles::sam;
use noodles::sam::alignment::Record as _;

use crate::error::Error;
use crate::faidx::with_suffix;
use crate::region::Region;
use crate::seq::Record;

/// Which reads to return.
#[derive(Debug, Clone, Default)]
pub struct BamOptions {
    /// Only mapped reads overlapping this region (needs an index). A region
    /// starting past its contig's end is an error; an end past it is not.
    pub region: Option<Region>,
    /// Skip reads with a lower mapping quality (unmapped reads are skipped
    /// when this is above 0; MAPQ 255, "not available", passes, as in
    /// `samtools view -q`).
    pub min_mapq: u8,
    /// Also return secondary alignments (flag 256).
    pub include_secondary: bool,
    /// Also return supplementary alignments (flag 2048).
    pub include_supplementary: bool,
}

/// Reads of a BAM file as [`Record`]s, in file order (or index order
/// within a region).
///
/// Read names are made unique: the first read of a name keeps it, later
/// ones get `.2`, `.3`, ... (mates of a pair share a name in BAM; a suffix
/// already taken by another read is skipped). A read without a name (`*`)
/// is called `read<N>`, N its record number. Reads without a stored
/// sequence (`*`) are skipped. Every name is remembered, so memory grows
/// with the number of reads returned (roughly 100 bytes a read).
///
/// ```
/// # fn main() -> Result<(), strand_io::Error> {
/// use strand_io::bam::{BamOptions, BamReader};
/// use strand_io::region::Region;
///
/// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test-data/genome/reads.bam");
/// let opts = BamOptions { region: Some(Region::parse("chrA:3,150-3,350")?), ..Default::default() };
/// for read in BamReader::open(std::path::Path::new(path), opts)? {
///     let read = read?;
///     assert!(!read.seq.is_empty());
/// }
/// # Ok(())
/// # }
/// ```
pub struct BamReader {
    name: String,
    reader: bam::io::Reader<bgzf::io::Reader<File>>,
    query: Option<Query>,
    opts: BamOptions,
    /// Every id returned so far.
    ids: HashSet<Vec<u8>>,
    /// For names seen more than once: the next suffix to try.
    next_suffix: HashMap<Vec<u8>, u32>,
    record: bam::Record,
    /// Records read so far (including skipped ones), for messages.
    n: u64,
    /// Whether the file ends with the BGZF end-of-file block; without it a
    /// file cut at a block border would read as complete.
    has_eof_marker: bool,
    done: bool,
}

/// The empty BGZF block every BGZF writer puts at the end of a file.
const BGZF_EOF: [u8; 28] = [
    0x1f, 0x8b, 0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x06, 0x00, 0x42, 0x43, 0x02, 0x00,
    0x1b, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// Where a region query stands.
struct Query {
    reference_sequence_id: usize,
    interval: Interval,
    chunks: std::vec::IntoIter<Chunk>,
    /// End of the chunk being read.
    chunk_end: Option<bgzf::VirtualPosition>,
}

impl BamReader {
    /// Opens `path`, reads its header and, for a region, its index
    /// (`path.bai`, else `path.csi`).
    pub fn open(path: &Path, opts: BamOptions) -> Result<BamReader, Error> {
        let name = path.display().to_string();
        let open_err = |source| Error::Open {
            file: name.clone(),
            source,
        };
        let mut file = File::open(path).map_err(open_err)?;
        let (magic, has_eof_marker) = ends(&mut file).map_err(open_err)?;
        if magic[..2] != [0x1f, 0x8b] {
            let message = if magic == *b"CRAM" {
                format!(
                    "CRAM is not supported: convert it with \
                     `samtools view -b -T ref.fa -o reads.bam {name}`"
                )
            } else if magic[0] == b'@' || magic.iter().all(u8::is_ascii_graphic) {
                format!("looks like SAM text, not BAM: convert it with `samtools view -b -o reads.bam {name}`")
            } else {
                "not a BAM file (not BGZF-compressed)".to_string()
            };
            return Err(Error::InvalidInput {
                file: name,
                message,
            });
        }
        let mut reader = bam::io::Reader::new(file);
        let header = reader.read_header().map_err(|e| Error::InvalidInput {
            file: name.clone(),
            message: format!("not a readable BAM file: {e}"),
        })?;
        let query = match &opts.region {
            Some(region) => Some(query(&name, path, &header, region)?),
            None => None,
        };
        Ok(BamReader {
            name,
            reader,
            query,
            opts,
            ids: HashSet::new(),
            next_suffix: HashMap::new(),
            record: bam::Record::default(),
            n: 0,
            has_eof_marker,
            done: false,
        })
    }

    /// The file name as given, for messages.
    pub fn display_name(&self) -> &str {
        &self.name
    }

    /// Reads the next raw record into `self.record`; `false` at the end.
    fn read_raw(&mut self) -> io::Result<bool> {
        let Some(q) = &mut self.query else {
            return Ok(self.reader.read_record(&mut self.record)? > 0);
        };
        loop {
            if let Some(end) = q.chunk_end {
                if self.reader.get_ref().virtual_position() < end
                    && self.reader.read_record(&mut self.record)? > 0
                {
                    if intersects(&self.record, q.reference_sequence_id, q.interval)? {
                        return Ok(true);
                    }
                    continue;
                }
            }
            let Some(chunk) = q.chunks.next() else {
                return Ok(false);
            };
            self.reader.get_mut().seek(chunk.start())?;
            q.chunk_end = Some(chunk.end());
        }
    }

    fn keep(&self) -> bool {
        let r = &self.record;
        let flags = r.flags();
        if flags.is_secondary() && !self.opts.include_secondary {
            return false;
        }
        if flags.is_supplementary() && !self.opts.include_supplementary {
            return false;
        }
        if flags.is_unmapped() && (self.query.is_some() || self.opts.min_mapq > 0) {
            return false;
        }
        // noodles reads 255 ("not available") as None; samtools keeps such
        // reads under `-q` (STAR marks unique reads 255), and so do we.
        let mapq = r.mapping_quality().map_or(255, u8::from);
        if mapq < self.opts.min_mapq {
            return false;
        }
        !r.sequence().is_empty()
    }

    /// Where the next record is, for messages: `record 12`, or within a
    /// region query `region chr1:1-100, record 3` (counted in the query).
    fn at_next(&self) -> String {
        match &self.opts.region {
            Some(r) => format!("region {}, record {}", r.label(), self.n + 1),
            None => format!("record {}", self.n + 1),
        }
    }

    fn next_read(&mut self) -> Result<Option<Record>, Error> {
        loop {
            let more = self.read_raw().map_err(|e| Error::InvalidAt {
                file: self.name.clone(),
                at: self.at_next(),
                message: match e.kind() {
                    io::ErrorKind::UnexpectedEof => "the file ends early (truncated)".into(),
                    _ => format!("cannot read: {e} (truncated or corrupt)"),
                },
            })?;
            if !more {
                if self.query.is_none() && !self.has_eof_marker {
                    return Err(Error::InvalidAt {
                        file: self.name.clone(),
                        at: self.at_next(),
                        message: "the file ends early: no BGZF end-of-file block (truncated)"
                            .into(),
                    });
                }
                return Ok(None);
            }
            self.n += 1;
            if !self.keep() {
                continue;
            }
            let raw = match self.record.name() {
                Some(n) => n.to_vec(),
                None => format!("read{}", self.n).into_bytes(),
            };
            let id = self.unique_id(raw);
            let seq: Vec<u8> = self.record.sequence().iter().collect();
            return Ok(Some(Record {
                id,
                description: None,
                seq,
            }));
        }
    }
}

impl BamReader {
    /// `name`, or `name.2`, `name.3`, ... if taken.
    fn unique_id(&mut self, name: Vec<u8>) -> String {
        if !self.ids.contains(&name) {
            let id = String::from_utf8_lossy(&name).into_owned();
            self.ids.insert(name);
            return id;
        }
        let k = self.next_suffix.entry(name.clone()).or_insert(2);
        loop {
            let mut candidate = name.clone();
            candidate.extend_from_slice(format!(".{k}").as_bytes());
            *k += 1;
            if !self.ids.contains(&candidate) {
                let id = String::from_utf8_lossy(&candidate).into_owned();
                self.ids.insert(candidate);
                return id;
            }
        }
    }
}

/// The first 4 bytes of `file` and whether it ends with the BGZF EOF
/// block; leaves `file` at its start.
fn ends(file: &mut File) -> io::Result<([u8; 4], bool)> {
    let len = file.metadata()?.len();
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic)?;
    let mut tail = [0u8; 28];
    let eof = if len >= 28 + n as u64 {
        file.seek(SeekFrom::End(-28))?;
        file.read_exact(&mut tail)?;
        tail == BGZF_EOF
    } else {
        false
    };
    file.seek(SeekFrom::Start(0))?;
    Ok((magic, eof))
}

impl Iterator for BamReader {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_read().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

/// Resolves `region` against the header and the index next to `path`.
fn query(name: &str, path: &Path, header: &sam::Header, region: &Region) -> Result<Query, Error> {
    let at = |message: String| Error::InvalidAt {
        file: name.to_owned(),
        at: format!("region {}", region.label()),
        message,
    };
    let Some(reference_sequence_id) = header
        .reference_sequences()
        .get_index_of(region.contig.as_bytes())
    else {
        return Err(at(format!(
            "unknown contig {:?} (not in the BAM header)",
            region.contig
        )));
    };
    let len = header.reference_sequences()[reference_sequence_id]
        .length()
        .get() as u64;
    if region.start >= len {
        return Err(at(format!(
            "outside contig {} of length {len}",
            region.contig
        )));
    }
    let bai = with_suffix(path, ".bai");
    let csi = with_suffix(path, ".csi");
    let index: Box<dyn BinningIndex> = if bai.is_file() {
        Box::new(bam::bai::fs::read(&bai).map_err(|e| Error::InvalidInput {
            file: name.to_owned(),
            message: format!("bad index {}: {e}", bai.display()),
        })?)
    } else if csi.is_file() {
        Box::new(
            noodles::csi::fs::read(&csi).map_err(|e| Error::InvalidInput {
                file: name.to_owned(),
                message: format!("bad index {}: {e}", csi.display()),
            })?,
        )
    } else {
        return Err(Error::InvalidInput {
            file: name.to_owned(),
            message: format!(
                "no index {} (create it with `samtools index {name}`), needed for region {}",
                bai.display(),
                region.label()
            ),
        });
    };
    let start =
        Position::try_from(region.start as usize + 1).map_err(|e| at(format!("bad start: {e}")))?;
    let interval: Interval = match region.end {
        Some(end) => {
            let end = Position::try_from(end as usize).map_err(|e| at(format!("bad end: {e}")))?;
            (start..=end).into()
        }
        None => (start..).into(),
    };
    let chunks = index
        .query(reference_sequence_id, interval)
        .map_err(|e| at(format!("index query failed: {e}")))?;
    Ok(Query {
        reference_sequence_id,
        interval,
        chunks: chunks.into_iter(),
        chunk_end: None,
    })
}

fn intersects(record: &bam::Record, id: usize, interval: Interval) -> io::Result<bool> {
    if record.reference_sequence_id().transpose()? != Some(id) {
        return Ok(false);
    }
    match (
        record.alignment_start().transpose()?,
        record.alignment_end().transpose()?,
    ) {
        (Some(start), Some(end)) => Ok(interval.intersects((start..=end).into())),
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests;
