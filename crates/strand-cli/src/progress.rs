//! Progress on stderr: a bar on a terminal, a log line every half minute
//! otherwise (pipelines and batch jobs keep a readable log), nothing with
//! `-q`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanCount, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bases-processed counter.
pub fn bases(quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {human_pos} bases, {per_sec} {msg}",
        )
        .expect("a valid template"),
    );
    bar
}

/// Bases done out of a known or unknown total, shown as a bar (with rate
/// and ETA) on a terminal or as periodic log lines elsewhere.
pub struct Progress {
    prog: &'static str,
    bar: Option<ProgressBar>,
    log: Option<Log>,
}

struct Log {
    unit: &'static str,
    every: Duration,
    start: Instant,
    last: Instant,
    done: u64,
    total: Option<u64>,
}

impl Progress {
    pub fn new(prog: &'static str, quiet: bool, total: Option<u64>) -> Progress {
        Progress::with_unit(prog, quiet, total, "bases")
    }

    /// Counts `unit`s (`variants`, ...) instead of bases.
    pub fn with_unit(
        prog: &'static str,
        quiet: bool,
        total: Option<u64>,
        unit: &'static str,
    ) -> Progress {
        if quiet {
            return Progress {
                prog,
                bar: None,
                log: None,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = match total {
                Some(t) => {
                    let bar = ProgressBar::new(t);
                    bar.set_style(
                        ProgressStyle::with_template(&format!(
                            "{{bar:30}} {{percent:>3}}% {{human_pos}}/{{human_len}} {unit}, \
                             {{per_sec}}, ETA {{eta}}"
                        ))
                        .expect("a valid template"),
                    );
                    bar
                }
                None => {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(
                        ProgressStyle::with_template(&format!(
                            "{{spinner}} {{elapsed_precise}} {{human_pos}} {unit}, {{per_sec}}"
                        ))
                        .expect("a valid template"),
                    );
                    bar
                }
            };
            return Progress {
                prog,
                bar: Some(bar),
                log: None,
            };
        }
        let now = Instant::now();
        Progress {
            prog,
            bar: None,
            log: Some(Log {
                unit,
                every: Duration::from_secs(30),
                start: now,
                last: now,
                done: 0,
                total,
            }),
        }
    }

    pub fn inc(&mut self, bases: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bases);
        }
        if let Some(log) = &mut self.log {
            log.done += bases;
            if log.last.elapsed() >= log.every {
                log.last = Instant::now();
                eprintln!("{}: {}", self.prog, log.line());
            }
        }
    }

    /// Clears the bar; in log mode prints a last line if any was printed.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        if let Some(log) = self.log {
            if log.last != log.start {
                eprintln!("{}: {}", self.prog, log.line());
            }
        }
    }
}

impl Log {
    fn line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done as f64 / secs;
        let mut s = format!("{} {}", HumanCount(self.done), self.unit);
        if let Some(t) = self.total.filter(|&t| t > 0) {
            s.push_str(&format!(
                " of {} ({:.1}%)",
                HumanCount(t),
                100.0 * self.done as f64 / t as f64
            ));
        }
        s.push_str(&format!(", {} {}/s", HumanCount(rate as u64), self.unit));
        if let Some(t) = self.total.filter(|&t| t > self.done && rate > 0.0) {
            let eta = Duration::from_secs_f64((t - self.done) as f64 / rate);
            s.push_str(&format!(", ETA {}", HumanDuration(eta)));
        }
        s
    }
}
