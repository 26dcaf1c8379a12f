//! Launch geometry of the conv and scan kernels. Kept apart from the mixer
//! that fills the params so that the per-op tests (`ops_tests.rs`) launch
//! exactly what a forward pass launches.

use super::device::Gpu;
use super::kernels::{
    ConvParams, SsmParams, XprojParams, CONV_ROWS, CONV_THREADS, CX_M, CX_THREADS, SSM_WARPS,
};
use crate::error::Result;

/// Both directions of `p` (or the first `jobs`) in one launch
/// (kernels/ssm.cu): a block per `SSM_WARPS` channels, direction and
/// sequence; `ssm_scan_wide` where it is compiled and the grid has more
/// blocks than the GPU has SMs.
pub(super) fn scan(g: &Gpu, p: &SsmParams, jobs: usize) -> Result<()> {
    let wide = scan_grid(p, jobs).0 * jobs as u32 * p.nseq as u32 > g.sms;
    scan_with(g, p, jobs, wide)
}

fn scan_grid(p: &SsmParams, jobs: usize) -> (u32, u32, u32) {
    (
        (p.di as u32).div_ceil(SSM_WARPS),
        jobs as u32,
        p.nseq as u32,
    )
}

/// [`scan`] with the variant chosen by the caller (`wide` falls back to
/// the plain scan where the wide one is not compiled).
pub(super) fn scan_with(g: &Gpu, p: &SsmParams, jobs: usize, wide: bool) -> Result<()> {
    let grid = scan_grid(p, jobs);
    match (&g.f.ssm_scan_wide, wide) {
        (Some(f), true) => {
            let shared = g.defines.wide_shared_bytes() as u32;
            g.launch_shared(f, grid, SSM_WARPS * 32, shared, *p)
        }
        _ => {
            let shared = g.defines.scan_shared_bytes() as u32;
            g.launch_shared(&g.f.ssm_scan, grid, SSM_WARPS * 32, shared, *p)
        }
    }
}

/// Causal conv + SiLU of `p.rows` walk rows (kernels/conv.cu).
pub(super) fn conv(g: &Gpu, p: ConvParams) -> Result<()> {
    let grid = (
        (p.rows as u32).div_ceil(CONV_THREADS * CONV_ROWS),
        p.di as u32,
        1,
    );
    g.launch(&g.f.conv_walk, grid, CONV_THREADS, p)
}

/// Conv + `x_proj` of `p.ndirs` directions (kernels/xproj.cu): a block per
/// `CX_M` positions of a sequence. Only where `g.f.conv_xproj` is compiled
/// (bf16, sm_80+); elsewhere [`conv`] and a GEMM.
pub(super) fn xproj(g: &Gpu, p: XprojParams) -> Result<()> {
    let f =
        g.f.conv_xproj
            .as_ref()
            .expect("conv_xproj compiled for this GPU");
    let grid = ((p.seqlen as u32).div_ceil(CX_M), p.nseq as u32, 1);
    let shared = g.defines.xproj_shared_bytes() as u32;
    g.launch_shared(f, grid, CX_THREADS, shared, p)
}
