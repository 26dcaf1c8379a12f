//! `--dry-run`: what a run would do and need, printed before any work.
//!
//! Every command checks its options (`Args::validate`), then, with
//! `--dry-run`, reads its inputs' indexes and headers (a FASTA's `.fai`,
//! the regions of a BED file; a VCF's records or a FASTA without an index
//! are read once, parsing only what the count needs), the model's
//! `config.json` (not its weights), and asks each GPU its free memory
//! without compiling or allocating anything. It prints the work (records,
//! windows, tokens, forward passes), the memory per device from the same
//! formula the runner checks ([`strand_core::memory`]), the output's size
//! and a time estimated from the throughput `strand bench` measured on
//! this machine ([`calibration`]), then exits 0 having written nothing.
//!
//! - [`device`]: which devices the run would take, their memory and time;
//! - [`inputs`]: the sequences' lengths, from an index where there is one;
//! - [`calibration`]: `strand bench`'s tokens/s per model shape, precision
//!   and device, kept in strand's cache directory.

pub mod calibration;
pub mod device;
pub mod inputs;

use std::io::Write;

use anyhow::Result;
use clap::ValueEnum;

/// How `--dry-run` prints its plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned `key  value` lines for people.
    Table,
    /// `key<TAB>value` lines for scripts: numbers plain (bytes, seconds),
    /// `NA` where unknown.
    Tsv,
}

/// Memory a strand process holds whatever it runs: the program, its
/// libraries, thread stacks and allocator arenas (measured: about 5 MiB
/// for a run of a test model on 2 threads; 8 MiB leaves room for more threads).
pub const PROCESS_BYTES: u64 = 8 << 20;

/// One line of a plan: its key, the value for scripts, the text for people.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    key: String,
    value: String,
    shown: String,
}

/// A plan being written: rows in the order they are added.
#[derive(Debug, Clone)]
pub struct Report {
    prog: &'static str,
    rows: Vec<Row>,
}

impl Report {
    pub fn new(prog: &'static str) -> Report {
        Report {
            prog,
            rows: Vec::new(),
        }
    }

    /// A row with `value` for scripts and `shown` for people.
    pub fn add(&mut self, key: &str, value: impl ToString, shown: impl Into<String>) {
        self.rows.push(Row {
            key: key.to_string(),
            value: value.to_string(),
            shown: shown.into(),
        });
    }

    /// A row whose value is text.
    pub fn text(&mut self, key: &str, text: impl Into<String>) {
        let text = text.into();
        self.add(key, text.replace(['\t', '\n'], " "), text);
    }

    /// A count, shown with separators and `what` after it.
    pub fn count(&mut self, key: &str, n: u64, what: &str) {
        let shown = if what.is_empty() {
            count(n)
        } else {
            format!("{} {what}", count(n))
        };
        self.add(key, n, shown);
    }

    /// A size in bytes, shown in binary units and `what` after it.
    pub fn bytes(&mut self, key: &str, n: u64, what: &str) {
        let shown = if what.is_empty() {
            bytes(n)
        } else {
            format!("{} {what}", bytes(n))
        };
        self.add(key, n, shown);
    }

    /// A value that cannot be known before the run, and why.
    pub fn unknown(&mut self, key: &str, why: &str) {
        self.add(key, "NA", format!("unknown: {why}"));
    }

    /// The value of `key` as added (for tests).
    pub fn value(&self, key: &str) -> Option<&str> {
        self.rows
            .iter()
            .find(|r| r.key == key)
            .map(|r| r.value.as_str())
    }

    /// Writes the plan to stdout.
    pub fn print(&self, format: Format) -> Result<()> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        self.write(format, &mut out)?;
        out.flush()?;
        Ok(())
    }

    fn write(&self, format: Format, out: &mut impl Write) -> std::io::Result<()> {
        match format {
            Format::Tsv => {
                for r in &self.rows {
                    writeln!(out, "{}\t{}", r.key, r.value)?;
                }
            }
            Format::Table => {
                writeln!(
                    out,
                    "{} --dry-run: the plan (nothing was run or written)",
                    self.prog
                )?;
                let width = self.rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
                for r in &self.rows {
                    writeln!(out, "  {:<width$}  {}", r.key, r.shown)?;
                }
            }
        }
        Ok(())
    }
}

/// `1234567` as `1,234,567`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units, three significant digits: `1.50 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {}", UNITS[unit])
}

/// Seconds as `45 s`, `12 min 5 s`, `3 h 20 min` or `2 d 4 h`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "unbounded".into();
    }
    if secs < 10.0 {
        return format!("{secs:.1} s");
    }
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Tokens per second as `1.46 M tokens/s` or `37,500 tokens/s`.
pub fn rate(tokens_per_s: f64) -> String {
    if tokens_per_s >= 1e6 {
        format!("{:.2} M tokens/s", tokens_per_s / 1e6)
    } else {
        format!("{} tokens/s", count(tokens_per_s.round() as u64))
    }
}

/// Highest resident memory of this process so far (`VmHWM`, Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets the kernel's high-water mark of this process (Linux).
pub fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(131_072), "131,072");
        assert_eq!(count(1_234_567_890), "1,234,567,890");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(300 << 20), "300 MiB");
        assert_eq!(bytes(25 << 30), "25.0 GiB");
        assert_eq!(duration(3.25), "3.2 s");
        assert_eq!(duration(75.0), "1 min 15 s");
        assert_eq!(duration(7380.0), "2 h 3 min");
        assert_eq!(duration(200_000.0), "2 d 7 h");
        assert_eq!(rate(1.46e6), "1.46 M tokens/s");
        assert_eq!(rate(37_500.4), "37,500 tokens/s");
    }

    #[test]
    fn a_report_prints_as_a_table_or_tsv() {
        let mut r = Report::new("strand-x");
        r.count("windows", 12_345, "windows of 131,072");
        r.bytes("host_memory", 3 << 30, "");
        r.unknown("time_s", "not measured");
        r.text("output", "a\tb.tsv");
        let mut tsv = Vec::new();
        r.write(Format::Tsv, &mut tsv).expect("in memory");
        assert_eq!(
            String::from_utf8(tsv).expect("utf-8"),
            "windows\t12345\nhost_memory\t3221225472\ntime_s\tNA\noutput\ta b.tsv\n"
        );
        let mut table = Vec::new();
        r.write(Format::Table, &mut table).expect("in memory");
        let table = String::from_utf8(table).expect("utf-8");
        assert!(table.starts_with("strand-x --dry-run"), "{table}");
        assert!(
            table.contains("  windows      12,345 windows of 131,072\n"),
            "{table}"
        );
        assert!(table.contains("  host_memory  3.00 GiB\n"), "{table}");
        assert_eq!(r.value("host_memory"), Some("3221225472"));
    }
}
