//! One GPU as the backend uses it: its context and stream, the compiled
//! kernels, cuBLAS, device buffers and launches.
//!
//! Everything runs on one stream, in order, so buffers need no events:
//! event tracking is switched off and pointers are handed to kernels raw.

use std::sync::{Arc, Mutex};

use cudarc::cublas::{sys as blas_sys, CudaBlas};
use cudarc::driver::{
    sys as drv, CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use super::kernels::{self, Defines, DevPtr};
pub use super::mat::Mat;
use crate::error::{Error, Result};

pub(crate) fn cuda_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e}"))
}

pub(super) fn blas_err(what: &str) -> impl Fn(cudarc::cublas::result::CublasError) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e:?}"))
}

/// Errors unless the driver library loads and sees at least one GPU.
pub fn driver_available() -> Result<usize> {
    // SAFETY: only tries to dlopen the library.
    if !unsafe { drv::is_culib_present() } {
        return Err(Error::Cuda(
            "no NVIDIA driver found (libcuda.so.1 is not on the library path); use --device cpu"
                .into(),
        ));
    }
    cudarc::driver::result::init().map_err(cuda_err("initialising the driver"))?;
    let n = cudarc::driver::result::device::get_count().map_err(cuda_err("counting GPUs"))?;
    if n <= 0 {
        return Err(Error::Cuda(
            "the driver sees no GPU; use --device cpu".into(),
        ));
    }
    Ok(n as usize)
}

/// Errors unless cuBLAS can be loaded.
pub fn cublas_available() -> Result<()> {
    // SAFETY: only tries to dlopen the library.
    if unsafe { blas_sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::Cuda(
            "libcublas not found: install cuBLAS (e.g. `pip install nvidia-cublas` or the CUDA \
             toolkit) and add its lib directory to LD_LIBRARY_PATH"
                .into(),
        ))
    }
}

/// Element type of a buffer as cuBLAS sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    Bf16,
}

impl Dtype {
    pub fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::Bf16 => 2,
        }
    }
    pub(super) fn cuda(self) -> blas_sys::cudaDataType {
        match self {
            Dtype::F32 => blas_sys::cudaDataType::CUDA_R_32F,
            Dtype::Bf16 => blas_sys::cudaDataType::CUDA_R_16BF,
        }
    }
}

/// Device memory with its raw address.
pub struct Buf {
    _mem: CudaSlice<u8>,
    pub ptr: DevPtr,
    pub bytes: usize,
}

impl Buf {
    /// Address `bytes` into the buffer.
    pub fn at(&self, bytes: usize) -> DevPtr {
        debug_assert!(bytes <= self.bytes);
        self.ptr + bytes as u64
    }
}

/// An op's label and the events recorded around it.
type TimedOp = (&'static str, CudaEvent, CudaEvent);

/// Page-locks `bytes` of host memory at `ptr` for every context (a buffer
/// may be filled by any GPU of a `cuda:all` run); the guard unlocks it.
/// `None` where the driver refuses (the memory then stays pageable and
/// copies are slower, not wrong) or where `STRAND_NO_PINNED` is set (for
/// comparing the two in benchmarks).
pub(crate) fn pin_host(
    ctx: &Arc<CudaContext>,
    ptr: *mut u8,
    bytes: usize,
) -> Option<Box<dyn Send>> {
    if std::env::var_os("STRAND_NO_PINNED").is_some() {
        return None;
    }
    ctx.bind_to_thread().ok()?;
    // SAFETY: the caller owns `bytes` of memory at `ptr` and keeps it
    // allocated until the guard is dropped.
    unsafe { drv::cuMemHostRegister_v2(ptr.cast(), bytes, drv::CU_MEMHOSTREGISTER_PORTABLE) }
        .result()
        .ok()?;
    Some(Box::new(PinnedHost {
        ctx: Arc::clone(ctx),
        ptr: ptr as usize,
    }))
}

/// Host memory page-locked by [`pin_host`]; unlocked when dropped.
struct PinnedHost {
    ctx: Arc<CudaContext>,
    ptr: usize,
}

impl Drop for PinnedHost {
    fn drop(&mut self) {
        // Unregistering needs a context; nothing useful can be done if it
        // fails (the memory is freed right after either way).
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: `ptr` was registered by `pin_host` and not since.
            let _ = unsafe { drv::cuMemHostUnregister(self.ptr as *mut std::ffi::c_void) };
        }
    }
}

/// Compiled kernels of one program.
pub struct Functions {
    pub embed: CudaFunction,
    pub norm_block: CudaFunction,
    pub norm_final: CudaFunction,
    pub conv_walk: CudaFunction,
    /// Conv + `x_proj` in one kernel, both directions of a half: bf16 on
    /// sm_80 and later (tensor-core mma); elsewhere `conv_walk` + GEMM.
    pub conv_xproj: Option<CudaFunction>,
    pub ssm_scan: CudaFunction,
    /// The scan for launches with more blocks than SMs, where compiled
    /// (`Defines::wide`).
    pub ssm_scan_wide: Option<CudaFunction>,
    pub add_bias: CudaFunction,
    pub combine: CudaFunction,
    pub copy_cols: CudaFunction,
}

