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
        include_str!("../../../../../kernels/prelude.cuh"),
    ),
    ("embed.cu", include_str!("../../../../../kernels/embed.cu")),
    ("norm.cu", include_str!("../../../../../kernels/norm.cu")),
    ("conv.cu", include_str!("../../../../../kernels/conv.cu")),
    ("scan.cu", include_str!("../../../../../kernels/scan.cu")),
    (
        "elementwise.cu",
        include_str!("../../../../../kernels/elementwise.cu"),
    ),
];

/// The kernels' entry points.
pub const ENTRY_POINTS: &[&str] = &[
    "embed",
    "norm_block",
    "norm_final",
    "conv_silu",
    "scan_chunk_state",
    "scan_carry",
    "scan_output",
    "add_bias",
    "combine",
    "copy_cols",
];

/// Channels per block of the scan kernels (`CB` in scan.cu).
pub const SCAN_CHANNELS: u32 = 128;

/// What a compiled program is specialised for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Defines {
    pub bf16: bool,
    pub d_state: usize,
    pub dt_rank: usize,
    pub d_conv: usize,
    /// Resident scan blocks per SM to fit registers for (`SCAN_MIN_BLOCKS`).
    pub scan_min_blocks: u32,
}

impl Defines {
    pub fn new(bf16: bool, d_state: usize, dt_rank: usize, d_conv: usize) -> Defines {
        Defines {
            bf16,
            d_state,
            dt_rank,
            d_conv,
            scan_min_blocks: scan_min_blocks(),
        }
    }

    fn source(&self) -> String {
        let mut s = format!(
            "#define ACT_BF16 {}\n#define NSTATE {}\n#define DTRANK {}\n#define KCONV {}\n\
             #define SCAN_MIN_BLOCKS {}\n",
            self.bf16 as u8, self.d_state, self.dt_rank, self.d_conv, self.scan_min_blocks
        );
        for (name, src) in SOURCES {
            s.push_str(&format!("// ---- {name}\n{src}\n"));
        }
        s
    }
}

/// Register budget of the scan kernels, as resident blocks per SM: more
/// blocks hide more latency, fewer leave more registers per thread.
/// `STRAND_SCAN_MIN_BLOCKS` overrides the default for tuning.
fn scan_min_blocks() -> u32 {
    std::env::var("STRAND_SCAN_MIN_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| (1..=16).contains(&n))
        .unwrap_or(DEFAULT_SCAN_MIN_BLOCKS)
}

/// Measured on the H100 (docs/benchmarks.md): 1 → 1.04 M tokens/s (PS
/// bf16, 131,072 tokens; 96 registers, 5 blocks fit anyway but the
/// compiler schedules for fewer), 4 → 1.07 M, 5 → 1.14 M, 6 → 1.11 M
/// (80 registers, small spills).
const DEFAULT_SCAN_MIN_BLOCKS: u32 = 5;

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
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("STRAND_KERNEL_CACHE")
        .or_else(|| env("STRAND_CACHE_DIR").map(|d| d.join("kernels")))
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("strand/kernels")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/strand/kernels")))
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
    pub xz: DevPtr,
    pub u: DevPtr,
    pub w: DevPtr,
    pub b: DevPtr,
    pub ld_xz: i32,
    pub di: i32,
    pub seqlen: i32,
    pub row0: i32,
    pub rows: i32,
    pub reverse: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanParams {
    pub xz: DevPtr,
    pub xd: DevPtr,
    pub y: DevPtr,
    pub conv_w: DevPtr,
    pub conv_b: DevPtr,
    pub dt_w: DevPtr,
    pub dt_b: DevPtr,
    pub at2: DevPtr,
    pub dskip: DevPtr,
    pub state: DevPtr,
    pub dsum: DevPtr,
    pub ld_xz: i32,
    pub di: i32,
    pub nseq: i32,
    pub seqlen: i32,
    pub chunk: i32,
    pub nchunks: i32,
    pub reverse: i32,
    pub accumulate: i32,
    pub gate: i32,
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
}

// SAFETY: plain #[repr(C)] data mirroring the kernels' structs.
unsafe impl DeviceRepr for EmbedParams {}
unsafe impl DeviceRepr for NormParams {}
unsafe impl DeviceRepr for ConvParams {}
unsafe impl DeviceRepr for ScanParams {}
unsafe impl DeviceRepr for RowsParams {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without libnvrtc the kernel tests skip visibly, unless
    /// `STRAND_REQUIRE_NVRTC` is set (CI sets it: there a kernel that does
    /// not compile must fail the build).
    fn skip_without_nvrtc(test: &str) -> bool {
        match nvrtc_available() {
            Ok(()) => false,
            Err(e) if std::env::var_os("STRAND_REQUIRE_NVRTC").is_some() => {
                panic!("{test}: STRAND_REQUIRE_NVRTC is set but {e}")
            }
            Err(e) => {
                println!("SKIPPED {test}: {e}");
                true
            }
        }
    }

    /// Compiles every kernel in both precisions and for the state sizes of
    /// the test models, for the oldest and newest architectures we target.
    /// Needs only libnvrtc (no GPU); CI installs it. Skips visibly without.
    #[test]
    fn every_kernel_compiles() {
        if skip_without_nvrtc("every_kernel_compiles") {
            return;
        }
        for bf16 in [false, true] {
            for (n, r, k) in [(16, 16, 4), (4, 3, 2), (8, 1, 4)] {
                let d = Defines::new(bf16, n, r, k);
                for arch in ["sm_80", "sm_90"] {
                    let cubin = compile(&d.source(), &options(arch))
                        .unwrap_or_else(|e| panic!("{d:?} {arch}: {e}"));
                    assert!(cubin.starts_with(b"\x7fELF"), "{arch}: not a cubin");
                    let text = String::from_utf8_lossy(&cubin);
                    for name in ENTRY_POINTS {
                        assert!(text.contains(name), "{arch}: no entry point {name}");
                    }
                }
            }
        }
    }

    /// The C compiler sizes every params struct as Rust does, asserted
    /// inside the kernels' own translation unit (NVRTC has no offsetof, so
    /// the size is what is checked: a field added on one side only shows).
    #[test]
    fn params_match_the_kernels_layout() {
        use std::mem::size_of;
        if skip_without_nvrtc("params_match_the_kernels_layout") {
            return;
        }
        let checks = [
            ("EmbedParams", size_of::<EmbedParams>()),
            ("NormParams", size_of::<NormParams>()),
            ("ConvParams", size_of::<ConvParams>()),
            ("ScanParams", size_of::<ScanParams>()),
            ("RowsParams", size_of::<RowsParams>()),
        ];
        let d = Defines::new(true, 16, 16, 4);
        let mut src = d.source();
        for (name, size) in checks {
            src.push_str(&format!(
                "static_assert(sizeof({name}) == {size}, \"{name} size\");\n"
            ));
        }
        compile(&src, &options("sm_90")).unwrap();
    }
}
