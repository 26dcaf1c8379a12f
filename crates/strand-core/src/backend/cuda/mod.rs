//! The CUDA backend: NVRTC-compiled kernels from `kernels/` plus cuBLAS
//! GEMMs, driving the same block plan as the CPU (`model::plan`).
//!
//! Per block: one fused add+norm kernel (writes the PS half swap and the RC
//! half's channel reversal directly), then per channel half one `in_proj`
//! GEMM, one fused conv+SiLU+`x_proj` launch for both directions (bf16 on
//! sm_80+; else per direction a conv pass and an `x_proj` GEMM), writing
//! each direction's rows in its walk order, one single-pass scan launch for
//! both directions, each writing
//! its gated output side by side, and one `out_proj` GEMM over both
//! (K = 2·d_inner). Nothing is ever flipped in memory.
//!
//! Layout: the mixer's per-channel buffers (`xz`, `xd`, `y`, `u`) are
//! channel-major (`[channels][ld]`, GEMMs read and write them transposed),
//! so a scan warp, which owns one channel, reads and writes contiguous
//! runs of steps; the residual stream stays row-major.
//!
//! Precision: with bf16, activations between kernels and GEMM operands are
//! bf16 (fp32 accumulation); the residual stream, norms, the scan state and
//! all scan arithmetic stay f32. With f32 everything is f32 and cuBLAS is
//! kept off TF32.
//!
//! Memory per pass is O(L·(width + di)): the stream (`hidden` act,
//! `residual` f32), `xz [2di, L]`, `y [2di, L]` and `xd [2, R+2N, L]`
//! (activation type), and a bounded `u` segment for the unfused `x_proj`; the formula
//! the runner checks is `crate::memory::PassMemory`, which
//! [`CudaBackend::alloc_state`] must stay in step with. Batch-1 PS passes
//! up to 262,144 tokens with the wide scan compiled also hold the second
//! half's `xz`, `xd` and `y` ("paired halves": one scan launch for all four
//! directions of a block), only where free memory allows beyond that
//! formula, so it stays an upper bound of what a pass must have.

mod cache;
mod device;
pub(crate) mod kernels;
mod launch;
mod mat;
mod mixer;
#[cfg(test)]
mod ops_tests;
pub(crate) mod probe;
mod weights;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use self::device::{Buf, Dtype, Gpu, Mat};
use self::kernels::*;
use self::weights::DWeights;
use super::{Backend, HostBuffer, Precision, Stream};
use crate::error::Result;
use crate::model::config::Config;
use crate::model::plan::half_plan;
use crate::model::weights::Weights;

pub use self::device::{cublas_available, driver_available};

/// Number of GPUs the driver sees (an error naming why none is usable).
pub fn gpu_count() -> Result<usize> {
    device::driver_available()
}

/// Rows of `u` materialised at a time for the `x_proj` GEMM.
const U_SEGMENT: usize = 1 << 15;

/// Runs a model on one GPU.
pub struct CudaBackend {
    cfg: Config,
    host: Arc<Weights>,
    gpu: Gpu,
    w: DWeights,
    act: Dtype,
    peak: AtomicUsize,
    /// Host copies of the stream's `hidden` for [`Backend::stream_at`]
    /// (`--layer`), reused and page-locked like a result buffer.
    layer_scratch: Mutex<HostBuffer>,
}

