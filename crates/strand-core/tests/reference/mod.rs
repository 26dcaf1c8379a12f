//! An independent float64 reference of the Caduceus model, written only
//! from `docs/caduceus-model.md` (the shared spec) and deliberately naive:
//! every flip the spec writes (revL, revC, flipLC, the PS half swap of the
//! fused block, the unfused `RCPSAddNormWrapper` path) is materialised as a
//! copy, the selective scan is the plain recurrence, and all arithmetic is
//! f64. It reads a checkpoint by the HF key names of spec section 9.

use std::path::Path;

use serde_json::Value;

/// Activations, `[L][channels]`.
pub type Act = Vec<Vec<f64>>;
/// A weight matrix, `[out][in]` as PyTorch stores `Linear.weight`.
pub type Mat = Vec<Vec<f64>>;

mod checkpoint;
pub use checkpoint::*;

// ---------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------

/// One Mamba direction (spec section 6).
pub struct MambaW {
    pub w_in: Mat,
    pub b_in: Option<Vec<f64>>,
    /// `[di][K]` (the `[di, 1, K]` depthwise kernel).
    pub conv_w: Mat,
    pub conv_b: Option<Vec<f64>>,
    pub w_x: Mat,
    pub w_dt: Mat,
    pub b_dt: Vec<f64>,
    pub a_log: Mat,
    pub d_skip: Vec<f64>,
    pub w_out: Mat,
    pub b_out: Option<Vec<f64>>,
}

impl MambaW {
    /// `proj` is the prefix `in_proj`/`out_proj` come from: the forward
    /// direction's own under weight tie (section 5: the same tensors).
    pub fn load(s: &Store, c: &RefConfig, p: &str, proj: &str) -> MambaW {
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

pub struct LayerW {
    pub norm_w: Vec<f64>,
    pub norm_b: Option<Vec<f64>>,
    pub fwd: MambaW,
    pub rev: Option<MambaW>,
}

pub struct RefModel {
    pub c: RefConfig,
    /// `[V][d]`; also the (tied) LM head.
    pub emb: Mat,
    pub layers: Vec<LayerW>,
    pub norm_f_w: Vec<f64>,
    pub norm_f_b: Option<Vec<f64>>,
}

impl RefModel {
    pub fn load(dir: &Path) -> RefModel {
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
    pub fn embed(&self, ids: &[usize]) -> Act {
        let lookup = |ids: &[usize]| -> Act { ids.iter().map(|&t| self.emb[t].clone()).collect() };
        let fwd = lookup(ids);
        if !self.c.rcps {
            return fwd;
        }
        let rc_ids: Vec<usize> = ids.iter().rev().map(|&t| self.c.comp[t]).collect();
        cat(&fwd, &flip_lc(&lookup(&rc_ids)))
    }

    pub fn norm(&self, x: &Act, w: &[f64], b: Option<&[f64]>) -> Act {
        norm_rows(x, w, b, self.c.rms, self.c.eps)
    }

    /// Section 5: `Mamba_fwd(x) (+|*) revL(Mamba_rev(revL(x)))`.
    pub fn bimamba(&self, layer: &LayerW, x: &Act) -> Act {
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
    pub fn block(&self, layer: &LayerW, h: &Act, r: Option<&Act>) -> (Act, Act) {
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
    pub fn final_norm(&self, h: &Act, r: &Act) -> Act {
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
    pub fn forward(&self, ids: &[usize]) -> (Act, Vec<(Act, Act)>, Act) {
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
    pub fn lm_logits(&self, out: &Act) -> Act {
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

pub fn rev_l(x: &Act) -> Act {
    x.iter().rev().cloned().collect()
}

pub fn rev_c(x: &Act) -> Act {
    x.iter()
        .map(|row| row.iter().rev().copied().collect())
        .collect()
}

pub fn flip_lc(x: &Act) -> Act {
    rev_l(&rev_c(x))
}

pub fn halves(x: &Act) -> (Act, Act) {
    let w = x[0].len() / 2;
    (
        x.iter().map(|r| r[..w].to_vec()).collect(),
        x.iter().map(|r| r[w..].to_vec()).collect(),
    )
}

pub fn cat(a: &Act, b: &Act) -> Act {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().chain(y).copied().collect())
        .collect()
}

pub fn zip_with(a: &Act, b: &Act, f: impl Fn(f64, f64) -> f64) -> Act {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(&p, &q)| f(p, q)).collect())
        .collect()
}

pub fn add(a: &Act, b: &Act) -> Act {
    zip_with(a, b, |p, q| p + q)
}

/// `x W^T (+ b)`.
pub fn linear(x: &Act, w: &Mat, b: Option<&[f64]>) -> Act {
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

pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// `log(1 + exp(x))`, identity above 20 (section 6 step 4).
pub fn softplus(x: f64) -> f64 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// RMSNorm (no bias) or LayerNorm with biased variance, per position.
pub fn norm_rows(x: &Act, w: &[f64], b: Option<&[f64]>, rms: bool, eps: f64) -> Act {
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
pub fn mamba(c: &RefConfig, m: &MambaW, x: &Act) -> Act {
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
