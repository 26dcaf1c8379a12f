//! The passes `--dry-run` counts are those the engine runs.

use strand_core::memory::Engine as Kind;
use strand_core::Precision;

use super::*;

fn win(len: u64, snvs: &[u64], jobs: u64) -> Win {
    Win {
        len,
        snv_offsets: snvs.iter().copied().collect(),
        jobs,
    }
}

/// Two windows of 1,000 (one with two SNVs, one with an indel only) and
/// one of 500 with an SNV.
fn windows() -> Vec<Win> {
    vec![win(1000, &[1, 2], 2), win(1000, &[], 1), win(500, &[3], 1)]
}

fn engine(target: &Target, scores: &[Score], rc: bool) -> Engine {
    Engine {
        batched: target.batches(),
        batch_tokens: 1 << 20,
        rc,
        llr: scores.contains(&Score::Llr),
        masked: scores.contains(&Score::LlrMasked),
        embed: scores.contains(&Score::EmbedDist),
    }
}

fn passes(target: &Target, scores: &[Score], rc: bool) -> Passes {
    let mut p = Passes::default();
    engine(target, scores, rc).add(&mut p, &windows());
    p
}

#[test]
fn llr_needs_a_reference_pass_per_window_with_an_snv() {
    let cpu = Target::test("ph-tiny", Kind::Cpu, 1);
    let gpu = Target::test("ph-tiny", Kind::Cuda(Precision::Bf16), 1);
    let p = passes(&cpu, &[Score::Llr], false);
    assert_eq!((p.windows, p.passes, p.tokens), (3, 2, 1500));
    assert_eq!((p.batches, p.largest_unit, p.chunk_bases), (2, 1000, 2500));
    // Equal lengths run together on a GPU: one unit per length.
    let g = passes(&gpu, &[Score::Llr], false);
    assert_eq!((g.passes, g.batches), (2, 2));
    // PH --rc-average: the reverse-complement passes too, in a buffer of
    // their own.
    let rc = passes(&cpu, &[Score::Llr], true);
    assert_eq!((rc.passes, rc.tokens, rc.largest_rc_unit), (4, 3000, 1000));
}

#[test]
fn masked_and_alternate_passes_follow_positions_and_alleles() {
    let cpu = Target::test("ph-tiny", Kind::Cpu, 1);
    let gpu = Target::test("ph-tiny", Kind::Cuda(Precision::Bf16), 1);
    // One masked pass per SNV position: 2 + 1.
    let p = passes(&cpu, &[Score::LlrMasked], false);
    assert_eq!((p.passes, p.tokens, p.largest_batch), (3, 2500, 2000));
    let g = passes(&gpu, &[Score::LlrMasked], false);
    assert_eq!((g.passes, g.batches), (3, 2));
    // embed_dist: a reference pass for every window with an allele, and
    // an alternate pass per allele.
    let e = passes(&cpu, &[Score::EmbedDist], false);
    assert_eq!((e.passes, e.tokens), (3 + 4, 2500 + 3500));
}