/// The residual stream and work buffers of one forward pass.
pub struct CudaState {
    nseq: usize,
    seqlen: usize,
    /// No block has run yet (the reference's `residual = None`).
    first: bool,
    hidden: Buf,
    residual: Buf,
    /// Leading dimension of the channel-major buffers: rows rounded up to
    /// whole 16-byte vectors.
    ld: usize,
    /// `[2di][ld]`: x, then z.
    xz: Buf,
    /// `[2][R+2N][ld]`: `x_proj` output of each direction, in walk order.
    xd: Buf,
    /// `[2di][ld]`: the gated output of each direction.
    y: Buf,
    /// `[di][ld_u]`: conv output of one segment of at most `useg` walk
    /// rows, for the unfused `x_proj` GEMM only (see
    /// [`CudaBackend::fused_xproj`]).
    u: Option<Buf>,
    useg: usize,
    ld_u: usize,
    /// General (untied or multiply) path only: a copy of the half's norm
    /// output and the second direction's projection.
    xin: Option<Buf>,
    other: Option<Buf>,
    /// Paired PS halves (see [`mixer::pair_halves`]): half 1's own `xz`, `xd`
    /// and `y`, so that one scan launch runs all four directions.
    pair: Option<[Buf; 3]>,
}

impl CudaState {
    fn rows(&self) -> usize {
        self.nseq * self.seqlen
    }

    /// Half `half`'s fused-mixer buffers: the state's own, or for half 1
    /// of a paired pass its own copies.
    fn half_bufs(&self, half: usize) -> mixer::HalfBufs {
        let [xz, xd, y] = match (&self.pair, half) {
            (Some(p), 1) => [&p[0], &p[1], &p[2]],
            _ => [&self.xz, &self.xd, &self.y],
        };
        mixer::HalfBufs {
            xz: xz.ptr,
            xd: xd.ptr,
            y: y.ptr,
        }
    }
}

impl CudaBackend {
    pub fn new(ordinal: usize, cfg: &Config, host: Arc<Weights>, prec: Precision) -> Result<Self> {
        let act = match prec {
            Precision::F32 => Dtype::F32,
            Precision::Bf16 => Dtype::Bf16,
        };
        let defines = Defines::new(act == Dtype::Bf16, cfg.d_state, cfg.dt_rank, cfg.d_conv);
        let gpu = Gpu::open(ordinal, &defines)?;
        let w = DWeights::upload(&gpu, &host, act)?;
        Ok(CudaBackend {
            cfg: cfg.clone(),
            host,
            gpu,
            w,
            act,
            peak: AtomicUsize::new(0),
            layer_scratch: Mutex::new(HostBuffer::new()),
        })
    }

    /// Starts timing every op with CUDA events (see [`Self::profile_take`]).
    pub fn profile_start(&self) {
        self.gpu.profile_start();
    }

    /// Stops timing; returns (op, milliseconds) summed since the start.
    pub fn profile_take(&self) -> Result<Vec<(&'static str, f64)>> {
        self.gpu.profile_take()
    }

