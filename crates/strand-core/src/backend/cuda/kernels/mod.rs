//! The CUDA C kernels in `kernels/`: their parameter structs, their
//! compilation by NVRTC to a cubin for the GPU's own architecture, and an
//! on-disk cache of the result.
//!
//! All kernels are compiled as one program: the prelude, the per-model
//! defines (activation type and the scan's register-array sizes), then each
//! `.cu` file. Every params struct below mirrors, field for field, the
//! struct of the same name in the `.cu` it belongs to.

use std::ffi::{c_char, CString};
use std::path::PathBuf;

use cudarc::driver::DeviceRepr;
use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};

use crate::error::{Error, Result};
use crate::util::sha256_hex;

/// The sources, in the order they are compiled.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "prelude.cuh",
        include_str!("../../../../../../kernels/prelude.cuh"),
    ),
    (
        "embed.cu",
        include_str!("../../../../../../kernels/embed.cu"),
    ),
    ("norm.cu", include_str!("../../../../../../kernels/norm.cu")),
    ("conv.cu", include_str!("../../../../../../kernels/conv.cu")),
    (
        "xproj.cu",
        include_str!("../../../../../../kernels/xproj.cu"),
    ),
    ("ssm.cu", include_str!("../../../../../../kernels/ssm.cu")),
    (
        "elementwise.cu",
        include_str!("../../../../../../kernels/elementwise.cu"),
    ),
];

/// The kernels' entry points (checked against the compiled program by the
/// tests; `device.rs` loads each by name).
#[cfg(test)]
const ENTRY_POINTS: &[&str] = &[
    "embed",
    "norm_block",
    "norm_final",
    "conv_walk",
    "conv_xproj",
    "ssm_scan",
    "add_bias",
    "combine",
    "copy_cols",
];

/// Warps (channels) per block of the scan (`SSM_WARPS` in ssm.cu).
pub const SSM_WARPS: u32 = 8;
/// Threads per block of the conv and walk rows per thread (`CONV_THREADS`
/// and `CONV_ROWS` in conv.cu).
pub const CONV_THREADS: u32 = 256;
pub const CONV_ROWS: u32 = 8;
/// Positions per block and threads per block of `conv_xproj` (`CX_M`,
/// `CX_THREADS` in xproj.cu).
pub const CX_M: u32 = 128;
pub const CX_THREADS: u32 = 256;

/// What a compiled program is specialised for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Defines {
    pub bf16: bool,
    pub d_state: usize,
    pub dt_rank: usize,
    pub d_conv: usize,
    /// Steps per lane of the scan (`SLICE` in ssm.cu); a warp's tile is 32
    /// slices.
    pub slice: usize,
    /// Whether the program also holds `ssm_scan_wide` (slice
    /// [`WIDE_SLICE`], two blocks per SM): set by [`Defines::fit_shared`]
    /// where two such blocks fit in an SM's shared memory.
    pub wide: bool,
}

/// Steps per lane of `ssm_scan_wide`, the scan variant for launches with
/// more blocks than SMs: with 128 registers and two blocks per SM it has
/// twice the warps per scheduler to hide latency with (docs/benchmarks.md,
/// 2026-12-04 "wide scan": 1.73 vs 2.03 ms at 8 × 16,384, but 2.49 vs 2.05
/// at batch 1, where the grid fills only one block per SM).
pub const WIDE_SLICE: usize = 16;
/// Shared memory the driver reserves per block (sm_80 and later).
const SHARED_RESERVED_PER_BLOCK: usize = 1024;

