//! Scoring a VCF: records are read in chunks, their alleles grouped by
//! reference window (one reference pass per window), scored, and written
//! back in input order with the scores as INFO fields.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use strand_io::faidx::IndexedFasta;
use strand_io::region::Span;
use strand_io::vcf::{Format, Options, Reader, Record, Writer};
use strand_io::AtomicFile;

use super::annotate::{annotate, header_lines, tsv_header, write_tsv, Item, Summary};
use super::calibration::{Calibration, ModelIdentity};
use super::engine::{score_windows, Engine, Job, Values, WindowWork};
use super::variant::{classify, Kind, Score, Window, WindowGrid};
use super::{CommonSettings, VcfArgs, PROG};
use crate::args::RegionArgs;
use crate::progress::Progress;
use crate::shard::Shard;

/// Alleles to score, by window: (record, allele, job).
type Groups = BTreeMap<(String, Window), Vec<(usize, usize, Job)>>;

/// Records scored together: large enough that neighbouring variants share
/// windows and that several GPUs find windows enough, small enough to
/// bound memory. It does not depend on the number of devices, so neither
/// do the batches of reference passes (nor, to the last bit, the scores).
pub(super) const CHUNK: usize = 16384;

/// The VCF mode's options after [`VcfArgs::validate`].
#[derive(Debug)]
pub struct Settings {
    pub vcf: PathBuf,
    pub common: CommonSettings,
    pub region: RegionArgs,
    pub skip_missing_contigs: bool,
    pub missing_contigs_only: bool,
    /// `-o`, `-` (stdout) when not given.
    pub output: PathBuf,
    /// How it is written (`-O`, `-W` and its name).
    pub options: Options,
    pub tsv: Option<PathBuf>,
    pub scores: Vec<Score>,
    /// `--calibration`, read and checked against the window and scores.
    pub calibration: Option<Calibration>,
    pub shard: Option<Shard>,
}

impl VcfArgs {
    /// Refuses, before any work: an output type or index that cannot be
    /// written (a usage error, exit 2), `--shard` of stdin, outputs (the
    /// VCF, its index, the table) that are inputs, and a calibration made
    /// with another window or without one of the scores.
    pub fn validate(self) -> Result<Settings> {
        let output = self.output.or_stdout();
        let options = self.output_format.options(&output);
        if self.shard.shard.is_some() && self.vcf == Path::new("-") {
            bail!("--shard needs the VCF as a file, not stdin");
        }
        let c = &self.common;
        let mut inputs = crate::args::with_indexes(&self.vcf);
        inputs.extend(crate::args::with_indexes(&c.reference));
        inputs.extend(self.region.files());
        inputs.extend(c.model.files());
        inputs.extend(self.calibration.calibration.clone());
        let outputs = self.output_format.outputs(&output);
        let mut outputs: Vec<&Path> = outputs.iter().map(|p| p.as_path()).collect();
        outputs.extend(self.tsv.as_deref());
        crate::args::check_outputs(&outputs, &inputs)?;
        let common = self.common.validate();
        let calibration = match &self.calibration.calibration {
            Some(path) => {
                let calib = Calibration::read(path)?;
                calib.check_settings(common.window, common.centred, &self.scores)?;
                Some(calib)
            }
            None => None,
        };
        Ok(Settings {
            vcf: self.vcf,
            common,
            region: self.region,
            skip_missing_contigs: self.skip_missing_contigs,
            missing_contigs_only: self.missing_contigs_only,
            output,
            options,
            tsv: self.tsv,
            scores: self.scores,
            calibration,
            shard: self.shard.shard,
        })
    }
}

/// The records `[first, end)` (0-based, in file order) that shard `I/N`
/// scores: the file is counted once; `None` without `--shard`.
pub(super) fn shard_range(vcf: &Path, shard: Option<Shard>) -> Result<Option<(u64, u64)>> {
    let Some(shard) = shard else {
        return Ok(None);
    };
    let mut count = Reader::open(vcf)?;
    let mut n = 0u64;
    while let Some(r) = count.next_record() {
        r?;
        n += 1;
    }
    let (i, k) = (shard.index - 1, shard.count);
    Ok(Some((i * n / k, (i + 1) * n / k)))
}

