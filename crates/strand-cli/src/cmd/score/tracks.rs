//! Per-position tracks for a genome browser: bedGraph (text) and bigWig
//! (through the `bigtools` crate), both written atomically: each function
//! returns its output complete but uncommitted, so the caller publishes
//! all its outputs together.
//!
//! An empty track is a valid result, not an error: an empty bedGraph and
//! no bigWig (see [`bigwig`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use bigtools::beddata::BedParserStreamingIterator;
use bigtools::{BigWigWrite, Value};
use strand_io::AtomicFile;

/// Values at single bases of one contig: (0-based position, value), in
/// increasing position order.
pub type Track = Vec<(u64, f32)>;

/// `chrom start end value` lines, 0-based half-open, one base each.
pub fn bedgraph(path: &Path, chrom: &str, track: &Track) -> Result<AtomicFile> {
    let mut out = AtomicFile::create(path)?;
    let mut text = String::new();
    for &(p, v) in track {
        text.push_str(&format!("{chrom}\t{p}\t{}\t{v}\n", p + 1));
        if text.len() > 1 << 16 {
            out.write_all(text.as_bytes())
                .map_err(|e| out.write_error(e))?;
            text.clear();
        }
    }
    out.write_all(text.as_bytes())
        .map_err(|e| out.write_error(e))?;
    Ok(out)
}

/// The same values as a bigWig file for a contig of `chrom_len` bases.
/// `None` for an empty track: bigWig writers (bigtools, like UCSC's
/// bedGraphToBigWig) take no empty input, so no file is made.
pub fn bigwig(
    path: &Path,
    chrom: &str,
    chrom_len: u64,
    track: &Track,
) -> Result<Option<AtomicFile>> {
    if track.is_empty() {
        return Ok(None);
    }
    // bigWig is written with seeks (its index goes before the data), so
    // it needs a regular file; say so rather than fail inside the writer.
    let mut out = AtomicFile::create(path)?;
    let file = match out.temp_file() {
        Ok(Some(file)) => file.try_clone(),
        Ok(None) => anyhow::bail!(
            "{}: a bigWig file must be written to a regular file (the writer seeks)",
            path.display()
        ),
        Err(e) => Err(e),
    }
    .map_err(|e| out.write_error(e))?;
    let len = u32::try_from(chrom_len)
        .with_context(|| format!("{}: contig {chrom} is too long for bigWig", path.display()))?;
    let sizes = HashMap::from([(chrom.to_string(), len)]);
    let values: Vec<(String, Value)> = track
        .iter()
        .map(|&(p, v)| {
            (
                chrom.to_string(),
                Value {
                    start: p as u32,
                    end: p as u32 + 1,
                    value: v,
                },
            )
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting the bigWig writer")?;
    BigWigWrite::new(file, sizes)
        .write(
            BedParserStreamingIterator::wrap_infallible_iter(values.into_iter(), false),
            runtime,
        )
        .map_err(|e| anyhow::anyhow!("{}: bigWig write failed: {e}", path.display()))?;
    Ok(Some(out))
}
