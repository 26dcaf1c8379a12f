//! `strand-score calibrate`: the distribution of each score over a genome
//! background, stored as quantiles, so that `--calibration` can say where
//! a variant's score falls in it. Every SNV of the background (all three
//! alternatives at every A, C, G or T) gets the one-pass `llr`; a seeded
//! uniform sample of its positions gets the costly `llr_masked` and
//! `embed_dist` too. Sites are scored by the VCF mode's code, in the
//! windows a VCF variant at that position would get, so a calibrated
//! score is the same number as the score it calibrates. Method and format
//! in docs/score.md, section 7.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use strand_io::faidx::IndexedFasta;
use strand_io::region::Span;
use strand_io::AtomicFile;

use super::annotate::getters;
use super::calibration::{self, ModelIdentity, VERSION};
use super::engine::{score_windows, Engine, Job, WindowWork};
use super::quantiles::{levels, quantiles, sample_indices, Reservoir};
use super::variant::{Kind, Score, Window, WindowGrid};
use super::{Common, CommonSettings, PROG};
use crate::args::{OutputFile, RegionArgs};
use crate::progress::Progress;

/// The options of `strand-score calibrate` (its help text is the doc
/// comment of `score::Command::Calibrate`).
#[derive(clap::Args, Debug)]
#[command(mut_arg("output", |a| a.required(true).help(
    "Calibration file: a TSV with # header lines (docs/score.md, section 7); - for stdout"
)))]
#[command(mut_arg("regions", |a| a.help(
    "Background region chr:beg-end (1-based, inclusive) or a whole contig; repeatable \
     [default: every contig of the reference]"
)))]
#[command(mut_arg("regions_file", |a| a.help(
    "Background regions from a BED file (0-based, half-open; overlaps are merged)"
)))]
pub struct Args {
    #[command(flatten)]
    pub region: RegionArgs,

    /// Positions sampled (uniformly, from the background's A, C, G and T)
    /// for llr_masked and embed_dist, all three SNVs at each; every
    /// position when the background has fewer. Costs one pass per
    /// position (llr_masked) and one per SNV (embed_dist)
    #[arg(long, value_name = "N", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000), help_heading = "Scores")]
    pub sample: u64,

    /// Seed of the sample (the same seed and inputs give the same file)
    #[arg(long, value_name = "INT", default_value_t = 0, help_heading = "Scores")]
    pub seed: u64,

    /// Quantiles stored per score, evenly spaced from 0 to 1 (1,001: every
    /// 0.1 percentile)
    #[arg(long, value_name = "K", default_value_t = 1001,
          value_parser = clap::value_parser!(u64).range(3..=1_000_001), help_heading = "Scores")]
    pub quantiles: u64,

    /// Scores to calibrate
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [Score::Llr, Score::LlrMasked, Score::EmbedDist], help_heading = "Scores")]
    pub scores: Vec<Score>,

    #[command(flatten)]
    pub output: OutputFile,

    #[command(flatten)]
    pub common: Common,
}

/// `strand-score calibrate`'s options after [`Args::validate`].
#[derive(Debug)]
pub struct Settings {
    pub region: RegionArgs,
    pub sample: u64,
    pub seed: u64,
    pub quantiles: usize,
    /// Each score once, in the order given.
    pub scores: Vec<Score>,
    pub output: PathBuf,
    pub common: CommonSettings,
}

impl Args {
    /// Refuses, before any work, an output that is an input.
    pub fn validate(self) -> Result<Settings> {
        let output = self.output.or_stdout();
        let c = &self.common;
        let mut inputs = crate::args::with_indexes(&c.reference);
        inputs.extend(self.region.files());
        inputs.extend(c.model.files());
        crate::args::check_outputs(&[&output], &inputs)?;
        let mut scores = Vec::new();
        for s in self.scores {
            if !scores.contains(&s) {
                scores.push(s);
            }
        }
        Ok(Settings {
            region: self.region,
            sample: self.sample,
            seed: self.seed,
            quantiles: self.quantiles as usize,
            scores,
            output,
            common: self.common.validate(),
        })
    }
}

/// Values kept per score for its quantiles: beyond this a uniform sample
/// of them (see [`Reservoir`]); 64 MiB per score.
pub(super) const KEEP: usize = 1 << 24;

/// Bases read from the reference at once.
pub(super) const READ: u64 = 1 << 20;

/// Windows handed to the engines at once, and positions: they bound
/// memory (about 100 bytes per SNV in flight).
pub(super) const RUN_WINDOWS: usize = 256;
const RUN_POSITIONS: usize = 1 << 20;

fn is_acgt(b: u8) -> bool {
    b"ACGT".contains(&b.to_ascii_uppercase())
}

