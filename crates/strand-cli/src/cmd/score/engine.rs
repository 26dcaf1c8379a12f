//! The forward passes behind the scores of reference windows.
//!
//! One pass over a reference window gives `llr` for every SNV in it
//! (logits are read at each variant's row) and the reference side of
//! `embed_dist`; the reference passes of a run of equal-length windows are
//! batched. `llr_masked` needs one pass per distinct masked position, and
//! `embed_dist` one per alternate window; those passes have the window's
//! length and run in batches too.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{Context, Result};
use strand_core::tokenizer::{self, id};
use strand_core::{heads, runner, HostBuffer, Model, Out};

use super::variant::{Kind, Score};

/// A reference window and the alleles to score in it.
pub struct WindowWork {
    /// Names the window in errors, e.g. `window chr1:1-131072`.
    pub label: String,
    pub bases: Vec<u8>,
    /// Reference bases after the window, to refill it after a deletion
    /// (see [`alternate_window`]).
    pub after: Vec<u8>,
    pub jobs: Vec<Job>,
}

/// Scores `work` with one engine per device ([`runner::map_ordered`]).
/// The units are runs of equal-length windows whose reference passes fit
/// one batch ([`Engine::units`]; the scores are those of one pass per
/// window), and each device takes the next unit as soon as it is free. Units depend only on the windows and
/// `--batch-tokens`, so the scores are the same with one GPU or eight.
/// Fails with the first failing unit, in window order.
pub fn score_windows(engines: &[Engine], work: &[WindowWork]) -> Result<Vec<Vec<Values>>> {
    let units = engines[0].units(work);
    let mut out = Vec::with_capacity(work.len());
    runner::map_ordered(
        engines,
        units.into_iter().map(Ok),
        |e, unit| e.same_length(&work[unit]),
        |values| {
            out.extend(values);
            Ok(())
        },
    )?;
    Ok(out)
}

/// One allele to score in a window.
#[derive(Debug, Clone)]
pub struct Job {
    /// Offset of the variant's first base in the window.
    pub offset: usize,
    /// REF and ALT bases.
    pub reference: Vec<u8>,
    pub alt: Vec<u8>,
    pub kind: Kind,
}

/// Scores of one allele; `None` where a score does not apply.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Values {
    pub llr: Option<f32>,
    pub llr_masked: Option<f32>,
    pub embed_dist: Option<f32>,
    pub embed_dist_l2: Option<f32>,
}

#[derive(Default)]
struct Buffers {
    reference: HostBuffer,
    rc: HostBuffer,
    scratch: HostBuffer,
}

pub struct Engine<'a> {
    pub model: &'a Model,
    pub scores: Vec<Score>,
    /// PH models: also score the reverse-complement window and average.
    pub rc_average: bool,
    /// Tokens per batched pass.
    pub batch_tokens: usize,
    /// Host memory reused from pass to pass (no allocation; page-locked on
    /// a GPU): reference hidden states, reverse-complement ones, and the
    /// batched masked or alternate windows.
    buffers: Mutex<Buffers>,
}

impl<'a> Engine<'a> {
    pub fn new(
        model: &'a Model,
        scores: Vec<Score>,
        rc_average: bool,
        batch_tokens: usize,
    ) -> Self {
        Engine {
            model,
            scores,
            rc_average,
            batch_tokens,
            buffers: Mutex::new(Buffers::default()),
        }
    }

    fn wants(&self, s: Score) -> bool {
        self.scores.contains(&s)
    }

    /// LM logits of the given rows of `hidden` only (the head works row by
    /// row, and a window needs the rows of its SNVs, not all of them).
    fn logits_at(&self, hidden: &[f32], rows: &[usize]) -> Result<Vec<f32>> {
        let w = self.model.width();
        let mut picked = Vec::with_capacity(rows.len() * w);
        for &i in rows {
            picked.extend_from_slice(&hidden[i * w..(i + 1) * w]);
        }
        Ok(self.model.lm_logits(&picked)?)
    }
}

