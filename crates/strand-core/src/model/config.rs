//! `config.json` of a Caduceus checkpoint.
//!
//! Field names and defaults follow the reference `CaduceusConfig` and the
//! `Mamba` mixer's keyword arguments. Anything the engine cannot run is
//! refused here, at load time, so it can never turn into a wrong answer.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// How the forward and reverse Mamba outputs are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BiStrategy {
    Add,
    Multiply,
}

/// Which head a checkpoint carries, from `architectures[0]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    MaskedLm,
    SequenceClassification,
    /// A bare backbone (`Caduceus`): hidden states only.
    Backbone,
}

/// The parsed, validated model configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub arch: Arch,
    pub d_model: usize,
    pub n_layer: usize,
    /// Vocabulary size after padding to `pad_vocab_size_multiple`.
    pub vocab_size: usize,
    pub rms_norm: bool,
    pub residual_in_fp32: bool,
    pub fused_add_norm: bool,
    pub norm_epsilon: f32,
    pub bidirectional: bool,
    pub bidirectional_strategy: BiStrategy,
    pub bidirectional_weight_tie: bool,
    pub rcps: bool,
    /// Token id -> complement id, `vocab_size` entries (identity past the
    /// entries the config lists, as the reference pads it).
    pub complement_map: Vec<u32>,
    pub d_state: usize,
    pub d_conv: usize,
    pub expand: usize,
    pub dt_rank: usize,
    pub conv_bias: bool,
    pub bias: bool,
    /// Classification labels by id (empty for non-classification models).
    pub id2label: Vec<String>,
    /// Layers whose mean-pooled hidden states a classification head reads,
    /// concatenated in this (ascending) order: `strand_head_layers`, which
    /// `strand-classify train --layer` writes. Empty: the final layer
    /// alone, as the reference's head.
    pub head_layers: Vec<usize>,
    /// SHA-256 of the config file bytes, hex (recorded in outputs).
    pub sha256: String,
}

/// Largest `d_model` (and `dt_rank`) accepted; published Caduceus models
/// use 256.
const MAX_WIDTH: usize = 1 << 16;
/// Largest `n_layer` accepted; published models use 16.
const MAX_LAYERS: usize = 4096;
/// Largest vocabulary accepted; Caduceus uses 16 tokens.
const MAX_VOCAB: usize = 1 << 20;
/// Largest `d_state`, `d_conv` and `expand` accepted.
const MAX_SMALL: usize = 1024;

/// Keys of `ssm_cfg` the reference `Mamba` accepts. Those after `bias` only
/// affect initialisation or kernel choice, never the forward result.
const SSM_KEYS: [&str; 13] = [
    "d_state",
    "d_conv",
    "expand",
    "dt_rank",
    "conv_bias",
    "bias",
    "dt_min",
    "dt_max",
    "dt_init",
    "dt_scale",
    "dt_init_floor",
    "use_fast_path",
    "layer_idx",
];

