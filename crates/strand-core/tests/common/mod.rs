//! Shared by the integration tests.

use strand_core::backend::Stream;
use strand_core::{DeviceSpec, HostBuffer, Model, Out, Placement};

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

/// A forward pass calling `after_block` after each block with a host copy
/// of the stream; returns the pass's hidden states.
#[allow(dead_code)] // not every test file traces
pub fn traced(
    model: &Model,
    ids: &[u32],
    mut after_block: impl FnMut(usize, &Stream),
) -> strand_core::Result<Vec<f32>> {
    let mut out = HostBuffer::transient();
    model.run(&[ids], Out::Traced(&mut out, &mut after_block))?;
    Ok(out.to_vec())
}
