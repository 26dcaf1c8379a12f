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
//! `u` is recomputed tile by tile rather than stored: it costs one `exp`
//! per element against the sixteen the recurrence needs, and saves an
//! `[L, di]` buffer.

use rayon::prelude::*;

use super::gemm;
use super::simd::{Lanes8, Simd};
use crate::model::weights::{Linear, Ssm};

/// Positions per scan tile: one tile of `xd` stays in L2 while every
/// channel block walks it.
const TILE: usize = 256;
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
    /// `A · log2(e)`, transposed: `exp(δA) = 2^(δ · at2)`.
    at2: Vec<f32>,
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
            at2: transpose(&s.a, di, n)
                .into_iter()
                .map(|a| a * std::f32::consts::LOG2_E)
                .collect(),
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
pub fn run(isa: Isa, p: &Pass, scratch: Scratch, threads: usize) {
    let s = p.ssm;
    let w = s.r + 2 * s.n;
    let Scratch { xd, u: ub, y } = scratch;
    assert!(xd.len() >= p.len * w && y.len() >= p.len * s.di && ub.len() >= p.len * s.di);
    assert!(p.xz.len() >= p.len.saturating_sub(1) * p.ld_xz + 2 * s.di);

    // Phase 1: u = silu(conv(x)) chunk by chunk, then xd = u · x_proj^T.
    // `u` is also kept for the scan, channel-block-major (block at channel
    // c0 with `lanes` channels holds `[len, lanes]` from `c0 * len`), so
    // each block later reads its inputs as one contiguous stream.
    let ubp = SyncPtr(ub.as_mut_ptr());
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
                for (c0, lanes) in blocks(s.di) {
                    // SAFETY: rows l0..l0+rows of every block belong to this
                    // chunk alone; `ub` holds len * di elements (asserted).
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            ubp.at(c0 * p.len + l0 * lanes),
                            rows * lanes,
                        )
                    };
                    for (i, d) in dst.chunks_exact_mut(lanes).enumerate() {
                        d.copy_from_slice(&u[i * s.di + c0..i * s.di + c0 + lanes]);
                    }
                }
            },
        );

    // Phase 2: the scan, channel blocks in parallel within each tile.
    let mut units: Vec<Unit> = blocks(s.di)
        .map(|(c0, lanes)| Unit {
            c0,
            lanes,
            state: vec![0.0; s.n * lanes],
            delta_tile: vec![0.0; TILE * lanes],
            du_tile: vec![0.0; TILE * lanes],
            y_tile: vec![0.0; TILE * lanes],
        })
        .collect();
    let ub: &[f32] = ub;
    let yp = SyncPtr(y.as_mut_ptr());
    let ntiles = p.len.div_ceil(TILE);
    let pool_split = (units.len() / threads.max(1) / 4).max(1);
    for t in 0..ntiles {
        let tile = if p.reverse { ntiles - 1 - t } else { t };
        let (lo, hi) = (tile * TILE, ((tile + 1) * TILE).min(p.len));
        units
            .par_iter_mut()
            .with_min_len(pool_split)
            .for_each(|unit| {
                let uu = &ub[unit.c0 * p.len..(unit.c0 + unit.lanes) * p.len];
                scan_unit(isa, p, xd, uu, yp, unit, lo, hi)
            });
    }
}

/// Work buffers of a pass: `xd [len, R+2N]`, `u [len, di]` (block-major),
/// and the output `y [len, di]`.
pub struct Scratch<'a> {
    pub xd: &'a mut [f32],
    pub u: &'a mut [f32],
    pub y: &'a mut [f32],
}

/// Channel blocks `(c0, lanes)`: blocks of 8, then single channels.
fn blocks(di: usize) -> impl Iterator<Item = (usize, usize)> {
    let full = di / 8 * 8;
    (0..full)
        .step_by(8)
        .map(|c| (c, 8))
        .chain((full..di).map(|c| (c, 1)))
}

/// A block of channels: its carried state and tile-local buffers.
struct Unit {
    c0: usize,
    lanes: usize,
    state: Vec<f32>,
    delta_tile: Vec<f32>,
    du_tile: Vec<f32>,
    y_tile: Vec<f32>,
}

#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);
// SAFETY: writers through it touch disjoint elements (each scan unit its
// own channel columns, each phase-1 chunk its own rows).
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// The pointer `off` elements in; a method so closures capture the
    /// whole `Sync` wrapper rather than the raw pointer field.
    ///
    /// # Safety
    /// `off` must be within the allocation.
    unsafe fn at(self, off: usize) -> *mut f32 {
        // SAFETY: per the contract above.
        unsafe { self.0.add(off) }
    }
}

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

