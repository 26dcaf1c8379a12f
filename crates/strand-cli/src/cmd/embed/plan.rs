//! `strand-embed --dry-run`: the windows, rounds and passes a run would
//! make, its memory, output size and time, from the input's index.
//!
//! The rounds are formed as the reader forms them ([`super::batch`]):
//! windows in input order until a round holds `--batch-tokens`, its
//! equal-length windows one batched pass on a GPU (one pass each on the
//! CPU). The host's peak is taken over rounds: the round being computed
//! (its pass, on the CPU, and the hidden states it hands back) while the
//! previous one is written (its hidden states and the writer's copies of
//! a window's rows).

use anyhow::{bail, Result};
use strand_core::memory::Engine;
use strand_core::runner;
use strand_io::windows::Tiling;

use super::output::Format;
use super::pool::Pool;
use super::settings::{Dest, Round, Settings};
use crate::args::WindowSpec;
use crate::dry_run::device::{Need, Target};
use crate::dry_run::{bytes, count, inputs, Report};

/// What the rounds of a run add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rounds {
    pub rounds: u64,
    pub windows: u64,
    pub tokens: u64,
    /// Passes: one per window on the CPU, one per run of equal lengths in
    /// a round on a GPU.
    pub passes: u64,
    /// Tokens of the largest pass and the longest window.
    pub largest_pass: u64,
    pub longest: u64,
    /// Peak host bytes of the passes and buffers ([`Need::host`]).
    pub host: u64,
}

/// How the run cuts and stores its items.
pub struct Shape<'a> {
    pub target: &'a Target,
    pub tiling: Tiling,
    pub round_tokens: u64,
    pub special_tokens: bool,
    pub pool: Pool,
    /// Stored columns and bytes per stored value.
    pub cols: u64,
    pub value_bytes: u64,
}

