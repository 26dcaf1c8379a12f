//! What the reference reads: `config.json`, parsed independently of
//! strand-core, and the checkpoint's tensors as f64 copies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::Mat;

// ---------------------------------------------------------------------------
// Configuration, parsed from the JSON independently of strand-core.
// ---------------------------------------------------------------------------

/// What the reference needs from `config.json` (spec sections 2, 4-6).
#[derive(Clone, Debug)]
pub struct RefConfig {
    pub d: usize,
    pub n_layer: usize,
    /// Padded vocabulary `V` (section 2).
    pub vocab: usize,
    pub rms: bool,
    pub fused: bool,
    pub eps: f64,
    pub bidirectional: bool,
    /// `ew_multiply` rather than `add` (null means add, section 5).
    pub multiply: bool,
    pub tie: bool,
    pub rcps: bool,
    pub d_state: usize,
    pub d_conv: usize,
    pub d_inner: usize,
    pub dt_rank: usize,
    pub conv_bias: bool,
    pub bias: bool,
    /// Complement map over the padded vocabulary.
    pub comp: Vec<usize>,
}

impl RefConfig {
    pub fn from_json(c: &Value) -> RefConfig {
        let int = |v: &Value, what: &str| -> usize {
            v.as_u64()
                .unwrap_or_else(|| panic!("config: {what} is not an integer")) as usize
        };
        let flag = |v: &Value, what: &str| -> bool {
            v.as_bool()
                .unwrap_or_else(|| panic!("config: {what} is not a bool"))
        };
        let d = int(&c["d_model"], "d_model");
        let raw_vocab = int(&c["vocab_size"], "vocab_size");
        let multiple = int(&c["pad_vocab_size_multiple"], "pad_vocab_size_multiple");
        // Section 2: pad up to a multiple, extend the complement map with identity.
        let vocab = raw_vocab.div_ceil(multiple) * multiple;
        let mut comp: Vec<usize> = (0..vocab).collect();
        for (k, v) in c["complement_map"]
            .as_object()
            .expect("config: complement_map is an object")
        {
            let k: usize = k.parse().expect("config: complement_map keys are integers");
            comp[k] = int(v, "complement_map value");
        }
        let multiply = match &c["bidirectional_strategy"] {
            Value::Null => false,
            Value::String(s) if s == "add" => false,
            Value::String(s) if s == "ew_multiply" => true,
            other => panic!("reference: unsupported bidirectional_strategy {other}"),
        };
        let ssm = &c["ssm_cfg"];
        let expand = int(&ssm["expand"], "expand");
        let dt_rank = match &ssm["dt_rank"] {
            Value::String(s) if s == "auto" => d.div_ceil(16),
            v => int(v, "dt_rank"),
        };
        RefConfig {
            d,
            n_layer: int(&c["n_layer"], "n_layer"),
            vocab,
            rms: flag(&c["rms_norm"], "rms_norm"),
            fused: flag(&c["fused_add_norm"], "fused_add_norm"),
            eps: c["norm_epsilon"].as_f64().expect("config: norm_epsilon"),
            bidirectional: flag(&c["bidirectional"], "bidirectional"),
            multiply,
            tie: flag(&c["bidirectional_weight_tie"], "bidirectional_weight_tie"),
            rcps: flag(&c["rcps"], "rcps"),
            d_state: int(&ssm["d_state"], "d_state"),
            d_conv: int(&ssm["d_conv"], "d_conv"),
            d_inner: expand * d,
            dt_rank,
            conv_bias: flag(&ssm["conv_bias"], "conv_bias"),
            bias: flag(&ssm["bias"], "bias"),
            comp,
        }
    }

    /// Prefix of layer `i`'s norm: the unfused PS block wraps it in
    /// `RCPSAddNormWrapper` (`.submodule`, spec sections 4 and 9).
    pub fn norm_prefix(&self, layer: Option<usize>) -> String {
        let base = match layer {
            Some(i) => format!("caduceus.backbone.layers.{i}.norm"),
            None => "caduceus.backbone.norm_f".to_string(),
        };
        if self.rcps && !self.fused {
            format!("{base}.submodule.")
        } else {
            format!("{base}.")
        }
    }