impl Defines {
    /// The fastest slice measured (docs/benchmarks.md, 2026-12-04: 32 steps
    /// for bf16, 16 for f32 whose tiles are twice the size); see
    /// [`Defines::fit_shared`] for GPUs with less shared memory.
    /// `STRAND_SCAN_SLICE` (8, 16 or 32) overrides the slice for tuning.
    pub fn new(bf16: bool, d_state: usize, dt_rank: usize, d_conv: usize) -> Defines {
        let slice = std::env::var("STRAND_SCAN_SLICE")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|s| [8, 16, 32].contains(s))
            .unwrap_or(if bf16 { 32 } else { 16 });
        Defines {
            bf16,
            d_state,
            dt_rank,
            d_conv,
            slice,
            wide: false,
        }
    }

    /// Dynamic shared memory of one scan block: two tiles of `x_proj`
    /// output, for bf16 the block's deltas of a tile (f32, from the
    /// tensor-core dt_proj), and per warp its channel's A and carried state.
    pub fn scan_shared_bytes(&self) -> usize {
        self.shared_bytes_at(self.slice)
    }

    /// [`Defines::scan_shared_bytes`] of `ssm_scan_wide`.
    pub fn wide_shared_bytes(&self) -> usize {
        self.shared_bytes_at(WIDE_SLICE)
    }

    /// Dynamic shared memory of one `conv_xproj` block (`CX_SMEM` in
    /// xproj.cu): three stage buffers (x of a channel chunk with halos, its
    /// `x_proj` weight columns, conv weights) and two of a chunk's u, or
    /// the output tile where that is larger.
    pub fn xproj_shared_bytes(&self) -> usize {
        let (m, k, halo) = (CX_M as usize, 32, 8);
        let xdw = self.dt_rank + 2 * self.d_state;
        let nt = xdw.div_ceil(16) * 2;
        let stage = k * (m + 2 * halo) + 2 * nt * 8 * (k + 8) + 2 * k * (self.d_conv + 1) * 2;
        let main = 3 * stage + 2 * 2 * k * (m + 8);
        main.max(2 * xdw * (m + 8)) * 2
    }

    fn shared_bytes_at(&self, slice: usize) -> usize {
        let act = if self.bf16 { 2 } else { 4 };
        let xdw = self.dt_rank + 2 * self.d_state;
        let tile = 32 * slice;
        let deltas = if self.bf16 {
            SSM_WARPS as usize * tile * 4
        } else {
            0
        };
        2 * xdw * tile * act + deltas + SSM_WARPS as usize * 2 * self.d_state * 4
    }

    /// The longest slice (at most this one's, at least 8 steps) whose scan
    /// block fits in `max_bytes` of shared memory per block, and the wide
    /// variant where bf16 runs longer slices and two of its blocks fit in
    /// `per_sm` bytes (an SM's shared memory).
    pub fn fit_shared(&self, max_bytes: usize, per_sm: usize) -> Result<Defines> {
        let mut d = *self;
        d.wide = false;
        while d.scan_shared_bytes() > max_bytes {
            if d.slice <= 8 {
                return Err(Error::Cuda(format!(
                    "the scan needs {} bytes of shared memory per block for d_state {} and \
                     dt_rank {}; this GPU allows {max_bytes}",
                    d.scan_shared_bytes(),
                    d.d_state,
                    d.dt_rank
                )));
            }
            d.slice /= 2;
        }
        d.wide = d.bf16
            && d.slice > WIDE_SLICE
            && 2 * (d.wide_shared_bytes() + SHARED_RESERVED_PER_BLOCK) <= per_sm;
        Ok(d)
    }

    fn source(&self) -> String {
        let mut s = format!(
            "#define ACT_BF16 {}\n#define NSTATE {}\n#define DTRANK {}\n#define KCONV {}\n\
             #define SLICE {}\n",
            self.bf16 as u8, self.d_state, self.dt_rank, self.d_conv, self.slice
        );
        for (name, src) in SOURCES {
            if *name == "ssm.cu" {
                // In a namespace, so that the wide copy below can hold the
                // same helpers and structs (argument-dependent lookup would
                // otherwise see both).
                s.push_str(&format!(
                    "// ---- {name}\nnamespace ssm_plain {{\n{src}\n}}\n"
                ));
            } else {
                s.push_str(&format!("// ---- {name}\n{src}\n"));
            }
        }
        if self.wide {
            // The scan again with the wide variant's slice and register
            // cap; every other macro of ssm.cu expands the same.
            s.push_str(&format!(
                "// ---- ssm.cu (wide)\n#undef SLICE\n#define SLICE {WIDE_SLICE}\n#undef SSM_MINB\n\
                 #define SSM_MINB 2\n#undef SSM_ENTRY\n#define SSM_ENTRY ssm_scan_wide\n\
                 namespace ssm_wide {{\n{}\n}}\n",
                include_str!("../../../../../../kernels/ssm.cu")
            ));
        }
        s
    }
}

