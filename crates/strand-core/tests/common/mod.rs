//! Shared by the integration tests.

use strand_core::{DeviceSpec, Placement};

/// Where the model tests run: the CPU, unless `STRAND_TEST_DEVICE` (e.g.
/// `cuda`) and `STRAND_TEST_PRECISION` (`fp32`, `bf16`) say otherwise.
/// This is how the same conformance, variant and equivariance tests are
/// run on a GPU machine.
pub fn place() -> Placement {
    let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
    Placement {
        device: var("STRAND_TEST_DEVICE").map_or(DeviceSpec::Cpu, |s| {
            s.parse()
                .unwrap_or_else(|e| panic!("STRAND_TEST_DEVICE: {e}"))
        }),
        precision: var("STRAND_TEST_PRECISION").map(|s| {
            s.parse()
                .unwrap_or_else(|e| panic!("STRAND_TEST_PRECISION: {e}"))
        }),
    }
}