/// A GPU, ready to run one model's kernels.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub(super) blas: CudaBlas,
    pub f: Functions,
    pub name: String,
    pub arch: String,
    /// What the kernels were compiled for (the scan's slice fitted to this
    /// GPU's shared memory).
    pub defines: Defines,
    /// Streaming multiprocessors.
    pub sms: u32,
    /// While profiling: the events of every timed op.
    profile: Mutex<Option<Vec<TimedOp>>>,
}

// SAFETY: the cuBLAS handle is only used from `&self` methods that enqueue
// on the one stream, and callers serialise forward passes (the backend is
// driven by one thread at a time through `&self` plus per-call state).
unsafe impl Send for Gpu {}
unsafe impl Sync for Gpu {}

impl Gpu {
    pub fn open(ordinal: usize, defines: &Defines) -> Result<Gpu> {
        let count = driver_available()?;
        if ordinal >= count {
            return Err(Error::Cuda(format!(
                "no GPU {ordinal}: this machine has {count} (cuda:0..cuda:{})",
                count - 1
            )));
        }
        cublas_available()?;
        let ctx = CudaContext::new(ordinal).map_err(cuda_err("creating a context"))?;
        // SAFETY: one stream, in order: no cross-stream synchronisation needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(cuda_err("creating a stream"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(cuda_err("reading the compute capability"))?;
        let arch = format!("sm_{major}{minor}");
        let name = ctx.name().map_err(cuda_err("reading the device name"))?;
        use drv::CUdevice_attribute as A;
        let attr = |a, what: &'static str| ctx.attribute(a).map_err(cuda_err(what));
        let smem_max = attr(
            A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            "reading the shared-memory limit",
        )?;
        let smem_sm = attr(
            A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,
            "reading the shared memory per SM",
        )?;
        let sms = attr(
            A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            "reading the SM count",
        )? as u32;
        let defines = defines.fit_shared(smem_max as usize, smem_sm as usize)?;
        let cubin = kernels::cubin(&defines, &arch)?;
        let module = ctx
            .load_module(Ptx::from_binary(cubin))
            .map_err(cuda_err("loading the kernels"))?;
        let get = |n: &str| module.load_function(n).map_err(cuda_err(n));
        let f = Functions {
            embed: get("embed")?,
            norm_block: get("norm_block")?,
            norm_final: get("norm_final")?,
            conv_walk: get("conv_walk")?,
            conv_xproj: if defines.bf16 && major >= 8 {
                Some(get("conv_xproj")?)
            } else {
                None
            },
            ssm_scan: get("ssm_scan")?,
            ssm_scan_wide: if defines.wide {
                Some(get("ssm_scan_wide")?)
            } else {
                None
            },
            add_bias: get("add_bias")?,
            combine: get("combine")?,
            copy_cols: get("copy_cols")?,
        };
        let scans = [(Some(&f.ssm_scan), defines.scan_shared_bytes())];
        let wide = [(f.ssm_scan_wide.as_ref(), defines.wide_shared_bytes())];
        let xproj = [(f.conv_xproj.as_ref(), defines.xproj_shared_bytes())];
        for (func, bytes) in scans.into_iter().chain(wide).chain(xproj) {
            let Some(func) = func else { continue };
            func.set_attribute(
                drv::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
            .map_err(cuda_err("raising the scan's shared-memory limit"))?;
        }
        let blas = CudaBlas::new(stream.clone()).map_err(blas_err("creating a cuBLAS handle"))?;
        // Plain f32 GEMMs stay exact f32: never let cuBLAS pick TF32.
        // SAFETY: a valid handle.
        unsafe {
            blas_sys::cublasSetMathMode(*blas.handle(), blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH)
        }
        .result()
        .map_err(blas_err("setting the cuBLAS math mode"))?;
        Ok(Gpu {
            ctx,
            stream,
            blas,
            f,
            name,
            arch,
            defines,
            sms,
            profile: Mutex::new(None),
        })
    }

    /// Starts recording the time of every [`Gpu::timed`] op.
    pub fn profile_start(&self) {
        *self.profile.lock().expect("profile lock") = Some(Vec::new());
    }

    /// Stops recording; returns milliseconds per label, in first-seen order.
    pub fn profile_take(&self) -> Result<Vec<(&'static str, f64)>> {
        self.sync()?;
        let events = self
            .profile
            .lock()
            .expect("profile lock")
            .take()
            .unwrap_or_default();
        let mut out: Vec<(&'static str, f64)> = Vec::new();
        for (label, a, b) in events {
            let ms = a.elapsed_ms(&b).map_err(cuda_err("reading events"))? as f64;
            match out.iter_mut().find(|(l, _)| *l == label) {
                Some((_, t)) => *t += ms,
                None => out.push((label, ms)),
            }
        }
        Ok(out)
    }

    /// Runs `f` (which enqueues work), timing it on the stream with events
    /// while profiling.
    pub fn timed<R>(&self, label: &'static str, f: impl FnOnce() -> Result<R>) -> Result<R> {
        if self.profile.lock().expect("profile lock").is_none() {
            return f();
        }
        let ev = || {
            self.ctx
                .new_event(Some(drv::CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(cuda_err("creating an event"))
        };
        let (a, b) = (ev()?, ev()?);
        a.record(&self.stream)
            .map_err(cuda_err("recording an event"))?;
        let r = f()?;
        b.record(&self.stream)
            .map_err(cuda_err("recording an event"))?;
        if let Some(v) = self.profile.lock().expect("profile lock").as_mut() {
            v.push((label, a, b));
        }
        Ok(r)
    }

    /// Uninitialised device memory.
    pub fn alloc(&self, bytes: usize) -> Result<Buf> {
        let bytes = bytes.max(4);
        // SAFETY: every buffer is written by a kernel or a copy before it is read.
        let mem = unsafe { self.stream.alloc::<u8>(bytes) }.map_err(|e| {
            let free = self.ctx.mem_get_info().map(|(f, _)| f).unwrap_or(0);
            Error::Cuda(format!(
                "out of GPU memory allocating {} MiB ({} MiB free): {e}; use a shorter \
                 --window or --device cpu",
                bytes >> 20,
                free >> 20
            ))
        })?;
        let (ptr, _) = mem.device_ptr(&self.stream);
        Ok(Buf {
            _mem: mem,
            ptr,
            bytes,
        })
    }

    /// A device copy of `data`.
    pub fn upload<T: DeviceRepr>(&self, data: &[T]) -> Result<Buf> {
        let buf = self.alloc(std::mem::size_of_val(data))?;
        // SAFETY: `buf` holds exactly `data`'s bytes; the copy completes
        // before `data` can be dropped because we synchronise.
        unsafe {
            cudarc::driver::result::memcpy_htod_async(buf.ptr, data, self.stream.cu_stream())
        }
        .map_err(cuda_err("copying to the GPU"))?;
        self.sync()?;
        Ok(buf)
    }

    /// Page-locks host memory for this GPU's copies (see [`pin_host`]).
    pub fn pin_host(&self, ptr: *mut u8, bytes: usize) -> Option<Box<dyn Send>> {
        pin_host(&self.ctx, ptr, bytes)
    }

    /// Copies `out.len()` elements from `src` to the host.
    pub fn download<T: DeviceRepr>(&self, src: DevPtr, out: &mut [T]) -> Result<()> {
        // Unlocking another GPU's buffer (a `PinnedHost` dropped on this
        // thread) may have made its context current.
        self.ctx
            .bind_to_thread()
            .map_err(cuda_err("selecting the GPU"))?;
        // SAFETY: the caller passes a device range of at least `out`'s size;
        // we wait for the copy before returning.
        unsafe { cudarc::driver::result::memcpy_dtoh_async(out, src, self.stream.cu_stream()) }
            .map_err(cuda_err("copying from the GPU"))?;
        self.sync()
    }

    pub fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(cuda_err("running the kernels"))
    }

    /// Launches `f` with one params struct on `grid` blocks of `block` threads.
    pub fn launch<P: DeviceRepr>(
        &self,
        f: &CudaFunction,
        grid: (u32, u32, u32),
        block: u32,
        params: P,
    ) -> Result<()> {
        self.launch_shared(f, grid, block, 0, params)
    }

    /// [`Gpu::launch`] with `shared` bytes of dynamic shared memory.
    pub fn launch_shared<P: DeviceRepr>(
        &self,
        f: &CudaFunction,
        grid: (u32, u32, u32),
        block: u32,
        shared: u32,
        params: P,
    ) -> Result<()> {
        let cfg = LaunchConfig {
            grid_dim: grid,
            block_dim: (block, 1, 1),
            shared_mem_bytes: shared,
        };
        let mut args = self.stream.launch_builder(f);
        args.arg(&params);
        // SAFETY: every kernel takes exactly one params struct, which
        // mirrors `P` (checked by the layout test in kernels/tests.rs); the pointers
        // in it are live device buffers sized by the caller.
        unsafe { args.launch(cfg) }
            .map(|_| ())
            .map_err(cuda_err("launching a kernel"))
    }

    /// Launches over `n` elements, one thread each.
    pub fn launch_1d<P: DeviceRepr>(&self, f: &CudaFunction, n: usize, params: P) -> Result<()> {
        const T: usize = 256;
        let blocks = n.div_ceil(T).max(1);
        let blocks = u32::try_from(blocks)
            .map_err(|_| Error::Cuda(format!("{n} elements exceed one launch")))?;
        self.launch(f, (blocks, 1, 1), T as u32, params)
    }

    /// Bytes of device memory free now.
    pub fn free_bytes(&self) -> Result<u64> {
        self.ctx
            .mem_get_info()
            .map(|(free, _)| free as u64)
            .map_err(|e| Error::Cuda(format!("cannot query free GPU memory: {e}")))
    }

    /// Bytes of device memory in use on the whole GPU (all processes).
    pub fn used_bytes(&self) -> usize {
        self.ctx
            .mem_get_info()
            .map(|(free, total)| total - free)
            .unwrap_or(0)
    }
}
