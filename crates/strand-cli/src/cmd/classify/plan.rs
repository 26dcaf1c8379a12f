//! `strand-classify --dry-run` (`predict`, `train`, `eval`): the records
//! and passes a run would make, its memory, output size and time.
//!
//! Each record is one pass (two for a PH model with `--conjoin`: the
//! record and its reverse complement). `predict` batches consecutive
//! records of equal length up to `--batch-tokens` on a GPU, as its
//! [`strand_core::runner::Batcher`] does; `train` and `eval` run one record
//! at a time on one device.

use std::path::Path;

use anyhow::Result;
use strand_core::runner;

use super::{eval, labels_of, predict, train, FeedArgs, PROG};
use crate::dry_run::device::{Need, Target};
use crate::dry_run::inputs::{self, Lengths};
use crate::dry_run::{bytes, count, Format, Report};

/// The passes over records of `lengths`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Passes {
    records: u64,
    passes: u64,
    batches: u64,
    tokens: u64,
    longest: u64,
    /// Tokens of the largest batch of several records (0 when every
    /// batch holds one).
    largest_batch: u64,
}

/// Records of `lengths` fed as `feed` says, batched up to `batch_tokens`
/// (`None`: one at a time).
fn passes(target: &Target, feed: &FeedArgs, lengths: &[u64], batch_tokens: Option<u64>) -> Passes {
    let special = u64::from(feed.special_tokens);
    let strands = if feed.conjoin && !target.cfg.rcps {
        2
    } else {
        1
    };
    let lens: Vec<usize> = lengths.iter().map(|&l| (l + special) as usize).collect();
    let mut p = Passes {
        records: lengths.len() as u64,
        passes: strands * lengths.len() as u64,
        tokens: strands * lens.iter().sum::<usize>() as u64,
        longest: lens.iter().copied().max().unwrap_or(0) as u64,
        ..Passes::default()
    };
    match batch_tokens {
        Some(t) => {
            for run in runner::runs(&lens, t as usize) {
                let tokens: usize = lens[run.clone()].iter().sum();
                p.batches += strands
                    * if target.batches() {
                        1
                    } else {
                        run.len() as u64
                    };
                if run.len() > 1 {
                    p.largest_batch = p.largest_batch.max(tokens as u64);
                }
            }
        }
        None => p.batches = p.passes,
    }
    p
}

/// The rows every subcommand prints about its records and their passes.
fn report(r: &mut Report, target: &Target, found: &Lengths, p: Option<&Passes>, pass_rows: u64) {
    r.text("input", found.how.clone());
    let Some(p) = p else {
        r.unknown("records", "the input is read by the run only");
        target.memory(
            r,
            &Need {
                pass_rows,
                pass_len: pass_rows,
                host: target.host_pass(pass_rows),
                tokens: None,
            },
        );
        return;
    };
    r.count("records", p.records, "records");
    r.count("tokens", p.tokens, "tokens");
    r.count(
        "passes",
        p.passes,
        &format!("forward passes in {} batches", count(p.batches)),
    );
    r.count("largest_pass", pass_rows, "tokens");
    // The pass (CPU), a batch's hidden states and the records in flight.
    let host = target.host_pass(p.longest)
        + target.hidden_bytes() * p.largest_batch
        + 5 * p.largest_batch.max(p.longest) * runner::max_in_flight(target.devices.len()) as u64;
    let need = Need {
        pass_rows,
        pass_len: p.longest,
        host,
        tokens: Some(p.tokens),
    };
    target.memory(r, &need);
}

/// A table's path as the plan shows it.
fn shown(path: &Path) -> String {
    if path == Path::new("-") {
        "stdout".into()
    } else {
        path.display().to_string()
    }
}

/// The plan of `strand-classify predict`.
pub fn predict(args: &predict::Settings, format: Format) -> Result<()> {
    let target = Target::resolve(&args.model)?;
    let labels = labels_of(&target.cfg, &target.model)?;
    let mut r = Report::new(PROG);
    target.describe(&mut r);
    let mut found = inputs::of_input(&args.input)?;
    if let (Some(shard), Some(l)) = (args.shard, found.lengths.as_mut()) {
        let sel = shard.select(l);
        *l = l
            .iter()
            .zip(sel)
            .filter_map(|(&l, s)| s.then_some(l))
            .collect();
        found.how.push_str(&format!(" (shard {shard})"));
    }
    let batch = args.batch_tokens as u64;
    let p = found
        .lengths
        .as_ref()
        .map(|l| passes(&target, &args.feed, l, Some(batch)));
    // The runner checks a full --batch-tokens pass on each GPU; the CPU
    // runs the longest record alone.
    let rows = if target.batches() {
        batch
    } else {
        p.as_ref().map_or(batch, |p| p.longest)
    };
    report(&mut r, &target, &found, p.as_ref(), rows);
    r.text("output", shown(&args.output));
    if let Some(p) = &p {
        // name, length, a value per label and the prediction.
        let n = p.records * (40 + 11 * labels.len() as u64);
        r.add("output_bytes", n, format!("about {}", bytes(n)));
    }
    target.time(&mut r, p.as_ref().map(|p| p.tokens), rows);
    r.print(format)
}

