//! What a scored record becomes: INFO values, FILTER values and reasons
//! in the VCF, a row per ALT in the TSV, and counts for the summary. Every
//! allele without a value has a reason from [`REASONS`], the same in all
//! of them.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use strand_io::vcf::Record;
use strand_io::AtomicFile;

use super::calibration::Calibration;
use super::engine::Values;
use super::quantiles::format_percentile;
use super::variant::{Reason, Score, REASONS};

/// An INFO key, the TSV column and how to read the value off an allele's
/// scores.
pub type Getter = (&'static str, &'static str, fn(&Values) -> Option<f32>);

/// One record and its alleles' results.
pub struct Item {
    pub rec: Record,
    /// Why the whole record is unscored.
    pub filter: Option<&'static str>,
    /// Per ALT: values, or why it has none.
    pub alleles: Vec<Result<Values, &'static str>>,
}

impl Item {
    pub fn unscored(rec: Record, why: &'static str) -> Item {
        let n = rec.alts().len();
        Item {
            rec,
            filter: Some(why),
            alleles: vec![Err(why); n],
        }
    }

    /// Why no ALT has a value (each reason once, in allele order); empty
    /// when one has.
    fn reasons(&self) -> Vec<&'static str> {
        if let Some(why) = self.filter {
            return vec![why];
        }
        let mut why = Vec::new();
        for a in &self.alleles {
            match a {
                Ok(_) => return Vec::new(),
                Err(r) if !why.contains(r) => why.push(*r),
                Err(_) => {}
            }
        }
        why
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

/// The INFO key, TSV column and value of every column of `scores`.
pub fn getters(scores: &[Score]) -> Vec<Getter> {
    let mut g: Vec<Getter> = Vec::new();
    for s in scores {
        match s {
            Score::Llr => g.push(("STRAND_LLR", "llr", |v| v.llr)),
            Score::LlrMasked => g.push(("STRAND_LLR_MASKED", "llr_masked", |v| v.llr_masked)),
            Score::EmbedDist => {
                g.push(("STRAND_EMBED_DIST", "embed_dist", |v| v.embed_dist));
                g.push(("STRAND_EMBED_DIST_L2", "embed_dist_l2", |v| v.embed_dist_l2));
            }
        }
    }
    g
}

/// The percentile of `v` in column `col` of the calibration, as written
/// (`.` in the VCF, `NA` in the table, where there is none).
fn pctl(calib: &Calibration, col: &str, v: Option<f32>, none: &str) -> String {
    v.and_then(|x| calib.percentile(col, x))
        .map_or(none.into(), format_percentile)
}

/// Adds the scores (and with a calibration their percentiles) and reasons
/// to INFO, and sets FILTER to `strand_<reason>` when no ALT got a value,
/// so that `bcftools view -f PASS` drops it. Like `bcftools filter -s`,
/// our values replace PASS (or `.`) and are appended to other filters.
pub fn annotate(rec: &mut Record, item: &Item, scores: &[Score], calib: Option<&Calibration>) {
    for (key, col, get) in getters(scores) {
        if let Some(values) = column(item, get) {
            let text: Vec<String> = values
                .iter()
                .map(|v| v.map_or(".".into(), |x| x.to_string()))
                .collect();
            rec.add_info(&format!("{key}={}", text.join(",")));
            if let Some(c) = calib {
                let text: Vec<String> = values.iter().map(|&v| pctl(c, col, v, ".")).collect();
                rec.add_info(&format!("{key}_PCTL={}", text.join(",")));
            }
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
    let reasons = item.reasons();
    if !reasons.is_empty() {
        let ours: Vec<String> = reasons.iter().map(|r| format!("strand_{r}")).collect();
        let filter = &mut rec.fields[6];
        if filter == "." || filter == "PASS" || filter.is_empty() {
            *filter = ours.join(";");
        } else {
            for f in ours {
                if !filter.split(';').any(|x| x == f) {
                    filter.push(';');
                    filter.push_str(&f);
                }
            }
        }
    }
}

/// The TSV's columns: the record's, one per score, with a calibration one
/// per score's percentile (`llr_pctl`, ...), and why an allele has no
/// value.
pub fn tsv_header(scores: &[Score], calibrated: bool) -> String {
    let mut columns: Vec<String> = scores
        .iter()
        .flat_map(|s| s.columns())
        .map(|c| c.to_string())
        .collect();
    if calibrated {
        let pctl: Vec<String> = columns.iter().map(|c| format!("{c}_pctl")).collect();
        columns.extend(pctl);
    }
    format!("chrom\tpos\tid\tref\talt\t{}\treason", columns.join("\t"))
}

/// One row per ALT: NA where a score does not apply, the percentiles with
/// a calibration, the reason (or `.`).
pub fn write_tsv(
    out: &mut AtomicFile,
    item: &Item,
    scores: &[Score],
    calib: Option<&Calibration>,
) -> Result<()> {
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
        let values: Vec<Option<f32>> = getters
            .iter()
            .map(|(_, _, get)| item.alleles[a].as_ref().ok().and_then(get))
            .collect();
        for v in &values {
            line.push('\t');
            line.push_str(&v.map_or("NA".into(), |x| x.to_string()));
        }
        if let Some(c) = calib {
            for ((_, col, _), &v) in getters.iter().zip(&values) {
                line.push('\t');
                line.push_str(&pctl(c, col, v, "NA"));
            }
        }
        line.push('\t');
        line.push_str(item.alleles[a].as_ref().err().copied().unwrap_or("."));
        line.push('\n');
        out.write_all(line.as_bytes())
            .map_err(|e| out.write_error(e))?;
    }
    Ok(())
}

/// The header lines declaring our INFO and FILTER values.
pub fn header_lines(
    scores: &[Score],
    model: &str,
    window: u64,
    centred: bool,
    calib: Option<&Calibration>,
) -> Vec<String> {
    let ctx = format!(
        "model {model}, {} window of {window} bases",
        if centred { "centred" } else { "grid" }
    );
    let mut v = Vec::new();
    for Reason { id, what, .. } in REASONS {
        v.push(format!(
            "##FILTER=<ID=strand_{id},Description=\"strand: no ALT scored: {what}\">"
        ));
    }
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
    if let Some(c) = calib {
        for (key, col, _) in getters(scores) {
            v.push(format!(
                "##INFO=<ID={key}_PCTL,Number=A,Type=Float,Description=\"strand: percentile (0-100) of {col} among the SNVs of the genome background: the share of background SNVs scoring at most this, interpolated between stored quantiles; rises with the score ({}; {ctx})\">",
                c.describe()
            ));
        }
    }
    let ids = |pick: &dyn Fn(&Reason) -> bool| {
        REASONS
            .iter()
            .filter(|r| pick(r))
            .map(|r| r.id)
            .collect::<Vec<_>>()
            .join(", ")
    };
    // ALT `.` leaves the whole record unscored too (vcf.rs).
    v.push(format!("##INFO=<ID=STRAND_FILTER,Number=1,Type=String,Description=\"strand: why the record was not scored ({})\">", ids(&|r| r.whole_record || r.id == "no_alt")));
    v.push(format!("##INFO=<ID=STRAND_SKIP,Number=A,Type=String,Description=\"strand: per ALT, why it has no value ({}); . when scored\">", ids(&|r| !r.whole_record)));
    v
}

/// What happened to the records and alleles, for the summary.
#[derive(Default)]
pub struct Summary {
    records: u64,
    scored: u64,
    skipped: BTreeMap<&'static str, u64>,
}

impl Summary {
    pub fn note(&mut self, item: &Item) {
        self.records += 1;
        for a in &item.alleles {
            match a {
                Ok(_) => self.scored += 1,
                Err(why) => *self.skipped.entry(why).or_default() += 1,
            }
        }
    }

    /// Records, then alleles: scored, and not scored by reason.
    pub fn line(&self) -> String {
        let skipped: u64 = self.skipped.values().sum();
        let mut s = format!(
            "{} records, {} alleles scored, {skipped} alleles not scored",
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
