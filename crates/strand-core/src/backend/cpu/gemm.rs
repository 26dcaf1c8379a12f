//! Dense projections on the CPU through the `gemm` crate (runtime-dispatched
//! AVX2/AVX-512/NEON micro-kernels).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use gemm::Parallelism;

use crate::model::weights::Linear;

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
    let par = if threads > 1 && m * n * k >= 1 << 18 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let start = timed.then(Instant::now);
    // SAFETY: the asserts above bound every element the strides reach:
    // lhs rows i < m at i*ldx + [0, k), dst rows at i*ldy + [0, n), and
    // rhs = W^T read as (kk, j) -> W[j*k + kk].
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
}