impl Shape<'_> {
    /// The rounds of items of `lengths`, as the reader forms them.
    pub fn rounds(&self, lengths: &[u64]) -> Rounds {
        let t = self.target;
        let batched = t.batches();
        let hb = t.hidden_bytes();
        let in_flight = runner::max_in_flight(t.devices.len()) as u64;
        let mut out = Rounds::default();
        // Per round: window token counts, and the rows a window keeps.
        let mut round: Vec<u64> = Vec::new();
        let mut in_round = 0u64;
        let mut kept_max = 0u64;
        let mut previous_writer = 0u64;
        let mut largest_round = 0u64;
        let mut close = |round: &mut Vec<u64>, kept_max: &mut u64, out: &mut Rounds| {
            if round.is_empty() {
                return;
            }
            let total: u64 = round.iter().sum();
            let longest = round.iter().copied().max().unwrap_or(0);
            let groups = runner::by_length(
                &round.iter().map(|&l| l as usize).collect::<Vec<_>>(),
                usize::MAX,
                usize::MAX,
            );
            out.rounds += 1;
            out.windows += round.len() as u64;
            out.tokens += total;
            out.passes += if batched {
                groups.len() as u64
            } else {
                round.len() as u64
            };
            for g in &groups {
                let rows = if batched {
                    g.iter().map(|&i| round[i]).sum()
                } else {
                    round[g[0]]
                };
                out.largest_pass = out.largest_pass.max(rows);
            }
            out.longest = out.longest.max(longest);
            // Computing this round while the previous one is written. On
            // the CPU a round's runs of equal lengths (shortest first) each
            // fill a buffer of hidden states: reused from an earlier round
            // (resident from the start) once rounds have come back; before,
            // a window alone is copied out after its pass (whose formula
            // counts that copy), and several get their buffer first.
            let reused = out.rounds > in_flight;
            let computing = if batched {
                hb * total
            } else if reused {
                t.host_pass(longest) + hb * (total - longest)
            } else {
                let mut before = 0;
                let mut peak = 0;
                for g in &groups {
                    let (n, len) = (g.len() as u64, round[g[0]]);
                    let pass = t.host_pass(len) - hb * len;
                    let own = if n > 1 { hb * n * len } else { 0 };
                    peak = peak.max(before + pass + own);
                    before += hb * n * len;
                }
                peak.max(before)
            };
            out.host = out.host.max(computing + previous_writer);
            largest_round = largest_round.max(total);
            previous_writer = hb * total + self.copies(*kept_max);
            round.clear();
            *kept_max = 0;
        };
        let special = u64::from(self.special_tokens);
        for &len in lengths {
            for tile in self.tiling.tiles(len) {
                let tokens = tile.len() + special;
                let kept = if self.special_tokens {
                    tokens
                } else {
                    tile.keep_end - tile.keep_start
                };
                round.push(tokens);
                in_round += tokens;
                kept_max = kept_max.max(kept);
                if in_round >= self.round_tokens {
                    close(&mut round, &mut kept_max, &mut out);
                    in_round = 0;
                }
            }
        }
        close(&mut round, &mut kept_max, &mut out);
        // More devices hold more rounds' hidden states at once; every
        // round in flight holds its tokens.
        out.host +=
            hb * largest_round * in_flight.saturating_sub(2) + 4 * largest_round * in_flight;
        out
    }

    /// The writer's copy of a window's kept rows, pooled, as f32 (the
    /// files are written from it in small blocks).
    fn copies(&self, kept: u64) -> u64 {
        let rows = match self.pool {
            Pool::None => kept,
            Pool::Mean => 0,
            Pool::Bin(n) => kept.div_ceil(n),
        };
        rows * self.cols * 4
    }

    /// Bytes of the stored rows of items of `lengths`, with `per_item`
    /// bytes of headers, names and index lines each.
    fn output_bytes(&self, lengths: &[u64], format: Format) -> u64 {
        let special = u64::from(self.special_tokens);
        let rows: u64 = lengths
            .iter()
            .map(|&l| self.pool.out_rows(l + special))
            .sum();
        let n = lengths.len() as u64;
        match format {
            // Tensor entry and coordinates in the header.
            Format::Safetensors => rows * self.cols * self.value_bytes + 300 * n,
            // The .npy header and a line of index.tsv per file.
            Format::Npy => rows * self.cols * self.value_bytes + 200 * n,
            // About 11 characters a value, and the coordinates.
            Format::Tsv => rows * (self.cols * 11 + 40),
        }
    }
}

/// The most tokens one pass (or round) may hold, as the run bounds it:
/// each probed GPU's free memory after the weights, and half the host's
/// available memory over the rounds in flight (`None` where unknown).
fn limits(target: &Target, in_flight: u64) -> (Option<u64>, Option<u64>) {
    let pm = target.pass_memory();
    let host = strand_core::backend::host_available_bytes();
    let host_cap = host.map(|h| h / 2 / (target.hidden_bytes() * in_flight));
    let device = match target.engine {
        Engine::Cpu => host.map(|h| pm.tokens_in(h / 2)),
        Engine::Cuda(_) => {
            let weights = strand_core::memory::weight_bytes(&target.cfg, target.engine);
            target
                .devices
                .iter()
                .map(|d| {
                    let free = d.probed.as_ref()?.free?;
                    Some(pm.tokens_in(free.saturating_sub(weights)))
                })
                .collect::<Option<Vec<u64>>>()
                .and_then(|v| v.into_iter().min())
                .map(|fits| match host {
                    // The hidden states come back to the host as f32.
                    Some(h) => fits.min(h / 2 / target.hidden_bytes()),
                    None => fits,
                })
        }
    };
    (device, host_cap)
}

/// `--window max` as a run resolves it: the longest pass every device and
/// the host can hold (`None` for a GPU that was not probed).
fn max_window(target: &Target, in_flight: u64) -> Option<u64> {
    let (device, host_cap) = limits(target, in_flight);
    Some(device?.min(host_cap.unwrap_or(u64::MAX)) / 1024 * 1024)
}

