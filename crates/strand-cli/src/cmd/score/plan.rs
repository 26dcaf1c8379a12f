//! `strand-score --dry-run` (VCF and `ism`): the windows and forward
//! passes a run would make, its memory, output size and time.
//!
//! The reference's `.fai` gives the contigs' lengths; the VCF's records
//! are read once for CHROM, POS, REF and ALT (no reference base is read,
//! so alleles whose REF differs from the reference are still counted, and
//! the counts are upper bounds). Windows are grouped per chunk of records
//! exactly as a run groups them, and their passes batched as the engine
//! batches them ([`super::engine`]): one reference pass per window with
//! an SNV (`llr`) or any allele (`embed_dist`), a reverse-complement pass
//! more for PH `--rc-average`, one masked pass per SNV position
//! (`llr_masked`) and one alternate pass per allele (`embed_dist`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;
use strand_core::runner;
use strand_io::faidx::IndexedFasta;
use strand_io::region::Span;
use strand_io::vcf::Reader;

use super::ism::{self, ISM_RUN};
use super::variant::{classify, Kind, Score, Window, WindowGrid};
use super::vcf::{self, CHUNK};
use super::{largest_pass, CommonSettings, PROG};
use crate::dry_run::device::{Need, Target};
use crate::dry_run::{bytes, count, Format, Report};

/// What one window needs.
#[derive(Debug, Clone, Default)]
struct Win {
    len: u64,
    /// Offsets of its SNVs (one masked pass each).
    snv_offsets: BTreeSet<u64>,
    /// Alleles scored in it (one alternate pass each for `embed_dist`).
    jobs: u64,
}

/// The passes of a run, as the engine batches them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Passes {
    windows: u64,
    /// Sequences run through the model.
    passes: u64,
    /// Batched passes (GPU); the CPU runs each sequence alone.
    batches: u64,
    tokens: u64,
    /// Tokens of the largest batch of reference windows, and of masked or
    /// alternate windows.
    largest_unit: u64,
    /// ... of reverse-complement reference windows (PH `llr` with
    /// `--rc-average`, a buffer of their own).
    largest_rc_unit: u64,
    largest_batch: u64,
    /// Bases of the windows of the largest chunk (fetched together).
    chunk_bases: u64,
}

/// How the engine runs a window's passes.
struct Engine {
    batched: bool,
    batch_tokens: u64,
    /// PH with `--rc-average`: reverse-complement passes too.
    rc: bool,
    llr: bool,
    masked: bool,
    embed: bool,
}

impl Engine {
    fn new(target: &Target, c: &CommonSettings, scores: &[Score]) -> Engine {
        Engine {
            batched: target.batches(),
            batch_tokens: c.batch_tokens as u64,
            rc: c.rc_average && !target.cfg.rcps,
            llr: scores.contains(&Score::Llr),
            masked: scores.contains(&Score::LlrMasked),
            embed: scores.contains(&Score::EmbedDist),
        }
    }

    /// `n` sequences of `len` tokens, batched by the token budget.
    fn run(&self, p: &mut Passes, n: u64, len: u64) {
        if n == 0 {
            return;
        }
        let per = (self.batch_tokens / len.max(1)).max(1);
        p.passes += n;
        p.tokens += n * len;
        p.batches += if self.batched { n.div_ceil(per) } else { n };
        p.largest_batch = p.largest_batch.max(n.min(per) * len);
    }