    /// Highest device memory in use (whole GPU) seen during a forward pass.
    pub fn peak_bytes(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// The activation precision.
    pub fn precision(&self) -> Precision {
        match self.act {
            Dtype::F32 => Precision::F32,
            Dtype::Bf16 => Precision::Bf16,
        }
    }

    fn ab(&self) -> usize {
        self.act.bytes()
    }

    /// Whether conv + `x_proj` run as one kernel (kernels/xproj.cu): where
    /// it is compiled (bf16, sm_80+) and `d_inner` is a multiple of 8.
    fn fused_xproj(&self) -> bool {
        self.gpu.f.conv_xproj.is_some() && self.cfg.d_inner() % 8 == 0
    }

    /// The buffers of a pass; what they take per row is
    /// `crate::memory::PassMemory` (the `u` segment is in its reserve).
    fn alloc_state(&self, nseq: usize, seqlen: usize) -> Result<CudaState> {
        let cfg = &self.cfg;
        let rows = nseq * seqlen;
        let ld = rows.next_multiple_of(8);
        let useg = rows.min(U_SEGMENT);
        let (width, d, di, n) = (cfg.width(), cfg.d_model, cfg.d_inner(), cfg.d_state);
        let xdw = cfg.dt_rank + 2 * n;
        let general = !half_plan(cfg, &self.host.layers[0], 0).fused;
        let g = &self.gpu;
        let ab = self.ab();
        let pair = mixer::pair_halves(g, cfg.rcps && !general, di, nseq, rows);
        // Opportunistic: only where the extra buffers leave the reserve
        // free (the memory model of `memory()` does not count them).
        let pair_bytes = (2 * di + 2 * xdw + 2 * di) * ld * ab;
        let pair = pair && g.free_bytes()? > (pair_bytes as u64) + crate::memory::GPU_RESERVE;
        Ok(CudaState {
            nseq,
            seqlen,
            first: true,
            hidden: g.alloc(rows * width * ab)?,
            residual: g.alloc(rows * width * 4)?,
            ld,
            xz: g.alloc(2 * di * ld * ab)?,
            xd: g.alloc(2 * xdw * ld * ab)?,
            y: g.alloc(2 * di * ld * ab)?,
            u: (!self.fused_xproj())
                .then(|| g.alloc(di * useg.next_multiple_of(8) * ab))
                .transpose()?,
            useg,
            ld_u: useg.next_multiple_of(8),
            xin: general.then(|| g.alloc(rows * d * ab)).transpose()?,
            other: general.then(|| g.alloc(rows * d * ab)).transpose()?,
            pair: if pair {
                Some([
                    g.alloc(2 * di * ld * ab)?,
                    g.alloc(2 * xdw * ld * ab)?,
                    g.alloc(2 * di * ld * ab)?,
                ])
            } else {
                None
            },
        })
    }

    fn note_memory(&self) {
        self.peak
            .fetch_max(self.gpu.used_bytes(), Ordering::Relaxed);
    }

    fn norm_params(&self, st: &CudaState, w: &weights::DNorm) -> NormParams {
        let cfg = &self.cfg;
        NormParams {
            hidden: st.hidden.ptr,
            residual: st.residual.ptr,
            w: w.w.ptr,
            b: w.b.as_ref().map_or(0, |b| b.ptr),
            out: 0,
            rows: st.rows() as i32,
            d: cfg.d_model as i32,
            halves: if cfg.rcps { 2 } else { 1 },
            first: st.first as i32,
            swap: 0,
            flip1: 0,
            eps: cfg.norm_epsilon,
            _pad: 0,
        }
    }

    /// The embedding of `nseq` equal-length sequences concatenated in `ids`.
    fn embed_rows(&self, ids: &[u32], nseq: usize) -> Result<CudaState> {
        let cfg = &self.cfg;
        assert!(nseq > 0 && ids.len() % nseq == 0, "equal-length sequences");
        if nseq > 65_535 {
            // The scan's grid holds sequences in its z dimension.
            return Err(crate::error::Error::Input(format!(
                "a batch of {nseq} sequences exceeds the GPU limit of 65,535"
            )));
        }
        let st = self.alloc_state(nseq, ids.len() / nseq)?;
        let g = &self.gpu;
        let dids = g.upload(ids)?;
        g.timed("embed", || {
            g.launch_1d(
                &g.f.embed,
                ids.len() * cfg.width(),
                EmbedParams {
                    ids: dids.ptr,
                    table: self.w.embedding.ptr,
                    comp: self.w.complement_map.ptr,
                    out: st.hidden.ptr,
                    rows: ids.len() as i32,
                    d: cfg.d_model as i32,
                    width: cfg.width() as i32,
                    _pad: 0,
                },
            )
        })?;
        // `dids` must outlive the kernel.
        g.sync()?;
        Ok(st)
    }

    /// Final add + norm into `residual` (f32), the RC half's weights read
    /// reversed (spec section 9).
    fn enqueue_final_norm(&self, st: &CudaState) -> Result<()> {
        let g = &self.gpu;
        let mut p = self.norm_params(st, &self.w.norm_f);
        p.flip1 = FLIP_WEIGHT;
        p.out = st.residual.ptr;
        g.timed("norm", || g.launch_1d(&g.f.norm_final, st.rows() * 32, p))
    }

    /// Host copy of an activation buffer of `n` elements, as f32.
    fn download_act(&self, buf: &Buf, n: usize) -> Result<Vec<f32>> {
        match self.act {
            Dtype::F32 => {
                let mut v = vec![0.0f32; n];
                self.gpu.download(buf.ptr, &mut v)?;
                Ok(v)
            }
            Dtype::Bf16 => {
                let mut v = vec![0u16; n];
                self.gpu.download(buf.ptr, &mut v)?;
                Ok(v.into_iter()
                    .map(|b| half::bf16::from_bits(b).to_f32())
                    .collect())
            }
        }
    }
}

impl Backend for CudaBackend {
    type State = CudaState;

