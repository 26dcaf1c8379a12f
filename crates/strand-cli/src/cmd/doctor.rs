//! `strand doctor`: what this machine offers strand.

use anyhow::Result;
use strand_core::diag;

pub fn run() -> Result<()> {
    println!("strand {}", env!("CARGO_PKG_VERSION"));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    println!("cpu\t{cpu}");
    println!("threads\t{}", rayon::current_num_threads());
    println!("cpu kernels\t{}", diag::cpu_kernels());
    for (item, finding) in diag::gpu_report() {
        println!("{item}\t{finding}");
    }
    match strand_core::model::hub::cache_dir() {
        Some(d) => println!("hf cache\t{}", d.display()),
        None => println!("hf cache\tnot found (set HF_HUB_CACHE or HF_HOME)"),
    }
    Ok(())
}
