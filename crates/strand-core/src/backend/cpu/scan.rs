//! One direction of a Mamba mixer after `in_proj`, on the CPU:
//! causal depthwise conv + SiLU, `x_proj`, then the selective scan fused
//! with `dt_proj`, softplus, `exp(δA)`, the `D` skip and SiLU(z) gating.
//!
//! Shapes (L positions, di channels, N states, R dt rank, K conv taps):
//! `xz [L, 2di]` (row stride `ld_xz`; `x` is columns `0..di`, `z` is
//! `di..2di`), `xd [L, R+2N]` (`dt_low | B | C`), `y [L, di]`.
//!
//! A reverse pass is the reference's Mamba on the position-reversed input,
//! read in original order: the conv looks right instead of left and the
//! scan walks from the last position to the first. No flipped copy is made.
//!
//! Memory stays O(L·di): the `[L, di, N]` state history is never formed.
//! The scan walks positions in tiles; within a tile, blocks of channels
//! run in parallel, each carrying its own `[N, lanes]` state across tiles.
//! `u` is recomputed in the scan rather than stored: it costs one `exp` per
//! element against the sixteen the recurrence needs, and saves an `[L, di]`
//! buffer.

use rayon::prelude::*;

use super::gemm;
use super::simd::{Lanes8, Simd};
use crate::model::weights::{Linear, Ssm};

/// Positions per scan tile: one tile of `xd` stays in L2 while every
/// channel block walks it.
const TILE: usize = 1024;
/// Rows per `x_proj` chunk.
const CHUNK: usize = 256;

/// Which instruction set the kernels use, chosen once at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Isa {
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if super::simd::Avx2::available() {
            return Isa::Avx2;
        }
        Isa::Portable
    }
}

/// SSM weights transposed to `[.., di]` so that a block of channels reads
/// each coefficient as one contiguous vector.
#[derive(Clone, Debug)]
pub struct SsmLanes {
    di: usize,
    n: usize,
    k: usize,
    r: usize,
    conv_wt: Vec<f32>,
    conv_b: Vec<f32>,
    pub x_proj: Linear,
    dt_wt: Vec<f32>,
    dt_b: Vec<f32>,
    at: Vec<f32>,
    d: Vec<f32>,
}

fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = m[i * cols + j];
        }
    }
    t
}

impl SsmLanes {
    pub fn new(s: &Ssm) -> SsmLanes {
        let di = s.d.len();
        let n = s.a.len() / di;
        let k = s.conv_w.len() / di;
        let r = s.dt_w.len() / di;
        SsmLanes {
            di,
            n,
            k,
            r,
            conv_wt: transpose(&s.conv_w, di, k),
            conv_b: s.conv_b.clone().unwrap_or_else(|| vec![0.0; di]),
            x_proj: s.x_proj.clone(),
            dt_wt: transpose(&s.dt_w, di, r),
            dt_b: s.dt_b.clone(),
            at: transpose(&s.a, di, n),
            d: s.d.clone(),
        }
    }
}

/// One pass over a sequence.
pub struct Pass<'a> {
    pub ssm: &'a SsmLanes,
    pub xz: &'a [f32],
    pub ld_xz: usize,
    pub len: usize,
    pub reverse: bool,
    /// Add the pass's output to what `y` holds (the other direction's).
    pub accumulate: bool,
    /// Multiply the (accumulated) output by SiLU(z).
    pub gate: bool,
}

/// Runs a pass, writing or accumulating into `y [len, di]`; `xd` is scratch
/// of at least `len * (R + 2N)`.
pub fn run(isa: Isa, p: &Pass, xd: &mut [f32], y: &mut [f32], threads: usize) {
    let s = p.ssm;
    let w = s.r + 2 * s.n;
    assert!(xd.len() >= p.len * w && y.len() >= p.len * s.di);
    assert!(p.xz.len() >= p.len.saturating_sub(1) * p.ld_xz + 2 * s.di);

    // Phase 1: u = silu(conv(x)) chunk by chunk, then xd = u · x_proj^T.
    xd[..p.len * w]
        .par_chunks_mut(CHUNK * w)
        .enumerate()
        .for_each_init(
            || vec![0.0f32; CHUNK * s.di],
            |u, (ci, xd_chunk)| {
                let rows = xd_chunk.len() / w;
                let l0 = ci * CHUNK;
                for (i, urow) in u.chunks_exact_mut(s.di).take(rows).enumerate() {
                    conv_row(isa, p, l0 + i, urow);
                }
                gemm::linear(rows, u, s.di, &s.x_proj, xd_chunk, w, false, 1);
            },
        );

    // Phase 2: the scan, channel blocks in parallel within each tile.
    let mut units = Vec::new();
    let mut c0 = 0;
    while c0 < s.di {
        let lanes = if s.di - c0 >= 8 { 8 } else { 1 };
        units.push(Unit {
            c0,
            lanes,
            state: vec![0.0; s.n * lanes],
        });
        c0 += lanes;
    }
    let yp = SyncPtr(y.as_mut_ptr());
    let ntiles = p.len.div_ceil(TILE);
    let pool_split = (units.len() / threads.max(1) / 4).max(1);
    for t in 0..ntiles {
        let tile = if p.reverse { ntiles - 1 - t } else { t };
        let (lo, hi) = (tile * TILE, ((tile + 1) * TILE).min(p.len));
        units
            .par_iter_mut()
            .with_min_len(pool_split)
            .for_each(|unit| scan_unit(isa, p, xd, yp, unit, lo, hi));
    }
}

