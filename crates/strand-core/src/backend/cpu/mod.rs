//! The CPU backend: f32 throughout, rayon across rows and channels, the
//! `gemm` crate for projections and lane-parallel kernels for the scan.
//!
//! Memory per forward pass is O(L·(width + di)): the stream (`hidden`,
//! `residual`, `[L, width]` each; the norm output overwrites `hidden`), and
//! per half one `xz [L, 2di]`, one `y [L, di]` and one `xd [L, R+2N]`,
//! reused across blocks. What the runner checks and `--dry-run` prints is
//! `crate::memory::PassMemory`, which counts these buffers.

pub(crate) mod gemm;
pub(crate) mod norm;
pub(crate) mod scan;
pub(crate) mod simd;

use std::sync::Arc;

use rayon::prelude::*;

use self::norm::{norm_row, Flip};
use self::scan::{Isa, Pass, SsmLanes};
use super::{Backend, Stream};
use crate::error::Result;
use crate::model::config::{BiStrategy, Config};
use crate::model::plan::{half_plan, HalfPlan, ScanPass};
use crate::model::weights::Weights;

/// Runs a model on the CPU.
pub struct CpuBackend {
    cfg: Config,
    w: Arc<Weights>,
    /// Per layer, per SSM (0 forward weights, 1 reverse weights).
    ssm: Vec<Vec<SsmLanes>>,
    isa: Isa,
}

impl CpuBackend {
    pub fn new(cfg: &Config, w: Arc<Weights>) -> CpuBackend {
        let ssm = w
            .layers
            .iter()
            .map(|l| {
                std::iter::once(&l.ssm_fwd)
                    .chain(l.ssm_rev.as_ref())
                    .map(SsmLanes::new)
                    .collect()
            })
            .collect();
        CpuBackend {
            cfg: cfg.clone(),
            w,
            ssm,
            isa: Isa::detect(),
        }
    }

    fn threads(&self) -> usize {
        rayon::current_num_threads()
    }

    /// Runs one half's mixer: reads its input from `x` (columns
    /// `col..col+d` of `h`, row stride `width`) and overwrites the same
    /// columns with the mixer output.
    fn mixer_half(
        &self,
        layer: usize,
        plan: &HalfPlan,
        h: &mut [f32],
        col: usize,
        len: usize,
        scratch: &mut Scratch,
    ) {
        let cfg = &self.cfg;
        let (d, di, width) = (cfg.d_model, cfg.d_inner(), cfg.width());
        let xd_w = cfg.dt_rank + 2 * cfg.d_state;
        let t = self.threads();
        let Scratch { xz, y, xd, u } = scratch;
        grow(xz, len * 2 * di);
        grow(y, len * di);
        grow(u, len * di);
        grow(xd, len * xd_w);
        let (xz, y, xd, u) = (
            &mut xz[..len * 2 * di],
            &mut y[..len * di],
            &mut xd[..len * xd_w],
            &mut u[..len * di],
        );
        fn pass<'a>(
            ssm: &'a SsmLanes,
            p: &ScanPass,
            xz: &'a [f32],
            len: usize,
            accumulate: bool,
            gate: bool,
        ) -> Pass<'a> {
            Pass {
                ssm,
                xz,
                ld_xz: xz.len() / len,
                len,
                reverse: p.reverse,
                accumulate,
                gate,
            }
        }
        let ssm = |p: &ScanPass| &self.ssm[layer][p.ssm_index];

        if plan.fused {
            gemm::linear(
                len,
                &h[col..],
                width,
                plan.passes[0].in_proj,
                xz,
                2 * di,
                false,
                t,
            );
            let last = plan.passes.len() - 1;
            for (i, p) in plan.passes.iter().enumerate() {
                scan::run(
                    self.isa,
                    &pass(ssm(p), p, xz, len, i > 0, i == last),
                    scan::Scratch { xd, u, y },
                    t,
                );
            }
            let out = plan.passes[0].out_proj;
            gemm::linear(len, y, di, out, &mut h[col..], width, false, t);
            if let Some(b) = &out.b {
                // `linear` added the bias once; each further pass adds it again.
                for row in h[col..].chunks_mut(width).take(len) {
                    for (o, &bi) in row[..d].iter_mut().zip(b) {
                        *o += bi * (plan.passes.len() - 1) as f32;
                    }
                }
            }
            return;
        }

        // General path (untied projections or ew_multiply): each pass has
        // its own projections; outputs are combined afterwards.
        let mut x = vec![0.0f32; len * d];
        for (dst, src) in x.chunks_exact_mut(d).zip(h[col..].chunks(width)) {
            dst.copy_from_slice(&src[..d]);
        }
        let mut other = vec![0.0f32; len * d];
        for (i, p) in plan.passes.iter().enumerate() {
            gemm::linear(len, &x, d, p.in_proj, xz, 2 * di, false, t);
            scan::run(
                self.isa,
                &pass(ssm(p), p, xz, len, false, true),
                scan::Scratch { xd, u, y },
                t,
            );
            if i == 0 {
                gemm::linear(len, y, di, p.out_proj, &mut h[col..], width, false, t);
            } else {
                gemm::linear(len, y, di, p.out_proj, &mut other, d, false, t);
                let mul = plan.strategy == BiStrategy::Multiply;
                h[col..]
                    .par_chunks_mut(width)
                    .zip(other.par_chunks(d))
                    .for_each(|(hr, o)| {
                        for (a, &b) in hr[..d].iter_mut().zip(o) {
                            *a = if mul { *a * b } else { *a + b };
                        }
                    });
            }
        }
    }
}

