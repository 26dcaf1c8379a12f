//! strand-embed's options, checked: [`Args::validate`] refuses what cannot
//! work and derives what the options imply, before anything is read or
//! loaded; [`super::run`] takes the result.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use strand_io::windows::Tiling;
use strand_io::Dtype;

use super::output::Format;
use super::pool::Pool;
use super::Args;
use crate::args::{ModelArgs, RunArgs, WindowSpec, DEFAULT_WINDOW};
use crate::input::InputArgs;
use crate::shard::Shard;

/// Where the embeddings go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// `-o FILE`: one file (`-`: stdout).
    File(PathBuf),
    /// `--out-dir DIR`: one file per record, and an index.
    Dir(PathBuf),
}

/// What a round of windows may hold, as asked (the devices' memory may
/// bound it further).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// The devices' default (`runner::default_round_tokens`).
    Default,
    /// `--batch-tokens N`.
    Tokens(usize),
    /// The deprecated `--batch-size N`: N windows, N × window tokens.
    Windows(u64),
}

/// strand-embed's options after [`Args::validate`].
#[derive(Debug)]
pub struct Settings {
    pub input: InputArgs,
    pub dest: Dest,
    /// `--window`, its default applied.
    pub window: WindowSpec,
    /// `--overlap` as given (its default depends on the window, which
    /// `max` only knows once the model is on its devices).
    pub overlap: Option<u64>,
    pub round: Round,
    pub format: Format,
    pub pool: Pool,
    pub rc_average: bool,
    pub dtype: Dtype,
    pub special_tokens: bool,
    /// `--layer`, checked against the model; `None`: the final layer
    /// alone (the default output, also for `--layer n_layer`).
    pub layers: Option<Vec<usize>>,
    pub shard: Option<Shard>,
    pub resume: bool,
    pub model: ModelArgs,
    pub run: RunArgs,
}

impl Settings {
    /// The windows of a `window`-base pass (`--overlap` or window / 8).
    pub fn tiling(&self, window: u64) -> Result<Tiling> {
        let overlap = self.overlap.unwrap_or(window / 8);
        Tiling::new(window, overlap).context("--window/--overlap")
    }
}

