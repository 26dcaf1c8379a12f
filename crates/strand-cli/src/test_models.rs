//! Fixture models for unit tests.

use strand_core::{DeviceSpec, Model, Placement};

/// `n` CPU copies of test-data/models/`name`: several engines standing in
/// for several GPUs.
pub fn cpu_models(name: &str, n: usize) -> Vec<Model> {
    let dir = format!(
        "{}/../../test-data/models/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let place = Placement {
        device: DeviceSpec::Cpu,
        precision: None,
    };
    (0..n).map(|_| Model::load(&dir, place).unwrap()).collect()
}
