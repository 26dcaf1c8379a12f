//! `strand-score ism`: saturation mutagenesis of a region. Every position
//! whose reference base is A, C, G or T gets the `llr` (or `llr_masked`)
//! of each of its three alternative bases, computed exactly as for a VCF
//! SNV at that position (same windows, same passes).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use strand_io::faidx::IndexedFasta;
use strand_io::region::Region;
use strand_io::AtomicFile;

use super::calibration::{Calibration, CalibrationArg, ModelIdentity};
use super::engine::{score_windows, Engine, Job, WindowWork};
use super::quantiles::format_percentile;
use super::tracks::{bedgraph, bigwig, Track};
use super::variant::{classify, Kind, Score, Window, WindowGrid};
use super::{Common, CommonSettings, PROG};
use crate::args::OutputPrefix;
use crate::progress::Progress;

/// The options of `strand-score ism` (its help text is the doc comment of
/// `score::Command::Ism`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The region, chr:beg-end (1-based, inclusive)
    #[arg(
        short = 'r',
        long = "region",
        value_name = "REGION",
        required = true,
        help_heading = "Input"
    )]
    pub region: String,

    #[command(flatten)]
    pub output: OutputPrefix,

    /// Mask each position (llr_masked: one pass per position) instead of
    /// reading all positions off the reference pass (llr)
    #[arg(long, help_heading = "Scores")]
    pub masked: bool,

    // With --calibration, PREFIX.tsv has a column more: the score's
    // percentile in the calibration's genome background (llr_pctl, or
    // llr_masked_pctl).
    #[command(flatten)]
    pub calibration: CalibrationArg,

    #[command(flatten)]
    pub common: Common,
}

/// `strand-score ism`'s options after [`Args::validate`].
#[derive(Debug)]
pub struct Settings {
    pub region: Region,
    /// `-o`: every output is `PREFIX.*`.
    pub prefix: String,
    /// `llr`, or `llr_masked` with `--masked`.
    pub score: Score,
    /// `--calibration`, read and checked against the window and score.
    pub calibration: Option<Calibration>,
    pub common: CommonSettings,
}

impl Args {
    /// Refuses, before any work: a region that does not parse, a prefix
    /// that is a folder, outputs that are inputs, and a calibration made
    /// with another window or without the score.
    pub fn validate(self) -> Result<Settings> {
        let region = Region::parse(&self.region)?;
        let prefix = self.output.check()?;
        let c = &self.common;
        let mut inputs = crate::args::with_indexes(&c.reference);
        inputs.extend(c.model.files());
        inputs.extend(self.calibration.calibration.clone());
        let outputs = output_paths(&prefix);
        let outs: Vec<&Path> = outputs.iter().map(PathBuf::as_path).collect();
        crate::args::check_outputs(&outs, &inputs)?;
        let score = if self.masked {
            Score::LlrMasked
        } else {
            Score::Llr
        };
        let common = self.common.validate();
        let calibration = match &self.calibration.calibration {
            Some(path) => {
                let calib = Calibration::read(path)?;
                calib.check_settings(common.window, common.centred, &[score])?;
                Some(calib)
            }
            None => None,
        };
        Ok(Settings {
            region,
            prefix,
            score,
            calibration,
            common,
        })
    }
}

const BASES: [u8; 4] = *b"ACGT";

/// Windows handed to the engines at once (their reference passes batch,
/// and with several GPUs the runs of equal-length windows spread over
/// them); only bounds memory.
pub(super) const ISM_RUN: usize = 256;

/// Labels of the tracks: one per base, then the mean and the minimum.
const TRACKS: [&str; 6] = ["A", "C", "G", "T", "mean", "min"];

/// Every file a run writes: PREFIX.tsv, then each track's .bedGraph and
/// .bw.
fn output_paths(prefix: &str) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(format!("{prefix}.tsv"))];
    for label in TRACKS {
        paths.push(PathBuf::from(format!("{prefix}.{label}.bedGraph")));
        paths.push(PathBuf::from(format!("{prefix}.{label}.bw")));
    }
    paths
}