impl Config {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Config> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Config::from_json(&bytes, path)
    }

    /// Parses config bytes; `path` is only used in messages.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Config> {
        let err = |msg: String| Error::Config {
            path: path.to_path_buf(),
            msg,
        };
        let root: Value =
            serde_json::from_slice(bytes).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let obj = root
            .as_object()
            .ok_or_else(|| err("expected a JSON object".into()))?;
        let f = Fields { obj, err: &err };

        if let Some(t) = obj.get("model_type").and_then(Value::as_str) {
            if t != "caduceus" {
                return Err(err(format!(
                    "model_type is \"{t}\"; strand runs Caduceus models only"
                )));
            }
        }
        let arch = match obj
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
        {
            Some("CaduceusForMaskedLM") => Arch::MaskedLm,
            Some("CaduceusForSequenceClassification") => Arch::SequenceClassification,
            Some("Caduceus") | None => Arch::Backbone,
            Some(other) => return Err(err(format!("unsupported architecture \"{other}\""))),
        };

        let d_model = f.usize_or("d_model", 2560)?;
        let n_layer = f.usize_or("n_layer", 64)?;
        let mut vocab_size = f.usize_or("vocab_size", 50277)?;
        let pad = f.usize_or("pad_vocab_size_multiple", 8)?;
        if pad == 0 {
            return Err(err("pad_vocab_size_multiple must be positive".into()));
        }
        // Bounded before the rounding below, which could overflow.
        for (name, v) in [("vocab_size", vocab_size), ("pad_vocab_size_multiple", pad)] {
            if v > MAX_VOCAB {
                return Err(err(format!(
                    "{name} is {v}, more than strand accepts ({MAX_VOCAB})"
                )));
            }
        }
        vocab_size = vocab_size.div_ceil(pad) * pad;

        let bidirectional = f.bool_or("bidirectional", true)?;
        let bidirectional_strategy = match obj.get("bidirectional_strategy") {
            None | Some(Value::Null) => BiStrategy::Add,
            Some(Value::String(s)) if s == "add" => BiStrategy::Add,
            Some(Value::String(s)) if s == "ew_multiply" => BiStrategy::Multiply,
            Some(v) => {
                return Err(err(format!(
                    "bidirectional_strategy {v} is not supported (add, ew_multiply)"
                )))
            }
        };
        let rcps = f.bool_or("rcps", false)?;
        let complement_map = parse_complement_map(obj.get("complement_map"), vocab_size, &err)?;
        if rcps && complement_map.is_none() {
            return Err(err("rcps is true but complement_map is missing".into()));
        }

        let empty = Map::new();
        let ssm = match obj.get("ssm_cfg") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(err("ssm_cfg must be an object".into())),
        };
        if let Some(k) = ssm.keys().find(|k| !SSM_KEYS.contains(&k.as_str())) {
            return Err(err(format!(
                "ssm_cfg.{k} is not an option of the Mamba (v1) mixer; this model is not supported"
            )));
        }
        let s = Fields {
            obj: ssm,
            err: &err,
        };
        let d_state = s.usize_or("d_state", 16)?;
        let d_conv = s.usize_or("d_conv", 4)?;
        let expand = s.usize_or("expand", 2)?;
        let dt_rank = match ssm.get("dt_rank") {
            None | Some(Value::Null) => d_model.div_ceil(16),
            Some(Value::String(a)) if a == "auto" => d_model.div_ceil(16),
            Some(v) => v.as_u64().filter(|&r| r > 0).ok_or_else(|| {
                err(format!(
                    "ssm_cfg.dt_rank must be \"auto\" or a positive integer, not {v}"
                ))
            })? as usize,
        };
        for (name, v) in [
            ("d_model", d_model),
            ("n_layer", n_layer),
            ("d_state", d_state),
            ("d_conv", d_conv),
            ("expand", expand),
        ] {
            if v == 0 {
                return Err(err(format!("{name} must be positive")));
            }
        }
        // Sane bounds, far above any published model, checked before
        // anything is sized from them: products of these (d_inner x
        // d_state, vocab x d_model) then stay far from overflow, and an
        // absurd value is an error, not a multi-gigabyte allocation.
        for (name, v, max) in [
            ("d_model", d_model, MAX_WIDTH),
            ("n_layer", n_layer, MAX_LAYERS),
            ("ssm_cfg.d_state", d_state, MAX_SMALL),
            ("ssm_cfg.d_conv", d_conv, MAX_SMALL),
            ("ssm_cfg.expand", expand, MAX_SMALL),
            ("ssm_cfg.dt_rank", dt_rank, MAX_WIDTH),
        ] {
            if v > max {
                return Err(err(format!(
                    "{name} is {v}, more than strand accepts ({max})"
                )));
            }
        }

        Ok(Config {
            arch,
            d_model,
            n_layer,
            vocab_size,
            rms_norm: f.bool_or("rms_norm", true)?,
            residual_in_fp32: f.bool_or("residual_in_fp32", true)?,
            fused_add_norm: f.bool_or("fused_add_norm", true)?,
            norm_epsilon: f.f64_or("norm_epsilon", 1e-5)? as f32,
            bidirectional,
            bidirectional_strategy,
            bidirectional_weight_tie: f.bool_or("bidirectional_weight_tie", true)?,
            rcps,
            complement_map: complement_map.unwrap_or_else(|| (0..vocab_size as u32).collect()),
            d_state,
            d_conv,
            expand,
            dt_rank,
            conv_bias: s.bool_or("conv_bias", true)?,
            bias: s.bool_or("bias", false)?,
            id2label: parse_id2label(obj.get("id2label"), &err)?,
            head_layers: parse_head_layers(obj.get(HEAD_LAYERS_KEY), n_layer, &err)?,
            sha256: crate::util::sha256_hex(bytes),
        })
    }

    /// Inner width of the mixer, `expand * d_model`.
    pub fn d_inner(&self) -> usize {
        self.expand * self.d_model
    }

    /// Width of the residual stream: `2 * d_model` for PS models.
    pub fn width(&self) -> usize {
        if self.rcps {
            2 * self.d_model
        } else {
            self.d_model
        }
    }

    /// Number of classification labels (0 unless a classifier).
    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }

    /// Width of the classification head's input: `d_model` per layer it
    /// reads (see [`Config::head_layers`]).
    pub fn head_width(&self) -> usize {
        self.d_model * self.head_layers.len().max(1)
    }
}