    /// The passes of a chunk's windows, in order.
    fn add(&self, p: &mut Passes, windows: &[Win]) {
        let lens: Vec<usize> = windows.iter().map(|w| w.len as usize).collect();
        p.windows += windows.len() as u64;
        p.chunk_bases = p.chunk_bases.max(lens.iter().sum::<usize>() as u64);
        for unit in runner::runs(&lens, self.batch_tokens as usize) {
            let unit = &windows[unit];
            let llr = |w: &Win| self.llr && !w.snv_offsets.is_empty();
            let refs: Vec<u64> = unit
                .iter()
                .filter(|w| llr(w) || (self.embed && w.jobs > 0))
                .map(|w| w.len)
                .collect();
            let rcs: Vec<u64> = unit.iter().filter(|w| llr(w)).map(|w| w.len).collect();
            for (seqs, rc) in [(refs, false), (rcs, true)] {
                if (self.rc || !rc) && !seqs.is_empty() {
                    let tokens: u64 = seqs.iter().sum();
                    p.passes += seqs.len() as u64;
                    p.tokens += tokens;
                    p.batches += if self.batched { 1 } else { seqs.len() as u64 };
                    let largest = if rc {
                        &mut p.largest_rc_unit
                    } else {
                        &mut p.largest_unit
                    };
                    *largest = (*largest).max(tokens);
                }
            }
            for w in unit {
                if self.masked && !w.snv_offsets.is_empty() {
                    let strands = 1 + u64::from(self.rc);
                    for _ in 0..strands {
                        self.run(p, w.snv_offsets.len() as u64, w.len);
                    }
                }
                if self.embed {
                    self.run(p, w.jobs, w.len);
                }
            }
        }
    }
}

/// The `windows` ... `host_memory` rows shared by both modes.
fn report_passes(
    r: &mut Report,
    target: &Target,
    c: &CommonSettings,
    p: Option<&Passes>,
    extra: u64,
) {
    let rows = largest_pass(c) as u64;
    if let Some(p) = p {
        r.count(
            "windows",
            p.windows,
            &format!("windows of {}", count(c.window)),
        );
        r.count("tokens", p.tokens, "tokens");
        r.count(
            "passes",
            p.passes,
            &format!("forward passes in {} batches", count(p.batches)),
        );
    }
    r.count("largest_pass", rows, "tokens (--window, --batch-tokens)");
    let hb = target.hidden_bytes();
    // Unknown (stdin): as large as the budget allows.
    let rc = if c.rc_average && !target.cfg.rcps {
        rows
    } else {
        0
    };
    let (unit, rc_unit, batch, bases) = p.map_or((rows, rc, rows, rows), |p| {
        (
            p.largest_unit,
            p.largest_rc_unit,
            p.largest_batch,
            p.chunk_bases,
        )
    });
    // Each device's engine: reference (and reverse-complement) hidden
    // states of a batch of windows, a batch of masked or alternate ones,
    // the batch's tokens; the chunk's windows' bases are fetched first.
    let engine = hb * (unit + rc_unit + batch) + 4 * unit.max(batch);
    let host = target.host_pass(c.window) + engine * target.devices.len() as u64 + bases + extra;
    let need = Need {
        pass_rows: rows,
        pass_len: c.window,
        host,
        tokens: p.map(|p| p.tokens),
    };
    target.memory(r, &need);
}

fn rows_for_time(target: &Target, c: &CommonSettings) -> u64 {
    if target.batches() {
        largest_pass(c) as u64
    } else {
        c.window
    }
}

