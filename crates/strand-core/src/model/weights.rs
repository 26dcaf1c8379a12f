//! Model weights in host memory, laid out for flip-free execution.
//!
//! Construction walks the checkpoint key paths of the reference model
//! (`layers.{i}.mixer.mamba_fwd.in_proj.weight` ...). Before any tensor is
//! read, every expected tensor is checked for presence and shape and every
//! stored tensor must be expected, so a wrong checkpoint fails with the
//! tensor's name instead of computing something else.
//!
//! Derived at load (spec section 11): `A = -exp(A_log)`; for PS models the
//! output projections with their rows reversed, which folds the channel
//! reversal of the reverse-complement half into the weights; and the LM head
//! matrix with the RCPS complement lookup folded in.

use std::collections::BTreeMap;

use super::checkpoint::Checkpoint;
use super::config::{Arch, Config};
use crate::error::{Error, Result};

/// A dense layer `y = x W^T + b`, `W` row-major `[out, inp]`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub w: Vec<f32>,
    pub b: Option<Vec<f32>>,
    pub out: usize,
    pub inp: usize,
}

impl Linear {
    /// The same layer with output channels reversed (rows of `W`, and `b`).
    fn flip_out(&self) -> Linear {
        let mut w = Vec::with_capacity(self.w.len());
        for row in self.w.chunks_exact(self.inp).rev() {
            w.extend_from_slice(row);
        }
        Linear {
            w,
            b: self.b.as_ref().map(|b| b.iter().rev().copied().collect()),
            out: self.out,
            inp: self.inp,
        }
    }
}