/// The `config.json` key of [`Config::head_layers`].
pub const HEAD_LAYERS_KEY: &str = "strand_head_layers";

/// `strand_head_layers`: absent, or an ascending list of layers 0..=n_layer.
fn parse_head_layers(
    v: Option<&Value>,
    n: usize,
    err: &impl Fn(String) -> Error,
) -> Result<Vec<usize>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = v.as_array().and_then(|a| {
        let l: Option<Vec<usize>> = a.iter().map(|x| Some(x.as_u64()? as usize)).collect();
        l.filter(|l| !l.is_empty() && l.windows(2).all(|p| p[0] < p[1]) && l[l.len() - 1] <= n)
    });
    list.ok_or_else(|| {
        err(format!(
            "{HEAD_LAYERS_KEY} must be an ascending list of layers from 0 to n_layer ({n}), not {v}"
        ))
    })
}

struct Fields<'a, E: Fn(String) -> Error> {
    obj: &'a Map<String, Value>,
    err: &'a E,
}

impl<E: Fn(String) -> Error> Fields<'_, E> {
    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| {
                (self.err)(format!("{key} must be a non-negative integer, not {v}"))
            }),
        }
    }
    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| (self.err)(format!("{key} must be true or false, not {v}"))),
        }
    }
    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| (self.err)(format!("{key} must be a number, not {v}"))),
        }
    }
}

/// Parses `{"0": 0, "7": 10, ...}` (JSON object keys are strings) and pads
/// it with identity entries up to the padded vocabulary, as the reference
/// model constructor does.
fn parse_complement_map(
    v: Option<&Value>,
    vocab_size: usize,
    err: &impl Fn(String) -> Error,
) -> Result<Option<Vec<u32>>> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(err("complement_map must be an object".into())),
    };
    let mut map = BTreeMap::new();
    for (k, v) in obj {
        let key: usize = k
            .parse()
            .map_err(|_| err(format!("complement_map key \"{k}\" is not a token id")))?;
        let val = v
            .as_u64()
            .ok_or_else(|| err(format!("complement_map[{k}] must be a token id")))?;
        map.insert(key, val as usize);
    }
    let n = vocab_size.max(map.len());
    let mut out: Vec<u32> = (0..n as u32).collect();
    for (&k, &v) in &map {
        if k >= vocab_size || v >= vocab_size {
            return Err(err(format!(
                "complement_map entry {k} -> {v} is outside the vocabulary of {vocab_size}"
            )));
        }
        out[k] = v as u32;
    }
    out.truncate(vocab_size);
    Ok(Some(out))
}

