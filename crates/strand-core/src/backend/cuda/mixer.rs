//! The mixer of one channel half on the GPU: `in_proj`, the conv +
//! `x_proj` of both directions in walk order, one scan launch for both, and
//! `out_proj` (module docs of `cuda` for the layout).

use super::device::{Buf, Gpu, Mat};
use super::kernels::*;
use super::weights::{DLayer, DLinear};
use super::{launch, CudaBackend, CudaState};
use crate::error::Result;
use crate::model::config::BiStrategy;
use crate::model::plan::{HalfPlan, ScanPass};

/// Where one half's fused mixer keeps its channel-major buffers: `xz`
/// (`[2di][ld]`), `xd` (`[2][R+2N][ld]`) and the gated outputs `y`
/// (`[2di][ld]`). Half 0 uses the state's own; with paired halves, half 1
/// uses `CudaState::pair`.
#[derive(Clone, Copy)]
pub(super) struct HalfBufs {
    pub xz: DevPtr,
    pub xd: DevPtr,
    pub y: DevPtr,
}

/// Longest pass (rows) whose PS halves are paired: above it the second
/// half's buffers (≈ 4.3 KB per token at d_inner 512) would raise the
/// peak, and the grid is already long enough to matter less.
const PAIR_MAX_ROWS: usize = 1 << 18;

/// Whether a pass runs both halves of each PS block through one scan
/// launch (four directions): only where the wide scan exists and one
/// half's grid would leave SMs idle or one block per SM, i.e. batch-1
/// passes, which then get twice the warps (docs/benchmarks.md, 2026-12-04
/// "paired halves"), and only up to [`PAIR_MAX_ROWS`] rows.
pub(super) fn pair_halves(gpu: &Gpu, fused_ps: bool, di: usize, nseq: usize, rows: usize) -> bool {
    let blocks = di.div_ceil(SSM_WARPS as usize) * 2 * nseq;
    fused_ps && gpu.f.ssm_scan_wide.is_some() && rows <= PAIR_MAX_ROWS && blocks <= gpu.sms as usize
}

impl CudaBackend {
    /// `y = x · Wᵀ` for `rows` rows, both in the activation type.
    fn linear(&self, rows: usize, lin: &DLinear, x: Mat, y: Mat) -> Result<()> {
        let w = Mat::rows(lin.w.ptr, self.act, lin.inp);
        self.gpu.gemm(rows, lin.out, lin.inp, w, x, y)
    }

    fn rows_at(&self, ptr: u64, ld: usize) -> Mat {
        Mat::rows(ptr, self.act, ld)
    }

    fn cols_at(&self, ptr: u64, ld: usize) -> Mat {
        Mat::cols(ptr, self.act, ld)
    }

    /// `out[r, :n] += scale · b` for `rows` rows of stride `ld`
    /// (activations), or with `transposed` for `n` channel rows of
    /// `rows` steps, `ld` apart.
    #[allow(clippy::too_many_arguments)]
    fn add_bias(
        &self,
        out: u64,
        ld: usize,
        transposed: bool,
        b: &Buf,
        rows: usize,
        n: usize,
        scale: f32,
    ) -> Result<()> {
        self.gpu.launch_1d(
            &self.gpu.f.add_bias,
            rows * n,
            RowsParams {
                dst: out,
                b: b.ptr,
                ld_dst: ld as i32,
                rows: rows as i32,
                n: n as i32,
                scale,
                transposed: transposed as i32,
                ..Default::default()
            },
        )
    }

    /// `in_proj` of columns `col..col+d` of `hidden` (or of `x`, row stride
    /// `ldx`) into the channel-major `xz`.
    fn in_proj(&self, lin: &DLinear, x: u64, ldx: usize, xz: DevPtr, st: &CudaState) -> Result<()> {
        let rows = st.rows();
        self.gpu.timed("in_proj", || {
            self.linear(rows, lin, self.rows_at(x, ldx), self.cols_at(xz, st.ld))
        })?;
        if let Some(b) = &lin.b {
            self.add_bias(xz, st.ld, true, b, rows, lin.out, 1.0)?;
        }
        Ok(())
    }