/// The NVRTC library's version, `(major, minor)`.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    nvrtc_available()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: plain out-parameters.
    unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| Error::Cuda(format!("nvrtcVersion: {e:?}")))?;
    Ok((major, minor))
}

/// Errors unless `libnvrtc` can be loaded (it is looked up by name, so it
/// must be on the library path, e.g. `LD_LIBRARY_PATH`).
pub fn nvrtc_available() -> Result<()> {
    // SAFETY: only tries to dlopen the library.
    if unsafe { nvrtc_sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::Cuda(
            "libnvrtc not found: install the CUDA runtime compiler (e.g. `pip install \
             nvidia-cuda-nvrtc` or the CUDA toolkit) and add its lib directory to \
             LD_LIBRARY_PATH"
                .into(),
        ))
    }
}

/// Compiles every kernel for `arch` (e.g. `sm_90`) and returns the cubin,
/// from the disk cache when an identical compilation was done before.
pub fn cubin(defines: &Defines, arch: &str) -> Result<Vec<u8>> {
    let (major, minor) = nvrtc_version()?;
    let src = defines.source();
    let opts = options(arch);
    let key = sha256_hex(format!("{src}\n{opts:?}\nnvrtc {major}.{minor}").as_bytes());
    let cached = cache_dir().map(|d| d.join(format!("{arch}-{}.cubin", &key[..32])));
    if let Some(bytes) = cached.as_deref().and_then(super::cache::load) {
        return Ok(bytes);
    }
    let cubin = compile(&src, &opts)?;
    if let Some(path) = cached {
        // A cache that cannot be written only costs a recompilation.
        let _ = super::cache::store(&path, &cubin);
    }
    Ok(cubin)
}

fn options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".into(),
        // Exact f32 division and square roots: the f32 path is checked
        // against the reference at 1e-4.
        "--prec-div=true".into(),
        "--prec-sqrt=true".into(),
        "--fmad=true".into(),
    ]
}