/// A window's contig, the window, and its positions with whether each is
/// in the sample.
type Positions = (String, Window, Vec<(u64, bool)>);

/// Windows waiting to be scored, in reference order.
#[derive(Default)]
struct Pending {
    windows: Vec<Positions>,
    positions: usize,
}

impl Pending {
    /// Adds position `p` of window `w`; `false` (and nothing added) when
    /// `p` opens a new window and the run is full: score the run first.
    fn add(&mut self, contig: &str, w: Window, p: u64, sampled: bool) -> bool {
        let same = matches!(self.windows.last(), Some((c, last, _)) if c == contig && *last == w);
        if !same {
            if self.windows.len() >= RUN_WINDOWS || self.positions >= RUN_POSITIONS {
                return false;
            }
            self.windows.push((contig.to_string(), w, Vec::new()));
        }
        let (_, _, positions) = self.windows.last_mut().expect("a window");
        positions.push((p, sampled));
        self.positions += 1;
        true
    }
}

/// The background: `-r`/`-R` (or every contig), checked against the
/// reference, sorted in reference order and with overlaps merged, so that
/// no position counts twice.
pub(super) fn background(fasta: &IndexedFasta, region: &RegionArgs) -> Result<Vec<Span>> {
    let order: BTreeMap<String, usize> = fasta
        .contigs()
        .into_iter()
        .enumerate()
        .map(|(i, (name, _))| (name, i))
        .collect();
    let mut spans: Vec<Span> = if region.regions.is_empty() && region.regions_file.is_none() {
        fasta.whole_contigs()
    } else {
        region
            .regions()?
            .iter()
            .map(|r| fasta.resolve(r))
            .collect::<Result<_, _>>()?
    };
    spans.sort_by_key(|s| (order[&s.contig], s.start, s.end));
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        match merged.last_mut() {
            Some(m) if m.contig == s.contig && s.start <= m.end => m.end = m.end.max(s.end),
            _ => merged.push(Span { name: None, ..s }),
        }
    }
    Ok(merged)
}

/// How the background was given, for the file's header.
fn describe_background(fasta: &IndexedFasta, region: &RegionArgs) -> String {
    let mut parts = Vec::new();
    if !region.regions.is_empty() {
        parts.push(format!("-r {}", region.regions.join(",")));
    }
    if let Some(bed) = &region.regions_file {
        parts.push(format!("-R {}", bed.display()));
    }
    if parts.is_empty() {
        format!("every contig of {}", fasta.display_name())
    } else {
        parts.join(" ")
    }
}

