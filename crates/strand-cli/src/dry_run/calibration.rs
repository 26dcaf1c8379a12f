//! The throughput `strand bench` measured on this machine, which
//! `--dry-run` turns into a time estimate.
//!
//! `strand bench` writes one line per model shape, precision, device and
//! pass size it measured to `calibration.tsv` in strand's cache directory
//! ([`strand_core::cache::dir`]: `$STRAND_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/strand`, else `~/.cache/strand`), replacing an older
//! line of the same key:
//!
//! ```text
//! device<TAB>shape<TAB>precision<TAB>tokens<TAB>batch<TAB>tokens_per_s<TAB>date<TAB>strand
//! ```
//!
//! for example `cpu: AMD EPYC 7763 64-Core Processor (16 threads, avx2
//! kernels)`, `ps-256x16`, `fp32`, `131072`, `1`, `38211`, `2025-12-04`,
//! `0.1.0`.
//!
//! `device` is the CPU's model with the threads and kernels used, or
//! `cuda: ` and the GPU's name (not its number: a node's GPUs are alike);
//! `shape` is the model's (see [`shape`]). A dry run takes the line of its
//! device, shape and precision whose pass size (`tokens × batch`) is
//! nearest its own largest pass; with none, the time is "not measured".

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use strand_core::Config;

/// The file's name in the cache directory.
pub const FILE: &str = "calibration.tsv";

const HEADER: &str = "device\tshape\tprecision\ttokens\tbatch\ttokens_per_s\tdate\tstrand";

/// One measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub device: String,
    pub shape: String,
    /// `fp32` or `bf16`.
    pub precision: String,
    /// Tokens per sequence of the measured pass.
    pub tokens: u64,
    /// Sequences in the pass.
    pub batch: u64,
    pub tokens_per_s: f64,
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// The strand version that measured it.
    pub version: String,
}

impl Entry {
    /// Tokens in the measured pass.
    pub fn rows(&self) -> u64 {
        self.tokens.saturating_mul(self.batch)
    }

    fn same_key(&self, o: &Entry) -> bool {
        self.device == o.device
            && self.shape == o.shape
            && self.precision == o.precision
            && self.tokens == o.tokens
            && self.batch == o.batch
    }
}

/// The calibration file of this machine, where there is a cache directory.
pub fn path() -> Option<PathBuf> {
    strand_core::cache::dir().map(|d| d.join(FILE))
}

/// A model's shape as calibration lines name it: `ps-256x16` for the
/// published layout (`strand bench --kind ps --d-model 256 --n-layer
/// 16`), with what differs from it appended (`-e4` expand, `-n32`
/// d_state, `-k3` d_conv, `-r8` dt_rank, `-untied`, `-uni`).
pub fn shape(cfg: &Config) -> String {
    let mut s = format!(
        "{}-{}x{}",
        if cfg.rcps { "ps" } else { "ph" },
        cfg.d_model,
        cfg.n_layer
    );
    if cfg.expand != 2 {
        s.push_str(&format!("-e{}", cfg.expand));
    }
    if cfg.d_state != 16 {
        s.push_str(&format!("-n{}", cfg.d_state));
    }
    if cfg.d_conv != 4 {
        s.push_str(&format!("-k{}", cfg.d_conv));
    }
    if cfg.dt_rank != cfg.d_model.div_ceil(16) {
        s.push_str(&format!("-r{}", cfg.dt_rank));
    }
    if !cfg.bidirectional {
        s.push_str("-uni");
    } else if !strand_core::model::plan::fused(cfg) {
        s.push_str("-untied");
    }
    s
}

/// The CPU as calibration lines name it: its model, the threads and the
/// kernels (throughput depends on all three).
pub fn cpu_device(threads: usize) -> String {
    let name = strand_core::diag::cpu_name().unwrap_or_else(|| std::env::consts::ARCH.into());
    format!(
        "cpu: {name} ({threads} threads, {} kernels)",
        strand_core::diag::cpu_kernels().to_lowercase()
    )
}

/// A GPU as calibration lines name it.
pub fn gpu_device(name: &str) -> String {
    format!("cuda: {name}")
}

/// The lines of a calibration file (malformed lines are skipped: a file
/// edited by hand should not stop a dry run).
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.starts_with('#') && *l != HEADER && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let [device, shape, precision, tokens, batch, rate, date, version] = f[..] else {
                return None;
            };
            let tokens_per_s: f64 = rate.parse().ok()?;
            (tokens_per_s.is_finite() && tokens_per_s > 0.0).then_some(())?;
            Some(Entry {
                device: device.into(),
                shape: shape.into(),
                precision: precision.into(),
                tokens: tokens.parse().ok()?,
                batch: batch.parse().ok()?,
                tokens_per_s,
                date: date.into(),
                version: version.into(),
            })
        })
        .collect()
}

/// The file's text for `entries`.
pub fn render(entries: &[Entry]) -> String {
    let mut s = format!(
        "# strand bench: forward-pass throughput on this machine; strand's --dry-run reads it\n\
         {HEADER}\n"
    );
    for e in entries {
        s.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{:.0}\t{}\t{}\n",
            e.device, e.shape, e.precision, e.tokens, e.batch, e.tokens_per_s, e.date, e.version
        ));
    }
    s
}

