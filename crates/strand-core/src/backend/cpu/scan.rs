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
//! `u` is computed once, in row chunks alongside `x_proj`, and kept
//! channel-block-major so that each block reads it as one stream.

use std::cell::RefCell;

use rayon::prelude::*;

use super::gemm;
use super::simd::{prefetch, Lanes8, Simd};
use crate::model::weights::{Linear, Ssm};

mod conv;
use conv::conv_row;

/// Positions per scan tile: one tile of `xd` stays in L2 while every
/// channel block walks it.
const TILE: usize = 256;
/// Rows per `x_proj` chunk, at most.
const CHUNK: usize = 256;
/// Positions whose exponentials the scan computes ahead of the recurrence.
const SUB: usize = 16;

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
    // Short sequences take smaller chunks, so that every thread gets some.
    let chunk = CHUNK.min(p.len.div_ceil(threads.max(1))).max(1);
    let ubp = SyncPtr(ub.as_mut_ptr());
    xd[..p.len * w]
        .par_chunks_mut(chunk * w)
        .enumerate()
        .for_each_init(
            || vec![0.0f32; chunk * s.di],
            |u, (ci, xd_chunk)| {
                let rows = xd_chunk.len() / w;
                let l0 = ci * chunk;
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
                    match lanes {
                        8 => copy_block::<8>(u, s.di, c0, dst),
                        _ => copy_block::<1>(u, s.di, c0, dst),
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
        })
        .collect();
    let ub: &[f32] = ub;
    let yp = SyncPtr(y.as_mut_ptr());
    let ntiles = p.len.div_ceil(TILE);
    for t in 0..ntiles {
        let tile = if p.reverse { ntiles - 1 - t } else { t };
        let (lo, hi) = (tile * TILE, ((tile + 1) * TILE).min(p.len));
        // One block per task: every tile ends in a join, and with coarser
        // tasks one thread would idle at each tile's end while the other
        // finishes its last task.
        units.par_iter_mut().for_each(|unit| {
            let uu = &ub[unit.c0 * p.len..(unit.c0 + unit.lanes) * p.len];
            TILE_BUFS.with_borrow_mut(|t| scan_unit(isa, p, xd, uu, yp, unit, t, lo, hi))
        });
    }
}