/// Calibrates with settings checked by [`Args::validate`].
pub fn run(s: Settings) -> Result<()> {
    let c = &s.common;
    c.run.init_threads()?;
    if let Some(format) = c.run.dry_run {
        return super::plan::calibrate::plan(&s, format);
    }
    let mut fasta = IndexedFasta::open(&c.reference)?;
    let spans = background(&fasta, &s.region)?;
    let background_text = describe_background(&fasta, &s.region);
    // One read of the background to count its positions, for the sample.
    let mut total = 0u64;
    for span in &spans {
        for at in (span.start..span.end).step_by(READ as usize) {
            let bases = fasta.fetch(&span.contig, at, (at + READ).min(span.end))?;
            total += bases.iter().filter(|&&b| is_acgt(b)).count() as u64;
        }
    }
    if total == 0 {
        bail!(
            "{}: no base A, C, G or T in the background ({background_text}); nothing to calibrate",
            fasta.display_name()
        );
    }
    let wants_llr = s.scores.contains(&Score::Llr);
    let costly: Vec<Score> = s
        .scores
        .iter()
        .copied()
        .filter(|&x| x != Score::Llr)
        .collect();
    let sample = if costly.is_empty() {
        Vec::new()
    } else {
        sample_indices(total, s.sample, s.seed)
    };
    let identity = ModelIdentity::of(&c.model.model)?;
    let mut out = AtomicFile::create(&s.output)?;
    let models = c.model.load_all(PROG, c.run.quiet)?;
    super::check_memory(&models, c)?;
    let mut engines: Vec<Engine> = models
        .iter()
        .map(|m| Engine::new(m, Vec::new(), c.rc_average, c.batch_tokens))
        .collect();
    let grid = WindowGrid {
        window: c.window,
        centred: c.centred,
    };
    let columns = getters(&s.scores);
    let mut kept: Vec<Reservoir> = (0..columns.len())
        .map(|k| Reservoir::new(KEEP, s.seed.wrapping_add(k as u64 + 1)))
        .collect();
    let mut progress = Progress::with_unit(PROG, c.run.quiet, Some(total), "positions");

    let mut score = |fasta: &mut IndexedFasta, pending: Pending| -> Result<()> {
        let mut all = Vec::with_capacity(pending.windows.len());
        let mut some = Vec::new();
        for (contig, w, positions) in &pending.windows {
            let bases = fasta.fetch(contig, w.start, w.end)?;
            let snvs = |pick: &dyn Fn(bool) -> bool| -> Vec<Job> {
                let mut jobs = Vec::new();
                for &(p, _) in positions.iter().filter(|(_, x)| pick(*x)) {
                    let offset = (p - w.start) as usize;
                    let r = bases[offset].to_ascii_uppercase();
                    for &a in b"ACGT".iter().filter(|&&a| a != r) {
                        jobs.push(Job {
                            offset,
                            reference: vec![r],
                            alt: vec![a],
                            kind: Kind::Snv,
                        });
                    }
                }
                jobs
            };
            let label = format!("window {contig}:{}-{}", w.start + 1, w.end);
            let sampled = snvs(&|x| x);
            if !sampled.is_empty() {
                some.push(WindowWork {
                    label: label.clone(),
                    bases: bases.clone(),
                    after: Vec::new(),
                    jobs: sampled,
                });
            }
            if wants_llr {
                let jobs = snvs(&|_| true);
                all.push(WindowWork {
                    label,
                    bases,
                    after: Vec::new(),
                    jobs,
                });
            }
        }
        for (scores, work) in [(vec![Score::Llr], &all), (costly.clone(), &some)] {
            if work.is_empty() {
                continue;
            }
            engines.iter_mut().for_each(|e| e.scores = scores.clone());
            let values = score_windows(&engines, work)?;
            for v in values.iter().flatten() {
                for ((_, _, get), keep) in columns.iter().zip(&mut kept) {
                    if let Some(x) = get(v) {
                        keep.push(x);
                    }
                }
            }
        }
        progress.inc(pending.positions as u64);
        Ok(())
    };

    let mut pending = Pending::default();
    let (mut index, mut next) = (0u64, 0usize);
    for span in &spans {
        let len = fasta.contig_len(&span.contig).expect("resolved");
        for at in (span.start..span.end).step_by(READ as usize) {
            let bases = fasta.fetch(&span.contig, at, (at + READ).min(span.end))?;
            for (i, &b) in bases.iter().enumerate() {
                if !is_acgt(b) {
                    continue;
                }
                let p = at + i as u64;
                let sampled = sample.get(next) == Some(&index);
                next += usize::from(sampled);
                index += 1;
                let w = grid.window_of(len, p, 1);
                if !pending.add(&span.contig, w, p, sampled) {
                    score(&mut fasta, std::mem::take(&mut pending))?;
                    assert!(pending.add(&span.contig, w, p, sampled));
                }
            }
        }
    }
    score(&mut fasta, pending)?;
    progress.finish();

    let levels = levels(s.quantiles);
    let mut table = Vec::with_capacity(columns.len());
    let (mut sites, mut used) = (Vec::new(), Vec::new());
    for ((_, col, _), keep) in columns.iter().zip(kept) {
        sites.push(format!("{col}:{}", keep.seen));
        used.push(format!("{col}:{}", keep.values.len()));
        let Some(q) = quantiles(keep.values, &levels) else {
            bail!("no {col} value in the background ({background_text}); nothing to calibrate");
        };
        table.push((*col, q));
    }
    let names: Vec<&str> = columns.iter().map(|(_, col, _)| *col).collect();
    let meta = [
        ("strand_version", env!("CARGO_PKG_VERSION").to_string()),
        ("model", c.model.model.clone()),
        ("model_config_sha256", identity.config_sha256.clone()),
        ("model_weights_sha256", identity.weights_sha256.clone()),
        ("window", c.window.to_string()),
        ("windows", if c.centred { "centred" } else { "grid" }.into()),
        ("rc_average", (c.rc_average && !identity.rcps).to_string()),
        ("reference", fasta.display_name().to_string()),
        ("background", background_text.clone()),
        ("background_positions", total.to_string()),
        ("sample_positions", sample.len().to_string()),
        ("seed", s.seed.to_string()),
        ("scores", names.join(",")),
        ("sites", sites.join(",")),
        ("values", used.join(",")),
        ("device", models[0].describe_device()),
        ("command", super::vcf::command_line()),
    ];
    calibration::write(&mut out, &meta, &levels, &table)?;
    out.commit()?;
    if !c.run.quiet {
        eprintln!(
            "{PROG}: calibration (format {VERSION}) of {} over {total} positions ({}); \
             sites per score: {}; wrote {}",
            names.join(", "),
            background_text,
            sites.join(", "),
            display(&s.output)
        );
    }
    Ok(())
}

fn display(p: &Path) -> String {
    if p == Path::new("-") {
        "<stdout>".into()
    } else {
        p.display().to_string()
    }
}