/// The entries of `path` (none when it does not exist).
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

/// `old` with `new` in place of the lines of the same key (the others
/// kept, in order), new keys at the end.
pub fn merge(mut old: Vec<Entry>, new: &[Entry]) -> Vec<Entry> {
    for e in new {
        match old.iter_mut().find(|o| o.same_key(e)) {
            Some(o) => *o = e.clone(),
            None => old.push(e.clone()),
        }
    }
    old
}

/// Writes `new` into the calibration file at `path` (made with its
/// directory if needed; replaced whole, never left half-written).
pub fn update(path: &Path, new: &[Entry]) -> Result<()> {
    let all = merge(read(path)?, new);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let mut f = strand_io::AtomicFile::create(path)?;
    f.write_all(render(&all).as_bytes())
        .map_err(|e| f.write_error(e))?;
    f.commit()?;
    Ok(())
}

/// The measurement for `device`, `shape` and `precision` whose pass is
/// nearest `rows` tokens (by ratio).
pub fn lookup<'a>(
    entries: &'a [Entry],
    device: &str,
    shape: &str,
    precision: &str,
    rows: u64,
) -> Option<&'a Entry> {
    let distance = |e: &Entry| ((e.rows().max(1) as f64) / (rows.max(1) as f64)).ln().abs();
    entries
        .iter()
        .filter(|e| e.device == device && e.shape == shape && e.precision == precision)
        .min_by(|a, b| distance(a).total_cmp(&distance(b)))
}

/// Today's date, `YYYY-MM-DD` in UTC.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    civil_date((secs / 86_400) as i64)
}

/// The calendar date of a day number since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(device: &str, tokens: u64, batch: u64, rate: f64) -> Entry {
        Entry {
            device: device.into(),
            shape: "ps-256x16".into(),
            precision: "fp32".into(),
            tokens,
            batch,
            tokens_per_s: rate,
            date: "2025-12-04".into(),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn lines_round_trip_and_bad_lines_are_skipped() {
        let e = vec![entry("cpu: x (2 threads, avx2 kernels)", 1024, 1, 1234.0)];
        let text = render(&e);
        assert_eq!(parse(&text), e);
        let text = format!(
            "{text}garbage\nx\ty\n{}\n",
            text.lines().last().expect("a line")
        );
        assert_eq!(parse(&text).len(), 2);
        let bad_rate = text.replace("\t1234\t", "\t-1\t");
        assert!(parse(&bad_rate).is_empty());
    }

    #[test]
    fn new_measurements_replace_those_of_the_same_key() {
        let old = vec![entry("a", 1024, 1, 1.0), entry("a", 4096, 1, 2.0)];
        let merged = merge(old, &[entry("a", 4096, 1, 3.0), entry("b", 1024, 1, 4.0)]);
        let rates: Vec<f64> = merged.iter().map(|e| e.tokens_per_s).collect();
        assert_eq!(rates, [1.0, 3.0, 4.0]);
    }

    #[test]
    fn the_nearest_pass_size_of_the_same_device_is_taken() {
        let all = vec![
            entry("a", 1024, 1, 1.0),
            entry("a", 131_072, 1, 2.0),
            entry("a", 8192, 8, 3.0),
            entry("b", 100_000, 1, 4.0),
        ];
        let rate = |rows| lookup(&all, "a", "ps-256x16", "fp32", rows).map(|e| e.tokens_per_s);
        assert_eq!(rate(2000), Some(1.0));
        assert_eq!(rate(70_000), Some(3.0));
        assert_eq!(rate(1 << 20), Some(2.0));
        assert!(lookup(&all, "a", "ph-256x16", "fp32", 1).is_none());
        assert!(lookup(&all, "a", "ps-256x16", "bf16", 1).is_none());
    }

    #[test]
    fn update_writes_the_file_and_keeps_other_lines() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("sub/calibration.tsv");
        update(&path, &[entry("a", 1024, 1, 1.0)]).expect("written");
        update(&path, &[entry("b", 1024, 1, 2.0)]).expect("written");
        assert_eq!(read(&path).expect("read").len(), 2);
        assert!(read(&tmp.path().join("none.tsv"))
            .expect("absent is empty")
            .is_empty());
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_426), "2025-12-04");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(today().len(), 10);
    }

    #[test]
    fn shapes_name_what_differs_from_the_published_layout() {
        use strand_core::model::synthetic::published_config;
        let cfg = |json: serde_json::Value| {
            Config::from_json(json.to_string().as_bytes(), Path::new("c")).expect("config")
        };
        assert_eq!(shape(&cfg(published_config(true, 256, 16))), "ps-256x16");
        assert_eq!(shape(&cfg(published_config(false, 24, 2))), "ph-24x2");
        let mut j = published_config(false, 64, 4);
        j["ssm_cfg"]["d_state"] = 32.into();
        j["bidirectional_weight_tie"] = false.into();
        assert_eq!(shape(&cfg(j)), "ph-64x4-n32-untied");
    }
}
