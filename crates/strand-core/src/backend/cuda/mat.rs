//! The GEMMs (cuBLAS, f32 accumulation, no TF32) and their matrix
//! operands: row-major, or channel-major (the mixer's per-channel buffers,
//! which the GEMMs read and write transposed).

use cudarc::cublas::{result as blas, sys as blas_sys};

use super::device::{blas_err, Dtype, Gpu};
use super::kernels::DevPtr;
use crate::error::{Error, Result};

/// A matrix operand of [`Gpu::gemm`] with `rows` rows and `cols` columns
/// (set by the call): row-major with `ld` elements between rows, or
/// `transposed` (channel-major: `[cols][ld]`, `ld` elements between
/// columns).
#[derive(Clone, Copy, Debug)]
pub struct Mat {
    pub ptr: DevPtr,
    pub dtype: Dtype,
    pub ld: usize,
    pub transposed: bool,
}

impl Mat {
    pub fn rows(ptr: DevPtr, dtype: Dtype, ld: usize) -> Mat {
        Mat {
            ptr,
            dtype,
            ld,
            transposed: false,
        }
    }

    pub fn cols(ptr: DevPtr, dtype: Dtype, ld: usize) -> Mat {
        Mat {
            ptr,
            dtype,
            ld,
            transposed: true,
        }
    }
}

impl Gpu {
    /// `y[rows, out] = x[rows, inp] · Wᵀ` with f32 accumulation; `w` is
    /// `[out, inp]` row-major (its `ld` is `inp`); `x` and `y` are
    /// row-major or stored transposed (channel-major), see [`Mat`].
    pub fn gemm(&self, rows: usize, out: usize, inp: usize, w: Mat, x: Mat, y: Mat) -> Result<()> {
        debug_assert!(!w.transposed && w.ld == inp);
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N as N, CUBLAS_OP_T as T};
        let (alpha, beta) = (1.0f32, 0.0f32);
        let int = |v: usize| {
            i32::try_from(v).map_err(|_| Error::Cuda(format!("GEMM dimension {v} too large")))
        };
        // cuBLAS is column-major. A row-major [r, c] matrix is a column-major
        // [c, r] one and a transposed (channel-major) [r, c] matrix a
        // column-major [r, c] one. Row-major y: yᵀ[out, rows] = W · xᵀ;
        // transposed y: y[rows, out] = x · Wᵀ.
        let (m, n, a, a_op, lda, b, b_op, ldb) = if y.transposed {
            let x_op = if x.transposed { N } else { T };
            (
                rows,
                out,
                (x.ptr, x.dtype),
                x_op,
                x.ld,
                (w.ptr, w.dtype),
                N,
                inp,
            )
        } else {
            let x_op = if x.transposed { T } else { N };
            (
                out,
                rows,
                (w.ptr, w.dtype),
                T,
                inp,
                (x.ptr, x.dtype),
                x_op,
                x.ld,
            )
        };
        // SAFETY: pointers are live device buffers of the sizes the caller
        // describes; alpha/beta are host f32 as COMPUTE_32F expects.
        unsafe {
            blas::gemm_ex(
                *self.blas.handle(),
                a_op,
                b_op,
                int(m)?,
                int(n)?,
                int(inp)?,
                &alpha as *const f32 as *const _,
                a.0 as *const _,
                a.1.cuda(),
                int(lda)?,
                b.0 as *const _,
                b.1.cuda(),
                int(ldb)?,
                &beta as *const f32 as *const _,
                y.ptr as *mut _,
                y.dtype.cuda(),
                int(y.ld)?,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(blas_err("cuBLAS GEMM"))
    }
}