    /// Prefix of layer `i`'s mixer: `RCPSWrapper` adds `.submodule` for PS.
    pub fn mixer_prefix(&self, i: usize) -> String {
        if self.rcps {
            format!("caduceus.backbone.layers.{i}.mixer.submodule.")
        } else {
            format!("caduceus.backbone.layers.{i}.mixer.")
        }
    }

    /// Every key `save_pretrained` stores (section 9): tied tensors
    /// (`mamba_rev.{in,out}_proj` under weight tie, the LM head) are absent.
    pub fn stored_keys(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        let emb = "caduceus.backbone.embeddings.word_embeddings.";
        if self.rcps {
            keys.insert(format!("{emb}complement_map"));
            keys.insert(format!("{emb}embedding.weight"));
            keys.insert("lm_head.complement_map".to_string());
        } else {
            keys.insert(format!("{emb}weight"));
        }
        let mut norm = |p: String| {
            keys.insert(format!("{p}weight"));
            if !self.rms {
                keys.insert(format!("{p}bias"));
            }
        };
        for i in 0..self.n_layer {
            norm(self.norm_prefix(Some(i)));
        }
        norm(self.norm_prefix(None));
        for i in 0..self.n_layer {
            let dirs: &[&str] = if self.bidirectional {
                &["mamba_fwd", "mamba_rev"]
            } else {
                &["mamba_fwd"]
            };
            for &dir in dirs {
                let p = format!("{}{dir}.", self.mixer_prefix(i));
                for leaf in [
                    "conv1d.weight",
                    "x_proj.weight",
                    "dt_proj.weight",
                    "dt_proj.bias",
                    "A_log",
                    "D",
                ] {
                    keys.insert(format!("{p}{leaf}"));
                }
                if self.conv_bias {
                    keys.insert(format!("{p}conv1d.bias"));
                }
                if dir == "mamba_fwd" || !self.tie {
                    keys.insert(format!("{p}in_proj.weight"));
                    keys.insert(format!("{p}out_proj.weight"));
                    if self.bias {
                        keys.insert(format!("{p}in_proj.bias"));
                        keys.insert(format!("{p}out_proj.bias"));
                    }
                }
            }
        }
        keys
    }
}

// ---------------------------------------------------------------------------
// Checkpoint reading (f64 copies of every stored tensor).
// ---------------------------------------------------------------------------

pub struct Store {
    pub floats: BTreeMap<String, (Vec<usize>, Vec<f64>)>,
    pub ints: BTreeMap<String, (Vec<usize>, Vec<i64>)>,
}

impl Store {
    pub fn read(path: &Path) -> Store {
        let bytes = std::fs::read(path).expect("read model.safetensors");
        let st = SafeTensors::deserialize(&bytes).expect("parse model.safetensors");
        let mut floats = BTreeMap::new();
        let mut ints = BTreeMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            match view.dtype() {
                Dtype::F32 => {
                    let v = view
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
                        .collect();
                    floats.insert(name, (shape, v));
                }
                Dtype::I64 => {
                    let v = view
                        .data()
                        .chunks_exact(8)
                        .map(|b| {
                            i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                        })
                        .collect();
                    ints.insert(name, (shape, v));
                }
                other => panic!("{name}: unexpected dtype {other:?}"),
            }
        }
        Store { floats, ints }
    }

    pub fn keys(&self) -> BTreeSet<String> {
        self.floats
            .keys()
            .chain(self.ints.keys())
            .cloned()
            .collect()
    }

    /// A float tensor, checked against the shape the spec gives it.
    pub fn get(&self, key: &str, shape: &[usize]) -> Vec<f64> {
        let (s, v) = self
            .floats
            .get(key)
            .unwrap_or_else(|| panic!("checkpoint lacks {key}"));
        assert_eq!(s.as_slice(), shape, "{key}: shape");
        v.clone()
    }

    pub fn mat(&self, key: &str, rows: usize, cols: usize) -> Mat {
        self.get(key, &[rows, cols])
            .chunks_exact(cols)
            .map(<[f64]>::to_vec)
            .collect()
    }

    pub fn opt(&self, present: bool, key: &str, len: usize) -> Option<Vec<f64>> {
        present.then(|| self.get(key, &[len]))
    }
}