/// Prints the plan of a run with `args`.
pub fn dry_run(args: &Settings, format: crate::dry_run::Format) -> Result<()> {
    let target = Target::resolve(&args.model)?;
    if args.rc_average && !target.cfg.rcps {
        bail!(
            "--rc-average needs a PS (rcps) model; {} is PH",
            target.model
        );
    }
    let mut r = Report::new("strand-embed");
    target.describe(&mut r);
    let found = inputs::of_input(&args.input)?;
    let lengths = found.lengths.map(|l| match args.shard {
        Some(shard) => {
            let sel = shard.select(&l);
            l.into_iter()
                .zip(sel)
                .filter_map(|(l, s)| s.then_some(l))
                .collect()
        }
        None => l,
    });
    r.text("input", found.how);
    if args.resume {
        r.text(
            "resume",
            "items already complete are planned too (the run skips them)",
        );
    }
    match &lengths {
        Some(l) => {
            let shard = args
                .shard
                .map_or(String::new(), |s| format!(" (shard {s})"));
            r.count(
                "records",
                l.len() as u64,
                &format!("records or regions{shard}"),
            );
            r.count("bases", l.iter().sum(), "bases");
        }
        None => r.unknown("records", "the input is read by the run only"),
    }
    let in_flight = runner::max_in_flight(target.devices.len()) as u64;
    let window = match args.window {
        WindowSpec::Bases(w) => Some(w),
        WindowSpec::Max => max_window(&target, in_flight),
    };
    let Some(window) = window else {
        r.unknown("window", "--window max needs the GPU's free memory");
        target.time(&mut r, None, 0);
        return r.print(format);
    };
    let tiling = args.tiling(window)?;
    r.add(
        "window",
        window,
        format!(
            "{} bases, overlap {}",
            count(window),
            count(tiling.overlap())
        ),
    );
    let default = if target.batches() {
        runner::BATCHED_ROUND_TOKENS
    } else {
        runner::SERIAL_ROUND_TOKENS
    } as u64;
    let asked = match args.round {
        Round::Default => default,
        Round::Tokens(t) => t as u64,
        Round::Windows(n) => n.saturating_mul(window),
    };
    // The run bounds a round by the GPUs' and the host's memory.
    let (device, host_cap) = limits(&target, in_flight);
    let limit = match target.engine {
        Engine::Cpu => host_cap,
        Engine::Cuda(_) => match (device, host_cap) {
            (Some(d), Some(h)) => Some(d.min(h)),
            (d, h) => d.or(h),
        },
    };
    let shape = Shape {
        target: &target,
        tiling,
        round_tokens: asked.min(limit.unwrap_or(u64::MAX)).max(window),
        special_tokens: args.special_tokens,
        pool: args.pool,
        cols: if args.rc_average {
            target.cfg.d_model as u64
        } else {
            target.cfg.width() as u64
        },
        value_bytes: args.dtype.size() as u64,
    };
    // Without the lengths, plan the memory of one full window.
    let plan = shape.rounds(lengths.as_deref().unwrap_or(&[window]));
    if lengths.is_some() {
        r.count("windows", plan.windows, "windows");
        r.count("tokens", plan.tokens, "tokens");
        r.count(
            "passes",
            plan.passes,
            &format!(
                "forward passes in {} round{} of up to {} tokens",
                count(plan.rounds),
                if plan.rounds == 1 { "" } else { "s" },
                count(shape.round_tokens)
            ),
        );
    }
    r.count("largest_pass", plan.largest_pass, "tokens");
    let need = Need {
        pass_rows: plan.largest_pass,
        pass_len: plan.longest,
        host: plan.host,
        tokens: lengths.as_ref().map(|_| plan.tokens),
    };
    target.memory(&mut r, &need);
    let dest = match &args.dest {
        Dest::File(p) => p.display().to_string(),
        Dest::Dir(d) => format!(
            "{}/ (one {} file per record)",
            d.display(),
            args.format.ext()
        ),
    };
    r.text("output", dest);
    match &lengths {
        Some(l) => {
            let n = shape.output_bytes(l, args.format);
            let what = format!("{} {}", args.dtype, args.format.ext());
            r.add("output_bytes", n, format!("about {} ({what})", bytes(n)));
        }
        None => r.unknown("output_bytes", "the input is read by the run only"),
    }
    let rows = if target.batches() {
        plan.largest_pass
    } else {
        plan.longest
    };
    target.time(&mut r, need.tokens, rows);
    r.print(format)
}

