//! Launch geometry of the conv and scan kernels: how a pass is cut into
//! blocks and chunks. Kept apart from the mixer that fills the params so
//! that the per-op tests (`ops_tests.rs`) launch exactly what a forward
//! pass launches.

use super::device::Gpu;
use super::kernels::{ConvParams, ScanParams, SCAN_CHANNELS};
use crate::error::Result;

/// Scan blocks to aim for when a sequence must be cut into chunks;
/// `STRAND_SCAN_BLOCKS` overrides it for tuning. Measured on the H100 (PS
/// bf16, tokens/s, docs/benchmarks.md), as chunk steps at 131,072 / at
/// 1,048,576 tokens: 4,096 blocks (128 / 1,024 steps) 1.234 M / 1.341 M;
/// 2,048 blocks (256 / 2,048) 1.241 M / 1.305 M; 8,192 blocks (64 / 512)
/// 1.166 M / 1.363 M. Hence 2,048 blocks with chunks of at most 512 steps.
fn scan_blocks() -> usize {
    std::env::var("STRAND_SCAN_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(2048)
}

/// The longest scan chunk when a sequence is cut (see `scan_blocks`).
const SCAN_CHUNK_MAX: usize = 512;
/// Threads (channels) per block of the conv kernel, and rows per thread
/// (`CONV_ROWS` in conv.cu).
const CONV_CHANNELS: usize = 256;
const CONV_ROWS: usize = 16;

/// Sequence chunks of the scan for `nseq` sequences of `seqlen` steps and
/// `di` channels: `(chunk steps, chunks)`. A batch with enough sequences
/// to fill the GPU is not cut (no chunk's exponentials computed twice);
/// otherwise chunks of at most `SCAN_CHUNK_MAX` steps, enough for about
/// `scan_blocks()` blocks; chunks are a multiple of 32 steps and at most
/// 65,535 of them (a grid dimension).
pub(super) fn chunking(di: usize, nseq: usize, seqlen: usize) -> (usize, usize) {
    let cblocks = di.div_ceil(SCAN_CHANNELS as usize);
    let target = scan_blocks();
    if nseq * cblocks >= target {
        return (seqlen, 1);
    }
    let want = (nseq * seqlen * cblocks)
        .div_ceil(target)
        .min(SCAN_CHUNK_MAX);
    let chunk = want
        .max(seqlen.div_ceil(65_535))
        .next_multiple_of(32)
        .max(32);
    (chunk, seqlen.div_ceil(chunk))
}

/// The three phases of the chunked scan (kernels/scan.cu) for `p`, whose
/// `state`/`dsum` scratch holds `nseq · nchunks` chunks of `d_state` states.
pub(super) fn scan(g: &Gpu, p: &ScanParams, d_state: usize) -> Result<()> {
    let cblocks = (p.di as usize).div_ceil(SCAN_CHANNELS as usize) as u32;
    let (nseq, nchunks) = (p.nseq as u32, p.nchunks as u32);
    if nchunks > 1 {
        g.timed("scan_chunk_state", || {
            let grid = (cblocks, nchunks - 1, nseq);
            g.launch(&g.f.scan_chunk_state, grid, SCAN_CHANNELS, *p)
        })?;
    }
    // Also zeroes the state entering each sequence's first chunk.
    g.timed("scan_carry", || {
        let n = p.nseq as usize * d_state * p.di as usize;
        g.launch_1d(&g.f.scan_carry, n, *p)
    })?;
    g.timed("scan_output", || {
        let grid = (cblocks, nchunks, nseq);
        g.launch(&g.f.scan_output, grid, SCAN_CHANNELS, *p)
    })
}

/// Causal conv + SiLU of `p.rows` rows (kernels/conv.cu).
pub(super) fn conv(g: &Gpu, p: ConvParams) -> Result<()> {
    let (rows, di) = (p.rows as usize, p.di as usize);
    let grid = (
        rows.div_ceil(CONV_ROWS) as u32,
        di.div_ceil(CONV_CHANNELS) as u32,
        1,
    );
    g.launch(&g.f.conv_silu, grid, CONV_CHANNELS as u32, p)
}