/// Scores a VCF with settings checked by [`VcfArgs::validate`].
pub fn run(args: Settings) -> Result<()> {
    let c = &args.common;
    c.run.init_threads()?;
    if let Some(format) = c.run.dry_run {
        return super::plan::vcf(&args, format);
    }
    let calib = args.calibration.as_ref();
    if let Some(calib) = calib {
        calib.check_model(&ModelIdentity::of(&c.model.model)?, c.rc_average)?;
    }
    let vcf_path = args.vcf.as_path();
    let mut reader = Reader::open(vcf_path)?;
    let mut fasta = IndexedFasta::open(&c.reference)?;
    let regions = args.region.regions()?;
    let spans: Vec<Span> = regions
        .iter()
        .map(|r| fasta.resolve(r))
        .collect::<Result<_, _>>()?;
    let range = shard_range(vcf_path, args.shard)?;
    let options = args.options;
    let mut out = Writer::create_with(&args.output, options)?;
    let mut tsv = match &args.tsv {
        Some(p) => Some(AtomicFile::create(p)?),
        None => None,
    };
    let models = c.model.load_all(PROG, c.run.quiet)?;
    let model = &models[0];
    if c.rc_average && model.config.rcps && !c.run.quiet {
        eprintln!("{PROG}: note: a PS model is strand-symmetric; --rc-average changes nothing");
    }
    let window = c.window;
    super::check_memory(&models, c)?;
    let grid = WindowGrid {
        window,
        centred: c.centred,
    };
    let engines: Vec<Engine> = models
        .iter()
        .map(|model| Engine::new(model, args.scores.clone(), c.rc_average, c.batch_tokens))
        .collect();

    // Header: the input's, our INFO lines and command, then #CHROM.
    for m in &reader.meta {
        out.header_line(m)?;
    }
    // BCF names contigs by their header index: declare the reference's
    // contigs that the input does not.
    if options
        .format
        .unwrap_or_else(|| Format::for_path(&args.output))
        == Format::Bcf
    {
        for (name, len) in fasta.contigs() {
            let declared = reader.meta.iter().any(|m| {
                m.strip_prefix("##contig=<ID=")
                    .and_then(|r| r.strip_prefix(name.as_str()))
                    .is_some_and(|r| r.starts_with([',', '>']))
            });
            if !declared {
                out.header_line(&format!("##contig=<ID={name},length={len}>"))?;
            }
        }
    }
    for line in header_lines(&args.scores, &model.id, window, c.centred, calib) {
        out.header_line(&line)?;
    }
    out.header_line(&format!(
        "##strand_scoreVersion={}",
        env!("CARGO_PKG_VERSION")
    ))?;
    out.header_line(&format!("##strand_command={}", command_line()))?;
    let columns = reader.columns.clone();
    out.header_line(&columns)?;
    if let Some(t) = &mut tsv {
        if args.shard.is_none_or(|s| s.is_first()) {
            writeln!(t, "{}", tsv_header(&args.scores, calib.is_some()))
                .map_err(|e| t.write_error(e))?;
        }
    }

    let file = reader.display_name().to_string();
    let mut summary = Summary::default();
    let mut progress = Progress::with_unit(PROG, c.run.quiet, None, "variants");
    let mut index = 0u64;
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK {
            let Some(rec) = reader.next_record() else {
                break;
            };
            let rec = rec?;
            let i = index;
            index += 1;
            if range.is_some_and(|(a, b)| i < a || i >= b) {
                continue;
            }
            if !spans.is_empty() && !in_spans(&rec, &spans) {
                continue;
            }
            if args.missing_contigs_only && fasta.contig_len(rec.chrom()).is_some() {
                continue;
            }
            chunk.push(rec);
        }
        if chunk.is_empty() {
            break;
        }
        let items = score_chunk(
            chunk,
            &file,
            &mut fasta,
            &grid,
            &engines,
            &args.scores,
            args.skip_missing_contigs,
        )?;
        for item in items {
            summary.note(&item);
            progress.inc(item.rec.alts().len() as u64);
            if let Some(t) = &mut tsv {
                write_tsv(t, &item, &args.scores, calib)?;
            }
            let mut rec = item.rec.clone();
            annotate(&mut rec, &item, &args.scores, calib);
            out.record(&rec)?;
        }
    }
    progress.finish();
    // The table is flushed and synced first, so that a write error leaves
    // neither output; then the VCF (and its index), then the table.
    let tsv = tsv.map(AtomicFile::prepare).transpose()?;
    out.finish()?;
    if let Some(t) = tsv {
        t.publish()?;
    }
    if !c.run.quiet {
        eprintln!("{PROG}: {}", summary.line());
    }
    c.run.report_peak(PROG);
    Ok(())
}

fn in_spans(rec: &Record, spans: &[Span]) -> bool {
    let p = rec.pos() - 1;
    spans
        .iter()
        .any(|s| s.contig == rec.chrom() && p >= s.start && p < s.end)
}