/// The plan of `strand-score --vcf`.
pub fn vcf(args: &vcf::Settings, format: Format) -> Result<()> {
    let c = &args.common;
    let target = Target::resolve(&c.model)?;
    let mut r = Report::new(PROG);
    target.describe(&mut r);
    let fasta = IndexedFasta::open(&c.reference)?;
    r.text(
        "reference",
        format!(
            "{}: {} contigs from its .fai index",
            c.reference.display(),
            fasta.contigs().len()
        ),
    );
    let spans: Vec<Span> = args
        .region
        .regions()?
        .iter()
        .map(|g| fasta.resolve(g))
        .collect::<Result<_, _>>()?;
    let scan = if args.vcf == Path::new("-") {
        r.unknown("variants", "the VCF comes from stdin, read by the run only");
        None
    } else {
        Some(scan_vcf(args, &fasta, &spans, &target)?)
    };
    if let Some((s, _)) = &scan {
        r.text(
            "input",
            format!("{}: records read once", args.vcf.display()),
        );
        let shard = args
            .shard
            .map_or(String::new(), |s| format!(" (shard {s})"));
        r.count("variants", s.records, &format!("records{shard}"));
        r.add(
            "alleles",
            s.to_score,
            format!(
                "{} of {} ALT alleles to score ({} SNVs), at most: REF is not compared with \
                 the reference",
                count(s.to_score),
                count(s.alleles),
                count(s.snvs)
            ),
        );
        if s.missing > 0 {
            let what = if args.skip_missing_contigs {
                "variants on contigs missing from the reference (left unscored)"
            } else {
                "variants on contigs missing from the reference: the run FAILS on the first \
                 (--skip-missing-contigs leaves them unscored)"
            };
            r.count("missing_contigs", s.missing, what);
        }
    }
    // A chunk's records, held while its windows are scored: their text
    // and a string per field.
    let records = scan.as_ref().map_or(CHUNK as u64 * 1024, |(s, _)| {
        let per = s.text_bytes / s.records.max(1) + 8 * 32;
        s.records.min(CHUNK as u64) * per
    });
    report_passes(&mut r, &target, c, scan.as_ref().map(|(_, p)| p), records);
    let out = if args.output == Path::new("-") {
        "stdout".to_string()
    } else {
        args.output.display().to_string()
    };
    r.text("output", out);
    if let Some((s, _)) = &scan {
        // The records' text; per record and score column its INFO key,
        // and per ALT a value of about 10 characters; the header.
        let cols: u64 = args.scores.iter().map(|s| s.columns().len() as u64).sum();
        let vcf_bytes = s.text_bytes + cols * (20 * s.records + 11 * s.alleles) + 3072;
        r.add(
            "output_bytes",
            vcf_bytes,
            format!(
                "about {} of VCF text (BGZF or BCF is smaller)",
                bytes(vcf_bytes)
            ),
        );
        if let Some(tsv) = &args.tsv {
            let n = s.alleles * (20 + 11 * cols);
            r.add(
                "tsv_bytes",
                n,
                format!("about {} ({})", bytes(n), tsv.display()),
            );
        }
    }
    let tokens = scan.as_ref().map(|(_, p)| p.tokens);
    target.time(&mut r, tokens, rows_for_time(&target, c));
    r.print(format)
}

/// What the VCF holds, as far as a run would score it.
#[derive(Debug, Default)]
struct Scan {
    records: u64,
    alleles: u64,
    to_score: u64,
    snvs: u64,
    missing: u64,
    /// Bytes of the records' lines.
    text_bytes: u64,
}