/// `ub` is this block's `[len, lanes]` slice of `u`.
#[allow(clippy::too_many_arguments)]
fn scan_unit(
    isa: Isa,
    p: &Pass,
    xd: &[f32],
    ub: &[f32],
    y: SyncPtr,
    u: &mut Unit,
    lo: usize,
    hi: usize,
) {
    match (isa, u.lanes) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only chosen when the CPU has AVX2 and FMA.
        (Isa::Avx2, 8) => unsafe { scan_avx2(p, xd, ub, y, u, lo, hi) },
        (_, 8) => scan_tile::<Lanes8>(p, xd, ub, y, u, lo, hi),
        _ => scan_tile::<f32>(p, xd, ub, y, u, lo, hi),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn scan_avx2(p: &Pass, xd: &[f32], ub: &[f32], y: SyncPtr, u: &mut Unit, lo: usize, hi: usize) {
    scan_tile::<super::simd::Avx2>(p, xd, ub, y, u, lo, hi)
}

/// States `j0..j0+G` of one channel block over a tile, accumulating
/// `Σ h·C` into `u.y_tile`.
#[inline(always)]
fn scan_states<S: Simd, const G: usize>(
    p: &Pass,
    xd: &[f32],
    u: &mut Unit,
    j0: usize,
    lo: usize,
    len: usize,
) {
    let s = p.ssm;
    let (di, n, r, c0, lanes) = (s.di, s.n, s.r, u.c0, S::LANES);
    let w = r + 2 * n;
    let a: [S; G] = std::array::from_fn(|g| S::load(&s.at2[(j0 + g) * di + c0..]));
    let mut h: [S; G] = std::array::from_fn(|g| S::load(&u.state[(j0 + g) * lanes..]));
    for step in 0..len {
        let i = if p.reverse { len - 1 - step } else { step };
        let row = &xd[(lo + i) * w + r + j0..];
        let delta = S::load(&u.delta_tile[i * lanes..]);
        let du = S::load(&u.du_tile[i * lanes..]);
        let yi = &mut u.y_tile[i * lanes..];
        let mut acc = S::load(yi);
        for g in 0..G {
            // δ > 0 (softplus) and A < 0 (-exp), so the exponent is never positive.
            let da = delta.mul(a[g]).exp2_nonpos();
            h[g] = da.fma(h[g], du.mul(S::splat(row[g])));
            acc = h[g].fma(S::splat(row[n + g]), acc);
        }
        acc.store(yi);
    }
    for (g, hg) in h.iter().enumerate() {
        hg.store(&mut u.state[(j0 + g) * lanes..]);
    }
}

/// Walks positions `lo..hi` (backwards for a reverse pass) for one block
/// of `S::LANES` channels starting at `u.c0`.
///
/// Each row of `y` and `z` lives on its own page, so touching a channel
/// block's slice of the next row inside the recurrence would stall it on a
/// miss that out-of-order execution cannot hide (one position is hundreds
/// of instructions). The recurrence therefore runs on tile-local buffers
/// and results are scattered afterwards, in a loop of independent
/// iterations.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scan_tile<S: Simd>(
    p: &Pass,
    xd: &[f32],
    ub: &[f32],
    y: SyncPtr,
    u: &mut Unit,
    lo: usize,
    hi: usize,
) {
    let s = p.ssm;
    let (di, n, r, c0) = (s.di, s.n, s.r, u.c0);
    let lanes = S::LANES;
    let w = r + 2 * n;
    let len = hi - lo;
    let u_tile = &ub[lo * lanes..hi * lanes];

    // Step sizes for the tile, and the D skip as the output's start value.
    let d = S::load(&s.d[c0..]);
    let dt_b = S::load(&s.dt_b[c0..]);
    for i in 0..len {
        let row = &xd[(lo + i) * w..];
        let mut dt = dt_b;
        for (j, &v) in row[..r].iter().enumerate() {
            dt = S::load(&s.dt_wt[j * di + c0..]).fma(S::splat(v), dt);
        }
        let delta = dt.softplus();
        let uu = S::load(&u_tile[i * lanes..]);
        delta.store(&mut u.delta_tile[i * lanes..]);
        delta.mul(uu).store(&mut u.du_tile[i * lanes..]);
        d.mul(uu).store(&mut u.y_tile[i * lanes..]);
    }

    // The recurrence, a few state indices at a time: the only serial
    // dependency is one FMA per position and state, so the exponentials of
    // successive positions overlap, and each output row is loaded and
    // stored once per group rather than once per state.
    let mut j = 0;
    while j + 4 <= n {
        scan_states::<S, 4>(p, xd, u, j, lo, len);
        j += 4;
    }
    while j < n {
        scan_states::<S, 1>(p, xd, u, j, lo, len);
        j += 1;
    }

    // Scatter: accumulate the other direction, gate, store.
    for i in 0..len {
        let l = lo + i;
        let mut out = S::load(&u.y_tile[i * lanes..]);
        // SAFETY: `l < len`, `c0 + LANES <= di`, and no other unit touches
        // these columns; `y` holds `len * di` elements (checked in `run`).
        let yrow = unsafe { std::slice::from_raw_parts_mut(y.at(l * di + c0), lanes) };
        if p.accumulate {
            out = out.add(S::load(yrow));
        }
        if p.gate {
            out = out.mul(S::load(&p.xz[l * p.ld_xz + di + c0..]).silu());
        }
        out.store(yrow);
    }
}
