//! Config variants against an independent float64 reference.
//!
//! The reference below is written only from `docs/caduceus-model.md` (the
//! shared spec), deliberately naive: every flip the spec writes (revL, revC,
//! flipLC, the PS half swap of the fused block, the unfused
//! `RCPSAddNormWrapper` path) is materialised as a copy, the selective scan
//! is the plain recurrence, and all arithmetic is f64. strand-core is treated
//! as a black box: the reference reads the same `model.safetensors` that
//! `write_checkpoint` produced, by the HF key names of spec section 9, and
//! the test compares embeddings, every block's stream, the final hidden
//! states and the LM logits.
//!
//! The grid covers rcps × fused_add_norm × rms_norm × bidirectional ×
//! strategy (add / ew_multiply / null) × weight tie, with the SSM knobs
//! (bias, conv_bias, dt_rank, d_state, d_conv, expand, vocab padding,
//! d_model) cycled so that every value appears with rcps both true and false
//! (asserted).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};
use strand_core::model::synthetic::{published_config, write_checkpoint};
use strand_core::Model;

mod common;

/// Activations, `[L][channels]`.
type Act = Vec<Vec<f64>>;
/// A weight matrix, `[out][in]` as PyTorch stores `Linear.weight`.
type Mat = Vec<Vec<f64>>;

/// Allowed `max |strand - reference| / max |reference|` (the brief's bound;
/// the f32-vs-f64 level of the reference itself is ~1e-6).
const REL_TOL: f64 = 1e-4;

// ---------------------------------------------------------------------------
// Configuration, parsed from the JSON independently of strand-core.
// ---------------------------------------------------------------------------

/// What the reference needs from `config.json` (spec sections 2, 4-6).
#[derive(Clone, Debug)]
struct RefConfig {
    d: usize,
    n_layer: usize,
    /// Padded vocabulary `V` (section 2).
    vocab: usize,
    rms: bool,
    fused: bool,
    eps: f64,
    bidirectional: bool,
    /// `ew_multiply` rather than `add` (null means add, section 5).
    multiply: bool,
    tie: bool,
    rcps: bool,
    d_state: usize,
    d_conv: usize,
    d_inner: usize,
    dt_rank: usize,
    conv_bias: bool,
    bias: bool,
    /// Complement map over the padded vocabulary.
    comp: Vec<usize>,
}

