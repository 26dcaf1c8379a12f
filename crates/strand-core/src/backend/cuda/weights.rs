//! The model's weights on the GPU. GEMM weights are stored in the
//! activation precision (bf16 or f32); everything the kernels read
//! element by element (norms, conv, dt_proj, A, D, embedding) stays f32.

use half::bf16;

use super::device::{Buf, Dtype, Gpu};
use crate::error::Result;
use crate::model::weights::{Layer, Linear, Norm, Ssm, Weights};

pub struct DLinear {
    pub w: Buf,
    pub b: Option<Buf>,
    pub out: usize,
    pub inp: usize,
}

pub struct DNorm {
    pub w: Buf,
    pub b: Option<Buf>,
}

pub struct DSsm {
    pub conv_w: Buf,
    pub conv_b: Option<Buf>,
    pub x_proj: DLinear,
    pub dt_w: Buf,
    pub dt_b: Buf,
    /// `A · log2(e)`, `[di, N]`: the scan computes `exp(δA)` as `exp2`.
    pub at2: Buf,
    pub d: Buf,
}

/// One block. Projections sit in the same slots as in [`Layer`];
/// [`DLayer::twin`] maps a host projection to its device copy.
pub struct DLayer {
    pub norm: DNorm,
    in_fwd: DLinear,
    out_fwd: DLinear,
    in_rev: Option<DLinear>,
    out_rev: Option<DLinear>,
    out_fwd_flip: Option<DLinear>,
    out_rev_flip: Option<DLinear>,
    /// bf16 only: `[W | W]` (K = 2·d_inner) of `out_fwd` and
    /// `out_fwd_flip`, a fused half's one tensor-core `out_proj` over both
    /// directions' outputs side by side. An f32 GEMM is FMA-bound, so f32
    /// adds the two outputs first and keeps K = d_inner.
    out_fwd_pair: Option<DLinear>,
    out_fwd_flip_pair: Option<DLinear>,
    /// Forward weights, then reverse weights (plan.rs's `ssm_index`).
    pub ssm: Vec<DSsm>,
}

impl DLayer {
    /// The device copy of `lin`, which must be one of `host`'s projections
    /// (the plan in `model::plan` hands out references into the layer).
    pub fn twin(&self, host: &Layer, lin: &Linear) -> &DLinear {
        let same = |h: Option<&Linear>| h.is_some_and(|h| std::ptr::eq(h, lin));
        let pairs = [
            (Some(&host.in_fwd), Some(&self.in_fwd)),
            (Some(&host.out_fwd), Some(&self.out_fwd)),
            (host.in_rev.as_ref(), self.in_rev.as_ref()),
            (host.out_rev.as_ref(), self.out_rev.as_ref()),
            (host.out_fwd_flip.as_ref(), self.out_fwd_flip.as_ref()),
            (host.out_rev_flip.as_ref(), self.out_rev_flip.as_ref()),
        ];
        pairs
            .into_iter()
            .find(|(h, _)| same(*h))
            .and_then(|(_, d)| d)
            .expect("plans only use the layer's own projections")
    }

    /// The `[W | W]` copy of the output projection `lin` (one of the
    /// forward ones, as fused plans use), where there is one (bf16).
    pub fn pair(&self, host: &Layer, lin: &Linear) -> Option<&DLinear> {
        if std::ptr::eq(lin, &host.out_fwd) {
            self.out_fwd_pair.as_ref()
        } else {
            assert!(
                host.out_fwd_flip
                    .as_ref()
                    .is_some_and(|f| std::ptr::eq(f, lin)),
                "fused plans use a forward output projection"
            );
            self.out_fwd_flip_pair.as_ref()
        }
    }
}

pub struct DWeights {
    pub embedding: Buf,
    pub complement_map: Buf,
    pub layers: Vec<DLayer>,
    pub norm_f: DNorm,
    /// Always f32: logits are computed at full precision.
    pub lm_head: DLinear,
}