/// RMSNorm (`bias` None) or LayerNorm.
#[derive(Clone, Debug)]
pub struct Norm {
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

/// The selective-state-space part of one Mamba direction.
#[derive(Clone, Debug)]
pub struct Ssm {
    /// `[di, K]`
    pub conv_w: Vec<f32>,
    /// `[di]`
    pub conv_b: Option<Vec<f32>>,
    /// `[R + 2N, di]`
    pub x_proj: Linear,
    /// `[di, R]`
    pub dt_w: Vec<f32>,
    /// `[di]`
    pub dt_b: Vec<f32>,
    /// `-exp(A_log)`, `[di, N]`
    pub a: Vec<f32>,
    /// `[di]`
    pub d: Vec<f32>,
}

/// One block's weights.
#[derive(Clone, Debug)]
pub struct Layer {
    pub norm: Norm,
    pub in_fwd: Linear,
    pub out_fwd: Linear,
    /// Present only when the reverse direction is untied.
    pub in_rev: Option<Linear>,
    pub out_rev: Option<Linear>,
    /// PS only: output projections with rows reversed, for the rc half.
    pub out_fwd_flip: Option<Linear>,
    pub out_rev_flip: Option<Linear>,
    pub ssm_fwd: Ssm,
    pub ssm_rev: Option<Ssm>,
}

/// Every tensor of a model, ready to run.
#[derive(Clone, Debug)]
pub struct Weights {
    /// `[V, d]`
    pub embedding: Vec<f32>,
    pub layers: Vec<Layer>,
    pub norm_f: Norm,
    /// `[V, width]`: the tied LM head; for PS row v is
    /// `[E[v] | revC(E[comp v])]` so one GEMM gives the RCPS logits.
    pub lm_head: Linear,
    /// `[num_labels, d]` for classifiers.
    pub score: Option<Vec<f32>>,
    /// Complement map actually used (PS checkpoints store it as a buffer
    /// that overrides the config, as in the reference).
    pub complement_map: Vec<u32>,
}

/// The tensors a config calls for: name -> (shape, required). Tied aliases
/// that checkpoints normally drop are listed as optional.
pub struct Expected {
    pub map: BTreeMap<String, (Vec<usize>, bool)>,
}

impl Expected {
    fn need(&mut self, name: String, shape: &[usize]) {
        self.map.insert(name, (shape.to_vec(), true));
    }
    fn allow(&mut self, name: String, shape: &[usize]) {
        self.map.insert(name, (shape.to_vec(), false));
    }
    /// Checks presence, shapes and unexpected tensors, before any compute.
    fn check(&self, ckpt: &Checkpoint) -> Result<()> {
        for (name, (shape, required)) in &self.map {
            match ckpt.shape(name) {
                None if *required => {
                    return Err(Error::Tensor {
                        path: ckpt.path_of(name).to_path_buf(),
                        name: name.clone(),
                        msg: format!("missing (expected shape {shape:?})"),
                    })
                }
                None => {}
                Some(got) if got != *shape => {
                    return Err(Error::Tensor {
                        path: ckpt.path_of(name).to_path_buf(),
                        name: name.clone(),
                        msg: format!("has shape {got:?}, expected {shape:?} from config.json"),
                    })
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = ckpt
            .names()
            .into_iter()
            .find(|n| !self.map.contains_key(*n))
        {
            return Err(Error::Tensor {
                path: ckpt.path_of(extra).to_path_buf(),
                name: extra.to_string(),
                msg: "unexpected for this config.json (wrong config, or a model variant strand does not run)"
                    .into(),
            });
        }
        Ok(())
    }
}

impl Expected {
    /// Every tensor `cfg` calls for, with key paths under `prefix`
    /// (`caduceus.backbone.` for head models, `backbone.` for a bare one).
    pub fn for_config(cfg: &Config, prefix: &'static str) -> Result<Expected> {
        let keys = Keys::new(prefix, cfg);
        let (d, di, n, k, r, v) = (
            cfg.d_model,
            cfg.d_inner(),
            cfg.d_state,
            cfg.d_conv,
            cfg.dt_rank,
            cfg.vocab_size,
        );
        let mut ex = Expected {
            map: BTreeMap::new(),
        };
        ex.need(keys.embedding.clone(), &[v, d]);
        if cfg.rcps {
            ex.need(keys.bb("embeddings.word_embeddings.complement_map"), &[v]);
        }
        for i in 0..cfg.n_layer {
            ex.need(keys.norm(i, "weight"), &[d]);
            if !cfg.rms_norm {
                ex.need(keys.norm(i, "bias"), &[d]);
            }
            let dirs: &[&str] = if cfg.bidirectional {
                &["mamba_fwd", "mamba_rev"]
            } else {
                &["mamba_fwd"]
            };
            for dir in dirs {
                let m = |t: &str| keys.mixer(i, dir, t);
                let tied_proj = *dir == "mamba_rev" && cfg.bidirectional_weight_tie;
                for (proj, shape) in [("in_proj", [2 * di, d]), ("out_proj", [d, di])] {
                    let bias_len = shape[0];
                    if tied_proj {
                        // Saved checkpoints drop tied aliases; tolerate them if present.
                        ex.allow(m(&format!("{proj}.weight")), &shape);
                        if cfg.bias {
                            ex.allow(m(&format!("{proj}.bias")), &[bias_len]);
                        }
                    } else {
                        ex.need(m(&format!("{proj}.weight")), &shape);
                        if cfg.bias {
                            ex.need(m(&format!("{proj}.bias")), &[bias_len]);
                        }
                    }
                }
                ex.need(m("conv1d.weight"), &[di, 1, k]);
                if cfg.conv_bias {
                    ex.need(m("conv1d.bias"), &[di]);
                }
                ex.need(m("x_proj.weight"), &[r + 2 * n, di]);
                ex.need(m("dt_proj.weight"), &[di, r]);
                ex.need(m("dt_proj.bias"), &[di]);
                ex.need(m("A_log"), &[di, n]);
                ex.need(m("D"), &[di]);
            }
        }
        ex.need(keys.norm_f("weight"), &[d]);
        if !cfg.rms_norm {
            ex.need(keys.norm_f("bias"), &[d]);
        }
        match cfg.arch {
            Arch::MaskedLm => {
                if cfg.rcps {
                    ex.need("lm_head.complement_map".into(), &[v]);
                    ex.allow("lm_head.lm_head.weight".into(), &[v, d]);
                } else {
                    ex.allow("lm_head.weight".into(), &[v, d]);
                }
            }
            Arch::SequenceClassification => {
                if cfg.num_labels() == 0 {
                    return Err(Error::Unsupported(
                        "config.json: a CaduceusForSequenceClassification config needs id2label"
                            .into(),
                    ));
                }
                ex.need("score.weight".into(), &[cfg.num_labels(), cfg.head_width()]);
            }
            Arch::Backbone => {}
        }
        Ok(ex)
    }
}

/// Checks the config's layer count and width against the tensors present,
/// before anything that grows with them is built: the map of expected
/// tensors holds ~20 names per layer, so `n_layer: 10000000` would take
/// gigabytes before the first missing tensor were noticed. More layers in
/// the checkpoint than in the config are reported by [`Expected::check`]
/// as unexpected tensors.
fn check_sizes(ckpt: &Checkpoint, cfg: &Config, prefix: &'static str) -> Result<()> {
    let layers = format!("{prefix}layers.");
    let held = ckpt
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix(layers.as_str()))
        .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
        .map(|i| i + 1)
        .max()
        .unwrap_or(0);
    let keys = Keys::new(prefix, cfg);
    if held < cfg.n_layer {
        return Err(Error::Checkpoint {
            path: ckpt.path_of(&keys.embedding).to_path_buf(),
            msg: format!(
                "config.json says n_layer {} but the checkpoint holds {held} layers \
                 (wrong config.json?)",
                cfg.n_layer
            ),
        });
    }
    if let Some(shape) = ckpt.shape(&keys.embedding) {
        if shape.len() == 2 && shape[1] != cfg.d_model {
            return Err(Error::Tensor {
                path: ckpt.path_of(&keys.embedding).to_path_buf(),
                name: keys.embedding.clone(),
                msg: format!(
                    "has shape {shape:?}: width {} but config.json says d_model {}",
                    shape[1], cfg.d_model
                ),
            });
        }
    }
    Ok(())
}

impl Weights {
    /// Checks and loads every tensor `cfg` calls for.
    pub fn load(ckpt: &Checkpoint, cfg: &Config) -> Result<Weights> {
        let prefix = if ckpt
            .names()
            .iter()
            .any(|k| k.starts_with("caduceus.backbone."))
        {
            "caduceus.backbone."
        } else {
            "backbone."
        };
        check_sizes(ckpt, cfg, prefix)?;
        Expected::for_config(cfg, prefix)?.check(ckpt)?;
        let keys = Keys::new(prefix, cfg);
        let (d, di, n, r, v) = (
            cfg.d_model,
            cfg.d_inner(),
            cfg.d_state,
            cfg.dt_rank,
            cfg.vocab_size,
        );

        let get = |name: &str| -> Result<Vec<f32>> { Ok(ckpt.load_f32(name)?.data) };
        let linear = |w: &str, b: Option<String>, out: usize, inp: usize| -> Result<Linear> {
            Ok(Linear {
                w: get(w)?,
                b: b.map(|b| get(&b)).transpose()?,
                out,
                inp,
            })
        };
        let norm = |w: String, b: String| -> Result<Norm> {
            Ok(Norm {
                weight: get(&w)?,
                bias: if cfg.rms_norm { None } else { Some(get(&b)?) },
            })
        };

        let complement_map = if cfg.rcps {
            load_map(
                ckpt,
                &keys.bb("embeddings.word_embeddings.complement_map"),
                v,
            )?
        } else {
            cfg.complement_map.clone()
        };

        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let m = |dir: &str, t: &str| keys.mixer(i, dir, t);
            let bias = |dir: &str, proj: &str| cfg.bias.then(|| m(dir, &format!("{proj}.bias")));
            let ssm = |dir: &str| -> Result<Ssm> {
                Ok(Ssm {
                    conv_w: get(&m(dir, "conv1d.weight"))?,
                    conv_b: cfg
                        .conv_bias
                        .then(|| get(&m(dir, "conv1d.bias")))
                        .transpose()?,
                    x_proj: linear(&m(dir, "x_proj.weight"), None, r + 2 * n, di)?,
                    dt_w: get(&m(dir, "dt_proj.weight"))?,
                    dt_b: get(&m(dir, "dt_proj.bias"))?,
                    a: get(&m(dir, "A_log"))?.iter().map(|x| -x.exp()).collect(),
                    d: get(&m(dir, "D"))?,
                })
            };
            let in_fwd = linear(
                &m("mamba_fwd", "in_proj.weight"),
                bias("mamba_fwd", "in_proj"),
                2 * di,
                d,
            )?;
            let out_fwd = linear(
                &m("mamba_fwd", "out_proj.weight"),
                bias("mamba_fwd", "out_proj"),
                d,
                di,
            )?;
            let untied = cfg.bidirectional && !cfg.bidirectional_weight_tie;
            let in_rev = untied
                .then(|| {
                    linear(
                        &m("mamba_rev", "in_proj.weight"),
                        bias("mamba_rev", "in_proj"),
                        2 * di,
                        d,
                    )
                })
                .transpose()?;
            let out_rev = untied
                .then(|| {
                    linear(
                        &m("mamba_rev", "out_proj.weight"),
                        bias("mamba_rev", "out_proj"),
                        d,
                        di,
                    )
                })
                .transpose()?;
            layers.push(Layer {
                norm: norm(keys.norm(i, "weight"), keys.norm(i, "bias"))?,
                out_fwd_flip: cfg.rcps.then(|| out_fwd.flip_out()),
                out_rev_flip: if cfg.rcps {
                    out_rev.as_ref().map(Linear::flip_out)
                } else {
                    None
                },
                in_fwd,
                out_fwd,
                in_rev,
                out_rev,
                ssm_fwd: ssm("mamba_fwd")?,
                ssm_rev: cfg.bidirectional.then(|| ssm("mamba_rev")).transpose()?,
            });
        }

        let embedding = get(&keys.embedding)?;
        let lm_head = if cfg.rcps {
            let comp = match cfg.arch {
                // The head applies its own stored map (normally the same).
                Arch::MaskedLm => load_map(ckpt, "lm_head.complement_map", v)?,
                _ => complement_map.clone(),
            };
            let mut h = Vec::with_capacity(v * 2 * d);
            for t in 0..v {
                h.extend_from_slice(&embedding[t * d..(t + 1) * d]);
                let c = comp[t] as usize;
                h.extend(embedding[c * d..(c + 1) * d].iter().rev());
            }
            h
        } else {
            embedding.clone()
        };
        let lm_head = Linear {
            w: lm_head,
            b: None,
            out: v,
            inp: cfg.width(),
        };
        Ok(Weights {
            embedding,
            layers,
            norm_f: norm(keys.norm_f("weight"), keys.norm_f("bias"))?,
            lm_head,
            score: (cfg.arch == Arch::SequenceClassification)
                .then(|| get("score.weight"))
                .transpose()?,
            complement_map,
        })
    }
}

/// Reads a stored complement-map buffer, checking every id.
fn load_map(ckpt: &Checkpoint, name: &str, v: usize) -> Result<Vec<u32>> {
    ckpt.load_i64(name)?
        .iter()
        .map(|&c| u32::try_from(c).ok().filter(|&c| (c as usize) < v))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::Tensor {
            path: ckpt.path_of(name).to_path_buf(),
            name: name.into(),
            msg: format!("holds an id outside the vocabulary of {v}"),
        })
}

/// Checkpoint key paths for a config.
struct Keys {
    prefix: &'static str,
    embedding: String,
    mixer: &'static str,
    /// RCPS unfused norms are wrapped (`norm.submodule.weight`).
    norm_sub: &'static str,
}

impl Keys {
    /// Head models nest the backbone under `caduceus.`; a bare backbone
    /// saved on its own has keys starting at `backbone.`.
    fn new(prefix: &'static str, cfg: &Config) -> Keys {
        let embedding = if cfg.rcps {
            format!("{prefix}embeddings.word_embeddings.embedding.weight")
        } else {
            format!("{prefix}embeddings.word_embeddings.weight")
        };
        Keys {
            prefix,
            embedding,
            mixer: if cfg.rcps {
                "mixer.submodule."
            } else {
                "mixer."
            },
            norm_sub: if cfg.rcps && !cfg.fused_add_norm {
                "submodule."
            } else {
                ""
            },
        }
    }
    fn bb(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }
    fn norm(&self, i: usize, t: &str) -> String {
        format!("{}layers.{i}.norm.{}{t}", self.prefix, self.norm_sub)
    }
    fn norm_f(&self, t: &str) -> String {
        format!("{}norm_f.{}{t}", self.prefix, self.norm_sub)
    }
    fn mixer(&self, i: usize, dir: &str, t: &str) -> String {
        format!("{}layers.{i}.{}{dir}.{t}", self.prefix, self.mixer)
    }
}
