//! What `strand-embed` reads: records of a FASTA/FASTQ stream, regions or
//! whole contigs of an indexed FASTA, or reads of a BAM file, as a
//! sequence of named items whose bases are fetched a window at a time.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use strand_io::bam::{BamOptions, BamReader};
use strand_io::faidx::IndexedFasta;
use strand_io::region::{Region, Span};
use strand_io::{IdSet, Reader, Record};

/// One record, region or read to embed.
#[derive(Debug)]
pub struct Item {
    /// Output name: record id, read name, BED name or `chr:beg-end`.
    pub name: String,
    /// Coordinates of base 0: the contig (or the record id) and offset.
    pub contig: String,
    pub start: u64,
    pub len: u64,
    /// The bases when read whole (streams, reads); `None` when they are
    /// fetched from the index a window at a time.
    bases: Option<Vec<u8>>,
    /// How messages name it: `ref.fa: region chr1:1-100`.
    pub what: String,
}

/// The input, positioned before its next item.
pub enum Input {
    Stream {
        path: PathBuf,
        reader: Reader,
        ids: IdSet,
    },
    Indexed {
        fasta: IndexedFasta,
        spans: std::vec::IntoIter<Span>,
        /// Contigs taken whole keep the contig's name; regions are named
        /// `chr:beg-end` or by their BED name.
        whole: bool,
    },
    Bam {
        path: PathBuf,
        opts: BamOptions,
        // Boxed: a BAM reader is much larger than the other inputs.
        reader: Box<BamReader>,
    },
}

/// How the user named the input.
pub struct Request<'a> {
    pub path: Option<&'a Path>,
    pub regions: &'a [String],
    pub regions_file: Option<&'a Path>,
    pub bam: Option<&'a Path>,
    pub bam_opts: BamOptions,
}

impl Input {
    pub fn open(req: Request) -> Result<Input> {
        if let Some(bam) = req.bam {
            if req.path.is_some() || req.regions_file.is_some() || req.regions.len() > 1 {
                bail!("--bam takes no other input, and at most one -r region");
            }
            let mut opts = req.bam_opts;
            opts.region = req.regions.first().map(|r| Region::parse(r)).transpose()?;
            let reader = Box::new(BamReader::open(bam, opts.clone())?);
            return Ok(Input::Bam {
                path: bam.to_path_buf(),
                opts,
                reader,
            });
        }
        let path = req
            .path
            .context("no input: give a FASTA/FASTQ file (or - for stdin), or --bam")?;
        let mut regions: Vec<Region> = req
            .regions
            .iter()
            .map(|r| Region::parse(r))
            .collect::<Result<_, _>>()?;
        if let Some(bed) = req.regions_file {
            regions.extend(strand_io::bed::read_bed(bed)?);
        }
        if regions.is_empty() {
            // A FASTA with an index next to it is read through the index,
            // a window at a time: memory stays bounded by the window even
            // for whole chromosomes.
            if path != Path::new("-") && has_fai(path) {
                let fasta = IndexedFasta::open(path)?;
                let spans = fasta
                    .contigs()
                    .into_iter()
                    .filter(|(_, len)| *len > 0)
                    .map(|(contig, len)| Span {
                        contig,
                        start: 0,
                        end: len,
                        name: None,
                    })
                    .collect::<Vec<_>>();
                return Ok(Input::Indexed {
                    fasta,
                    spans: spans.into_iter(),
                    whole: true,
                });
            }
            let reader = Reader::from_path(path)?;
            let ids = IdSet::new(reader.display_name().to_string());
            return Ok(Input::Stream {
                path: path.to_path_buf(),
                reader,
                ids,
            });
        }
        if path == Path::new("-") {
            bail!("regions (-r/-R) need an indexed FASTA file, not stdin");
        }
        let fasta = IndexedFasta::open(path)?;
        let spans = regions
            .iter()
            .map(|r| fasta.resolve(r))
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = HashSet::new();
        for s in &spans {
            if !names.insert(s.output_name()) {
                bail!(
                    "{}: region {} is requested twice (names must be unique)",
                    fasta.display_name(),
                    s.output_name()
                );
            }
        }
        Ok(Input::Indexed {
            fasta,
            spans: spans.into_iter(),
            whole: false,
        })
    }

