//! Dense projections on the CPU through the `gemm` crate (runtime-dispatched
//! AVX2/AVX-512/NEON micro-kernels).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::model::weights::Linear;

/// Rows per task when a multi-threaded product is split by rows.
const ROW_BLOCK: usize = 512;

static FLOPS: AtomicU64 = AtomicU64::new(0);
static NANOS: AtomicU64 = AtomicU64::new(0);

/// FLOPs and wall-clock nanoseconds spent in the multi-threaded projections
/// (`in_proj`, `out_proj`, heads) since the last [`reset_stats`]. The small
/// `x_proj` products, which run inside already-parallel loops, are not
/// counted. For benchmarks: the share of the machine's GEMM throughput
/// the model's projections reach.
pub fn stats() -> (u64, u64) {
    (FLOPS.load(Ordering::Relaxed), NANOS.load(Ordering::Relaxed))
}

pub fn reset_stats() {
    FLOPS.store(0, Ordering::Relaxed);
    NANOS.store(0, Ordering::Relaxed);
}

/// `y[m, w.out] (+)= x[m, w.inp] · W^T + b`.
///
/// `x` and `y` are row-major with row strides `ldx` and `ldy`, so a column
/// range of a wider matrix (one half of a PS stream) is a valid operand.
/// With `accumulate` the product is added to what `y` holds; the bias is
/// added either way.
///
/// # Panics
/// If the slices are too short for the shapes and strides given.
#[allow(clippy::too_many_arguments)] // mirrors a BLAS call: shapes, strides, flags
pub fn linear(
    m: usize,
    x: &[f32],
    ldx: usize,
    w: &Linear,
    y: &mut [f32],
    ldy: usize,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 {
        return;
    }
    let (n, k) = (w.out, w.inp);
    assert!(
        x.len() >= (m - 1) * ldx + k && ldx >= k,
        "gemm lhs too short"
    );
    assert!(
        y.len() >= (m - 1) * ldy + n && ldy >= n,
        "gemm dst too short"
    );
    assert_eq!(w.w.len(), n * k);
    let timed = threads > 1;
    let start = timed.then(Instant::now);
    let (x, y) = (&x[..(m - 1) * ldx + k], &mut y[..(m - 1) * ldy + n]);
    if threads > 1 && m >= 2 * ROW_BLOCK {
        // Blocks of rows, each a single-threaded product: for `in_proj`'s
        // shape (K = 256, N = 1024, long M) this ran 10-15 % faster than
        // the library's own split across threads, and no slower for the
        // other shapes measured (`out_proj`, 2048³).
        x.par_chunks(ROW_BLOCK * ldx)
            .zip(y.par_chunks_mut(ROW_BLOCK * ldy))
            .for_each(|(xb, yb)| {
                let rows = yb.len().div_ceil(ldy);
                product(rows, xb, ldx, w, yb, ldy, accumulate, Parallelism::None);
            });
    } else {
        let par = if threads > 1 && m * n * k >= 1 << 18 {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        product(m, x, ldx, w, y, ldy, accumulate, par);
    }
    if let Some(t) = start {
        FLOPS.fetch_add((2 * m * n * k) as u64, Ordering::Relaxed);
        NANOS.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
    if let Some(b) = &w.b {
        for row in y.chunks_mut(ldy).take(m) {
            for (o, &bi) in row[..n].iter_mut().zip(b) {
                *o += bi;
            }
        }
    }
}

/// `y (+)= x · W^T` for `m` rows through the `gemm` crate; `x` and `y`
/// hold `m` rows at strides `ldx` and `ldy`.
#[allow(clippy::too_many_arguments)]
fn product(
    m: usize,
    x: &[f32],
    ldx: usize,
    w: &Linear,
    y: &mut [f32],
    ldy: usize,
    accumulate: bool,
    par: Parallelism,
) {
    let (n, k) = (w.out, w.inp);
    assert!(x.len() >= (m - 1) * ldx + k && y.len() >= (m - 1) * ldy + n);
    // SAFETY: the assert above bounds every element the strides reach:
    // lhs rows i < m at i*ldx + [0, k), dst rows at i*ldy + [0, n), and
    // rhs = W^T read as (kk, j) -> W[j*k + kk] (`linear` checked its size).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            ldy as isize,
            accumulate,
            x.as_ptr(),
            1,
            ldx as isize,
            w.w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_operands_and_bias() {
        // x: 3 rows of width 4 inside rows of stride 6; W: [2, 4]
        let x: Vec<f32> = (0..18).map(|i| i as f32).collect();
        let w = Linear {
            w: vec![1., 0., 0., 1., 0., 1., 1., 0.],
            b: Some(vec![10., 20.]),
            out: 2,
            inp: 4,
        };
        let mut y = vec![100.0f32; 9]; // stride 3
        linear(3, &x, 6, &w, &mut y, 3, false, 1);
        for r in 0..3 {
            let xr = &x[r * 6..r * 6 + 4];
            assert_eq!(y[r * 3], xr[0] + xr[3] + 10.);
            assert_eq!(y[r * 3 + 1], xr[1] + xr[2] + 20.);
            assert_eq!(y[r * 3 + 2], 100.0, "outside the destination view");
        }
        linear(3, &x, 6, &w, &mut y, 3, true, 1);
        assert_eq!(y[0], 2.0 * (x[0] + x[3] + 10.));
    }

    #[test]
    fn row_blocks_match_one_product() {
        // More rows than two blocks, a partial last block, strided operands.
        let (m, k, n, ldx, ldy) = (2 * ROW_BLOCK + 37, 24, 10, 30, 13);
        let x: Vec<f32> = (0..m * ldx)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let w = Linear {
            w: (0..n * k)
                .map(|i| ((i * 13) % 29) as f32 / 14.0 - 1.0)
                .collect(),
            b: Some((0..n).map(|j| j as f32).collect()),
            out: n,
            inp: k,
        };
        let mut whole = vec![7.0f32; m * ldy];
        let mut blocks = whole.clone();
        linear(m, &x, ldx, &w, &mut whole, ldy, true, 1);
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a thread pool")
            .install(|| linear(m, &x, ldx, &w, &mut blocks, ldy, true, 2));
        for (i, (a, b)) in whole.iter().zip(&blocks).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "element {i}: {a} vs {b}"
            );
        }
    }
}