#[cfg(test)]
mod tests {
    use strand_core::Precision;

    use super::*;

    fn shape(target: &Target, window: u64, round_tokens: u64, pool: Pool) -> Shape<'_> {
        Shape {
            target,
            tiling: Tiling::new(window, window / 8).expect("tiles"),
            round_tokens,
            special_tokens: false,
            pool,
            cols: target.cfg.width() as u64,
            value_bytes: 4,
        }
    }

    /// Rounds and passes as the reader forms them: on the CPU a pass per
    /// window, on a GPU a pass per run of equal lengths in a round.
    #[test]
    fn rounds_are_formed_as_the_reader_forms_them() {
        let cpu = Target::test("ps-tiny", Engine::Cpu, 1);
        let gpu = Target::test("ps-tiny", Engine::Cuda(Precision::Bf16), 1);
        // 300,000 bases in windows of 65,536 every 57,344: 6 windows.
        let lengths = [300_000, 1000, 1000, 500];
        let c = shape(&cpu, 65_536, 65_536, Pool::None).rounds(&lengths);
        assert_eq!((c.windows, c.tokens), (9, 6 * 65_536 + 2500));
        assert_eq!(c.rounds, 7, "one window a round, then the three short ones");
        assert_eq!((c.passes, c.largest_pass, c.longest), (9, 65_536, 65_536));
        let g = shape(&gpu, 65_536, 1 << 20, Pool::None).rounds(&lengths);
        assert_eq!((g.rounds, g.windows, g.tokens), (1, 9, c.tokens));
        // Lengths 65,536 (6), 1000 (2) and 500: three batched passes.
        assert_eq!((g.passes, g.largest_pass), (3, 6 * 65_536));
    }

    /// The host's peak grows with the window (the CPU's pass), and pooling
    /// saves the writer's copy.
    #[test]
    fn the_host_peak_follows_the_window_and_the_pooling() {
        let cpu = Target::test("ps-tiny", Engine::Cpu, 1);
        let peak = |w, pool| shape(&cpu, w, 65_536, pool).rounds(&[300_000]).host;
        let pm = cpu.pass_memory();
        assert!(peak(131_072, Pool::None) > peak(65_536, Pool::None));
        assert!(peak(65_536, Pool::None) > peak(65_536, Pool::Mean));
        assert!(peak(65_536, Pool::Mean) >= pm.bytes(65_536, 1));
        // Two rounds of a window each: the second's pass (its hidden
        // states not yet copied out) and the first's hidden states, plus
        // the tokens of the two rounds in flight.
        let (hb, w) = (cpu.hidden_bytes(), 262_144);
        assert_eq!(
            peak(w, Pool::Mean),
            (pm.bytes(w, 1) - hb * w) + hb * w + 4 * w * 2
        );
    }

    #[test]
    fn output_sizes_follow_the_stored_rows() {
        let cpu = Target::test("ps-tiny", Engine::Cpu, 1);
        let mut s = shape(&cpu, 1000, 65_536, Pool::Bin(10));
        s.value_bytes = 2;
        // 100 and 25 bases: 10 + 3 rows of 48 values of 2 bytes.
        assert_eq!(
            s.output_bytes(&[100, 25], Format::Safetensors),
            13 * 48 * 2 + 600
        );
        s.pool = Pool::Mean;
        assert_eq!(s.output_bytes(&[100, 25], Format::Tsv), 2 * (48 * 11 + 40));
    }
}