impl Args {
    /// Option combinations that cannot work, the input's own conflicts,
    /// outputs that are inputs, and windows that cannot tile: all refused
    /// here, before any reading, each in one line naming the flag.
    pub fn validate(self) -> Result<Settings> {
        if self.format == Format::Tsv && self.pool == Pool::None {
            bail!("--format tsv stores pooled rows: add --pool mean or --pool bin:N");
        }
        if self.format == Format::Npy && self.output.path.is_some() {
            bail!("--format npy writes a directory of .npy files: use --out-dir DIR");
        }
        if self.special_tokens && matches!(self.pool, Pool::Bin(_)) {
            bail!("--special-tokens adds a row that is not a base: use --pool none or mean");
        }
        if self.resume && self.output.path.as_deref() == Some(Path::new("-")) {
            bail!("--resume needs an output file or --out-dir, not stdout");
        }
        self.input.check()?;
        let dest = match (self.output.path, self.out_dir) {
            (Some(o), None) => Dest::File(o),
            (None, Some(d)) => Dest::Dir(d),
            _ => unreachable!("clap requires exactly one of -o and --out-dir"),
        };
        let mut inputs = self.input.files();
        inputs.extend(self.model.files());
        match &dest {
            Dest::File(p) | Dest::Dir(p) => crate::args::check_outputs(&[p.as_path()], &inputs)?,
        }
        // Reads the model's config.json, so after the cheaper checks.
        let layers = self.layer.resolve(&self.model.model)?;
        let round = match (self.batch_size, self.batch.batch_tokens) {
            (Some(n), _) => Round::Windows(n),
            (None, Some(t)) => Round::Tokens(t),
            (None, None) => Round::Default,
        };
        let settings = Settings {
            input: self.input,
            dest,
            window: self.window.unwrap_or(WindowSpec::Bases(DEFAULT_WINDOW)),
            overlap: self.overlap,
            round,
            format: self.format,
            pool: self.pool,
            rc_average: self.rc_average,
            dtype: self.dtype,
            special_tokens: self.special_tokens,
            layers,
            shard: self.shard.shard,
            resume: self.resume,
            model: self.model,
            run: self.run,
        };
        if let WindowSpec::Bases(w) = settings.window {
            settings.tiling(w)?;
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// `strand-embed -m M IN` plus `extra`, checked.
    fn validate(extra: &[&str]) -> Result<Settings> {
        let mut argv = vec!["strand-embed", "-m", "no-such-model", "in.fa"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)?.validate()
    }

    fn refused(extra: &[&str], flag: &str) {
        let e = validate(extra).expect_err("refused").to_string();
        assert!(e.contains(flag), "{extra:?}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn conflicts_name_the_flag() {
        refused(&["-o", "x.tsv", "--format", "tsv"], "--format tsv");
        refused(&["-o", "x", "--format", "npy"], "--format npy");
        refused(
            &["-o", "x", "--special-tokens", "--pool", "bin:4"],
            "--special-tokens",
        );
        refused(&["-o", "-", "--resume"], "--resume");
        refused(&["-o", "x", "--min-mapq", "5"], "--min-mapq");
        refused(
            &["-o", "x", "--window", "300", "--overlap", "300"],
            "--overlap",
        );
        // The default window (131,072) cannot share 131,072 bases either.
        refused(&["-o", "x", "--overlap", "131072"], "--overlap");
        // clap's own: one destination, one batch knob.
        assert!(validate(&[]).is_err());
        assert!(validate(&["-o", "x", "--out-dir", "d"]).is_err());
        assert!(validate(&["-o", "x", "--batch-size", "2", "--batch-tokens", "9"]).is_err());
    }

    #[test]
    fn good_options_give_their_settings() {
        let s = validate(&["-o", "x.safetensors", "--window", "128k"]).expect("valid");
        assert_eq!(s.dest, Dest::File("x.safetensors".into()));
        assert_eq!(s.window, WindowSpec::Bases(131_072));
        assert_eq!(s.round, Round::Default);
        assert_eq!(s.tiling(131_072).expect("tiles").overlap(), 16_384);

        let s = validate(&[
            "--out-dir",
            "d",
            "--format",
            "npy",
            "--batch-tokens",
            "4096",
        ])
        .expect("valid");
        assert_eq!(s.dest, Dest::Dir("d".into()));
        assert_eq!(s.round, Round::Tokens(4096));
        assert_eq!(s.window, WindowSpec::Bases(DEFAULT_WINDOW));

        // The deprecated knob: windows, turned into tokens once the
        // window is known.
        let s = validate(&["-o", "x", "--batch-size", "3", "--window", "max"]).expect("valid");
        assert_eq!(s.round, Round::Windows(3));
        assert_eq!(s.window, WindowSpec::Max);
        assert_eq!(s.overlap, None);
    }

    #[test]
    fn layers_are_checked_against_the_model() {
        let m = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../test-data/models/ps-tiny"
        );
        let layers = |l: &str| {
            Args::try_parse_from(["strand-embed", "-m", m, "-o", "x", "--layer", l, "in.fa"])
                .expect("parses")
                .validate()
                .map(|s| s.layers)
        };
        assert_eq!(layers("2").expect("valid"), None, "n_layer: the default");
        assert_eq!(layers("1,0").expect("valid"), Some(vec![0, 1]));
        let e = layers("3").expect_err("refused").to_string();
        assert!(
            e.starts_with("--layer 3:") && e.contains("n_layer 2"),
            "{e}"
        );
        assert_eq!(validate(&["-o", "x"]).expect("valid").layers, None);
    }

    #[test]
    fn an_output_that_is_an_input_is_refused() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let fa = tmp.path().join("in.fa");
        std::fs::write(&fa, ">a\nACGT\n").expect("write");
        let fa = fa.to_string_lossy();
        let e = Args::try_parse_from(["strand-embed", "-m", "M", "-o", &fa, &fa])
            .expect("parses")
            .validate()
            .expect_err("refused")
            .to_string();
        assert!(e.contains("same file as input"), "{e}");
    }
}