    /// Conv + `x_proj` of the directions `passes` (slot = index) into `xd`
    /// slots: one fused launch for all where the GPU has it
    /// (kernels/xproj.cu), else per direction the conv by segments of walk
    /// rows and a GEMM.
    fn conv_xproj(
        &self,
        layer: &DLayer,
        passes: &[ScanPass],
        bufs: HalfBufs,
        st: &CudaState,
    ) -> Result<()> {
        let cfg = &self.cfg;
        let (di, xdw, ab) = (cfg.d_inner(), cfg.dt_rank + 2 * cfg.d_state, self.ab());
        let g = &self.gpu;
        let xd = |slot: usize| bufs.xd + (slot * xdw * st.ld * ab) as u64;
        if self.fused_xproj() {
            // A mixer half has one or two directions (`XprojParams::dir`).
            assert!(passes.len() <= 2, "conv_xproj takes at most two directions");
            let mut p = XprojParams {
                x: bufs.xz,
                ld: st.ld as i64,
                di: di as i32,
                nseq: st.nseq as i32,
                seqlen: st.seqlen as i32,
                ndirs: passes.len() as i32,
                ..Default::default()
            };
            for (slot, pass) in passes.iter().enumerate() {
                let s = &layer.ssm[pass.ssm_index];
                p.dir[slot] = XprojDir {
                    conv_w: s.conv_w.ptr,
                    conv_b: s.conv_b.as_ref().map_or(0, |b| b.ptr),
                    w: s.x_proj.w.ptr,
                    xd: xd(slot),
                    reverse: pass.reverse as i32,
                    _pad: 0,
                };
            }
            return g.timed("conv_xproj", || launch::xproj(g, p));
        }
        let rows = st.rows();
        let u =
            st.u.as_ref()
                .expect("allocated where conv_xproj is not used");
        for (slot, pass) in passes.iter().enumerate() {
            let s = &layer.ssm[pass.ssm_index];
            let mut row0 = 0;
            while row0 < rows {
                let seg = (rows - row0).min(st.useg);
                let conv = ConvParams {
                    x: bufs.xz,
                    u: u.ptr,
                    w: s.conv_w.ptr,
                    b: s.conv_b.as_ref().map_or(0, |b| b.ptr),
                    ld: st.ld as i64,
                    row0: row0 as i64,
                    ld_u: st.ld_u as i32,
                    di: di as i32,
                    seqlen: st.seqlen as i32,
                    rows: seg as i32,
                    reverse: pass.reverse as i32,
                    _pad: 0,
                };
                g.timed("conv", || launch::conv(g, conv))?;
                g.timed("x_proj", || {
                    let x = self.cols_at(u.ptr, st.ld_u);
                    self.linear(
                        seg,
                        &s.x_proj,
                        x,
                        self.cols_at(xd(slot) + (row0 * ab) as u64, st.ld),
                    )
                })?;
                row0 += seg;
            }
        }
        Ok(())
    }

    /// The scan job of direction `p` after its conv + `x_proj` into `xd`
    /// slot `slot`, writing its gated output to `y` slot `slot`.
    fn scan_job(
        &self,
        layer: &DLayer,
        p: &ScanPass,
        slot: usize,
        bufs: HalfBufs,
        st: &CudaState,
    ) -> SsmJob {
        let cfg = &self.cfg;
        let (di, xdw, ab) = (cfg.d_inner(), cfg.dt_rank + 2 * cfg.d_state, self.ab());
        let s = &layer.ssm[p.ssm_index];
        SsmJob {
            x: bufs.xz,
            z: bufs.xz + (di * st.ld * ab) as u64,
            xd: bufs.xd + (slot * xdw * st.ld * ab) as u64,
            y: bufs.y + (slot * di * st.ld * ab) as u64,
            conv_w: s.conv_w.ptr,
            conv_b: s.conv_b.as_ref().map_or(0, |b| b.ptr),
            dt_w: s.dt_w.ptr,
            dt_b: s.dt_b.ptr,
            at2: s.at2.ptr,
            dskip: s.d.ptr,
            reverse: p.reverse as i32,
            _pad: 0,
        }
    }

    /// The scan of up to four prepared directions, one launch.
    pub(super) fn scan(&self, jobs: &[SsmJob], st: &CudaState) -> Result<()> {
        let mut job = [SsmJob::default(); SSM_JOBS];
        job[..jobs.len()].copy_from_slice(jobs);
        let di = self.cfg.d_inner();
        let params = SsmParams {
            job,
            ld: st.ld as i64,
            di: di as i32,
            nseq: st.nseq as i32,
            seqlen: st.seqlen as i32,
            _pad: 0,
        };
        let g = &self.gpu;
        g.timed("scan", || launch::scan(g, &params, jobs.len()))
    }

    /// One channel half's mixer: input is columns `col..col+d` of
    /// `hidden` (the norm output), output overwrites the same columns.
    pub(super) fn mixer_half(
        &self,
        li: usize,
        plan: &HalfPlan,
        col: usize,
        st: &CudaState,
    ) -> Result<()> {
        if plan.fused {
            let bufs = st.half_bufs(0);
            let jobs = self.fused_prepare(li, plan, col, bufs, st)?;
            self.scan(&jobs, st)?;
            return self.fused_finish(li, plan, col, bufs, st);
        }
        self.general_half(li, plan, col, st)
    }