impl RefConfig {
    fn from_json(c: &Value) -> RefConfig {
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
    fn norm_prefix(&self, layer: Option<usize>) -> String {
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
    fn mixer_prefix(&self, i: usize) -> String {
        if self.rcps {
            format!("caduceus.backbone.layers.{i}.mixer.submodule.")
        } else {
            format!("caduceus.backbone.layers.{i}.mixer.")
        }
    }

    /// Every key `save_pretrained` stores (section 9): tied tensors
    /// (`mamba_rev.{in,out}_proj` under weight tie, the LM head) are absent.
    fn stored_keys(&self) -> BTreeSet<String> {
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

struct Store {
    floats: BTreeMap<String, (Vec<usize>, Vec<f64>)>,
    ints: BTreeMap<String, (Vec<usize>, Vec<i64>)>,
}

impl Store {
    fn read(path: &Path) -> Store {
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

    fn keys(&self) -> BTreeSet<String> {
        self.floats
            .keys()
            .chain(self.ints.keys())
            .cloned()
            .collect()
    }

    /// A float tensor, checked against the shape the spec gives it.
    fn get(&self, key: &str, shape: &[usize]) -> Vec<f64> {
        let (s, v) = self
            .floats
            .get(key)
            .unwrap_or_else(|| panic!("checkpoint lacks {key}"));
        assert_eq!(s.as_slice(), shape, "{key}: shape");
        v.clone()
    }

    fn mat(&self, key: &str, rows: usize, cols: usize) -> Mat {
        self.get(key, &[rows, cols])
            .chunks_exact(cols)
            .map(<[f64]>::to_vec)
            .collect()
    }

    fn opt(&self, present: bool, key: &str, len: usize) -> Option<Vec<f64>> {
        present.then(|| self.get(key, &[len]))
    }
}

// ---------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------

/// One Mamba direction (spec section 6).
struct MambaW {
    w_in: Mat,
    b_in: Option<Vec<f64>>,
    /// `[di][K]` (the `[di, 1, K]` depthwise kernel).
    conv_w: Mat,
    conv_b: Option<Vec<f64>>,
    w_x: Mat,
    w_dt: Mat,
    b_dt: Vec<f64>,
    a_log: Mat,
    d_skip: Vec<f64>,
    w_out: Mat,
    b_out: Option<Vec<f64>>,
}

impl MambaW {
    /// `proj` is the prefix `in_proj`/`out_proj` come from: the forward
    /// direction's own under weight tie (section 5: the same tensors).
    fn load(s: &Store, c: &RefConfig, p: &str, proj: &str) -> MambaW {
        let (d, di, k, n, r) = (c.d, c.d_inner, c.d_conv, c.d_state, c.dt_rank);
        MambaW {
            w_in: s.mat(&format!("{proj}in_proj.weight"), 2 * di, d),
            b_in: s.opt(c.bias, &format!("{proj}in_proj.bias"), 2 * di),
            conv_w: s
                .get(&format!("{p}conv1d.weight"), &[di, 1, k])
                .chunks_exact(k)
                .map(<[f64]>::to_vec)
                .collect(),
            conv_b: s.opt(c.conv_bias, &format!("{p}conv1d.bias"), di),
            w_x: s.mat(&format!("{p}x_proj.weight"), r + 2 * n, di),
            w_dt: s.mat(&format!("{p}dt_proj.weight"), di, r),
            b_dt: s.get(&format!("{p}dt_proj.bias"), &[di]),
            a_log: s.mat(&format!("{p}A_log"), di, n),
            d_skip: s.get(&format!("{p}D"), &[di]),
            w_out: s.mat(&format!("{proj}out_proj.weight"), d, di),
            b_out: s.opt(c.bias, &format!("{proj}out_proj.bias"), d),
        }
    }
}

struct LayerW {
    norm_w: Vec<f64>,
    norm_b: Option<Vec<f64>>,
    fwd: MambaW,
    rev: Option<MambaW>,
}

struct RefModel {
    c: RefConfig,
    /// `[V][d]`; also the (tied) LM head.
    emb: Mat,
    layers: Vec<LayerW>,
    norm_f_w: Vec<f64>,
    norm_f_b: Option<Vec<f64>>,
}

impl RefModel {
    fn load(dir: &Path) -> RefModel {
        let json: Value = serde_json::from_slice(
            &std::fs::read(dir.join("config.json")).expect("read config.json"),
        )
        .expect("parse config.json");
        let c = RefConfig::from_json(&json);
        let s = Store::read(&dir.join("model.safetensors"));
        assert_eq!(
            s.keys(),
            c.stored_keys(),
            "stored keys differ from spec section 9"
        );
        let emb_key = if c.rcps {
            "caduceus.backbone.embeddings.word_embeddings.embedding.weight"
        } else {
            "caduceus.backbone.embeddings.word_embeddings.weight"
        };
        if c.rcps {
            // Section 2: the int64 buffers are what a PS model really uses.
            for key in [
                "caduceus.backbone.embeddings.word_embeddings.complement_map",
                "lm_head.complement_map",
            ] {
                let (shape, v) = &s.ints[key];
                assert_eq!(shape, &[c.vocab], "{key}: shape");
                let buf: Vec<usize> = v.iter().map(|&x| x as usize).collect();
                assert_eq!(buf, c.comp, "{key}: differs from the padded config map");
            }
        }
        let norm = |p: String| {
            (
                s.get(&format!("{p}weight"), &[c.d]),
                s.opt(!c.rms, &format!("{p}bias"), c.d),
            )
        };
        let layers = (0..c.n_layer)
            .map(|i| {
                let (norm_w, norm_b) = norm(c.norm_prefix(Some(i)));
                let fwd_p = format!("{}mamba_fwd.", c.mixer_prefix(i));
                let rev_p = format!("{}mamba_rev.", c.mixer_prefix(i));
                let rev = c.bidirectional.then(|| {
                    let proj = if c.tie { &fwd_p } else { &rev_p };
                    MambaW::load(&s, &c, &rev_p, proj)
                });
                LayerW {
                    norm_w,
                    norm_b,
                    fwd: MambaW::load(&s, &c, &fwd_p, &fwd_p),
                    rev,
                }
            })
            .collect();
        let (norm_f_w, norm_f_b) = norm(c.norm_prefix(None));
        RefModel {
            emb: s.mat(emb_key, c.vocab, c.d),
            layers,
            norm_f_w,
            norm_f_b,
            c,
        }
    }

    /// Section 3. For PS the code's own route is taken literally: embed the
    /// reverse-complemented id string, then flip positions and channels.
    fn embed(&self, ids: &[usize]) -> Act {
        let lookup = |ids: &[usize]| -> Act { ids.iter().map(|&t| self.emb[t].clone()).collect() };
        let fwd = lookup(ids);
        if !self.c.rcps {
            return fwd;
        }
        let rc_ids: Vec<usize> = ids.iter().rev().map(|&t| self.c.comp[t]).collect();
        cat(&fwd, &flip_lc(&lookup(&rc_ids)))
    }

    fn norm(&self, x: &Act, w: &[f64], b: Option<&[f64]>) -> Act {
        norm_rows(x, w, b, self.c.rms, self.c.eps)
    }

    /// Section 5: `Mamba_fwd(x) (+|*) revL(Mamba_rev(revL(x)))`.
    fn bimamba(&self, layer: &LayerW, x: &Act) -> Act {
        let out = mamba(&self.c, &layer.fwd, x);
        let Some(rev) = &layer.rev else {
            return out;
        };
        let out_rev = rev_l(&mamba(&self.c, rev, &rev_l(x)));
        if self.c.multiply {
            zip_with(&out, &out_rev, |a, b| a * b)
        } else {
            add(&out, &out_rev)
        }
    }

    /// One block (section 4): `(h, r) -> (h', new residual)`.
    fn block(&self, layer: &LayerW, h: &Act, r: Option<&Act>) -> (Act, Act) {
        let (w, b) = (&layer.norm_w[..], layer.norm_b.as_deref());
        if !self.c.rcps {
            // PH, fused and unfused alike: s = h + r, n = Norm(s).
            let s = match r {
                Some(r) => add(h, r),
                None => h.clone(),
            };
            let n = self.norm(&s, w, b);
            return (self.bimamba(layer, &n), s);
        }
        let (h_a, h_b) = halves(h);
        let (s_a, s_b) = match r {
            Some(r) => {
                let (r_a, r_b) = halves(r);
                (add(&h_a, &r_a), add(&h_b, &r_b))
            }
            None => (h_a, h_b),
        };
        let (residual, n) = if self.c.fused {
            // RCPSMambaBlock, fused: the halves are swapped.
            let n_fwd = self.norm(&s_b, w, b);
            let n_rc = rev_c(&self.norm(&rev_c(&s_a), w, b));
            (cat(&s_b, &s_a), cat(&n_fwd, &n_rc))
        } else {
            // RCPSAddNormWrapper: no swap; it flips positions and channels.
            let n_fwd = self.norm(&s_a, w, b);
            let n_rc = flip_lc(&self.norm(&flip_lc(&s_b), w, b));
            (cat(&s_a, &s_b), cat(&n_fwd, &n_rc))
        };
        // RCPSWrapper: the same BiMamba on both halves, the second flipped.
        let (n_a, n_b) = halves(&n);
        let out_a = self.bimamba(layer, &n_a);
        let out_b = flip_lc(&self.bimamba(layer, &flip_lc(&n_b)));
        (cat(&out_a, &out_b), residual)
    }

    /// Final norm (section 4, no swap).
    fn final_norm(&self, h: &Act, r: &Act) -> Act {
        let (w, b) = (&self.norm_f_w[..], self.norm_f_b.as_deref());
        let s = add(h, r);
        if !self.c.rcps {
            return self.norm(&s, w, b);
        }
        let (s_a, s_b) = halves(&s);
        cat(
            &self.norm(&s_a, w, b),
            &rev_c(&self.norm(&rev_c(&s_b), w, b)),
        )
    }

    /// Embedding, every block's `(hidden, residual)`, final hidden.
    fn forward(&self, ids: &[usize]) -> (Act, Vec<(Act, Act)>, Act) {
        let e = self.embed(ids);
        let mut h = e.clone();
        let mut r: Option<Act> = None;
        let mut trace = Vec::new();
        for layer in &self.layers {
            let (h2, r2) = self.block(layer, &h, r.as_ref());
            trace.push((h2.clone(), r2.clone()));
            h = h2;
            r = Some(r2);
        }
        let out = self.final_norm(&h, r.as_ref().expect("n_layer >= 1"));
        (e, trace, out)
    }

    /// Section 7, masked-LM head tied to the embedding.
    fn lm_logits(&self, out: &Act) -> Act {
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        if !self.c.rcps {
            return out
                .iter()
                .map(|row| self.emb.iter().map(|e| dot(row, e)).collect())
                .collect();
        }
        let (out_a, out_b) = halves(out);
        let out_b_rc = rev_c(&out_b);
        (0..out.len())
            .map(|l| {
                (0..self.c.vocab)
                    .map(|v| {
                        dot(&out_a[l], &self.emb[v]) + dot(&out_b_rc[l], &self.emb[self.c.comp[v]])
                    })
                    .collect()
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Naive building blocks.
// ---------------------------------------------------------------------------

fn rev_l(x: &Act) -> Act {
    x.iter().rev().cloned().collect()
}

fn rev_c(x: &Act) -> Act {
    x.iter()
        .map(|row| row.iter().rev().copied().collect())
        .collect()
}

fn flip_lc(x: &Act) -> Act {
    rev_l(&rev_c(x))
}

fn halves(x: &Act) -> (Act, Act) {
    let w = x[0].len() / 2;
    (
        x.iter().map(|r| r[..w].to_vec()).collect(),
        x.iter().map(|r| r[w..].to_vec()).collect(),
    )
}

fn cat(a: &Act, b: &Act) -> Act {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().chain(y).copied().collect())
        .collect()
}

fn zip_with(a: &Act, b: &Act, f: impl Fn(f64, f64) -> f64) -> Act {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(&p, &q)| f(p, q)).collect())
        .collect()
}

fn add(a: &Act, b: &Act) -> Act {
    zip_with(a, b, |p, q| p + q)
}

/// `x W^T (+ b)`.
fn linear(x: &Act, w: &Mat, b: Option<&[f64]>) -> Act {
    x.iter()
        .map(|row| {
            w.iter()
                .enumerate()
                .map(|(o, wr)| {
                    let acc: f64 = wr.iter().zip(row).map(|(p, q)| p * q).sum();
                    acc + b.map_or(0.0, |b| b[o])
                })
                .collect()
        })
        .collect()
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// `log(1 + exp(x))`, identity above 20 (section 6 step 4).
fn softplus(x: f64) -> f64 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// RMSNorm (no bias) or LayerNorm with biased variance, per position.
fn norm_rows(x: &Act, w: &[f64], b: Option<&[f64]>, rms: bool, eps: f64) -> Act {
    x.iter()
        .map(|row| {
            let n = row.len() as f64;
            if rms {
                let ms = row.iter().map(|v| v * v).sum::<f64>() / n;
                let s = 1.0 / (ms + eps).sqrt();
                row.iter().zip(w).map(|(v, w)| v * s * w).collect()
            } else {
                let mean = row.iter().sum::<f64>() / n;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                let s = 1.0 / (var + eps).sqrt();
                let b = b.expect("LayerNorm has a bias");
                row.iter()
                    .zip(w)
                    .zip(b)
                    .map(|((v, w), b)| (v - mean) * s * w + b)
                    .collect()
            }
        })
        .collect()
}

/// One Mamba direction on `x` `[L, d]`, section 6 step by step.
fn mamba(c: &RefConfig, m: &MambaW, x: &Act) -> Act {
    let (di, k, n, r) = (c.d_inner, c.d_conv, c.d_state, c.dt_rank);
    let len = x.len();
    // 1. in_proj, split into xi and z.
    let xz = linear(x, &m.w_in, m.b_in.as_deref());
    let xi: Act = xz.iter().map(|row| row[..di].to_vec()).collect();
    let z: Act = xz.iter().map(|row| row[di..].to_vec()).collect();
    // 2. Depthwise causal conv with zero left padding, then SiLU.
    let u: Act = (0..len)
        .map(|l| {
            (0..di)
                .map(|ch| {
                    let mut acc = m.conv_b.as_ref().map_or(0.0, |b| b[ch]);
                    for kk in 0..k {
                        let src = l as isize - (k as isize - 1) + kk as isize;
                        if src >= 0 {
                            acc += m.conv_w[ch][kk] * xi[src as usize][ch];
                        }
                    }
                    silu(acc)
                })
                .collect()
        })
        .collect();
    // 3. x_proj, split dt_low | B | C.
    let xd = linear(&u, &m.w_x, None);
    let dt_low: Act = xd.iter().map(|row| row[..r].to_vec()).collect();
    let bm: Act = xd.iter().map(|row| row[r..r + n].to_vec()).collect();
    let cm: Act = xd.iter().map(|row| row[r + n..].to_vec()).collect();
    // 4. delta = softplus(dt_proj(dt_low)).
    let delta: Act = linear(&dt_low, &m.w_dt, Some(&m.b_dt))
        .into_iter()
        .map(|row| row.into_iter().map(softplus).collect())
        .collect();
    // 5. A = -exp(A_log).
    let a: Mat = m
        .a_log
        .iter()
        .map(|row| row.iter().map(|v| -v.exp()).collect())
        .collect();
    // 6-7. Scan, D skip, SiLU(z) gate.
    let mut state = vec![vec![0.0f64; n]; di];
    let mut y = vec![vec![0.0f64; di]; len];
    for l in 0..len {
        for ch in 0..di {
            let dl = delta[l][ch];
            let mut acc = 0.0;
            for s in 0..n {
                state[ch][s] = (dl * a[ch][s]).exp() * state[ch][s] + dl * bm[l][s] * u[l][ch];
                acc += state[ch][s] * cm[l][s];
            }
            y[l][ch] = (acc + m.d_skip[ch] * u[l][ch]) * silu(z[l][ch]);
        }
    }
    // 8. out_proj.
    linear(&y, &m.w_out, m.b_out.as_deref())
}

// ---------------------------------------------------------------------------
// The config grid.
// ---------------------------------------------------------------------------

/// One point of the grid. `strategy: None` writes JSON null.
#[derive(Clone, Debug)]
struct Variant {
    rcps: bool,
    fused: bool,
    rms: bool,
    bidirectional: bool,
    strategy: Option<&'static str>,
    tie: bool,
    bias: bool,
    conv_bias: bool,
    /// `None` = "auto".
    dt_rank: Option<usize>,
    d_state: usize,
    d_conv: usize,
    expand: usize,
    /// `(vocab_size, pad_vocab_size_multiple)`.
    vocab: (usize, usize),
    d_model: usize,
    residual_in_fp32: bool,
}

impl Variant {
    fn config(&self) -> Value {
        let mut c = published_config(self.rcps, self.d_model, 2);
        let (vocab, multiple) = self.vocab;
        // The unpadded map, as a fresh (not yet saved) config would list it.
        let comp: serde_json::Map<String, Value> = (0..vocab)
            .map(|i| {
                let to = match i {
                    7 => 10,
                    10 => 7,
                    8 => 9,
                    9 => 8,
                    other => other,
                };
                (i.to_string(), json!(to))
            })
            .collect();
        c["vocab_size"] = json!(vocab);
        c["pad_vocab_size_multiple"] = json!(multiple);
        c["complement_map"] = Value::Object(comp);
        c["fused_add_norm"] = json!(self.fused);
        c["rms_norm"] = json!(self.rms);
        c["residual_in_fp32"] = json!(self.residual_in_fp32);
        c["bidirectional"] = json!(self.bidirectional);
        c["bidirectional_strategy"] = json!(self.strategy);
        c["bidirectional_weight_tie"] = json!(self.tie);
        c["ssm_cfg"] = json!({
            "d_state": self.d_state,
            "d_conv": self.d_conv,
            "expand": self.expand,
            "dt_rank": self.dt_rank.map_or(json!("auto"), |r| json!(r)),
            "conv_bias": self.conv_bias,
            "bias": self.bias,
            "use_fast_path": true,
        });
        c
    }

    /// `flag=value` labels, for the coverage assertion and the log.
    fn labels(&self) -> Vec<String> {
        vec![
            format!("fused_add_norm={}", self.fused),
            format!("rms_norm={}", self.rms),
            format!("bidirectional={}", self.bidirectional),
            format!("strategy={}", self.strategy.unwrap_or("null")),
            format!("weight_tie={}", self.tie),
            format!("bias={}", self.bias),
            format!("conv_bias={}", self.conv_bias),
            format!(
                "dt_rank={}",
                self.dt_rank.map_or("auto".to_string(), |r| r.to_string())
            ),
            format!("d_state={}", self.d_state),
            format!("d_conv={}", self.d_conv),
            format!("expand={}", self.expand),
            format!("vocab={}/{}", self.vocab.0, self.vocab.1),
            format!("d_model={}", self.d_model),
            format!("residual_in_fp32={}", self.residual_in_fp32),
        ]
    }
}

/// rcps × bidirectional × fused × rms × (strategy × tie when bidirectional):
/// 28 points per rcps value. The SSM knobs cycle with co-prime-ish periods
/// of the per-rcps index, so both rcps values get the same knob sequence.
fn grid() -> Vec<Variant> {
    let mut out = Vec::new();
    for rcps in [false, true] {
        let mut k = 0usize;
        for bidirectional in [true, false] {
            for fused in [true, false] {
                for rms in [true, false] {
                    let strategies: &[Option<&'static str>] = if bidirectional {
                        &[Some("add"), Some("ew_multiply"), None]
                    } else {
                        &[Some("add")]
                    };
                    for &strategy in strategies {
                        for tie in if bidirectional {
                            &[true, false][..]
                        } else {
                            &[true][..]
                        } {
                            out.push(Variant {
                                rcps,
                                fused,
                                rms,
                                bidirectional,
                                strategy,
                                tie: *tie,
                                bias: k % 2 == 1,
                                conv_bias: k % 3 != 2,
                                dt_rank: if (k / 2) % 2 == 1 { Some(3) } else { None },
                                d_state: if k % 5 < 2 { 8 } else { 16 },
                                d_conv: if (k / 3) % 2 == 0 { 3 } else { 4 },
                                expand: if k % 4 == 3 { 1 } else { 2 },
                                vocab: [(12, 8), (16, 8), (12, 1)][k % 3],
                                d_model: if (k / 5) % 2 == 0 { 8 } else { 12 },
                                residual_in_fp32: k % 2 == 0,
                            });
                            k += 1;
                        }
                    }
                }
            }
        }
    }
    out
}

/// `max |got - want| / max |want|`.
fn rel_err(got: &[f32], want: &Act) -> f64 {
    let flat: Vec<f64> = want.iter().flatten().copied().collect();
    assert_eq!(got.len(), flat.len(), "output size");
    let scale = flat.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(&flat)
        .fold(0.0f64, |m, (&g, &w)| m.max((g as f64 - w).abs()));
    diff / scale.max(f64::MIN_POSITIVE)
}

/// ~40 tokens: mostly nucleotides (N included), plus a few special ids,
/// which are fixed points of the complement map.
fn random_ids(rng: &mut StdRng, len: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..len)
        .map(|_| {
            if rng.random_range(0..10) == 0 {
                [1u32, 3, 6][rng.random_range(0..3)]
            } else {
                7 + rng.random_range(0..5u32)
            }
        })
        .collect();
    ids[len / 2] = 11; // at least one N
    ids
}

#[test]
fn reference_matches_strand_on_config_grid() {
    let start = Instant::now();
    let grid = grid();

    // Every flag value appears with rcps both true and false.
    let mut seen: [BTreeSet<String>; 2] = Default::default();
    for v in &grid {
        seen[v.rcps as usize].extend(v.labels());
    }
    assert_eq!(seen[0], seen[1], "flag values differ between PH and PS");
    for must in [
        "fused_add_norm=false",
        "rms_norm=false",
        "bidirectional=false",
        "strategy=ew_multiply",
        "strategy=null",
        "weight_tie=false",
        "bias=true",
        "conv_bias=false",
        "dt_rank=3",
        "dt_rank=auto",
        "d_state=8",
        "d_conv=3",
        "expand=1",
        "vocab=12/8",
        "d_model=12",
    ] {
        assert!(seen[0].contains(must), "grid lacks {must}");
    }

    let tmp = tempfile::tempdir().expect("temp dir");
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut worst_hidden = (0.0f64, String::new());
    let mut worst_logits = (0.0f64, String::new());
    for (idx, v) in grid.iter().enumerate() {
        let dir = tmp.path().join(format!("v{idx}"));
        write_checkpoint(&dir, &v.config(), 1000 + idx as u64).expect("write checkpoint");
        let what = format!("variant {idx} (rcps={} {})", v.rcps, v.labels().join(" "));
        let ids = random_ids(&mut rng, 40);
        let (e_hidden, e_logits) = compare(&dir, &ids, &what);
        if e_hidden > worst_hidden.0 {
            worst_hidden = (e_hidden, what.clone());
        }
        if e_logits > worst_logits.0 {
            worst_logits = (e_logits, what);
        }
    }
    println!(
        "{} variants in {:.2?}\nworst hidden rel err {:.2e}: {}\nworst logits rel err {:.2e}: {}",
        grid.len(),
        start.elapsed(),
        worst_hidden.0,
        worst_hidden.1,
        worst_logits.0,
        worst_logits.1,
    );
}

/// Runs strand and the reference on the checkpoint in `dir`, asserts every
/// stage is within [`REL_TOL`], returns the (hidden, logits) relative errors.
fn compare(dir: &Path, ids: &[u32], what: &str) -> (f64, f64) {
    let reference = RefModel::load(dir);
    let model = Model::load_dir(dir, "variant", common::place())
        .unwrap_or_else(|e| panic!("{what}: strand refuses it: {e}"));
    assert_eq!(
        model.config.vocab_size, reference.c.vocab,
        "{what}: padded vocab"
    );
    let width = reference.c.d * if reference.c.rcps { 2 } else { 1 };
    assert_eq!(model.width(), width, "{what}: width");

    let ids_usize: Vec<usize> = ids.iter().map(|&t| t as usize).collect();
    let (r_embed, r_trace, r_hidden) = reference.forward(&ids_usize);
    let r_logits = reference.lm_logits(&r_hidden);

    let e_embed = rel_err(
        &model
            .embed(ids)
            .unwrap_or_else(|e| panic!("{what}: embed: {e}")),
        &r_embed,
    );
    // Per-block streams localise a failure to the block that introduced it.
    let mut e_trace = 0.0f64;
    let hidden = common::traced(&model, ids, |i, st| {
        let (rh, rr) = &r_trace[i];
        let eh = rel_err(&st.hidden, rh);
        let er = st
            .residual
            .as_ref()
            .map_or(f64::INFINITY, |r| rel_err(r, rr));
        assert!(
            eh <= REL_TOL && er <= REL_TOL,
            "{what}: block {i}: hidden rel err {eh:.2e}, residual rel err {er:.2e}"
        );
        e_trace = e_trace.max(eh).max(er);
    })
    .unwrap_or_else(|e| panic!("{what}: forward: {e}"));
    let logits = model
        .lm_logits(&hidden)
        .unwrap_or_else(|e| panic!("{what}: lm logits: {e}"));
    let e_hidden = rel_err(&hidden, &r_hidden);
    let e_logits = rel_err(&logits, &r_logits);
    println!(
        "{what}: embed {e_embed:.1e} blocks {e_trace:.1e} hidden {e_hidden:.1e} logits {e_logits:.1e}"
    );
    assert!(
        e_embed <= REL_TOL,
        "{what}: embedding rel err {e_embed:.2e}"
    );
    assert!(e_hidden <= REL_TOL, "{what}: hidden rel err {e_hidden:.2e}");
    assert!(e_logits <= REL_TOL, "{what}: logits rel err {e_logits:.2e}");
    (e_hidden, e_logits)
}

/// Rewrites the f32 tensors of `model.safetensors` whose name satisfies
/// `select`, value by value (index within the tensor, old value).
fn patch_checkpoint(dir: &Path, select: impl Fn(&str) -> bool, f: impl Fn(usize, f32) -> f32) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).expect("read model.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("parse model.safetensors");
    let owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let mut data = view.data().to_vec();
            if view.dtype() == Dtype::F32 && select(&name) {
                for (i, b) in data.chunks_exact_mut(4).enumerate() {
                    let old = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    b.copy_from_slice(&f(i, old).to_le_bytes());
                }
            }
            (name, view.dtype(), view.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(name, dtype, shape, data)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
                .expect("unchanged sizes");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).expect("write model.safetensors");
}

/// Step sizes far outside the initialisation range: `dt_proj.bias` set to
/// values around and far beyond softplus's threshold of 20 (and deep in its
/// negative tail), so `delta` is large (the state forgets at once) or
/// ~1e-13. Checks strand stays finite and matches the f64 reference there.
#[test]
fn extreme_step_sizes_match_reference() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut rng = StdRng::seed_from_u64(0xd7);
    let extremes = [-30.0f32, 19.5, 20.0, 20.5, 25.0, 60.0, 100.0, 0.0];
    for rcps in [false, true] {
        let dir = tmp.path().join(format!("dt-{rcps}"));
        write_checkpoint(&dir, &published_config(rcps, 8, 2), 99).expect("write checkpoint");
        patch_checkpoint(
            &dir,
            |name| name.ends_with("dt_proj.bias"),
            |i, _| extremes[i % extremes.len()],
        );
        let ids = random_ids(&mut rng, 40);
        compare(&dir, &ids, &format!("extreme dt_proj.bias, rcps={rcps}"));
    }
}

/// Section 5: only `add`, `ew_multiply` (and null) exist upstream; strand
/// must say so with a load error, not a panic or a silent fallback.
#[test]
fn concat_strategy_is_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for rcps in [false, true] {
        let dir = tmp.path().join(format!("concat-{rcps}"));
        // Write a valid checkpoint, then edit only the config.
        let mut config = published_config(rcps, 8, 2);
        write_checkpoint(&dir, &config, 7).expect("write checkpoint");
        config["bidirectional_strategy"] = json!("concat");
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string_pretty(&config).expect("serialise"),
        )
        .expect("write config.json");
        let outcome = std::panic::catch_unwind(|| {
            Model::load_dir(&dir, "concat", common::place()).map(|_| ())
        });
        match outcome {
            Err(_) => panic!("rcps={rcps}: loading a concat config panicked"),
            Ok(Ok(())) => panic!("rcps={rcps}: a concat config was accepted"),
            Ok(Err(e)) => println!("rcps={rcps}: refused: {e}"),
        }
    }
}