    /// The length of every item, in order, without embedding anything: from
    /// the index, or by reading the input once more (for `--shard`).
    pub fn lengths(&self) -> Result<Vec<u64>> {
        match self {
            Input::Indexed { spans, .. } => Ok(spans.as_slice().iter().map(Span::len).collect()),
            Input::Stream { path, .. } => {
                if path == Path::new("-") {
                    bail!("--shard needs the input as a file, not stdin (each task reads it)");
                }
                Reader::from_path(path)?
                    .map(|r| Ok(r?.seq.len() as u64))
                    .collect()
            }
            Input::Bam { path, opts, .. } => BamReader::open(path, opts.clone())?
                .map(|r| Ok(r?.seq.len() as u64))
                .collect(),
        }
    }

    /// The total bases when known without reading the input.
    pub fn known_total(&self) -> Option<u64> {
        match self {
            Input::Indexed { spans, .. } => Some(spans.as_slice().iter().map(Span::len).sum()),
            _ => None,
        }
    }

    /// The next item, checked for use as model input.
    pub fn next_item(&mut self) -> Option<Result<Item>> {
        match self {
            Input::Stream { reader, ids, .. } => {
                let rec = match reader.next()? {
                    Ok(r) => r,
                    Err(e) => return Some(Err(e.into())),
                };
                let n = reader.record_number();
                let file = reader.display_name().to_string();
                Some(stream_item(rec, &file, n, ids))
            }
            Input::Bam { reader, .. } => {
                let rec = match reader.next()? {
                    Ok(r) => r,
                    Err(e) => return Some(Err(e.into())),
                };
                let file = reader.display_name().to_string();
                Some(read_item(rec, &file))
            }
            Input::Indexed {
                fasta,
                spans,
                whole,
                ..
            } => {
                let span = spans.next()?;
                let what = format!("{}: region {}", fasta.display_name(), span.label());
                Some(Ok(Item {
                    name: if *whole {
                        span.contig.clone()
                    } else {
                        span.output_name()
                    },
                    contig: span.contig.clone(),
                    start: span.start,
                    len: span.len(),
                    bases: None,
                    what,
                }))
            }
        }
    }

    /// Bases `[start, end)` of `item` (item coordinates).
    pub fn bases(&mut self, item: &Item, start: u64, end: u64) -> Result<Vec<u8>> {
        let bases = match (&item.bases, self) {
            (Some(b), _) => b[start as usize..end as usize].to_vec(),
            (None, Input::Indexed { fasta, .. }) => {
                fasta.fetch(&item.contig, item.start + start, item.start + end)?
            }
            (None, _) => unreachable!("only indexed items are fetched lazily"),
        };
        if let Some(p) = bases.iter().position(|b| !b.is_ascii()) {
            bail!(
                "{}: non-ASCII byte 0x{:02x} at {}:{}",
                item.what,
                bases[p],
                item.contig,
                item.start + start + p as u64 + 1
            );
        }
        Ok(bases)
    }
}

fn has_fai(path: &Path) -> bool {
    let mut fai = path.as_os_str().to_owned();
    fai.push(".fai");
    Path::new(&fai).is_file()
}

fn stream_item(rec: Record, file: &str, n: u64, ids: &mut IdSet) -> Result<Item> {
    ids.insert(&rec.id, n)?;
    rec.check_model_input(file, n)?;
    Ok(Item {
        what: format!("{file}: record {n} ({:?})", rec.id),
        name: rec.id.clone(),
        contig: rec.id,
        start: 0,
        len: rec.seq.len() as u64,
        bases: Some(rec.seq),
    })
}

fn read_item(rec: Record, file: &str) -> Result<Item> {
    if let Some(p) = rec.seq.iter().position(|b| !b.is_ascii()) {
        bail!(
            "{file}: read {:?}: non-ASCII base at position {}",
            rec.id,
            p + 1
        );
    }
    Ok(Item {
        what: format!("{file}: read {:?}", rec.id),
        name: rec.id.clone(),
        contig: rec.id,
        start: 0,
        len: rec.seq.len() as u64,
        bases: Some(rec.seq),
    })
}