    fn embed(&self, ids: &[u32]) -> Result<CudaState> {
        self.embed_rows(ids, 1)
    }

    fn embed_batch(&self, ids: &[u32], nseq: usize) -> Result<Option<CudaState>> {
        self.embed_rows(ids, nseq).map(Some)
    }

    fn block(&self, li: usize, st: &mut CudaState) -> Result<()> {
        let cfg = &self.cfg;
        let g = &self.gpu;
        let mut p = self.norm_params(st, &self.w.layers[li].norm);
        // Fused RCPS blocks swap the halves of the stream (spec section 4).
        p.swap = (cfg.rcps && cfg.fused_add_norm) as i32;
        p.flip1 = FLIP_INPUT;
        // One warp per row.
        g.timed("norm", || g.launch_1d(&g.f.norm_block, st.rows() * 32, p))?;
        st.first = false;
        let halves = if cfg.rcps { 2 } else { 1 };
        if st.pair.is_some() {
            // Both halves up to their scans, one launch for the four
            // directions, then both out_projs: the halves read and write
            // disjoint columns of `hidden`, so the order does not matter.
            let plans = [0, 1].map(|h| half_plan(cfg, &self.host.layers[li], h));
            let mut jobs = Vec::with_capacity(SSM_JOBS);
            for (h, plan) in plans.iter().enumerate() {
                let bufs = st.half_bufs(h);
                jobs.extend(self.fused_prepare(li, plan, h * cfg.d_model, bufs, st)?);
            }
            self.scan(&jobs, st)?;
            for (h, plan) in plans.iter().enumerate() {
                self.fused_finish(li, plan, h * cfg.d_model, st.half_bufs(h), st)?;
            }
        } else {
            for half in 0..halves {
                let plan = half_plan(cfg, &self.host.layers[li], half);
                self.mixer_half(li, &plan, half * cfg.d_model, st)?;
            }
        }
        if li == 0 {
            self.note_memory();
        }
        Ok(())
    }

    fn stream(&self, st: &CudaState) -> Result<Stream> {
        let n = st.rows() * self.cfg.width();
        let hidden = self.download_act(&st.hidden, n)?;
        let residual = if st.first {
            None
        } else {
            let mut r = vec![0.0f32; n];
            self.gpu.download(st.residual.ptr, &mut r)?;
            Some(r)
        };
        Ok(Stream {
            len: st.rows(),
            width: self.cfg.width(),
            hidden,
            residual,
        })
    }

    fn final_norm(&self, st: CudaState) -> Result<Vec<f32>> {
        self.enqueue_final_norm(&st)?;
        let mut out = vec![0.0f32; st.rows() * self.cfg.width()];
        self.gpu.download(st.residual.ptr, &mut out)?;
        Ok(out)
    }

    fn final_norm_into(&self, st: CudaState, out: &mut HostBuffer) -> Result<()> {
        self.enqueue_final_norm(&st)?;
        out.resize(st.rows() * self.cfg.width());
        // Locked once, while the buffer is reused: the copy is then one DMA
        // (see `HostBuffer`).
        out.pin_with(|ptr, bytes| self.gpu.pin_host(ptr, bytes));
        self.gpu.download(st.residual.ptr, out)
    }

