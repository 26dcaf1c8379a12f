//! Matrix operands of the GEMMs: row-major, or channel-major (the mixer's
//! per-channel buffers, which the GEMMs read and write transposed).

use super::device::Dtype;
use super::kernels::DevPtr;

/// A matrix operand of [`super::device::Gpu::gemm`] with `rows` rows and `cols` columns
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
