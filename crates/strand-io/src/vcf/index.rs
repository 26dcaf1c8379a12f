//! The index of a BGZF VCF or a BCF, built while writing: `.tbi` (tabix)
//! or `.csi`, as bcftools writes them.
//!
//! A `.tbi` bins positions up to 2^29 (14-bit bins, 5 levels) and cannot
//! index a record on a longer contig (wheat, axolotl, some plants). By
//! default ([`IndexFormat::Auto`]) BGZF VCF gets a `.tbi` unless a record
//! ends past 2^29, in which case it gets a `.csi` instead; BCF always gets
//! a `.csi` (htslib reads no `.tbi` for BCF). Both indexers are fed as
//! records arrive, so that the choice can be made at the end without a
//! second pass.

use std::path::{Path, PathBuf};

use noodles::core::Position;
use noodles::csi;
use noodles::csi::binning_index::index::header::ReferenceSequenceNames;
use noodles::csi::binning_index::index::reference_sequence::bin::Chunk;
use noodles::csi::binning_index::index::reference_sequence::index::BinnedIndex;
use noodles::tabix;

use crate::atomic::AtomicFile;
use crate::error::Error;
use crate::faidx::with_suffix;

/// The last position (1-based) a `.tbi` can index.
pub const TBI_MAX: u64 = 1 << 29;

/// CSI bins: htslib's minimum shift, and enough levels for 2^32 positions
/// (BCF positions are 32-bit): 14 + 3 × 6 = 32.
const CSI_MIN_SHIFT: u8 = 14;
const CSI_DEPTH: u8 = 6;

/// Which index to write next to a BGZF VCF or BCF (`-W, --write-index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexFormat {
    /// `.tbi` for VCF unless a record ends past 2^29; `.csi` for BCF.
    #[default]
    Auto,
    Tbi,
    Csi,
}

impl std::str::FromStr for IndexFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(IndexFormat::Auto),
            "tbi" => Ok(IndexFormat::Tbi),
            "csi" => Ok(IndexFormat::Csi),
            _ => Err(format!("index format {s:?}: expected tbi, csi or auto")),
        }
    }
}

/// Builds a `.tbi` and/or a `.csi` from records in file order.
pub struct Indexer {
    format: IndexFormat,
    /// None once a `.tbi` is out of the question.
    tbi: Option<tabix::index::Indexer>,
    csi: csi::binning_index::Indexer<BinnedIndex>,
    /// Contig names in order of appearance (VCF), as the `.csi`'s tabix
    /// header lists them; BCF records carry their header's contig ids.
    names: ReferenceSequenceNames,
    vcf: bool,
}

impl Indexer {
    /// An indexer for BGZF VCF text (`vcf`) or BCF.
    pub fn new(format: IndexFormat, vcf: bool) -> Indexer {
        let tbi = (vcf && format != IndexFormat::Csi).then(|| {
            let mut t = tabix::index::Indexer::default();
            t.set_header(csi::binning_index::index::header::Builder::vcf().build());
            t
        });
        Indexer {
            format,
            tbi,
            csi: csi::binning_index::Indexer::new(CSI_MIN_SHIFT, CSI_DEPTH)
                .expect("valid CSI parameters"),
            names: ReferenceSequenceNames::default(),
            vcf,
        }
    }

    /// Adds a record covering `start..=end` (1-based) on `chrom` (BCF: the
    /// header's contig id `rid`), stored in `chunk`. The error says what is
    /// wrong; the caller names the file and record.
    pub fn add(
        &mut self,
        chrom: &str,
        rid: Option<usize>,
        start: u64,
        end: u64,
        chunk: Chunk,
    ) -> Result<(), String> {
        let position = |p: u64| {
            usize::try_from(p)
                .ok()
                .and_then(Position::new)
                .ok_or_else(|| format!("position {p} cannot be indexed"))
        };
        let (s, e) = (position(start)?, position(end)?);
        if end > TBI_MAX {
            match self.format {
                IndexFormat::Tbi => {
                    return Err(format!(
                        "{chrom}:{end} lies past 2^29, beyond what a .tbi index can hold; \
                         use --write-index=csi"
                    ))
                }
                _ => self.tbi = None,
            }
        }
        if let Some(t) = &mut self.tbi {
            t.add_record(chrom, s, e, chunk)
                .map_err(|e| unsorted(chrom, &e.to_string()))?;
        }
        let id = match rid {
            Some(id) => id,
            None => self.names.insert_full(chrom.into()).0,
        };
        self.csi
            .add_record(Some((id, s, e, true)), chunk)
            .map_err(|e| unsorted(chrom, &e.to_string()))
    }

    /// Writes the index for `data` (`data.tbi` or `data.csi`) and publishes
    /// it together with `file`, the data itself: both are synced before
    /// either is renamed, the index first, so that it is never older than
    /// the data. Then removes the other kind of index if an earlier run
    /// left one, so that no reader picks a stale index. `contigs` is the
    /// BCF header's contig count.
    pub fn commit_with(
        self,
        file: AtomicFile,
        data: &Path,
        contigs: usize,
    ) -> Result<PathBuf, Error> {
        let data_file = file;
        let (path, stale) = match self.tbi {
            Some(t) => {
                let path = with_suffix(data, ".tbi");
                let mut file = AtomicFile::create(&path)?;
                let mut w = tabix::io::Writer::new(&mut file);
                w.write_index(&t.build())
                    .and_then(|()| w.try_finish())
                    .map_err(|source| Error::Write {
                        file: path.display().to_string(),
                        source,
                    })?;
                drop(w);
                crate::atomic::commit_all([file, data_file])?;
                (path, with_suffix(data, ".csi"))
            }
            None => {
                let path = with_suffix(data, ".csi");
                let mut file = AtomicFile::create(&path)?;
                let index = if self.vcf {
                    let count = self.names.len();
                    let mut header = csi::binning_index::index::header::Builder::vcf().build();
                    *header.reference_sequence_names_mut() = self.names;
                    self.csi.set_header(header).build(count)
                } else {
                    self.csi.build(contigs)
                };
                let mut w = csi::io::Writer::new(&mut file);
                w.write_index(&index)
                    .and_then(|()| w.into_inner().finish().map(drop))
                    .map_err(|source| Error::Write {
                        file: path.display().to_string(),
                        source,
                    })?;
                crate::atomic::commit_all([file, data_file])?;
                (path, with_suffix(data, ".tbi"))
            }
        };
        if stale.is_file() {
            std::fs::remove_file(&stale).map_err(|source| Error::Write {
                file: stale.display().to_string(),
                source,
            })?;
        }
        Ok(path)
    }
}

fn unsorted(chrom: &str, why: &str) -> String {
    format!(
        "cannot index the output at {chrom} ({why}); is the input sorted by contig and \
         position? (bcftools sort)"
    )
}
