//! What the commands read: records of a FASTA/FASTQ stream, regions or
//! whole contigs of an indexed FASTA, or reads of a BAM file, as a
//! sequence of named items whose bases are fetched a window at a time.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use strand_io::bam::{BamOptions, BamReader};
use strand_io::error::Name;
use strand_io::faidx::IndexedFasta;
use strand_io::region::{Region, Span};
use strand_io::{IdSet, Reader, Record};

use crate::args::RegionArgs;

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

/// The input options shared by the commands that read sequences.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// FASTA or FASTQ, plain or gzip/BGZF; - for stdin. With -r/-R an
    /// indexed FASTA (.fai, and .gzi when BGZF-compressed)
    #[arg(value_name = "IN", help_heading = "Input")]
    pub input: Option<PathBuf>,

    #[command(flatten)]
    pub region: RegionArgs,

    /// Read the sequences of a BAM file (with -r, only reads overlapping
    /// the region, via the .bai index)
    #[arg(long, value_name = "BAM", help_heading = "Input")]
    pub bam: Option<PathBuf>,

    /// BAM: skip reads with a lower mapping quality
    #[arg(long, value_name = "INT", default_value_t = 0, help_heading = "Input")]
    pub min_mapq: u8,

    /// BAM: also take secondary alignments
    #[arg(long, help_heading = "Input")]
    pub include_secondary: bool,

    /// BAM: also take supplementary alignments
    #[arg(long, help_heading = "Input")]
    pub include_supplementary: bool,
}

impl InputArgs {
    /// Every file this input reads (with the indexes next to them), for
    /// [`crate::args::check_outputs`].
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        let mut files = self.region.files();
        for p in self.input.iter().chain(&self.bam) {
            files.extend(crate::args::with_indexes(p));
        }
        files
    }

    /// Refuses options that do not go together, before anything is read
    /// (a command's `validate` step).
    pub fn check(&self) -> Result<()> {
        if self.bam.is_none()
            && (self.min_mapq > 0 || self.include_secondary || self.include_supplementary)
        {
            bail!("--min-mapq and --include-* apply to --bam input");
        }
        let r = &self.region;
        if self.bam.is_some()
            && (self.input.is_some() || r.regions_file.is_some() || r.regions.len() > 1)
        {
            bail!("--bam takes no other input, and at most one -r region");
        }
        if self.bam.is_none() && self.input.is_none() {
            bail!("no input: give a FASTA/FASTQ file (or - for stdin), or --bam");
        }
        Ok(())
    }

    /// Opens the input (checking regions against the index).
    pub fn open(&self) -> Result<Input> {
        self.check()?;
        Input::open(self)
    }
}

impl Input {
    fn open(req: &InputArgs) -> Result<Input> {
        if let Some(bam) = req.bam.as_deref() {
            let r = &req.region;
            let opts = BamOptions {
                region: r.regions.first().map(|r| Region::parse(r)).transpose()?,
                min_mapq: req.min_mapq,
                include_secondary: req.include_secondary,
                include_supplementary: req.include_supplementary,
            };
            let reader = Box::new(BamReader::open(bam, opts.clone())?);
            return Ok(Input::Bam {
                path: bam.to_path_buf(),
                opts,
                reader,
            });
        }
        let path = req.input.as_deref().expect("check: an input unless --bam");
        let regions = req.region.regions()?;
        if regions.is_empty() {
            // A FASTA with an index next to it is read through the index,
            // a window at a time: memory stays bounded by the window even
            // for whole chromosomes.
            if path != Path::new("-") && has_fai(path) {
                let fasta = IndexedFasta::open(path)?;
                let spans = fasta.whole_contigs();
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

    /// The input's name for messages.
    pub fn display_name(&self) -> String {
        match self {
            Input::Stream { reader, .. } => reader.display_name().to_string(),
            Input::Indexed { fasta, .. } => fasta.display_name().to_string(),
            Input::Bam { reader, .. } => reader.display_name().to_string(),
        }
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

    /// The next item with all its bases, as a record named by the item's
    /// name (for commands that take each sequence in one pass).
    pub fn next_record(&mut self) -> Option<Result<(Item, Record)>> {
        let item = match self.next_item()? {
            Ok(item) => item,
            Err(e) => return Some(Err(e)),
        };
        Some(self.bases(&item, 0, item.len).map(|seq| {
            let rec = Record {
                id: item.name.clone(),
                description: None,
                seq,
            };
            (item, rec)
        }))
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
        if let Some(p) = bases.iter().position(|&b| !b.is_ascii() || b == 0) {
            bail!(
                "{}: {} at {}:{}",
                item.what,
                strand_io::seq::bad_byte(bases[p]),
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
        what: format!("{file}: record {n} ({})", Name(&rec.id)),
        name: rec.id.clone(),
        contig: rec.id,
        start: 0,
        len: rec.seq.len() as u64,
        bases: Some(rec.seq),
    })
}

fn read_item(rec: Record, file: &str) -> Result<Item> {
    if let Some(p) = rec.seq.iter().position(|&b| !b.is_ascii() || b == 0) {
        bail!(
            "{file}: read {}: {} at position {}",
            Name(&rec.id),
            strand_io::seq::bad_byte(rec.seq[p]),
            p + 1
        );
    }
    Ok(Item {
        what: format!("{file}: read {}", Name(&rec.id)),
        name: rec.id.clone(),
        contig: rec.id,
        start: 0,
        len: rec.seq.len() as u64,
        bases: Some(rec.seq),
    })
}