/// Compiles `src` to a cubin; a compilation error carries NVRTC's log.
pub fn compile(src: &str, opts: &[String]) -> Result<Vec<u8>> {
    nvrtc_available()?;
    let csrc = CString::new(src).expect("kernel sources hold no NUL");
    let name = CString::new("strand_kernels.cu").expect("no NUL");
    let prog = nvrtc::create_program(&csrc, Some(&name))
        .map_err(|e| Error::Cuda(format!("nvrtc: creating the program: {e:?}")))?;
    let out = (|| {
        // SAFETY: `prog` is a live program; options are plain strings.
        if let Err(e) = unsafe { nvrtc::compile_program(prog, opts) } {
            // SAFETY: as above.
            let log = unsafe { nvrtc::get_program_log(prog) }.unwrap_or_default();
            let log: Vec<u8> = log
                .iter()
                .map(|&c| c as u8)
                .take_while(|&c| c != 0)
                .collect();
            return Err(Error::Cuda(format!(
                "kernels do not compile ({e:?}):\n{}",
                String::from_utf8_lossy(&log)
            )));
        }
        let mut size = 0usize;
        // SAFETY: out-parameter of a compiled program.
        unsafe { nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size) }
            .result()
            .map_err(|e| Error::Cuda(format!("nvrtc: cubin size: {e:?}")))?;
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` has the size NVRTC asked for.
        unsafe { nvrtc_sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char) }
            .result()
            .map_err(|e| Error::Cuda(format!("nvrtc: reading the cubin: {e:?}")))?;
        Ok(buf)
    })();
    // SAFETY: destroyed once, after its last use.
    let _ = unsafe { nvrtc::destroy_program(prog) };
    out
}

/// `$STRAND_KERNEL_CACHE`, else `$STRAND_CACHE_DIR/kernels` (strand's
/// cache root, e.g. on a shared filesystem), else
/// `$XDG_CACHE_HOME/strand/kernels`, else `~/.cache/strand/kernels`.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("STRAND_KERNEL_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| crate::cache::dir().map(|d| d.join("kernels")))
}

/// Device pointer as the kernels see it.
pub type DevPtr = u64;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EmbedParams {
    pub ids: DevPtr,
    pub table: DevPtr,
    pub comp: DevPtr,
    pub out: DevPtr,
    pub rows: i32,
    pub d: i32,
    pub width: i32,
    pub _pad: i32,
}

/// Flip of the second half in [`NormParams::flip1`] (see norm.cu).
pub const FLIP_INPUT: i32 = 1;
pub const FLIP_WEIGHT: i32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NormParams {
    pub hidden: DevPtr,
    pub residual: DevPtr,
    pub w: DevPtr,
    pub b: DevPtr,
    pub out: DevPtr,
    pub rows: i32,
    pub d: i32,
    pub halves: i32,
    pub first: i32,
    pub swap: i32,
    pub flip1: i32,
    pub eps: f32,
    pub _pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvParams {
    pub x: DevPtr,
    pub u: DevPtr,
    pub w: DevPtr,
    pub b: DevPtr,
    pub ld: i64,
    pub row0: i64,
    pub ld_u: i32,
    pub di: i32,
    pub seqlen: i32,
    pub rows: i32,
    pub reverse: i32,
    pub _pad: i32,
}

/// One direction of a fused conv + `x_proj` launch (`XprojDir` in
/// xproj.cu).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XprojDir {
    pub conv_w: DevPtr,
    pub conv_b: DevPtr,
    pub w: DevPtr,
    pub xd: DevPtr,
    pub reverse: i32,
    pub _pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XprojParams {
    pub dir: [XprojDir; 2],
    pub x: DevPtr,
    pub ld: i64,
    pub di: i32,
    pub nseq: i32,
    pub seqlen: i32,
    pub ndirs: i32,
}

/// One direction of a scan launch (`SsmJob` in ssm.cu).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SsmJob {
    pub x: DevPtr,
    pub z: DevPtr,
    pub xd: DevPtr,
    pub y: DevPtr,
    pub conv_w: DevPtr,
    pub conv_b: DevPtr,
    pub dt_w: DevPtr,
    pub dt_b: DevPtr,
    pub at2: DevPtr,
    pub dskip: DevPtr,
    pub reverse: i32,
    pub _pad: i32,
}

/// Directions one scan launch can hold (`SSM_JOBS` in ssm.cu): both of
/// each half of a PS layer.
pub const SSM_JOBS: usize = 4;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SsmParams {
    pub job: [SsmJob; SSM_JOBS],
    pub ld: i64,
    pub di: i32,
    pub nseq: i32,
    pub seqlen: i32,
    pub _pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RowsParams {
    pub dst: DevPtr,
    pub src: DevPtr,
    pub b: DevPtr,
    pub ld_dst: i32,
    pub ld_src: i32,
    pub rows: i32,
    pub n: i32,
    pub scale: f32,
    pub mul: i32,
    /// `add_bias` only: `dst` is channel-major (`[n][ld_dst]`).
    pub transposed: i32,
    pub _pad: i32,
}

// SAFETY: plain #[repr(C)] data mirroring the kernels' structs.
unsafe impl DeviceRepr for EmbedParams {}
unsafe impl DeviceRepr for NormParams {}
unsafe impl DeviceRepr for ConvParams {}
unsafe impl DeviceRepr for XprojParams {}
unsafe impl DeviceRepr for SsmParams {}
unsafe impl DeviceRepr for RowsParams {}

#[cfg(test)]
mod tests;