    /// A fused half up to its scan: `in_proj` of columns `col..col+d` of
    /// `hidden` into `bufs.xz`, then each direction's conv + `x_proj`;
    /// returns the directions' scan jobs.
    pub(super) fn fused_prepare(
        &self,
        li: usize,
        plan: &HalfPlan,
        col: usize,
        bufs: HalfBufs,
        st: &CudaState,
    ) -> Result<Vec<SsmJob>> {
        let (host, dev) = (&self.host.layers[li], &self.w.layers[li]);
        let h_col = st.hidden.at(col * self.ab());
        let lin = dev.twin(host, plan.passes[0].in_proj);
        self.in_proj(lin, h_col, self.cfg.width(), bufs.xz, st)?;
        self.conv_xproj(dev, &plan.passes, bufs, st)?;
        Ok(plan
            .passes
            .iter()
            .enumerate()
            .map(|(slot, p)| self.scan_job(dev, p, slot, bufs, st))
            .collect())
    }

    /// A fused half after its scan: `out_proj` of the gated outputs in
    /// `bufs.y` into columns `col..col+d` of `hidden`.
    pub(super) fn fused_finish(
        &self,
        li: usize,
        plan: &HalfPlan,
        col: usize,
        bufs: HalfBufs,
        st: &CudaState,
    ) -> Result<()> {
        let cfg = &self.cfg;
        let (d, width, rows, ab) = (cfg.d_model, cfg.width(), st.rows(), self.ab());
        let (host, dev) = (&self.host.layers[li], &self.w.layers[li]);
        let h_col = st.hidden.at(col * ab);
        let g = &self.gpu;
        // Both directions' gated outputs side by side: one GEMM over
        // [W | W] sums them where that copy exists (bf16, see
        // `DLayer::out_fwd_pair`); else they are added first.
        let host_out = plan.passes[0].out_proj;
        let pair = dev.pair(host, host_out);
        let out = if plan.passes.len() == 1 {
            dev.twin(host, host_out)
        } else if let Some(pair) = pair {
            pair
        } else {
            let di = cfg.d_inner();
            let sum = RowsParams {
                dst: bufs.y,
                src: bufs.y + (di * st.ld * ab) as u64,
                ld_dst: st.ld as i32,
                ld_src: st.ld as i32,
                rows: di as i32,
                n: rows as i32,
                ..Default::default()
            };
            g.timed("combine", || g.launch_1d(&g.f.combine, di * rows, sum))?;
            dev.twin(host, host_out)
        };
        g.timed("out_proj", || {
            self.linear(
                rows,
                out,
                self.cols_at(bufs.y, st.ld),
                self.rows_at(h_col, width),
            )
        })?;
        if let Some(b) = &out.b {
            let scale = plan.passes.len() as f32;
            self.add_bias(h_col, width, false, b, rows, d, scale)?;
        }
        Ok(())
    }

    /// The untied or multiply path: each direction has its own
    /// projections and scan; outputs are combined afterwards.
    fn general_half(&self, li: usize, plan: &HalfPlan, col: usize, st: &CudaState) -> Result<()> {
        let cfg = &self.cfg;
        let (d, width) = (cfg.d_model, cfg.width());
        let rows = st.rows();
        let (host, dev) = (&self.host.layers[li], &self.w.layers[li]);
        let h_col = st.hidden.at(col * self.ab());
        let g = &self.gpu;
        let bufs = st.half_bufs(0);

        let (xin, other) = (
            st.xin.as_ref().expect("allocated for the general path"),
            st.other.as_ref().expect("allocated for the general path"),
        );
        g.launch_1d(
            &g.f.copy_cols,
            rows * d,
            RowsParams {
                dst: xin.ptr,
                src: h_col,
                ld_dst: d as i32,
                ld_src: width as i32,
                rows: rows as i32,
                n: d as i32,
                ..Default::default()
            },
        )?;
        for (i, p) in plan.passes.iter().enumerate() {
            self.in_proj(dev.twin(host, p.in_proj), xin.ptr, d, bufs.xz, st)?;
            self.conv_xproj(dev, std::slice::from_ref(p), bufs, st)?;
            let job = self.scan_job(dev, p, 0, bufs, st);
            self.scan(&[job], st)?;
            let out = dev.twin(host, p.out_proj);
            let (dst, ld) = if i == 0 {
                (h_col, width)
            } else {
                (other.ptr, d)
            };
            self.linear(
                rows,
                out,
                self.cols_at(st.y.ptr, st.ld),
                self.rows_at(dst, ld),
            )?;
            if let Some(b) = &out.b {
                self.add_bias(dst, ld, false, b, rows, d, 1.0)?;
            }
            if i > 0 {
                g.launch_1d(
                    &g.f.combine,
                    rows * d,
                    RowsParams {
                        dst: h_col,
                        src: other.ptr,
                        ld_dst: width as i32,
                        ld_src: d as i32,
                        rows: rows as i32,
                        n: d as i32,
                        mul: (plan.strategy == BiStrategy::Multiply) as i32,
                        ..Default::default()
                    },
                )?;
            }
        }
        Ok(())
    }
}