impl Engine<'_> {
    /// Runs of equal-length windows, each at most `batch_tokens` tokens (or
    /// one window): the batches of reference passes, and the units
    /// `score_windows` hands to devices.
    pub fn units(&self, work: &[WindowWork]) -> Vec<std::ops::Range<usize>> {
        let lens: Vec<usize> = work.iter().map(|w| w.bases.len()).collect();
        runner::runs(&lens, self.batch_tokens)
    }

    /// `windows` for windows of one length, whose reference passes fit one
    /// batch.
    fn same_length(&self, work: &[WindowWork]) -> Result<Vec<Vec<Values>>> {
        let rc = self.rc_average && !self.model.config.rcps;
        let tokens: Vec<Vec<u32>> = work
            .iter()
            .map(|w| tokenizer::encode_bases(&w.bases))
            .collect();
        let snvs: Vec<Vec<usize>> = work
            .iter()
            .map(|w| {
                (0..w.jobs.len())
                    .filter(|&k| w.jobs[k].kind == Kind::Snv)
                    .collect()
            })
            .collect();
        let need_llr: Vec<bool> = snvs
            .iter()
            .map(|s| self.wants(Score::Llr) && !s.is_empty())
            .collect();
        let need_ref: Vec<bool> = (0..work.len())
            .map(|k| need_llr[k] || (self.wants(Score::EmbedDist) && !work[k].jobs.is_empty()))
            .collect();
        let batch_label = || match work {
            [one] => one.label.clone(),
            [first, ..] => format!("{} and {} more windows", first.label, work.len() - 1),
            [] => String::new(),
        };
        let mut guard = self.buffers.lock().expect("one thread per engine");
        let b = &mut *guard;
        // Reference passes (and reverse-complement ones for PH llr), one
        // batch each of the windows that need them; `slot[k]` is window k's
        // place in its batch.
        let pass = |need: &[bool], tokens: &[Vec<u32>], out: &mut HostBuffer| {
            let mut refs = Vec::new();
            let slot: Vec<Option<usize>> = need
                .iter()
                .zip(tokens)
                .map(|(&n, t)| {
                    n.then(|| {
                        refs.push(t.as_slice());
                        refs.len() - 1
                    })
                })
                .collect();
            if !refs.is_empty() {
                self.model
                    .run(&refs, Out::Host(out))
                    .with_context(batch_label)?;
            }
            anyhow::Ok(slot)
        };
        let slot = pass(&need_ref, &tokens, &mut b.reference)?;
        let rc_slot = if rc {
            let rc_tokens: Vec<Vec<u32>> = work
                .iter()
                .map(|w| tokenizer::encode_bases(&tokenizer::reverse_complement(&w.bases)))
                .collect();
            pass(&need_llr, &rc_tokens, &mut b.rc)?
        } else {
            vec![None; work.len()]
        };
        let per_seq = work[0].bases.len() * self.model.width();
        let mut out = Vec::with_capacity(work.len());
        for (k, w) in work.iter().enumerate() {
            let hidden = slot[k].map(|s| &b.reference[s * per_seq..(s + 1) * per_seq]);
            let rc_hidden = rc_slot[k].map(|s| &b.rc[s * per_seq..(s + 1) * per_seq]);
            let v = self
                .score_window(w, &tokens[k], &snvs[k], hidden, rc_hidden, &mut b.scratch)
                .with_context(|| w.label.clone())?;
            out.push(v);
        }
        Ok(out)
    }

    /// One window's scores, given its reference pass (`None` where no
    /// score needs it) and, for PH `llr` with `--rc-average`, its
    /// reverse-complement pass.
    fn score_window(
        &self,
        w: &WindowWork,
        tokens: &[u32],
        snvs: &[usize],
        hidden: Option<&[f32]>,
        rc_hidden: Option<&[f32]>,
        scratch: &mut HostBuffer,
    ) -> Result<Vec<Values>> {
        let jobs = &w.jobs;
        let mut out = vec![Values::default(); jobs.len()];
        let n = tokens.len();
        let rc = self.rc_average && !self.model.config.rcps;
        if let Some(hidden) = hidden {
            if self.wants(Score::Llr) && !snvs.is_empty() {
                // Logits of the SNVs' rows: row `at(i)` of `logits` is
                // window row `i`.
                let mut rows: Vec<usize> = snvs.iter().map(|&k| jobs[k].offset).collect();
                rows.sort_unstable();
                rows.dedup();
                let at = |i: usize| rows.binary_search(&i).expect("an SNV row");
                let logits = self.logits_at(hidden, &rows)?;
                let rc_logits = match rc_hidden {
                    Some(h) => {
                        let rc_rows: Vec<usize> = rows.iter().map(|&i| n - 1 - i).collect();
                        Some(self.logits_at(h, &rc_rows)?)
                    }
                    None => None,
                };
                let v = logits.len() / rows.len();
                for &k in snvs {
                    let (i, r, a) = snv_ids(&jobs[k]);
                    let row = at(i);
                    let mut llr = logits[row * v + a] - logits[row * v + r];
                    if let Some(l) = &rc_logits {
                        let (rc_r, rc_a) = (complement(r), complement(a));
                        llr = (llr + (l[row * v + rc_a] - l[row * v + rc_r])) / 2.0;
                    }
                    out[k].llr = Some(llr);
                }
            }
            if self.wants(Score::EmbedDist) && !jobs.is_empty() {
                self.embed_dist(hidden, scratch, &w.bases, &w.after, jobs, &mut out)?;
            }
        }
        if self.wants(Score::LlrMasked) && !snvs.is_empty() {
            self.llr_masked(tokens, jobs, snvs, rc, scratch, &mut out)?;
        }
        Ok(out)
    }

    /// Masked passes: one per distinct SNV position (ALTs at one position
    /// share it), batched.
    fn llr_masked(
        &self,
        tokens: &[u32],
        jobs: &[Job],
        snvs: &[usize],
        rc: bool,
        scratch: &mut HostBuffer,
        out: &mut [Values],
    ) -> Result<()> {
        let n = tokens.len();
        let mut offsets: Vec<usize> = snvs.iter().map(|&k| jobs[k].offset).collect();
        offsets.sort_unstable();
        offsets.dedup();
        // Row `i` of the masked pass at `i`, per strand.
        let mut rows: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
        let mut rc_rows: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
        let rc_tokens: Vec<u32> = tokens
            .iter()
            .rev()
            .map(|&t| complement(t as usize) as u32)
            .collect();
        let per_seq = n * self.model.width();
        let lens = vec![n; offsets.len()];
        for batch in runner::by_length(&lens, self.batch_tokens, usize::MAX) {
            let chunk: Vec<usize> = batch.iter().map(|&k| offsets[k]).collect();
            let masked: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&i| {
                    let mut t = tokens.to_vec();
                    t[i] = id::MASK;
                    t
                })
                .collect();
            let refs: Vec<&[u32]> = masked.iter().map(Vec::as_slice).collect();
            self.model.run(&refs, Out::Host(scratch))?;
            for (&i, h) in chunk.iter().zip(scratch.chunks_exact(per_seq)) {
                rows.insert(i, self.row_logits(h, i)?);
            }
            if rc {
                let masked: Vec<Vec<u32>> = chunk
                    .iter()
                    .map(|&i| {
                        let mut t = rc_tokens.clone();
                        t[n - 1 - i] = id::MASK;
                        t
                    })
                    .collect();
                let refs: Vec<&[u32]> = masked.iter().map(Vec::as_slice).collect();
                self.model.run(&refs, Out::Host(scratch))?;
                for (&i, h) in chunk.iter().zip(scratch.chunks_exact(per_seq)) {
                    rc_rows.insert(i, self.row_logits(h, n - 1 - i)?);
                }
            }
        }
        for &k in snvs {
            let (i, r, a) = snv_ids(&jobs[k]);
            let l = &rows[&i];
            let mut llr = l[a] - l[r];
            if let Some(l) = rc_rows.get(&i) {
                llr = (llr + (l[complement(a)] - l[complement(r)])) / 2.0;
            }
            out[k].llr_masked = Some(llr);
        }
        Ok(())
    }

    /// LM logits of row `i` of hidden states `h` (the head is per row).
    fn row_logits(&self, h: &[f32], i: usize) -> Result<Vec<f32>> {
        let w = self.model.width();
        Ok(self.model.lm_logits(&h[i * w..(i + 1) * w])?)
    }

    /// Reference vs alternate window: cosine distance of the mean-pooled
    /// embeddings and L2 distance of the rows at the variant's first base.
    /// The alternate windows' passes go through `scratch`.
    fn embed_dist(
        &self,
        ref_hidden: &[f32],
        scratch: &mut HostBuffer,
        bases: &[u8],
        after: &[u8],
        jobs: &[Job],
        out: &mut [Values],
    ) -> Result<()> {
        let ref_rows = self.symmetric(ref_hidden)?;
        let d = ref_rows.len() / bases.len();
        let ref_mean = mean_rows(&ref_rows, d);
        // Alternate windows, batched by length (a deletion at a contig's
        // end leaves a shorter window).
        let alts: Vec<Vec<u32>> = jobs
            .iter()
            .map(|job| tokenizer::encode_bases(&alternate_window(bases, after, job)))
            .collect();
        let lens: Vec<usize> = alts.iter().map(Vec::len).collect();
        for batch in runner::by_length(&lens, self.batch_tokens, usize::MAX) {
            let refs: Vec<&[u32]> = batch.iter().map(|&k| alts[k].as_slice()).collect();
            self.model.run(&refs, Out::Host(scratch))?;
            let per_seq = refs[0].len() * self.model.width();
            for (&k, h) in batch.iter().zip(scratch.chunks_exact(per_seq)) {
                let alt_rows = self.symmetric(h)?;
                let alt_mean = mean_rows(&alt_rows, d);
                let i = jobs[k].offset;
                out[k].embed_dist = Some(cosine_distance(&ref_mean, &alt_mean));
                out[k].embed_dist_l2 = Some(l2(
                    &ref_rows[i * d..(i + 1) * d],
                    &alt_rows[i * d..(i + 1) * d],
                ));
            }
        }
        Ok(())
    }

    /// Rows as compared: strand-symmetric for PS models.
    fn symmetric(&self, hidden: &[f32]) -> Result<Vec<f32>> {
        if self.model.config.rcps {
            Ok(heads::rc_average(&self.model.config, hidden)?)
        } else {
            Ok(hidden.to_vec())
        }
    }
}

