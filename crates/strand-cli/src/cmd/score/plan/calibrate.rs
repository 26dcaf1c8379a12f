//! `strand-score calibrate --dry-run`: the windows and passes a
//! calibration would make over its background, its memory, output size
//! and time.
//!
//! `llr` is scored at every position of the background (from the `.fai`:
//! positions that are not A, C, G or T are counted, so the numbers are
//! upper bounds), in the windows a run forms; the sampled scores
//! (`llr_masked`, `embed_dist`) are counted as if every sampled position
//! had a window of its own, which a sparse sample has.

use anyhow::Result;
use strand_io::faidx::IndexedFasta;

use super::{count, report_passes, rows_for_time, Engine, Passes, Win};
use super::{Format, Report, Target, PROG};
use crate::cmd::score::calibrate::{self, KEEP, READ, RUN_WINDOWS};
use crate::cmd::score::variant::{Score, WindowGrid};

/// The plan of `strand-score calibrate`.
pub fn plan(args: &calibrate::Settings, format: Format) -> Result<()> {
    let c = &args.common;
    let target = Target::resolve(&c.model)?;
    let mut r = Report::new(PROG);
    target.describe(&mut r);
    let fasta = IndexedFasta::open(&c.reference)?;
    let spans = calibrate::background(&fasta, &args.region)?;
    let positions: u64 = spans.iter().map(|s| s.len()).sum();
    let sample = args.sample.min(positions);
    r.text(
        "input",
        format!(
            "{}: {} background span(s) from its .fai index",
            c.reference.display(),
            count(spans.len() as u64)
        ),
    );
    r.count(
        "positions",
        positions,
        &format!(
            "positions, {} SNVs at most; {} sampled for llr_masked and embed_dist",
            count(3 * positions),
            count(sample)
        ),
    );
    let grid = WindowGrid {
        window: c.window,
        centred: c.centred,
    };
    let mut passes = Passes::default();
    if args.scores.contains(&Score::Llr) {
        let engine = Engine::new(&target, c, &[Score::Llr]);
        let mut run: Vec<Win> = Vec::new();
        for span in &spans {
            let len = fasta.contig_len(&span.contig).expect("resolved");
            let mut last = None;
            for p in span.start..span.end {
                let w = grid.window_of(len, p, 1);
                if last != Some(w) {
                    if run.len() == RUN_WINDOWS {
                        engine.add(&mut passes, &run);
                        run.clear();
                    }
                    let mut win = Win {
                        len: w.end - w.start,
                        ..Win::default()
                    };
                    // One SNV marks the window as scored (llr needs no
                    // per-position pass).
                    win.snv_offsets.insert(p - w.start);
                    run.push(win);
                    last = Some(w);
                }
                run.last_mut().expect("pushed").jobs += 3;
            }
        }
        engine.add(&mut passes, &run);
    }
    let sampled: Vec<Score> = args
        .scores
        .iter()
        .copied()
        .filter(|s| *s != Score::Llr)
        .collect();
    if !sampled.is_empty() && sample > 0 {
        let engine = Engine::new(&target, c, &sampled);
        // Windows as long as the background's contigs allow.
        let longest = spans
            .iter()
            .map(|s| fasta.contig_len(&s.contig).expect("resolved"))
            .max()
            .unwrap_or(0);
        let one = Win {
            len: c.window.min(longest),
            snv_offsets: [0].into(),
            jobs: 3,
        };
        let mut left = sample;
        while left > 0 {
            let n = left.min(RUN_WINDOWS as u64);
            engine.add(&mut passes, &vec![one.clone(); n as usize]);
            left -= n;
        }
    }
    // The bases read at once and the values kept per score.
    let kept = (3 * positions).min(KEEP as u64) * 4 * args.scores.len() as u64;
    report_passes(&mut r, &target, c, Some(&passes), READ + kept);
    r.text("output", args.output.display().to_string());
    // A row per quantile: the level and a value per score.
    let out = args.quantiles as u64 * (10 + 14 * args.scores.len() as u64) + 2048;
    r.add("output_bytes", out, format!("about {}", super::bytes(out)));
    target.time(&mut r, Some(passes.tokens), rows_for_time(&target, c));
    r.print(format)
}