fn scan_vcf(
    args: &vcf::Settings,
    fasta: &IndexedFasta,
    spans: &[Span],
    target: &Target,
) -> Result<(Scan, Passes)> {
    let c = &args.common;
    let range = vcf::shard_range(&args.vcf, args.shard)?;
    let grid = WindowGrid {
        window: c.window,
        centred: c.centred,
    };
    let engine = Engine::new(target, c, &args.scores);
    let snv_only = args.scores.iter().all(|s| s.snv_only());
    let mut reader = Reader::open(&args.vcf)?;
    let (mut scan, mut passes) = (Scan::default(), Passes::default());
    let mut chunk: BTreeMap<(String, Window), Win> = BTreeMap::new();
    let mut in_chunk = 0usize;
    let mut index = 0u64;
    let flush = |chunk: &mut BTreeMap<(String, Window), Win>, passes: &mut Passes| {
        let windows: Vec<Win> = std::mem::take(chunk).into_values().collect();
        engine.add(passes, &windows);
    };
    while let Some(rec) = reader.next_record() {
        let rec = rec?;
        let i = index;
        index += 1;
        if range.is_some_and(|(a, b)| i < a || i >= b) {
            continue;
        }
        let p = rec.pos() - 1;
        if !spans.is_empty()
            && !spans
                .iter()
                .any(|s| s.contig == rec.chrom() && p >= s.start && p < s.end)
        {
            continue;
        }
        let len = fasta.contig_len(rec.chrom());
        if args.missing_contigs_only && len.is_some() {
            continue;
        }
        scan.records += 1;
        scan.text_bytes += rec.fields.iter().map(|f| f.len() as u64 + 1).sum::<u64>();
        let alts = rec.alts();
        scan.alleles += alts.len() as u64;
        in_chunk += 1;
        let Some(len) = len else {
            scan.missing += 1;
            continue;
        };
        let r = rec.reference();
        if p + r.len() as u64 <= len {
            for alt in alts {
                match classify(r, alt) {
                    Ok(kind) if kind != Kind::Snv && snv_only => {}
                    Ok(kind) => {
                        let w = grid.window_of(len, p, r.len() as u64);
                        let win = chunk.entry((rec.chrom().to_owned(), w)).or_default();
                        win.len = w.end - w.start;
                        win.jobs += 1;
                        scan.to_score += 1;
                        if kind == Kind::Snv {
                            scan.snvs += 1;
                            win.snv_offsets.insert(p - w.start);
                        }
                    }
                    Err(_) => {}
                }
            }
        }
        if in_chunk == CHUNK {
            flush(&mut chunk, &mut passes);
            in_chunk = 0;
        }
    }
    flush(&mut chunk, &mut passes);
    Ok((scan, passes))
}

/// The plan of `strand-score ism`.
pub fn ism(args: &ism::Settings, format: Format) -> Result<()> {
    let c = &args.common;
    let target = Target::resolve(&c.model)?;
    let mut r = Report::new(PROG);
    target.describe(&mut r);
    let fasta = IndexedFasta::open(&c.reference)?;
    let span = fasta.resolve(&args.region)?;
    let len = fasta.contig_len(&span.contig).expect("resolved");
    r.text(
        "input",
        format!(
            "{}: region {} from its .fai index",
            c.reference.display(),
            span.label()
        ),
    );
    r.count(
        "positions",
        span.len(),
        &format!(
            "positions, {} SNVs at most (positions that are not A, C, G or T are skipped)",
            count(3 * span.len())
        ),
    );
    let grid = WindowGrid {
        window: c.window,
        centred: c.centred,
    };
    let engine = Engine::new(&target, c, &[args.score]);
    let mut windows: Vec<Win> = Vec::new();
    let mut last: Option<Window> = None;
    for p in span.start..span.end {
        let w = grid.window_of(len, p, 1);
        if last != Some(w) {
            windows.push(Win {
                len: w.end - w.start,
                ..Win::default()
            });
            last = Some(w);
        }
        let win = windows.last_mut().expect("pushed");
        win.jobs += 3;
        win.snv_offsets.insert(p - w.start);
    }
    let mut passes = Passes::default();
    for run in windows.chunks(ISM_RUN) {
        engine.add(&mut passes, run);
    }
    // The region's bases, the scores by position and the six tracks.
    let held = span.len() * (1 + 64 + 6 * 16);
    report_passes(&mut r, &target, c, Some(&passes), held);
    r.text(
        "output",
        format!(
            "{0}.tsv, {0}.{{A,C,G,T,mean,min}}.bedGraph and .bw",
            args.prefix
        ),
    );
    // A TSV row per SNV, a bedGraph line per position and track, and
    // bigWig tracks of about a third of that.
    let n = span.len();
    let name = span.contig.len() as u64;
    let tsv = 3 * n * (name + 26);
    let bedgraph = 6 * n * (name + 30);
    let total = tsv + bedgraph + bedgraph / 3;
    r.add("output_bytes", total, format!("about {}", bytes(total)));
    target.time(&mut r, Some(passes.tokens), rows_for_time(&target, c));
    r.print(format)
}

pub(super) mod calibrate;

#[cfg(test)]
mod tests;
