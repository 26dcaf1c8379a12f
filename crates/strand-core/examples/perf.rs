use strand_core::model::synthetic::{published_config, write_checkpoint};
use strand_core::{DeviceSpec, Model};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rcps = args[1] == "ps";
    let len: usize = args[2].parse().unwrap();
    let dir = std::env::temp_dir().join(format!("perf-{}", args[1]));
    write_checkpoint(&dir, &published_config(rcps, 256, 16), 1).unwrap();
    let m = Model::load_dir(&dir, "x", DeviceSpec::Cpu).unwrap();
    let ids: Vec<u32> = (0..len).map(|i| 7 + (i * 7 % 4) as u32).collect();
    let t = std::time::Instant::now();
    let h = m.forward(&ids).unwrap();
    let s = t.elapsed().as_secs_f64();
    println!("{} len {len}: {:.3}s {:.0} tok/s {}", args[1], s, len as f64 / s, h[0]);
}
