//! Read sequences from a BAM file, all of them or those overlapping a
//! region (through the `.bai` or `.csi` index, reading only the indexed
//! chunks).
//!
//! Sequences are returned as stored: BAM keeps reverse-strand reads
//! reverse-complemented into reference orientation, so that orientation is
//! what is embedded (not the read as sequenced).

use std::collections::HashMap;
use std::fs::File;
use std::io;
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
    /// Only reads overlapping this region (needs an index).
    pub region: Option<Region>,
    /// Skip reads with a lower mapping quality (unmapped reads have none
    /// and are skipped when this is above 0).
    pub min_mapq: u8,
    pub include_secondary: bool,
    pub include_supplementary: bool,
}

/// Reads of a BAM file as [`Record`]s, in file order (or index order
/// within a region).
///
/// Read names are made unique: the first read of a name keeps it, later
/// ones get `.2`, `.3`, ... (mates of a pair share a name in BAM). Reads
/// without a stored sequence (`*`) are skipped.
pub struct BamReader {
    name: String,
    reader: bam::io::Reader<bgzf::io::Reader<File>>,
    query: Option<Query>,
    opts: BamOptions,
    seen: HashMap<Vec<u8>, u32>,
    record: bam::Record,
    /// Records read so far (including skipped ones), for messages.
    n: u64,
    done: bool,
}

/// Where a region query stands.
struct Query {
    reference_sequence_id: usize,
    interval: Interval,
    chunks: std::vec::IntoIter<Chunk>,
    /// End of the chunk being read.
    chunk_end: Option<bgzf::VirtualPosition>,
}

impl BamReader {
    pub fn open(path: &Path, opts: BamOptions) -> Result<BamReader, Error> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| Error::Open {
            file: name.clone(),
            source,
        })?;
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
            seen: HashMap::new(),
            record: bam::Record::default(),
            n: 0,
            done: false,
        })
    }

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
        if self.opts.min_mapq > 0 {
            let mapq = r.mapping_quality().map(u8::from);
            if flags.is_unmapped() || mapq.is_none_or(|q| q < self.opts.min_mapq) {
                return false;
            }
        }
        !r.sequence().is_empty()
    }

    fn next_read(&mut self) -> Result<Option<Record>, Error> {
        loop {
            let more = self.read_raw().map_err(|e| Error::InvalidAt {
                file: self.name.clone(),
                at: format!("record {}", self.n + 1),
                message: match e.kind() {
                    io::ErrorKind::UnexpectedEof => "the file ends early (truncated)".into(),
                    _ => format!("cannot read: {e}"),
                },
            })?;
            if !more {
                return Ok(None);
            }
            self.n += 1;
            if !self.keep() {
                continue;
            }
            let raw_name = self.record.name().map(|n| n.to_vec()).unwrap_or_default();
            let count = self.seen.entry(raw_name.clone()).or_insert(0);
            *count += 1;
            let mut id = String::from_utf8_lossy(&raw_name).into_owned();
            if id.is_empty() {
                id = format!("read{}", self.n);
            }
            if *count > 1 {
                id = format!("{id}.{count}");
            }
            let seq: Vec<u8> = self.record.sequence().iter().collect();
            return Ok(Some(Record {
                id,
                description: None,
                seq,
            }));
        }
    }
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
mod tests {
    use super::*;

    fn bam(file: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../test-data/genome"
        ))
        .join(file)
    }

    fn ids(opts: BamOptions) -> Vec<String> {
        BamReader::open(&bam("reads.bam"), opts)
            .expect("open")
            .map(|r| r.expect("read").id)
            .collect()
    }

    #[test]
    fn all_reads_with_unique_names_and_default_filters() {
        let all = ids(BamOptions::default());
        // 30 + pair + unmapped; secondary and supplementary skipped.
        assert_eq!(all.len(), 33, "{all:?}");
        assert!(all.contains(&"pair1".to_string()) && all.contains(&"pair1.2".to_string()));
        assert!(all.contains(&"unmapped1".to_string()));
        assert!(!all.iter().any(|n| n == "sec1" || n == "supp1"));
        let with = ids(BamOptions {
            include_secondary: true,
            include_supplementary: true,
            ..Default::default()
        });
        assert_eq!(with.len(), 35);
        let q = ids(BamOptions {
            min_mapq: 30,
            ..Default::default()
        });
        assert!(!q.contains(&"unmapped1".to_string()));
        assert_eq!(q.len(), 10 + 2, "{q:?}");
    }

    #[test]
    fn region_queries_read_only_overlapping_reads() {
        let region = Region::parse("chrA:3,150-3,350").expect("parse");
        let reads: Vec<Record> = BamReader::open(
            &bam("reads.bam"),
            BamOptions {
                region: Some(region),
                ..Default::default()
            },
        )
        .expect("open")
        .map(|r| r.expect("read"))
        .collect();
        let names: Vec<&str> = reads.iter().map(|r| r.id.as_str()).collect();
        assert!(names.contains(&"pair1"), "{names:?}");
        assert!(
            !names.contains(&"pair1.2"),
            "the mate starts at 3401: {names:?}"
        );
        // Every read's bases are the reference's at its position.
        let sam = std::fs::read_to_string(bam("reads.sam")).expect("sam");
        for r in &reads {
            let line = sam
                .lines()
                .find(|l| l.starts_with(&format!("{}\t", r.id)))
                .expect("in sam");
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f[2], "chrA");
            let pos: u64 = f[3].parse().expect("pos");
            let end = pos + r.seq.len() as u64 - 1;
            assert!(pos <= 3350 && end >= 3150, "{} at {pos}-{end}", r.id);
        }
    }

    #[test]
    fn bad_bams_are_explained() {
        let e = BamReader::open(
            &bam("reads-noindex.bam"),
            BamOptions {
                region: Some(Region::parse("chrA:1-100").expect("parse")),
                ..Default::default()
            },
        )
        .err()
        .expect("no index")
        .to_string();
        assert!(
            e.contains("no index") && e.contains("samtools index"),
            "{e}"
        );
        let e = BamReader::open(
            &bam("reads.bam"),
            BamOptions {
                region: Some(Region::parse("chr9:1-100").expect("parse")),
                ..Default::default()
            },
        )
        .err()
        .expect("unknown contig")
        .to_string();
        assert!(e.contains("unknown contig \"chr9\""), "{e}");

        let dir = tempfile::tempdir().expect("tempdir");
        let cut = dir.path().join("cut.bam");
        let bytes = std::fs::read(bam("reads.bam")).expect("read");
        std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).expect("write");
        let results: Vec<Result<Record, Error>> = BamReader::open(&cut, BamOptions::default())
            .expect("header is intact")
            .collect();
        let e = results
            .last()
            .expect("some")
            .as_ref()
            .expect_err("error")
            .to_string();
        assert!(e.contains("cut.bam: record"), "{e}");
    }
}