/// Checks every record against the reference and scores its alleles.
fn score_chunk(
    chunk: Vec<Record>,
    file: &str,
    fasta: &mut IndexedFasta,
    grid: &WindowGrid,
    engines: &[Engine],
    scores: &[Score],
    skip_missing: bool,
) -> Result<Vec<Item>> {
    let snv_only = scores.iter().all(|s| s.snv_only());
    let mut items = Vec::with_capacity(chunk.len());
    // (contig, window) -> (item, allele, job)
    let mut groups = Groups::new();
    let mut lengths: HashMap<String, u64> = HashMap::new();
    for rec in chunk {
        let at = || format!("{file}: line {} ({}:{})", rec.line, rec.chrom(), rec.pos());
        let alts: Vec<String> = rec.alts().iter().map(|s| s.to_string()).collect();
        let len = match lengths.get(rec.chrom()) {
            Some(&l) => Some(l),
            None => {
                let l = fasta.contig_len(rec.chrom());
                if let Some(l) = l {
                    lengths.insert(rec.chrom().to_owned(), l);
                }
                l
            }
        };
        let Some(len) = len else {
            if !skip_missing {
                bail!(
                    "{}: contig {:?} is not in the reference {} (use --skip-missing-contigs to \
                     leave such variants unscored)",
                    at(),
                    rec.chrom(),
                    fasta.display_name()
                );
            }
            items.push(Item::unscored(rec, "missing_contig"));
            continue;
        };
        let pos = rec.pos() - 1;
        let r = rec.reference().to_owned();
        let end = pos + r.len() as u64;
        // Past the contig's end is not a mismatch: there is no reference
        // to compare (often a VCF made against another assembly).
        if end > len {
            items.push(Item::unscored(rec, "off_contig"));
            continue;
        }
        let bases = fasta.fetch(rec.chrom(), pos, end).with_context(at)?;
        if !bases.eq_ignore_ascii_case(r.as_bytes()) {
            items.push(Item::unscored(rec, "ref_mismatch"));
            continue;
        }
        if alts.is_empty() {
            // ALT `.`: a site without a variant, nothing to score.
            items.push(Item::unscored(rec, "no_alt"));
            continue;
        }
        let k = items.len();
        let mut alleles = Vec::with_capacity(alts.len());
        for (a, alt) in alts.iter().enumerate() {
            match classify(&r, alt) {
                Ok(kind) if kind != Kind::Snv && snv_only => alleles.push(Err("not_snv")),
                Ok(kind) => {
                    let w = grid.window_of(len, pos, r.len() as u64);
                    groups
                        .entry((rec.chrom().to_owned(), w))
                        .or_default()
                        .push((
                            k,
                            a,
                            Job {
                                offset: (pos - w.start) as usize,
                                reference: r.to_ascii_uppercase().into_bytes(),
                                alt: alt.to_ascii_uppercase().into_bytes(),
                                kind,
                            },
                        ));
                    alleles.push(Ok(Values::default()));
                }
                Err(why) => alleles.push(Err(why)),
            }
        }
        items.push(Item {
            rec,
            filter: None,
            alleles,
        });
    }
    // Bases for every window first (one reader), then the windows run on
    // every device at once.
    let mut work = Vec::with_capacity(groups.len());
    let mut owners = Vec::with_capacity(groups.len());
    for ((contig, w), jobs) in groups {
        let bases = fasta.fetch(&contig, w.start, w.end)?;
        let len = lengths[&contig];
        let deleted = jobs
            .iter()
            .map(|(_, _, j)| j.reference.len().saturating_sub(j.alt.len()) as u64)
            .max()
            .unwrap_or(0);
        let after_end = (w.end + deleted).min(len);
        let after = if after_end > w.end {
            fasta.fetch(&contig, w.end, after_end)?
        } else {
            Vec::new()
        };
        work.push(WindowWork {
            label: format!("window {contig}:{}-{}", w.start + 1, w.end),
            bases,
            after,
            jobs: jobs.iter().map(|(_, _, j)| j.clone()).collect(),
        });
        owners.push(jobs.into_iter().map(|(k, a, _)| (k, a)).collect::<Vec<_>>());
    }
    for (owner, values) in owners.iter().zip(score_windows(engines, &work)?) {
        for (&(k, a), v) in owner.iter().zip(values) {
            items[k].alleles[a] = Ok(v);
        }
    }
    Ok(items)
}

/// The command line as run, quoted where an argument has blanks.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
