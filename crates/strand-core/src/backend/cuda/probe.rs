//! What this machine offers the CUDA backend, for `strand doctor`: each
//! check runs on its own, so one missing library does not hide the others.

use std::time::Instant;

use cudarc::driver::sys as drv;

use super::device::{cublas_available, cuda_err, driver_available, pin_host};
use super::kernels::{self, Defines};
use crate::backend::HostBuffer;
use crate::error::{Error, Result};

/// The message without the `cuda: ` prefix the error's display adds.
fn msg(e: Error) -> String {
    match e {
        Error::Cuda(m) => m,
        e => e.to_string(),
    }
}

/// `(item, finding)` lines, in order.
pub fn report() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut arch = None;
    match devices() {
        Ok((driver, devs)) => {
            out.push(("cuda driver".into(), driver));
            for (i, (name, cc, mem)) in devs.into_iter().enumerate() {
                out.push((
                    format!("cuda:{i}"),
                    format!(
                        "{name}, sm_{}{}, {:.1} GiB",
                        cc.0,
                        cc.1,
                        mem as f64 / (1u64 << 30) as f64
                    ),
                ));
                arch.get_or_insert(format!("sm_{}{}", cc.0, cc.1));
            }
        }
        Err(e) => out.push(("cuda driver".into(), format!("unusable: {}", msg(e)))),
    }
    out.push((
        "cublas".into(),
        match cublas_available() {
            Ok(()) => "found".into(),
            Err(e) => msg(e),
        },
    ));
    if arch.is_some() {
        out.push((
            "copy to host".into(),
            copy_speed().unwrap_or_else(|e| format!("not measured: {}", msg(e))),
        ));
    }
    match kernels::nvrtc_version() {
        Ok((maj, min)) => {
            out.push(("nvrtc".into(), format!("{maj}.{min}")));
            // Without a GPU, compile for Hopper: the check is whether the
            // sources compile, which does not depend on the device.
            let arch = arch.unwrap_or_else(|| "sm_90".into());
            out.push(("kernels".into(), compile_check(&arch)));
        }
        Err(e) => out.push(("nvrtc".into(), msg(e))),
    }
    out
}

/// GPU `ordinal`'s name, and its free and total memory as a context on
/// it sees them: no kernel is compiled and nothing is allocated (for
/// `--dry-run`).
pub fn memory(ordinal: usize) -> Result<(String, u64, u64)> {
    let n = driver_available()?;
    if ordinal >= n {
        return Err(Error::Cuda(format!(
            "no GPU {ordinal}: this machine has {n} (cuda:0..cuda:{})",
            n - 1
        )));
    }
    let ctx = cudarc::driver::CudaContext::new(ordinal).map_err(cuda_err("opening a GPU"))?;
    let name = ctx.name().map_err(cuda_err("reading the name"))?;
    let (free, total) = ctx
        .mem_get_info()
        .map_err(cuda_err("reading the free memory"))?;
    Ok((name, free as u64, total as u64))
}

type DeviceInfo = (String, (i32, i32), usize);

fn devices() -> Result<(String, Vec<DeviceInfo>)> {
    let n = driver_available()?;
    let mut v = 0;
    // SAFETY: out-parameter; the library is loaded (checked above).
    unsafe { drv::cuDriverGetVersion(&mut v) }
        .result()
        .map_err(cuda_err("reading the driver version"))?;
    let kernel_module = nvidia_driver_version()
        .map(|v| format!(", NVIDIA driver {v}"))
        .unwrap_or_default();
    let driver = format!(
        "CUDA {}.{}{kernel_module}, {n} GPU(s)",
        v / 1000,
        v % 1000 / 10
    );
    let mut devs = Vec::new();
    for i in 0..n {
        let ctx = cudarc::driver::CudaContext::new(i).map_err(cuda_err("opening a GPU"))?;
        devs.push((
            ctx.name().map_err(cuda_err("reading the name"))?,
            ctx.compute_capability()
                .map_err(cuda_err("reading the architecture"))?,
            ctx.total_mem()
                .map_err(cuda_err("reading the memory size"))?,
        ));
    }
    Ok((driver, devs))
}

/// The kernel module's version, e.g. `580.159.04` (Linux; the CUDA driver
/// API only reports the CUDA version it supports).
fn nvidia_driver_version() -> Option<String> {
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
    let line = text.lines().find(|l| l.starts_with("NVRM version"))?;
    line.split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .map(str::to_string)
}

fn compile_check(arch: &str) -> String {
    let t = Instant::now();
    for bf16 in [false, true] {
        let d = Defines {
            wide: bf16,
            ..Defines::new(bf16, 16, 16, 4)
        };
        if let Err(e) = kernels::cubin(&d, arch) {
            return format!("do not compile for {arch}: {}", msg(e));
        }
    }
    format!(
        "compile for {arch} ({:.1} s, cached in {})",
        t.elapsed().as_secs_f64(),
        kernels::cache_dir().map_or("nowhere".into(), |d| d.display().to_string())
    )
}

/// GPU 0's device-to-host copy speed into pageable and page-locked memory
/// (what a pass's results cost to fetch; see `HostBuffer`).
fn copy_speed() -> Result<String> {
    const BYTES: usize = 512 << 20;
    let ctx = cudarc::driver::CudaContext::new(0).map_err(cuda_err("opening a GPU"))?;
    let stream = ctx.default_stream();
    let dev = stream
        .alloc_zeros::<f32>(BYTES / 4)
        .map_err(cuda_err("allocating"))?;
    let mut buf = HostBuffer::new();
    buf.resize(BYTES / 4);
    let rate = |host: &mut [f32]| -> Result<f64> {
        // The first copy warms up (and faults in the pages).
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            stream
                .memcpy_dtoh(&dev, host)
                .map_err(cuda_err("copying"))?;
            stream.synchronize().map_err(cuda_err("copying"))?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(BYTES as f64 / best / 1e9)
    };
    let pageable = rate(&mut buf)?;
    buf.pin_with(|p, n| pin_host(&ctx, p, n));
    if !buf.is_pinned() {
        return Ok(format!(
            "{pageable:.1} GB/s (pageable memory; page-locking refused)"
        ));
    }
    let pinned = rate(&mut buf)?;
    Ok(format!(
        "{pinned:.1} GB/s page-locked, {pageable:.1} GB/s pageable (GPU 0, 512 MiB)"
    ))
}
