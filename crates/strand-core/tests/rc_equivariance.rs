//! Reverse-complement equivariance of PS (RCPS) models, spec section 4:
//! `hidden(rc ids) = flipLC(hidden(ids))` and the LM logits of the rc ids
//! are the position-reversed logits with columns permuted by the complement
//! map. Upstream this holds bit-exactly; strand may sum in another order,
//! so the bound is relative float precision.
//!
//! PH models have no such symmetry; checking that the same measure is large
//! for ph-tiny shows the measure can fail, so the PS checks are not vacuous.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use strand_core::model::synthetic::{published_config, write_checkpoint};
use strand_core::Model;

mod common;

/// Sequence lengths probed: degenerate (1, 2), shorter than a conv window
/// plus one (7), and long enough to cross several of the GPU scan's tiles.
const LENGTHS: [usize; 6] = [1, 2, 7, 100, 1000, 5000];

/// Allowed `max |difference| / max |values|` for a PS model.
const PS_TOL: f64 = 1e-5;

/// The smallest gap a PH model must show (it is O(1) in practice).
const PH_MIN_GAP: f64 = 0.1;

fn test_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-data")
}

/// Token complement (spec section 2), written out here rather than taken
/// from the model so that the test does not trust the code under test:
/// A(7)<->T(10), C(8)<->G(9), everything else fixed.
fn complement(id: usize) -> usize {
    match id {
        7 => 10,
        10 => 7,
        8 => 9,
        9 => 8,
        other => other,
    }
}

fn revcomp(ids: &[u32]) -> Vec<u32> {
    ids.iter()
        .rev()
        .map(|&t| complement(t as usize) as u32)
        .collect()
}

/// Uniform over A, C, G, T, N (ids 7..=11).
fn random_bases(rng: &mut StdRng, len: usize) -> Vec<u32> {
    (0..len).map(|_| rng.random_range(7..=11u32)).collect()
}

fn max_abs(x: &[f32]) -> f64 {
    x.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()))
}

/// How far a model is from equivariance on one sequence, each relative to
/// the largest magnitude of the forward-strand output.
struct Gap {
    hidden: f64,
    logits: f64,
}

fn equivariance_gap(model: &Model, ids: &[u32]) -> Gap {
    let len = ids.len();
    let width = model.width();
    let vocab = model.config.vocab_size;

    let hidden = model.forward(ids).expect("forward");
    let hidden_rc = model.forward(&revcomp(ids)).expect("forward rc");
    // flipLC: row l of the rc run against row len-1-l, channel c against
    // channel width-1-c of the forward run.
    let mut diff_h = 0.0f64;
    for l in 0..len {
        for c in 0..width {
            let want = hidden[(len - 1 - l) * width + (width - 1 - c)];
            let got = hidden_rc[l * width + c];
            diff_h = diff_h.max((got as f64 - want as f64).abs());
        }
    }

    let logits = model.lm_logits(&hidden).expect("lm logits");
    let logits_rc = model.lm_logits(&hidden_rc).expect("lm logits rc");
    let mut diff_l = 0.0f64;
    for l in 0..len {
        for v in 0..vocab {
            let want = logits[(len - 1 - l) * vocab + complement(v)];
            let got = logits_rc[l * vocab + v];
            diff_l = diff_l.max((got as f64 - want as f64).abs());
        }
    }

    let (scale_h, scale_l) = (max_abs(&hidden), max_abs(&logits));
    assert!(
        scale_h > 0.0 && scale_l > 0.0,
        "outputs are all zero: the comparison would be vacuous"
    );
    Gap {
        hidden: diff_h / scale_h,
        logits: diff_l / scale_l,
    }
}

/// Runs every length on `model`; returns the worst (hidden, logits) gap.
fn gaps_over_lengths(model: &Model, name: &str, seed: u64) -> Vec<(usize, Gap)> {
    let mut rng = StdRng::seed_from_u64(seed);
    LENGTHS
        .iter()
        .map(|&len| {
            let ids = random_bases(&mut rng, len);
            let gap = equivariance_gap(model, &ids);
            println!(
                "{name} len {len}: hidden {:.2e}, logits {:.2e}",
                gap.hidden, gap.logits
            );
            (len, gap)
        })
        .collect()
}

fn fixture(name: &str) -> Model {
    Model::load_dir(
        &test_data().join("models").join(name),
        name,
        common::place(),
    )
    .expect("load fixture model")
}

fn synthetic(dir: &Path, config: &serde_json::Value, seed: u64) -> Model {
    write_checkpoint(dir, config, seed).expect("write checkpoint");
    Model::load_dir(dir, "synthetic", common::place()).expect("load synthetic model")
}

fn assert_equivariant(model: &Model, name: &str, seed: u64) {
    assert!(model.config.rcps, "{name}: not a PS model");
    let start = Instant::now();
    let mut worst = (0.0f64, 0.0f64);
    for (len, gap) in gaps_over_lengths(model, name, seed) {
        assert!(
            gap.hidden <= PS_TOL,
            "{name} len {len}: hidden(rc) vs flipLC(hidden): rel gap {:.2e}",
            gap.hidden
        );
        assert!(
            gap.logits <= PS_TOL,
            "{name} len {len}: rc logits vs permuted reversed logits: rel gap {:.2e}",
            gap.logits
        );
        worst = (worst.0.max(gap.hidden), worst.1.max(gap.logits));
    }
    println!(
        "{name}: worst hidden {:.2e}, worst logits {:.2e} ({:.2?})",
        worst.0,
        worst.1,
        start.elapsed()
    );
}

#[test]
fn ps_tiny_fixture_is_rc_equivariant() {
    assert_equivariant(&fixture("ps-tiny"), "ps-tiny", 1);
}

/// Published layout (fused, RMSNorm, tied), more channels and one more layer
/// than the fixture.
#[test]
fn synthetic_ps_is_rc_equivariant() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let model = synthetic(tmp.path(), &published_config(true, 16, 3), 16);
    assert_equivariant(&model, "synthetic PS d16 n3", 2);
}

/// The unfused `RCPSAddNormWrapper` path (no half swap), with LayerNorm so
/// the norm bias is flipped too: different arithmetic, same symmetry.
#[test]
fn synthetic_unfused_ps_is_rc_equivariant() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut config = published_config(true, 16, 2);
    config["fused_add_norm"] = json!(false);
    config["rms_norm"] = json!(false);
    let model = synthetic(tmp.path(), &config, 17);
    assert_equivariant(&model, "synthetic unfused LayerNorm PS d16 n2", 3);
}

/// PH has no built-in symmetry: the same measure is O(1) there at every
/// length, so the PS assertions above are able to fail.
#[test]
fn ph_tiny_is_not_rc_equivariant() {
    let model = fixture("ph-tiny");
    assert!(!model.config.rcps, "ph-tiny: unexpectedly a PS model");
    for (len, gap) in gaps_over_lengths(&model, "ph-tiny", 4) {
        assert!(
            gap.hidden > PH_MIN_GAP && gap.logits > PH_MIN_GAP,
            "ph-tiny len {len}: looks equivariant (hidden gap {:.2e}, logits gap {:.2e})",
            gap.hidden,
            gap.logits
        );
    }
}