/// `train` and `eval`: records run one at a time, so the longest decides
/// the pass (the default window where the lengths are not known).
fn one_at_a_time(
    r: &mut Report,
    target: &Target,
    feed: &FeedArgs,
    found: &Lengths,
) -> (Option<Passes>, u64) {
    let p = found
        .lengths
        .as_ref()
        .map(|l| passes(target, feed, l, None));
    let longest = p
        .as_ref()
        .map_or(crate::args::DEFAULT_WINDOW, |p| p.longest);
    report(r, target, found, p.as_ref(), longest);
    (p, longest)
}

/// The plan of `strand-classify train`.
pub fn train(args: &train::Settings, format: Format) -> Result<()> {
    let target = Target::resolve(&args.model)?;
    let mut r = Report::new(PROG);
    target.describe(&mut r);
    let mut found = inputs::of_file(&args.train)?;
    if let Some(valid) = &args.valid {
        let v = inputs::of_file(valid)?;
        found.how = format!("{}; {}", found.how, v.how);
        found.lengths = match (found.lengths, v.lengths) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
    }
    let (p, longest) = one_at_a_time(&mut r, &target, &args.feed, &found);
    r.count(
        "fits",
        (args.lambdas.len() * args.folds + 1) as u64,
        &format!(
            "logistic-regression fits ({} penalties x {} folds, then the final one)",
            args.lambdas.len(),
            args.folds
        ),
    );
    r.text(
        "output",
        format!("{}/ (a classification checkpoint)", args.output.display()),
    );
    // The backbone's tensors as stored, the head, and the tables.
    let dir = strand_core::model::hub::resolve(&args.model.model)?;
    let stored: u64 = strand_core::model::checkpoint::files(&dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum();
    let records = p.as_ref().map_or(0, |p| p.records);
    let n = stored + records * 80 + 16 * 1024;
    r.add("output_bytes", n, format!("about {}", bytes(n)));
    target.time(&mut r, p.as_ref().map(|p| p.tokens), longest);
    r.print(format)
}

/// The plan of `strand-classify eval`.
pub fn eval(args: &eval::Settings, format: Format) -> Result<()> {
    let target = Target::resolve(&args.model)?;
    let labels = labels_of(&target.cfg, &target.model)?;
    let mut r = Report::new(PROG);
    target.describe(&mut r);
    let found = inputs::of_file(&args.data)?;
    let (p, longest) = one_at_a_time(&mut r, &target, &args.feed, &found);
    let mut outs = vec![shown(&args.output)];
    outs.extend(args.confusion.iter().map(|p| p.display().to_string()));
    outs.extend(args.plot.iter().map(|p| p.display().to_string()));
    r.text("output", outs.join(", "));
    // A metrics row per label and measure, and a few overall.
    let n = (6 * labels.len() as u64 + 8) * 40;
    r.add("output_bytes", n, format!("about {} of tables", bytes(n)));
    target.time(&mut r, p.as_ref().map(|p| p.tokens), longest);
    r.print(format)
}

#[cfg(test)]
mod tests {
    use strand_core::memory::Engine;
    use strand_core::Precision;

    use super::*;

    fn feed(special_tokens: bool, conjoin: bool) -> FeedArgs {
        FeedArgs {
            special_tokens,
            conjoin,
        }
    }

    /// A record a pass (two for PH --conjoin); a GPU batches runs of equal
    /// lengths, the CPU runs each record alone.
    #[test]
    fn records_batch_as_predict_batches_them() {
        let cpu = Target::test("ph-tiny-cls", Engine::Cpu, 1);
        let gpu = Target::test("ph-tiny-cls", Engine::Cuda(Precision::Bf16), 1);
        let lens = [10, 10, 20, 10];
        let p = passes(&gpu, &feed(false, true), &lens, Some(100));
        assert_eq!((p.records, p.passes, p.tokens), (4, 8, 100));
        assert_eq!((p.batches, p.largest_batch, p.longest), (6, 20, 20));
        let c = passes(&cpu, &feed(true, false), &lens, Some(100));
        assert_eq!((c.passes, c.batches, c.tokens, c.longest), (4, 4, 54, 21));
        // A PS model is strand-symmetric: --conjoin adds nothing.
        let ps = Target::test("ps-tiny-cls", Engine::Cpu, 1);
        assert_eq!(passes(&ps, &feed(false, true), &lens, None).passes, 4);
    }
}
