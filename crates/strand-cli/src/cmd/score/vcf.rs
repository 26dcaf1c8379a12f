//! Scoring a VCF: records are read in chunks, their alleles grouped by
//! reference window (one reference pass per window), scored, and written
//! back in input order with the scores as INFO fields.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use strand_io::faidx::IndexedFasta;
use strand_io::region::Span;
use strand_io::vcf::{Reader, Record, Writer};
use strand_io::AtomicFile;

use super::dispatch::{score_windows, WindowWork};
use super::engine::{Engine, Job, Values};
use super::variant::{classify, Placement, Score, Window};
use super::{VcfArgs, PROG};
use crate::progress::Progress;

/// An INFO key and how to read its value off an allele's scores.
type Getter = (&'static str, fn(&Values) -> Option<f32>);

/// Alleles to score, by window: (record, allele, job).
type Groups = BTreeMap<(String, Window), Vec<(usize, usize, Job)>>;

/// Records scored together: large enough that neighbouring variants share
/// windows and that several GPUs find windows enough, small enough to
/// bound memory. It does not depend on the number of devices, so neither
/// do the batches of reference passes (nor, to the last bit, the scores).
const CHUNK: usize = 16384;

/// What happened to the records and alleles, for the summary.
#[derive(Default)]
struct Summary {
    records: u64,
    scored: u64,
    skipped: BTreeMap<&'static str, u64>,
}

/// Refuses outputs (the VCF, its index, the table) that are inputs.
fn check_outputs(args: &VcfArgs) -> Result<()> {
    let c = &args.common;
    let mut inputs = crate::args::with_indexes(&args.vcf);
    inputs.extend(crate::args::with_indexes(&c.reference));
    inputs.extend(args.region.files());
    inputs.extend(c.model.files());
    let index = strand_io::vcf::index_path(&args.output);
    let mut outputs: Vec<&Path> = vec![&args.output];
    outputs.extend(index.as_deref());
    outputs.extend(args.tsv.as_deref());
    crate::args::check_outputs(&outputs, &inputs)
}

/// One record and its alleles' results.
struct Item {
    rec: Record,
    /// Why the whole record is unscored.
    filter: Option<&'static str>,
    /// Per ALT: values, or why it was skipped.
    alleles: Vec<Result<Values, &'static str>>,
}

pub fn run(args: VcfArgs) -> Result<()> {
    let c = &args.common;
    c.run.init_threads()?;
    let vcf_path = args.vcf.as_path();
    check_outputs(&args)?;
    let mut reader = Reader::open(vcf_path)?;
    let mut fasta = IndexedFasta::open(&c.reference)?;
    let regions = args.region.regions()?;
    let spans: Vec<Span> = regions
        .iter()
        .map(|r| fasta.resolve(r))
        .collect::<Result<_, _>>()?;
    let range = match args.shard {
        Some(shard) => {
            if vcf_path == Path::new("-") {
                bail!("--shard needs the VCF as a file, not stdin");
            }
            let mut count = Reader::open(vcf_path)?;
            let mut n = 0u64;
            while let Some(r) = count.next_record() {
                r?;
                n += 1;
            }
            let (i, k) = (shard.index - 1, shard.count);
            Some((i * n / k, (i + 1) * n / k))
        }
        None => None,
    };
    let mut out = Writer::create(&args.output)?;
    let mut tsv = match &args.tsv {
        Some(p) => Some(AtomicFile::create(p)?),
        None => None,
    };
    let models = c.model.load_all(PROG, c.run.quiet)?;
    let model = &models[0];
    if c.rc_average && model.config.rcps && !c.run.quiet {
        eprintln!("{PROG}: note: a PS model is strand-symmetric; --rc-average changes nothing");
    }
    let window = c.window();
    super::check_memory(&models, c)?;
    let placement = Placement {
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
    for line in info_lines(&args.scores, &model.id, window, c.centred) {
        out.header_line(&line)?;
    }
    out.header_line(&format!(
        "##strand_scoreVersion={}",
        env!("CARGO_PKG_VERSION")
    ))?;
    out.header_line(&format!("##strand_command={}", command_line()))?;
    let columns = reader.columns.clone();
    out.header_line(&columns)?;
    let score_columns: Vec<&str> = args
        .scores
        .iter()
        .flat_map(|s| s.columns())
        .copied()
        .collect();
    if let Some(t) = &mut tsv {
        if args.shard.is_none_or(|s| s.is_first()) {
            writeln!(t, "chrom\tpos\tid\tref\talt\t{}", score_columns.join("\t"))
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
            chunk.push(rec);
        }
        if chunk.is_empty() {
            break;
        }
        let items = score_chunk(
            chunk,
            &file,
            &mut fasta,
            &placement,
            &engines,
            args.skip_missing_contigs,
        )?;
        for item in items {
            summary.note(&item);
            progress.inc(item.rec.alts().len() as u64);
            if let Some(t) = &mut tsv {
                write_tsv(t, &item, &args.scores)?;
            }
            let mut rec = item.rec.clone();
            annotate(&mut rec, &item, &args.scores);
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
    placement: &Placement,
    engines: &[Engine],
    skip_missing: bool,
) -> Result<Vec<Item>> {
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
            items.push(unscored(rec, "missing_contig", alts.len()));
            continue;
        };
        let pos = rec.pos() - 1;
        let r = rec.reference().to_owned();
        let end = pos + r.len() as u64;
        // Past the contig's end is not a mismatch: there is no reference
        // to compare (often a VCF made against another assembly).
        if end > len {
            items.push(unscored(rec, "off_contig", alts.len()));
            continue;
        }
        let bases = fasta.fetch(rec.chrom(), pos, end).with_context(at)?;
        if !bases.eq_ignore_ascii_case(r.as_bytes()) {
            items.push(unscored(rec, "ref_mismatch", alts.len()));
            continue;
        }
        let k = items.len();
        let mut alleles = Vec::with_capacity(alts.len());
        for (a, alt) in alts.iter().enumerate() {
            match classify(&r, alt) {
                Ok(kind) => {
                    let w = placement.window_of(len, pos, r.len() as u64);
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

fn unscored(rec: Record, why: &'static str, alts: usize) -> Item {
    Item {
        rec,
        filter: Some(why),
        alleles: vec![Err(why); alts],
    }
}

/// The values of one score for every allele; `None` where none applies.
fn column(item: &Item, get: impl Fn(&Values) -> Option<f32>) -> Option<Vec<Option<f32>>> {
    let v: Vec<Option<f32>> = item
        .alleles
        .iter()
        .map(|a| a.as_ref().ok().and_then(&get))
        .collect();
    v.iter().any(Option::is_some).then_some(v)
}

fn getters(scores: &[Score]) -> Vec<Getter> {
    let mut g: Vec<Getter> = Vec::new();
    for s in scores {
        match s {
            Score::Llr => g.push(("STRAND_LLR", |v| v.llr)),
            Score::LlrMasked => g.push(("STRAND_LLR_MASKED", |v| v.llr_masked)),
            Score::EmbedDist => {
                g.push(("STRAND_EMBED_DIST", |v| v.embed_dist));
                g.push(("STRAND_EMBED_DIST_L2", |v| v.embed_dist_l2));
            }
        }
    }
    g
}

fn annotate(rec: &mut Record, item: &Item, scores: &[Score]) {
    for (key, get) in getters(scores) {
        if let Some(values) = column(item, get) {
            let text: Vec<String> = values
                .iter()
                .map(|v| v.map_or(".".into(), |x| x.to_string()))
                .collect();
            rec.add_info(&format!("{key}={}", text.join(",")));
        }
    }
    if let Some(why) = item.filter {
        rec.add_info(&format!("STRAND_FILTER={why}"));
    } else if item.alleles.iter().any(|a| a.is_err()) {
        let why: Vec<&str> = item
            .alleles
            .iter()
            .map(|a| a.as_ref().err().copied().unwrap_or("."))
            .collect();
        rec.add_info(&format!("STRAND_SKIP={}", why.join(",")));
    }
}

fn write_tsv(out: &mut AtomicFile, item: &Item, scores: &[Score]) -> Result<()> {
    let r = &item.rec;
    let getters = getters(scores);
    for (a, alt) in r.alts().iter().enumerate() {
        let mut line = format!(
            "{}\t{}\t{}\t{}\t{alt}",
            r.chrom(),
            r.pos(),
            r.fields[2],
            r.reference()
        );
        for (_, get) in &getters {
            let v = item.alleles[a].as_ref().ok().and_then(get);
            line.push('\t');
            line.push_str(&v.map_or("NA".into(), |x| x.to_string()));
        }
        line.push('\n');
        out.write_all(line.as_bytes())
            .map_err(|e| out.write_error(e))?;
    }
    Ok(())
}

fn info_lines(scores: &[Score], model: &str, window: u64, centred: bool) -> Vec<String> {
    let ctx = format!(
        "model {model}, {} window of {window} bases",
        if centred { "centred" } else { "grid" }
    );
    let mut v = Vec::new();
    for s in scores {
        match s {
            Score::Llr => v.push(format!(
                "##INFO=<ID=STRAND_LLR,Number=A,Type=Float,Description=\"strand llr: logit[ALT] - logit[REF] at the variant in the reference window, SNVs only; positive: ALT more likely ({ctx})\">"
            )),
            Score::LlrMasked => v.push(format!(
                "##INFO=<ID=STRAND_LLR_MASKED,Number=A,Type=Float,Description=\"strand llr_masked: as STRAND_LLR with the variant position masked ({ctx})\">"
            )),
            Score::EmbedDist => {
                v.push(format!(
                    "##INFO=<ID=STRAND_EMBED_DIST,Number=A,Type=Float,Description=\"strand embed_dist: cosine distance of mean-pooled embeddings of the reference and alternate windows ({ctx})\">"
                ));
                v.push(format!(
                    "##INFO=<ID=STRAND_EMBED_DIST_L2,Number=A,Type=Float,Description=\"strand embed_dist_l2: L2 distance of the embeddings at the variant's first base ({ctx})\">"
                ));
            }
        }
    }
    v.push("##INFO=<ID=STRAND_FILTER,Number=1,Type=String,Description=\"strand: why the record was not scored (ref_mismatch: REF differs from the reference; off_contig: REF runs past the contig end; missing_contig)\">".into());
    v.push("##INFO=<ID=STRAND_SKIP,Number=A,Type=String,Description=\"strand: per ALT, why it was not scored (symbolic, spanning_deletion, not_bases, alt_equals_ref, no_alt); . when scored\">".into());
    v
}

fn command_line() -> String {
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

impl Summary {
    fn note(&mut self, item: &Item) {
        self.records += 1;
        for a in &item.alleles {
            match a {
                Ok(_) => self.scored += 1,
                Err(why) => *self.skipped.entry(why).or_default() += 1,
            }
        }
    }

    fn line(&self) -> String {
        let skipped: u64 = self.skipped.values().sum();
        let mut s = format!(
            "{} records, {} alleles scored, {skipped} not scored",
            self.records, self.scored
        );
        if skipped > 0 {
            let why: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            s.push_str(&format!(" ({})", why.join(", ")));
        }
        s
    }
}