/// The window with REF replaced by ALT, starting at the same base and
/// kept at the reference window's length: after an insertion the last
/// bases drop out; after a deletion the next reference bases come in (as
/// many as the contig has).
pub fn alternate_window(bases: &[u8], after: &[u8], job: &Job) -> Vec<u8> {
    let i = job.offset;
    let mut seq = Vec::with_capacity(bases.len() + job.alt.len());
    seq.extend_from_slice(&bases[..i]);
    seq.extend_from_slice(&job.alt);
    seq.extend_from_slice(&bases[(i + job.reference.len()).min(bases.len())..]);
    if seq.len() > bases.len() {
        seq.truncate(bases.len());
    } else {
        let missing = bases.len() - seq.len();
        seq.extend_from_slice(&after[..missing.min(after.len())]);
    }
    seq
}

/// (row, REF id, ALT id) of an SNV.
fn snv_ids(job: &Job) -> (usize, usize, usize) {
    (
        job.offset,
        tokenizer::base_id(job.reference[0]) as usize,
        tokenizer::base_id(job.alt[0]) as usize,
    )
}

/// The id of the complementary base (A↔T, C↔G; others unchanged).
fn complement(t: usize) -> usize {
    match t as u32 {
        id::A => id::T as usize,
        id::T => id::A as usize,
        id::C => id::G as usize,
        id::G => id::C as usize,
        _ => t,
    }
}

fn mean_rows(rows: &[f32], d: usize) -> Vec<f64> {
    let n = (rows.len() / d) as f64;
    let mut sum = vec![0.0f64; d];
    for row in rows.chunks_exact(d) {
        sum.iter_mut()
            .zip(row)
            .for_each(|(s, &x)| *s += f64::from(x));
    }
    sum.into_iter().map(|s| s / n).collect()
}

fn cosine_distance(a: &[f64], b: &[f64]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (1.0 - dot / (na * nb)).clamp(0.0, 2.0) as f32
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt() as f32
}

/// A job for tests: `r` → `a` at `offset`.
#[cfg(test)]
pub(super) fn job(offset: usize, r: &str, a: &str, kind: Kind) -> Job {
    Job {
        offset,
        reference: r.as_bytes().to_vec(),
        alt: a.as_bytes().to_vec(),
        kind,
    }
}

#[cfg(test)]
mod tests;