/// Work buffers of the mixer, allocated once per forward pass and reused
/// by every block (fresh allocations would page-fault on every block).
#[derive(Default)]
pub struct Scratch {
    xz: Vec<f32>,
    y: Vec<f32>,
    xd: Vec<f32>,
    u: Vec<f32>,
}

fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// The CPU's residual stream plus its reusable work buffers.
pub struct CpuState {
    stream: Stream,
    scratch: Scratch,
}

impl Backend for CpuBackend {
    type State = CpuState;

    fn embed(&self, ids: &[u32]) -> Result<CpuState> {
        let (d, v) = (self.cfg.d_model, self.cfg.vocab_size);
        let width = self.cfg.width();
        let e = &self.w.embedding;
        let comp = &self.w.complement_map;
        let mut hidden = vec![0.0f32; ids.len() * width];
        for (row, &id) in hidden.chunks_exact_mut(width).zip(ids) {
            let id = id as usize;
            assert!(id < v, "token id {id} outside the vocabulary");
            row[..d].copy_from_slice(&e[id * d..(id + 1) * d]);
            if self.cfg.rcps {
                // Second half: the channel-reversed embedding of the complement.
                let c = comp[id] as usize;
                for (o, &x) in row[d..].iter_mut().zip(e[c * d..(c + 1) * d].iter().rev()) {
                    *o = x;
                }
            }
        }
        Ok(CpuState {
            stream: Stream {
                len: ids.len(),
                width,
                hidden,
                residual: None,
            },
            scratch: Scratch::default(),
        })
    }

    fn block(&self, layer: usize, state: &mut CpuState) -> Result<()> {
        let st = &mut state.stream;
        let cfg = &self.cfg;
        let (d, width, len) = (cfg.d_model, st.width, st.len);
        let norm = &self.w.layers[layer].norm;
        let eps = cfg.norm_epsilon;
        // Fused RCPS blocks swap the halves of the stream (spec section 4).
        let swap = cfg.rcps && cfg.fused_add_norm;
        // Block 0 has no residual yet: the reference then uses the input itself.
        let first = st.residual.is_none();
        let mut residual = st.residual.take().unwrap_or_else(|| vec![0.0; len * width]);
        st.hidden
            .par_chunks_mut(width)
            .zip(residual.par_chunks_mut(width))
            .for_each_init(
                || vec![0.0f32; width],
                |s, (h, r)| {
                    for j in 0..width {
                        s[j] = if first { h[j] } else { h[j] + r[j] };
                    }
                    if !cfg.rcps {
                        r.copy_from_slice(s);
                        norm_row(s, norm, eps, Flip::None, h);
                        return;
                    }
                    let (sa, sb) = s.split_at(d);
                    let (p, q) = if swap { (sb, sa) } else { (sa, sb) };
                    r[..d].copy_from_slice(p);
                    r[d..].copy_from_slice(q);
                    let (ha, hb) = h.split_at_mut(d);
                    norm_row(p, norm, eps, Flip::None, ha);
                    // Half B's mixer input, already channel-reversed (x' in plan.rs).
                    norm_row(q, norm, eps, Flip::Input, hb);
                },
            );
        st.residual = Some(residual);

        let l = &self.w.layers[layer];
        let halves = if cfg.rcps { 2 } else { 1 };
        for half in 0..halves {
            let plan = half_plan(cfg, l, half);
            self.mixer_half(
                layer,
                &plan,
                &mut st.hidden,
                half * d,
                len,
                &mut state.scratch,
            );
        }
        Ok(())
    }

    fn stream(&self, st: &CpuState) -> Result<Stream> {
        Ok(st.stream.clone())
    }

    fn stream_at(&self, st: &CpuState, out: &mut super::HostBuffer, at: usize) -> Result<()> {
        // Straight from the state: no copy of the stream first.
        let n = st.stream.hidden.len();
        st.stream.sum_into(&mut out[at..at + n]);
        Ok(())
    }

    fn final_norm(&self, st: CpuState) -> Result<Vec<f32>> {
        let st = st.stream;
        let cfg = &self.cfg;
        let (d, width) = (cfg.d_model, st.width);
        let norm = &self.w.norm_f;
        let eps = cfg.norm_epsilon;
        let mut hidden = st.hidden;
        let residual = st.residual;
        hidden.par_chunks_mut(width).enumerate().for_each_init(
            || vec![0.0f32; width],
            |s, (i, h)| {
                match &residual {
                    Some(r) => {
                        for j in 0..width {
                            s[j] = h[j] + r[i * width + j];
                        }
                    }
                    None => s.copy_from_slice(h),
                }
                let (ha, hb) = h.split_at_mut(d.min(width));
                norm_row(&s[..d], norm, eps, Flip::None, ha);
                if cfg.rcps {
                    norm_row(&s[d..], norm, eps, Flip::Weight, hb);
                }
            },
        );
        Ok(hidden)
    }

    fn lm_logits(&self, hidden: &[f32], len: usize) -> Result<Vec<f32>> {
        let v = self.cfg.vocab_size;
        let mut logits = vec![0.0f32; len * v];
        let head = &self.w.lm_head;
        gemm::linear(
            len,
            hidden,
            head.inp,
            head,
            &mut logits,
            v,
            false,
            self.threads(),
        );
        Ok(logits)
    }

    fn describe(&self) -> String {
        format!("cpu ({} threads, {:?} kernels)", self.threads(), self.isa).to_lowercase()
    }

    fn free_bytes(&self) -> Result<u64> {
        let available = super::host_available_bytes().ok_or_else(|| {
            crate::Error::Unsupported(
                "cannot tell how much memory is free (no /proc/meminfo)".into(),
            )
        })?;
        // Half: the host also holds the input, outputs and other jobs.
        Ok(available / 2)
    }
}
