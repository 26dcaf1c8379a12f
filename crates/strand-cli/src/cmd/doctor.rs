//! `strand doctor`: what this machine offers strand.

use anyhow::Result;
use strand_core::diag;

pub fn run() -> Result<()> {
    println!("strand {}", env!("CARGO_PKG_VERSION"));
    let cpu = diag::cpu_name().unwrap_or_else(|| std::env::consts::ARCH.to_string());
    println!("cpu\t{cpu}");
    println!("threads\t{}", rayon::current_num_threads());
    println!("cpu kernels\t{}", diag::cpu_kernels());
    for (item, finding) in diag::gpu_report() {
        println!("{item}\t{finding}");
    }
    match crate::dry_run::calibration::path() {
        Some(p) => {
            let n = crate::dry_run::calibration::read(&p).map_or(0, |e| e.len());
            println!("calibration\t{} ({n} lines from strand bench)", p.display());
        }
        None => println!("calibration\tnowhere (set STRAND_CACHE_DIR or HOME)"),
    }
    match strand_core::model::hub::cache_dir() {
        Some(d) => println!("hf cache\t{}", d.display()),
        None => println!("hf cache\tnot found (set HF_HUB_CACHE or HF_HOME)"),
    }
    Ok(())
}