/// Copies channels `c0..c0+L` of the rows of `u` (row length `di`) into
/// `dst`, one after another; `L` is a constant so each row is a couple of
/// moves rather than a `memcpy` call.
fn copy_block<const L: usize>(u: &[f32], di: usize, c0: usize, dst: &mut [f32]) {
    for (i, d) in dst.chunks_exact_mut(L).enumerate() {
        d.copy_from_slice(&u[i * di + c0..][..L]);
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

/// A block of channels and its state, carried from tile to tile.
struct Unit {
    c0: usize,
    lanes: usize,
    state: Vec<f32>,
}

/// One block's work buffers for one tile: step sizes, `δ·u` and the output
/// being accumulated, `[TILE, lanes]` each.
struct TileBufs {
    delta: Vec<f32>,
    du: Vec<f32>,
    y: Vec<f32>,
}

thread_local! {
    /// Tile buffers per thread rather than per block: every block a thread
    /// runs reuses them, so they stay in cache instead of 64 sets cycling
    /// through it.
    static TILE_BUFS: RefCell<TileBufs> = RefCell::new(TileBufs {
        delta: vec![0.0; TILE * 8],
        du: vec![0.0; TILE * 8],
        y: vec![0.0; TILE * 8],
    });
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

/// `ub` is this block's `[len, lanes]` slice of `u`.
#[allow(clippy::too_many_arguments)]
fn scan_unit(
    isa: Isa,
    p: &Pass,
    xd: &[f32],
    ub: &[f32],
    y: SyncPtr,
    u: &mut Unit,
    t: &mut TileBufs,
    lo: usize,
    hi: usize,
) {
    match (isa, u.lanes) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only chosen when the CPU has AVX2 and FMA.
        (Isa::Avx2, 8) => unsafe { scan_avx2(p, xd, ub, y, u, t, lo, hi) },
        (_, 8) => scan_tile::<Lanes8>(p, xd, ub, y, u, t, lo, hi),
        _ => scan_tile::<f32>(p, xd, ub, y, u, t, lo, hi),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn scan_avx2(
    p: &Pass,
    xd: &[f32],
    ub: &[f32],
    y: SyncPtr,
    u: &mut Unit,
    t: &mut TileBufs,
    lo: usize,
    hi: usize,
) {
    scan_tile::<super::simd::Avx2>(p, xd, ub, y, u, t, lo, hi)
}

/// States `j0..j0+G` of one channel block over a tile, accumulating
/// `Σ h·C` into `t.y`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scan_states<S: Simd, const G: usize>(
    p: &Pass,
    xd: &[f32],
    u: &mut Unit,
    t: &mut TileBufs,
    j0: usize,
    lo: usize,
    len: usize,
) {
    let s = p.ssm;
    let (di, n, r, c0, lanes) = (s.di, s.n, s.r, u.c0, S::LANES);
    let w = r + 2 * n;
    assert!(j0 + G <= n && (lo + len) * w <= xd.len());
    assert!(len * lanes <= t.delta.len().min(t.du.len()).min(t.y.len()));
    if len == 0 {
        return;
    }
    let a: [S; G] = std::array::from_fn(|g| S::load(&s.at2[(j0 + g) * di + c0..]));
    let mut h: [S; G] = std::array::from_fn(|g| S::load(&u.state[(j0 + g) * lanes..]));
    // Positions are walked through raw pointers: per state the loops below
    // are a handful of vector operations, and bounds checks on every stream
    // would add a sizeable share of branches to them.
    let (first, dir) = if p.reverse { (len - 1, -1) } else { (0, 1) };
    let (row_step, lane_step) = (dir * w as isize, dir * lanes as isize);
    let load = |q: *const f32| {
        // SAFETY: every pointer passed points into a buffer with at least
        // `LANES` elements left (asserted above for the tile's rows).
        S::load(unsafe { std::slice::from_raw_parts(q, lanes) })
    };
    // SAFETY (pointer set-up and stepping): the asserts above keep rows
    // `lo..lo+len` of `xd` at offset `r + j0 + g` and `r + n + j0 + g`
    // (`j0 + g < n`) and positions `0..len` of the tile buffers in bounds;
    // the loop leaves each pointer one step past its last use at most,
    // which `wrapping_offset` allows.
    let mut bp = unsafe { xd.as_ptr().add((lo + first) * w + r + j0) };
    let mut dp = unsafe { t.delta.as_ptr().add(first * lanes) };
    let mut up = unsafe { t.du.as_ptr().add(first * lanes) };
    let mut yp = unsafe { t.y.as_mut_ptr().add(first * lanes) };
    let mut da = [[S::splat(0.0); G]; SUB];
    let mut left = len;
    while left > 0 {
        let m = SUB.min(left);
        left -= m;
        // The exponentials of a few positions first: they do not depend on
        // the recurrence, and in a loop of their own their long dependency
        // chains overlap freely instead of queueing behind it.
        for dk in &mut da[..m] {
            let delta = load(dp);
            for (d, &ag) in dk.iter_mut().zip(&a) {
                // δ > 0 (softplus) and A < 0 (-exp): the exponent is never positive.
                *d = delta.mul(ag).exp2_nonpos();
            }
            dp = dp.wrapping_offset(lane_step);
        }
        for dk in &da[..m] {
            let du = load(up);
            let mut acc = load(yp);
            for g in 0..G {
                // SAFETY: see the set-up above.
                let (b, c) = unsafe { (*bp.add(g), *bp.add(n + g)) };
                h[g] = dk[g].fma(h[g], du.mul(S::splat(b)));
                acc = h[g].fma(S::splat(c), acc);
            }
            // SAFETY: `yp` points at `lanes` elements of `t.y`.
            acc.store(unsafe { std::slice::from_raw_parts_mut(yp, lanes) });
            bp = bp.wrapping_offset(row_step);
            up = up.wrapping_offset(lane_step);
            yp = yp.wrapping_offset(lane_step);
        }
    }
    for (g, hg) in h.iter().enumerate() {
        hg.store(&mut u.state[(j0 + g) * lanes..]);
    }
}

/// Tile positions `i0..i0+P` of one channel block: `δ = softplus(dt_proj)`,
/// `δ·u`, and `D·u` as the start of the output.
#[inline(always)]
fn step_sizes<S: Simd, const P: usize>(
    s: &SsmLanes,
    xd: &[f32],
    u_tile: &[f32],
    c0: usize,
    t: &mut TileBufs,
    lo: usize,
    i0: usize,
) {
    let (di, r, lanes) = (s.di, s.r, S::LANES);
    let w = r + 2 * s.n;
    let rows: [&[f32]; P] = std::array::from_fn(|k| &xd[(lo + i0 + k) * w..][..r]);
    let mut dt = [S::load(&s.dt_b[c0..]); P];
    for (j, wrow) in s.dt_wt.chunks_exact(di).take(r).enumerate() {
        let wj = S::load(&wrow[c0..]);
        for (acc, row) in dt.iter_mut().zip(&rows) {
            *acc = wj.fma(S::splat(row[j]), *acc);
        }
    }
    let d = S::load(&s.d[c0..]);
    for (k, dtk) in dt.into_iter().enumerate() {
        let at = (i0 + k) * lanes;
        let delta = dtk.softplus();
        let uu = S::load(&u_tile[at..]);
        delta.store(&mut t.delta[at..]);
        delta.mul(uu).store(&mut t.du[at..]);
        d.mul(uu).store(&mut t.y[at..]);
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
    t: &mut TileBufs,
    lo: usize,
    hi: usize,
) {
    let s = p.ssm;
    let (di, n, c0) = (s.di, s.n, u.c0);
    let lanes = S::LANES;
    let len = hi - lo;
    let u_tile = &ub[lo * lanes..hi * lanes];

    // The scatter at the end touches a slice of each row of `y` (and of
    // `z`), every row on its own page, so it would wait on a miss per
    // position; requested early, the lines arrive while the recurrence runs.
    let request_rows = |rows: std::ops::Range<usize>| {
        for l in rows {
            // SAFETY: `l < len`, so the offsets are within `y` and `xz`
            // (sizes checked in `run`); a prefetch never faults anyway.
            unsafe {
                prefetch(y.at(l * di + c0));
                if p.gate {
                    prefetch(p.xz.as_ptr().add(l * p.ld_xz + di + c0));
                }
            }
        }
    };
    // Step sizes for the tile, and the D skip as the output's start value,
    // a few positions at a time: each step size ends a chain of R dependent
    // FMAs, and interleaving chains hides their latency.
    let mut i = 0;
    while i + 8 <= len {
        step_sizes::<S, 8>(s, xd, u_tile, c0, t, lo, i);
        request_rows(lo + i..lo + i + 8);
        i += 8;
    }
    while i < len {
        step_sizes::<S, 1>(s, xd, u_tile, c0, t, lo, i);
        request_rows(lo + i..lo + i + 1);
        i += 1;
    }

    // The recurrence, a few state indices at a time: the only serial
    // dependency is one FMA per position and state, so the exponentials of
    // successive positions overlap, and each output row is loaded and
    // stored once per group rather than once per state.
    let mut j = 0;
    while j + 8 <= n {
        scan_states::<S, 8>(p, xd, u, t, j, lo, len);
        j += 8;
    }
    while j < n {
        scan_states::<S, 1>(p, xd, u, t, j, lo, len);
        j += 1;
    }

    // Scatter: accumulate the other direction, gate, store.
    for i in 0..len {
        let l = lo + i;
        let mut out = S::load(&t.y[i * lanes..]);
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