struct Unit {
    c0: usize,
    lanes: usize,
    state: Vec<f32>,
}

#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);
// SAFETY: every scan unit writes only its own channel columns of `y`.
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

fn conv_row(isa: Isa, p: &Pass, l: usize, urow: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only chosen when the CPU has AVX2 and FMA.
        Isa::Avx2 => unsafe { conv_row_avx2(p, l, urow) },
        Isa::Portable => conv_row_generic::<Lanes8>(p, l, urow),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn conv_row_avx2(p: &Pass, l: usize, urow: &mut [f32]) {
    conv_row_generic::<super::simd::Avx2>(p, l, urow)
}

#[inline(always)]
fn conv_row_generic<S: Simd>(p: &Pass, l: usize, urow: &mut [f32]) {
    let di = p.ssm.di;
    let mut c = 0;
    while c + S::LANES <= di {
        conv_silu::<S>(p, l, c).store(&mut urow[c..]);
        c += S::LANES;
    }
    while c < di {
        conv_silu::<f32>(p, l, c).store(&mut urow[c..]);
        c += 1;
    }
}

/// `silu(b + Σ_k w[k] x[src(k)])` for channels `c0..c0+LANES` at position `l`;
/// forward looks at `l-K+1..=l`, reverse at `l..=l+K-1` (mirrored taps).
#[inline(always)]
fn conv_silu<S: Simd>(p: &Pass, l: usize, c0: usize) -> S {
    let s = p.ssm;
    let mut acc = S::load(&s.conv_b[c0..]);
    for k in 0..s.k {
        let back = s.k - 1 - k;
        let src = if p.reverse {
            l + back
        } else if l >= back {
            l - back
        } else {
            continue;
        };
        if src >= p.len {
            continue;
        }
        let w = S::load(&s.conv_wt[k * s.di + c0..]);
        acc = w.fma(S::load(&p.xz[src * p.ld_xz + c0..]), acc);
    }
    acc.silu()
}

fn scan_unit(isa: Isa, p: &Pass, xd: &[f32], y: SyncPtr, u: &mut Unit, lo: usize, hi: usize) {
    match (isa, u.lanes) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only chosen when the CPU has AVX2 and FMA.
        (Isa::Avx2, 8) => unsafe { scan_avx2(p, xd, y, u, lo, hi) },
        (_, 8) => scan_tile::<Lanes8>(p, xd, y, u, lo, hi),
        _ => scan_tile::<f32>(p, xd, y, u, lo, hi),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn scan_avx2(p: &Pass, xd: &[f32], y: SyncPtr, u: &mut Unit, lo: usize, hi: usize) {
    scan_tile::<super::simd::Avx2>(p, xd, y, u, lo, hi)
}

/// Walks positions `lo..hi` (backwards for a reverse pass) for one block
/// of `S::LANES` channels starting at `u.c0`.
#[inline(always)]
fn scan_tile<S: Simd>(p: &Pass, xd: &[f32], y: SyncPtr, u: &mut Unit, lo: usize, hi: usize) {
    let s = p.ssm;
    let (di, n, r, c0) = (s.di, s.n, s.r, u.c0);
    let w = r + 2 * n;
    let d = S::load(&s.d[c0..]);
    let dt_b = S::load(&s.dt_b[c0..]);
    for i in lo..hi {
        let l = if p.reverse { hi - 1 - (i - lo) } else { i };
        let row = &xd[l * w..(l + 1) * w];
        let (dt_low, bc) = row.split_at(r);
        let (bm, cm) = bc.split_at(n);

        let uu = conv_silu::<S>(p, l, c0);
        let mut dt = dt_b;
        for (j, &v) in dt_low.iter().enumerate() {
            dt = S::load(&s.dt_wt[j * di + c0..]).fma(S::splat(v), dt);
        }
        let delta = dt.softplus();
        let du = delta.mul(uu);
        let mut acc = S::splat(0.0);
        for (j, st) in u.state.chunks_exact_mut(S::LANES).enumerate() {
            let da = delta.mul(S::load(&s.at[j * di + c0..])).exp();
            let h = da.fma(S::load(st), du.mul(S::splat(bm[j])));
            h.store(st);
            acc = h.fma(S::splat(cm[j]), acc);
        }
        let mut out = d.fma(uu, acc);
        // SAFETY: `l < len`, `c0 + LANES <= di`, and no other unit touches
        // these columns; `y` holds `len * di` elements (checked in `run`).
        let yrow = unsafe { std::slice::from_raw_parts_mut(y.0.add(l * di + c0), S::LANES) };
        if p.accumulate {
            out = out.add(S::load(yrow));
        }
        if p.gate {
            out = out.mul(S::load(&p.xz[l * p.ld_xz + di + c0..]).silu());
        }
        out.store(yrow);
    }
}
