//! The calibration file: the quantiles of each score over a genome
//! background, written by `strand-score calibrate` and read by
//! `--calibration`, with what they hold for (the model's config and
//! weights, the window) so that a calibration is never applied to other
//! scores. Format in docs/score.md, section 7.
//!
//! ```text
//! #strand_calibration=1
//! #model_config_sha256=...        (and the other `#key=value` lines)
//! quantile  llr    llr_masked  embed_dist  embed_dist_l2    (tab-separated)
//! 0         -9.12  ...
//! 0.001     -7.4   ...
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use strand_io::AtomicFile;

use super::quantiles::percentile;
use super::variant::Score;

/// The version of the format, the value of its first line.
pub const VERSION: &str = "1";

/// Which model a score comes from: the SHA-256 of its `config.json` (the
/// digest strand-embed writes as `model_config_sha256`) and of its weight
/// files' bytes, in the order they are read (`model.safetensors`, or the
/// shards of `model.safetensors.index.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity {
    pub config_sha256: String,
    pub weights_sha256: String,
    /// A PS (strand-symmetric) model: `--rc-average` changes nothing.
    pub rcps: bool,
}

impl ModelIdentity {
    /// The identity of `--model` (a directory or a hub id), read from its
    /// files without loading it.
    pub fn of(model: &str) -> Result<ModelIdentity> {
        let dir = strand_core::model::hub::resolve(model)?;
        let config = strand_core::Config::from_file(&dir.join("config.json"))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        for path in strand_core::model::checkpoint::files(&dir)? {
            let mut f = std::fs::File::open(&path)
                .with_context(|| format!("{}: cannot open", path.display()))?;
            loop {
                let n = f
                    .read(&mut buf)
                    .with_context(|| format!("{}: cannot read", path.display()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        Ok(ModelIdentity {
            config_sha256: config.sha256,
            weights_sha256: hex(&h.finalize()),
            rcps: config.rcps,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the scores depend on besides the model: the window and its
/// placement, and whether PH scores average both strands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub window: u64,
    pub centred: bool,
    /// `--rc-average` on a PH model (on a PS model it changes nothing and
    /// is recorded as false).
    pub rc_average: bool,
}

impl Windows {
    fn describe(&self) -> String {
        format!(
            "--window {} ({} windows{})",
            self.window,
            if self.centred { "centred" } else { "grid" },
            if self.rc_average {
                ", --rc-average"
            } else {
                ""
            }
        )
    }
}

/// A calibration file, read back.
#[derive(Debug)]
pub struct Calibration {
    /// The path as given, for messages.
    pub name: String,
    /// The `#key=value` header lines.
    pub meta: BTreeMap<String, String>,
    pub levels: Vec<f64>,
    /// Score columns (`llr`, `llr_masked`, `embed_dist`, `embed_dist_l2`)
    /// and their quantiles at `levels`.
    pub columns: Vec<(String, Vec<f32>)>,
}

/// Writes a calibration: the header lines `meta` (after the version),
/// then the table of `columns`' quantiles at `levels`.
pub fn write(
    out: &mut AtomicFile,
    meta: &[(&str, String)],
    levels: &[f64],
    columns: &[(&str, Vec<f32>)],
) -> Result<()> {
    let mut text = format!("#strand_calibration={VERSION}\n");
    for (k, v) in meta {
        text.push_str(&format!("#{k}={v}\n"));
    }
    text.push_str("quantile");
    for (name, _) in columns {
        text.push_str(&format!("\t{name}"));
    }
    text.push('\n');
    for (k, level) in levels.iter().enumerate() {
        text.push_str(&level.to_string());
        for (_, q) in columns {
            text.push_str(&format!("\t{}", q[k]));
        }
        text.push('\n');
    }
    out.write_all(text.as_bytes())
        .map_err(|e| out.write_error(e))?;
    Ok(())
}

impl Calibration {
    /// Reads and checks a calibration file: the version line, the header
    /// keys the checks need, levels rising from 0 to 1 and every column
    /// non-decreasing.
    pub fn read(path: &Path) -> Result<Calibration> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("{name}: cannot read"))?;
        let not_ours = || {
            anyhow::anyhow!(
                "{name}: not a strand calibration file (make one with strand-score calibrate)"
            )
        };
        let mut lines = text.lines().enumerate();
        let mut meta = BTreeMap::new();
        let header = loop {
            let Some((i, line)) = lines.next() else {
                if meta.is_empty() {
                    return Err(not_ours());
                }
                bail!("{name}: no table after the header lines");
            };
            let Some(kv) = line.strip_prefix('#') else {
                if meta.is_empty() {
                    return Err(not_ours());
                }
                break line;
            };
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("{name}: line {}: expected #key=value", i + 1))?;
            if i == 0 && k != "strand_calibration" {
                return Err(not_ours());
            }
            if i == 0 && v != VERSION {
                bail!(
                    "{name}: calibration format {v}, this strand-score reads {VERSION}; recalibrate"
                );
            }
            meta.insert(k.to_string(), v.to_string());
        };
        for key in [
            "model_config_sha256",
            "model_weights_sha256",
            "window",
            "windows",
            "rc_average",
        ] {
            if !meta.contains_key(key) {
                bail!("{name}: no #{key}= header line");
            }
        }
        let mut head = header.split('\t');
        if head.next() != Some("quantile") {
            bail!("{name}: the table's first column must be quantile");
        }
        let names: Vec<String> = head.map(str::to_string).collect();
        if names.is_empty() {
            bail!("{name}: no score column");
        }
        let mut levels = Vec::new();
        let mut values: Vec<Vec<f32>> = vec![Vec::new(); names.len()];
        for (i, line) in lines {
            let at = || format!("{name}: line {}", i + 1);
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() != names.len() + 1 {
                bail!(
                    "{}: {} fields, expected {}",
                    at(),
                    fields.len(),
                    names.len() + 1
                );
            }
            let level: f64 = fields[0]
                .parse()
                .with_context(|| format!("{}: quantile {:?}", at(), fields[0]))?;
            if levels.last().is_some_and(|&l| level <= l) || !(0.0..=1.0).contains(&level) {
                bail!("{}: quantiles must rise from 0 to 1", at());
            }
            levels.push(level);
            for (k, f) in fields[1..].iter().enumerate() {
                let v: f32 = f
                    .parse()
                    .ok()
                    .filter(|v: &f32| !v.is_nan())
                    .with_context(|| format!("{}: {}: {f:?} is not a number", at(), names[k]))?;
                if values[k].last().is_some_and(|&last| v < last) {
                    bail!("{}: {} decreases; quantiles never do", at(), names[k]);
                }
                values[k].push(v);
            }
        }
        if levels.len() < 2 || levels[0] != 0.0 || levels[levels.len() - 1] != 1.0 {
            bail!("{name}: the quantiles must run from 0 to 1");
        }
        Ok(Calibration {
            name,
            meta,
            levels,
            columns: names.into_iter().zip(values).collect(),
        })
    }

    fn windows(&self) -> Result<Windows> {
        let m = &self.meta;
        let bad = |k: &str| anyhow::anyhow!("{}: #{k}={} is not valid", self.name, m[k]);
        Ok(Windows {
            window: m["window"].parse().map_err(|_| bad("window"))?,
            centred: match m["windows"].as_str() {
                "grid" => false,
                "centred" => true,
                _ => return Err(bad("windows")),
            },
            rc_average: m["rc_average"].parse().map_err(|_| bad("rc_average"))?,
        })
    }

    /// Refuses, before any work, a calibration made with other windows
    /// than this run's or without a column for every score it computes.
    pub fn check_settings(&self, window: u64, centred: bool, scores: &[Score]) -> Result<()> {
        let made = self.windows()?;
        if (made.window, made.centred) != (window, centred) {
            let now = Windows {
                window,
                centred,
                rc_average: made.rc_average,
            };
            bail!(
                "{}: calibrated with {}, this run has {}: percentiles hold only for the \
                 window they were calibrated with (calibrate again, or give the same window)",
                self.name,
                made.describe(),
                now.describe()
            );
        }
        for s in scores {
            for col in s.columns() {
                if self.quantiles_of(col).is_none() {
                    let have: Vec<&str> = self.columns.iter().map(|(c, _)| c.as_str()).collect();
                    bail!(
                        "{}: no {col} column (it has {}); calibrate with --scores including \
                         {col}, or leave it out of --scores",
                        self.name,
                        have.join(", ")
                    );
                }
            }
        }
        Ok(())
    }

    /// Refuses a calibration made with another model (config or weights)
    /// or, for a PH model, with `--rc-average` where this run has none or
    /// the other way round.
    pub fn check_model(&self, id: &ModelIdentity, rc_average: bool) -> Result<()> {
        let short = |s: &str| s.chars().take(12).collect::<String>();
        for (key, ours, what) in [
            ("model_config_sha256", &id.config_sha256, "config.json"),
            ("model_weights_sha256", &id.weights_sha256, "weights"),
        ] {
            let made = &self.meta[key];
            if made != ours {
                bail!(
                    "{}: made with another model ({what} sha256 {}…, this model's {}…{}); \
                     percentiles of one model do not apply to another: calibrate this model \
                     with strand-score calibrate",
                    self.name,
                    short(made),
                    short(ours),
                    self.meta
                        .get("model")
                        .map_or(String::new(), |m| format!(", calibrated model {m}"))
                );
            }
        }
        let made = self.windows()?;
        let now = rc_average && !id.rcps;
        if made.rc_average != now {
            bail!(
                "{}: calibrated {} --rc-average, this run {}; the scores differ",
                self.name,
                if made.rc_average { "with" } else { "without" },
                if now { "has it" } else { "has none" }
            );
        }
        Ok(())
    }

    /// The stored quantiles of score column `col` (`llr`, `embed_dist_l2`,
    /// ...).
    pub fn quantiles_of(&self, col: &str) -> Option<&[f32]> {
        self.columns
            .iter()
            .find(|(c, _)| c == col)
            .map(|(_, v)| v.as_slice())
    }

    /// The percentile (0 to 100) of `x` for score column `col`.
    pub fn percentile(&self, col: &str, x: f32) -> Option<f64> {
        percentile(&self.levels, self.quantiles_of(col)?, x)
    }

    /// Names the calibration in the VCF header's descriptions.
    pub fn describe(&self) -> String {
        let file = Path::new(&self.name)
            .file_name()
            .map_or(self.name.clone(), |f| f.to_string_lossy().into_owned());
        let background = self.meta.get("background").map_or("", String::as_str);
        format!("calibration {file}, background {background}").replace(['"', '\\'], "'")
    }
}

/// The path of `--calibration`, for the checks against outputs.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CalibrationArg {
    /// Add each score's percentile in the genome background of this
    /// calibration (made by `strand-score calibrate` with the same model
    /// and window): STRAND_<SCORE>_PCTL in the VCF, <score>_pctl columns
    /// in the table
    #[arg(long, value_name = "FILE", help_heading = "Scores")]
    pub calibration: Option<PathBuf>,
}

#[cfg(test)]
mod tests;