fn parse_id2label(v: Option<&Value>, err: &impl Fn(String) -> Error) -> Result<Vec<String>> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(err("id2label must be an object".into())),
    };
    let mut labels = vec![None; obj.len()];
    for (k, v) in obj {
        let i: usize = k.parse().ok().filter(|&i| i < obj.len()).ok_or_else(|| {
            err(format!(
                "id2label key \"{k}\" is not a label id 0..{}",
                obj.len()
            ))
        })?;
        let name = v
            .as_str()
            .ok_or_else(|| err(format!("id2label[{k}] must be a string")))?;
        labels[i] = Some(name.to_string());
    }
    Ok(labels
        .into_iter()
        .map(|l| l.expect("each of n distinct keys < n fills one slot"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config> {
        Config::from_json(json.as_bytes(), Path::new("config.json"))
    }

    #[test]
    fn fixture_config_parses() {
        let c = Config::from_file(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../test-data/models/ps-tiny/config.json"
        )))
        .unwrap();
        assert!(c.rcps && c.bidirectional && c.fused_add_norm);
        assert_eq!(
            (c.d_model, c.n_layer, c.vocab_size, c.dt_rank),
            (24, 2, 16, 2)
        );
        assert_eq!(&c.complement_map[7..12], &[10, 9, 8, 7, 11]);
        assert_eq!(c.arch, Arch::MaskedLm);
    }

    #[test]
    fn vocab_is_padded_and_map_extended() {
        let c = parse(
            r#"{"d_model": 8, "n_layer": 1, "vocab_size": 12, "rcps": true,
            "complement_map": {"0":0,"7":10,"10":7}}"#,
        )
        .unwrap();
        assert_eq!(c.vocab_size, 16);
        assert_eq!(c.complement_map.len(), 16);
        assert_eq!(c.complement_map[15], 15);
        assert_eq!(c.complement_map[7], 10);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let e = parse(r#"{"bidirectional_strategy": "concat"}"#).unwrap_err();
        assert!(e.to_string().contains("bidirectional_strategy"), "{e}");
        let e = parse(r#"{"ssm_cfg": {"headdim": 64}}"#).unwrap_err();
        assert!(e.to_string().contains("ssm_cfg.headdim"), "{e}");
        let e = parse(r#"{"rcps": true}"#).unwrap_err();
        assert!(e.to_string().contains("complement_map"), "{e}");
        let e = parse(r#"{"model_type": "mamba"}"#).unwrap_err();
        assert!(e.to_string().contains("model_type"), "{e}");
    }

    #[test]
    fn head_layers_are_checked() {
        let layers = |v: &str| parse(&format!(r#"{{"n_layer": 4, "strand_head_layers": {v}}}"#));
        assert_eq!(layers("[1, 4]").unwrap().head_layers, [1, 4]);
        assert_eq!(layers("[1, 4]").unwrap().head_width(), 2 * 2560);
        assert!(parse("{}").unwrap().head_layers.is_empty());
        for bad in ["[]", "[5]", "[2, 1]", "[1, 1]", "[-1]", "\"4\""] {
            let e = layers(bad).unwrap_err().to_string();
            assert!(
                e.contains("strand_head_layers") && e.contains("(4)"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn dt_rank_auto_and_explicit() {
        assert_eq!(parse(r#"{"d_model": 256}"#).unwrap().dt_rank, 16);
        assert_eq!(
            parse(r#"{"d_model": 24, "ssm_cfg": {"dt_rank": 5}}"#)
                .unwrap()
                .dt_rank,
            5
        );
    }

    /// Issue 15: absurd sizes are refused when the config is read, before
    /// anything is sized from them.
    #[test]
    fn issue15_absurd_sizes_are_refused() {
        for (json, field) in [
            (r#"{"n_layer": 10000000}"#, "n_layer is 10000000"),
            (r#"{"d_model": 1000000000000}"#, "d_model is 1000000000000"),
            (r#"{"vocab_size": 18446744073709551615}"#, "vocab_size is"),
            (
                r#"{"pad_vocab_size_multiple": 18446744073709551615}"#,
                "pad_vocab_size_multiple is",
            ),
            (
                r#"{"ssm_cfg": {"d_state": 100000}}"#,
                "ssm_cfg.d_state is 100000",
            ),
            (
                r#"{"ssm_cfg": {"dt_rank": 100000000}}"#,
                "ssm_cfg.dt_rank is",
            ),
        ] {
            let e = parse(json).unwrap_err().to_string();
            assert!(
                e.contains(field) && e.contains("more than strand accepts"),
                "{e}"
            );
        }
    }
}
