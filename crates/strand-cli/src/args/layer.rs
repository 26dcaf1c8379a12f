//! `--layer N[,N...]`: the hidden states of other layers than the final
//! one (strand-embed, strand-classify train and predict). Layer `N` of
//! `0..=n_layer` is what [`strand_core::Out::Layers`] defines: 0 the
//! embedding, `1..n_layer-1` the residual stream after block `N`, `n_layer`
//! the final norm's output (every command's default).
//!
//! The list is checked against the model's `n_layer` in each command's
//! `validate`, which reads the model's `config.json` for it (only when the
//! flag is given).

use anyhow::{bail, Context, Result};
use clap::Args;

/// `--layer`.
#[derive(Args, Debug, Clone, Default)]
pub struct LayerArgs {
    /// Hidden states after layer N instead of the final ones: 0 the
    /// embedding, 1 to n_layer-1 the residual stream after block N (before
    /// any norm), n_layer the final norm's output (the default); a
    /// comma-separated list gives each
    #[arg(
        long,
        value_name = "N[,N...]",
        value_parser = parse_layers,
        help_heading = "Model"
    )]
    pub layer: Option<Layers>,
}

/// Distinct layers in ascending order, as `--layer` gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layers(pub Vec<usize>);

impl std::fmt::Display for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&join(&self.0))
    }
}

/// `8,16`: layers as written in messages and metadata.
pub fn join(layers: &[usize]) -> String {
    let parts: Vec<String> = layers.iter().map(usize::to_string).collect();
    parts.join(",")
}

fn parse_layers(s: &str) -> std::result::Result<Layers, String> {
    let mut layers = Vec::new();
    for part in s.split(',') {
        let n: usize = part.trim().parse().map_err(|_| {
            format!("\"{s}\": expected layer numbers (0 to the model's n_layer), e.g. 8 or 8,16")
        })?;
        if layers.contains(&n) {
            return Err(format!("\"{s}\": layer {n} is given twice"));
        }
        layers.push(n);
    }
    layers.sort_unstable();
    Ok(Layers(layers))
}

impl LayerArgs {
    /// The layers asked for, checked against the `n_layer` of `model`
    /// (read from its `config.json`): `None` when the flag is absent or
    /// names the final layer alone, i.e. the default output.
    pub fn resolve(&self, model: &str) -> Result<Option<Vec<usize>>> {
        match &self.layer {
            None => Ok(None),
            Some(_) => self.resolve_with(&model_config(model)?, model),
        }
    }

    /// As [`LayerArgs::resolve`], with the config already read.
    pub fn resolve_with(
        &self,
        cfg: &strand_core::Config,
        model: &str,
    ) -> Result<Option<Vec<usize>>> {
        match &self.layer {
            None => Ok(None),
            Some(layers) => check(layers, model, cfg.n_layer),
        }
    }
}

/// `layers` against the model's `n_layer` (see [`LayerArgs::resolve`]).
fn check(layers: &Layers, model: &str, n_layer: usize) -> Result<Option<Vec<usize>>> {
    if let Some(bad) = layers.0.iter().find(|&&l| l > n_layer) {
        bail!(
            "--layer {layers}: {model} has n_layer {n_layer}, so layer {bad} does not exist \
             (give 0 to {n_layer})"
        );
    }
    Ok((layers.0 != [n_layer]).then(|| layers.0.clone()))
}

/// The `config.json` of `--model` (a directory or a hub id in the local
/// cache), for options checked against the model before it is loaded.
pub fn model_config(model: &str) -> Result<strand_core::Config> {
    let dir = strand_core::model::hub::resolve(model)?;
    let path = dir.join("config.json");
    strand_core::Config::from_file(&path).with_context(|| format!("{model}: reading the model"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_sorted_and_distinct() {
        assert_eq!(parse_layers("16,8"), Ok(Layers(vec![8, 16])));
        assert_eq!(parse_layers(" 0 , 2"), Ok(Layers(vec![0, 2])));
        assert!(parse_layers("8,8").unwrap_err().contains("twice"));
        for bad in ["", "-1", "8,", "x", "1.5"] {
            assert!(parse_layers(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Layers(vec![8, 16]).to_string(), "8,16");
    }

    #[test]
    fn layers_are_checked_against_n_layer() {
        let check = |s: &str| check(&parse_layers(s).unwrap(), "M", 4);
        assert_eq!(check("4").unwrap(), None, "the final layer is the default");
        assert_eq!(check("0").unwrap(), Some(vec![0]));
        assert_eq!(check("4,1").unwrap(), Some(vec![1, 4]));
        let e = check("2,5").unwrap_err().to_string();
        assert!(
            e.starts_with("--layer 2,5:") && e.contains("n_layer 4"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1);
        assert_eq!(LayerArgs::default().resolve("no-such-model").unwrap(), None);
    }

    #[test]
    fn the_model_is_read_for_n_layer() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../test-data/models/ps-tiny"
        );
        let args = LayerArgs {
            layer: Some(parse_layers("1").unwrap()),
        };
        assert_eq!(args.resolve(dir).unwrap(), Some(vec![1]));
        assert!(args.resolve("no/such-model").is_err());
    }
}