/// Saturation mutagenesis with settings checked by [`Args::validate`].
pub fn run(args: Settings) -> Result<()> {
    let c = &args.common;
    c.run.init_threads()?;
    if let Some(format) = c.run.dry_run {
        return super::plan::ism(&args, format);
    }
    let calib = args.calibration.as_ref();
    if let Some(calib) = calib {
        calib.check_model(&ModelIdentity::of(&c.model.model)?, c.rc_average)?;
    }
    let mut fasta = IndexedFasta::open(&c.reference)?;
    let span = fasta.resolve(&args.region)?;
    let len = fasta.contig_len(&span.contig).expect("resolved");
    let prefix = args.prefix.as_str();
    let masked = args.score == Score::LlrMasked;
    // Nothing to mutate (all N): an error before any work, not a run that
    // ends with empty tables.
    let bases = fasta.fetch(&span.contig, span.start, span.end)?;
    if !bases
        .iter()
        .any(|b| BASES.contains(&b.to_ascii_uppercase()))
    {
        bail!(
            "{}: region {}: no base A, C, G or T to mutate (all N?); nothing to score",
            fasta.display_name(),
            span.label()
        );
    }
    let models = c.model.load_all(PROG, c.run.quiet)?;
    super::check_memory(&models, c)?;
    let engines: Vec<Engine> = models
        .iter()
        .map(|m| Engine::new(m, vec![args.score], c.rc_average, c.batch_tokens))
        .collect();
    let grid = WindowGrid {
        window: c.window,
        centred: c.centred,
    };

    let reference = fasta.fetch(&span.contig, span.start, span.end)?;
    // Positions grouped by their window.
    let mut groups: BTreeMap<Window, Vec<u64>> = BTreeMap::new();
    // Positions not scored, by reason: the VCF mode's rule for an SNV
    // from the reference base (an N is not scored in either mode).
    let mut skipped: BTreeMap<&str, u64> = BTreeMap::new();
    for p in span.start..span.end {
        let b = reference[(p - span.start) as usize].to_ascii_uppercase();
        let alt = if b == b'A' { "C" } else { "A" };
        match classify(&(b as char).to_string(), alt) {
            Ok(_) => groups.entry(grid.window_of(len, p, 1)).or_default().push(p),
            Err(why) => *skipped.entry(why).or_default() += 1,
        }
    }
    let mut progress = Progress::new(PROG, c.run.quiet, Some(span.len()));
    // llr per position and alternative base (index into BASES).
    let mut llr: BTreeMap<u64, [Option<f32>; 4]> = BTreeMap::new();
    // Windows go to the engine in runs, so that their reference passes are
    // batched; the run's length only bounds memory.
    let groups: Vec<(Window, Vec<u64>)> = groups.into_iter().collect();
    for run in groups.chunks(ISM_RUN) {
        let mut work = Vec::with_capacity(run.len());
        for (w, positions) in run {
            let bases = fasta.fetch(&span.contig, w.start, w.end)?;
            let mut jobs = Vec::new();
            for &p in positions {
                let r = bases[(p - w.start) as usize].to_ascii_uppercase();
                for &a in BASES.iter().filter(|&&a| a != r) {
                    jobs.push(Job {
                        offset: (p - w.start) as usize,
                        reference: vec![r],
                        alt: vec![a],
                        kind: Kind::Snv,
                    });
                }
            }
            work.push(WindowWork {
                label: format!("window {}:{}-{}", span.contig, w.start + 1, w.end),
                bases,
                after: Vec::new(),
                jobs,
            });
        }
        let values = score_windows(&engines, &work)?;
        for (((w, positions), work), values) in run.iter().zip(&work).zip(values) {
            for (job, v) in work.jobs.iter().zip(values) {
                let p = w.start + job.offset as u64;
                let k = BASES.iter().position(|&b| b == job.alt[0]).expect("ACGT");
                llr.entry(p).or_default()[k] = if masked { v.llr_masked } else { v.llr };
            }
            progress.inc(positions.len() as u64);
        }
    }
    progress.finish();

    let mut tsv = AtomicFile::create(&PathBuf::from(format!("{prefix}.tsv")))?;
    let name = if masked { "llr_masked" } else { "llr" };
    let pctl_column = if calib.is_some() {
        format!("\t{name}_pctl")
    } else {
        String::new()
    };
    writeln!(tsv, "chrom\tpos\tref\talt\t{name}{pctl_column}").map_err(|e| tsv.write_error(e))?;
    let mut per_base: [Track; 4] = Default::default();
    let (mut mean, mut min) = (Track::new(), Track::new());
    for (&p, alts) in &llr {
        let r = reference[(p - span.start) as usize].to_ascii_uppercase() as char;
        let mut vals = Vec::new();
        for (k, v) in alts.iter().enumerate() {
            if let Some(v) = v {
                let pctl = calib.map_or(String::new(), |cal| {
                    let p = cal.percentile(name, *v);
                    format!("\t{}", p.map_or("NA".into(), format_percentile))
                });
                writeln!(
                    tsv,
                    "{}\t{}\t{r}\t{}\t{v}{pctl}",
                    span.contig,
                    p + 1,
                    BASES[k] as char
                )
                .map_err(|e| tsv.write_error(e))?;
                per_base[k].push((p, *v));
                vals.push(*v);
            }
        }
        if !vals.is_empty() {
            mean.push((p, vals.iter().sum::<f32>() / vals.len() as f32));
            min.push((p, vals.iter().copied().fold(f32::INFINITY, f32::min)));
        }
    }
    // Every output complete before any is published: a failure on the
    // way leaves none of them (and no older file replaced).
    let mut outputs = vec![tsv];
    let tracks = TRACKS.iter().zip(per_base.into_iter().chain([mean, min]));
    for (label, track) in tracks {
        outputs.push(bedgraph(
            &PathBuf::from(format!("{prefix}.{label}.bedGraph")),
            &span.contig,
            &track,
        )?);
        let bw = PathBuf::from(format!("{prefix}.{label}.bw"));
        match bigwig(&bw, &span.contig, len, &track)? {
            Some(file) => outputs.push(file),
            None if !c.run.quiet => eprintln!(
                "{PROG}: note: the {label} track is empty (every position's reference is \
                 {label}); {} not written",
                bw.display()
            ),
            None => {}
        }
    }
    strand_io::commit_all(outputs)?;
    if !c.run.quiet {
        let why: Vec<String> = skipped.iter().map(|(k, v)| format!("{v} {k}")).collect();
        eprintln!(
            "{PROG}: {} positions of {}, {} SNVs scored, {} positions not scored{}; wrote \
             {prefix}.tsv and .bedGraph/.bw tracks",
            llr.len(),
            span.label(),
            llr.values().flatten().filter(|v| v.is_some()).count(),
            skipped.values().sum::<u64>(),
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join(", "))
            },
        );
    }
    c.run.report_peak(PROG);
    Ok(())
}