impl DWeights {
    pub fn upload(gpu: &Gpu, w: &Weights, act: Dtype) -> Result<DWeights> {
        let up = Uploader { gpu, act };
        Ok(DWeights {
            embedding: gpu.upload(&w.embedding)?,
            complement_map: gpu.upload(&w.complement_map)?,
            layers: w
                .layers
                .iter()
                .map(|l| up.layer(l))
                .collect::<Result<_>>()?,
            norm_f: up.norm(&w.norm_f)?,
            lm_head: Uploader {
                gpu,
                act: Dtype::F32,
            }
            .linear(&w.lm_head)?,
        })
    }
}

struct Uploader<'a> {
    gpu: &'a Gpu,
    act: Dtype,
}

impl Uploader<'_> {
    fn f32(&self, v: &[f32]) -> Result<Buf> {
        self.gpu.upload(v)
    }

    fn opt(&self, v: Option<&Vec<f32>>) -> Result<Option<Buf>> {
        v.map(|v| self.f32(v)).transpose()
    }

    fn linear(&self, l: &Linear) -> Result<DLinear> {
        let w = match self.act {
            Dtype::F32 => self.gpu.upload(&l.w)?,
            Dtype::Bf16 => {
                let bits: Vec<u16> = l.w.iter().map(|&x| bf16::from_f32(x).to_bits()).collect();
                self.gpu.upload(&bits)?
            }
        };
        Ok(DLinear {
            w,
            b: self.opt(l.b.as_ref())?,
            out: l.out,
            inp: l.inp,
        })
    }

    /// `[W | W]`: each row of `l` twice, the bias once; bf16 only (see
    /// `DLayer::out_fwd_pair`).
    fn pair(&self, l: &Linear) -> Result<Option<DLinear>> {
        if self.act != Dtype::Bf16 {
            return Ok(None);
        }
        let w: Vec<f32> =
            l.w.chunks(l.inp)
                .flat_map(|row| row.iter().chain(row).copied())
                .collect();
        self.linear(&Linear {
            w,
            b: l.b.clone(),
            out: l.out,
            inp: 2 * l.inp,
        })
        .map(Some)
    }

    fn opt_linear(&self, l: Option<&Linear>) -> Result<Option<DLinear>> {
        l.map(|l| self.linear(l)).transpose()
    }

    fn norm(&self, n: &Norm) -> Result<DNorm> {
        Ok(DNorm {
            w: self.f32(&n.weight)?,
            b: self.opt(n.bias.as_ref())?,
        })
    }

    fn ssm(&self, s: &Ssm) -> Result<DSsm> {
        let at2: Vec<f32> = s.a.iter().map(|a| a * std::f32::consts::LOG2_E).collect();
        Ok(DSsm {
            conv_w: self.f32(&s.conv_w)?,
            conv_b: self.opt(s.conv_b.as_ref())?,
            x_proj: self.linear(&s.x_proj)?,
            dt_w: self.f32(&s.dt_w)?,
            dt_b: self.f32(&s.dt_b)?,
            at2: self.f32(&at2)?,
            d: self.f32(&s.d)?,
        })
    }

    fn layer(&self, l: &Layer) -> Result<DLayer> {
        Ok(DLayer {
            norm: self.norm(&l.norm)?,
            in_fwd: self.linear(&l.in_fwd)?,
            out_fwd: self.linear(&l.out_fwd)?,
            in_rev: self.opt_linear(l.in_rev.as_ref())?,
            out_rev: self.opt_linear(l.out_rev.as_ref())?,
            out_fwd_flip: self.opt_linear(l.out_fwd_flip.as_ref())?,
            out_rev_flip: self.opt_linear(l.out_rev_flip.as_ref())?,
            out_fwd_pair: self.pair(&l.out_fwd)?,
            out_fwd_flip_pair: match &l.out_fwd_flip {
                Some(f) => self.pair(f)?,
                None => None,
            },
            ssm: std::iter::once(&l.ssm_fwd)
                .chain(l.ssm_rev.as_ref())
                .map(|s| self.ssm(s))
                .collect::<Result<_>>()?,
        })
    }
}