    fn stream_at(&self, st: &CudaState, out: &mut HostBuffer, at: usize) -> Result<()> {
        let n = st.rows() * self.cfg.width();
        // Both copies into page-locked memory, locked once and reused.
        out.pin_with(|ptr, bytes| self.gpu.pin_host(ptr, bytes));
        let dst = &mut out[at..at + n];
        if !st.first {
            self.gpu.download(st.residual.ptr, dst)?;
        }
        let mut scratch = self
            .layer_scratch
            .lock()
            .expect("no thread panics holding the lock");
        if scratch.len() < n {
            scratch.resize(n);
        }
        scratch.pin_with(|ptr, bytes| self.gpu.pin_host(ptr, bytes));
        // hidden + residual in f32, as the next block's norm adds them
        // (before the first block, hidden alone: the embedding as the
        // first block reads it).
        let first = st.first;
        let add = |o: &mut f32, h: f32| *o = if first { h } else { h + *o };
        const CHUNK: usize = 1 << 14;
        match self.act {
            Dtype::F32 => {
                let hidden = &mut scratch[..n];
                self.gpu.download(st.hidden.ptr, hidden)?;
                dst.par_chunks_mut(CHUNK)
                    .zip(hidden.par_chunks(CHUNK))
                    .for_each(|(o, h)| o.iter_mut().zip(h).for_each(|(o, &h)| add(o, h)));
            }
            Dtype::Bf16 => {
                // SAFETY: `scratch` holds at least `n` f32 values, so `n`
                // u16 values fit, aligned (2 divides 4); the slice borrows
                // `scratch` mutably for its lifetime.
                let bits: &mut [u16] =
                    unsafe { std::slice::from_raw_parts_mut(scratch.as_mut_ptr().cast(), n) };
                self.gpu.download(st.hidden.ptr, bits)?;
                dst.par_chunks_mut(CHUNK)
                    .zip(bits.par_chunks(CHUNK))
                    .for_each(|(o, b)| {
                        for (o, &b) in o.iter_mut().zip(b) {
                            add(o, half::bf16::from_bits(b).to_f32());
                        }
                    });
            }
        }
        Ok(())
    }

    fn final_norm_at(&self, st: CudaState, out: &mut HostBuffer, at: usize) -> Result<()> {
        self.enqueue_final_norm(&st)?;
        let n = st.rows() * self.cfg.width();
        out.pin_with(|ptr, bytes| self.gpu.pin_host(ptr, bytes));
        self.gpu.download(st.residual.ptr, &mut out[at..at + n])
    }

    fn free_bytes(&self) -> Result<u64> {
        self.gpu.free_bytes()
    }

    fn final_norm_discard(&self, st: CudaState) -> Result<()> {
        self.enqueue_final_norm(&st)?;
        self.gpu.sync()
    }

    fn lm_logits(&self, hidden: &[f32], len: usize) -> Result<Vec<f32>> {
        let head = &self.w.lm_head;
        let g = &self.gpu;
        let x = g.upload(hidden)?;
        let y = g.alloc(len * head.out * 4)?;
        g.gemm(
            len,
            head.out,
            head.inp,
            Mat::rows(head.w.ptr, Dtype::F32, head.inp),
            Mat::rows(x.ptr, Dtype::F32, head.inp),
            Mat::rows(y.ptr, Dtype::F32, head.out),
        )?;
        // The head never has a bias (weights.rs builds it without one).
        debug_assert!(head.b.is_none());
        let mut out = vec![0.0f32; len * head.out];
        g.download(y.ptr, &mut out)?;
        Ok(out)
    }

    fn describe(&self) -> String {
        let prec = match self.act {
            Dtype::F32 => "fp32",
            Dtype::Bf16 => "bf16",
        };
        format!(
            "cuda:{} ({}, {}, {prec})",
            self.gpu.ctx.ordinal(),
            self.gpu.name,
            self.gpu.arch
        )
    }
}
