//! Hidden states of intermediate layers (`Out::Layers`, `--layer N`)
//! against the reference goldens: layer 0 is the embedding (`<r>.embed`),
//! layer 1 the residual stream after the first block (`<r>.layer1_out`,
//! in the block's own layout: PS halves exchanged), and layer `n_layer`
//! the final hidden states, bit for bit what a plain pass gives.
//!
//! Tolerances: `recommended_tolerance` of `test-data/goldens/manifest.json`
//! (as `conformance.rs`), and the largest error is also held to a few times
//! the reference's own float32-vs-float64 difference
//! (`tolerance_f32_vs_f64`), so a drift far above rounding cannot hide
//! under the generous tolerance.

use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use strand_core::tokenizer::encode_with_specials;
use strand_core::{DeviceSpec, HostBuffer, Model, Out};

mod common;

fn test_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-data")
}

fn manifest() -> serde_json::Value {
    let path = test_data().join("goldens/manifest.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// (name, bases) of every record of `sequences.fa`.
fn records() -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(test_data().join("sequences.fa")).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in text.lines() {
        match line.strip_prefix('>') {
            Some(h) => out.push((h.split_whitespace().next().unwrap().into(), Vec::new())),
            None => out.last_mut().unwrap().1.extend(line.trim().bytes()),
        }
    }
    out
}

fn golden(bytes: &[u8], name: &str) -> Vec<f32> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("no golden {name}"));
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn model(name: &str) -> Model {
    Model::load_dir(
        &test_data().join("models").join(name),
        name,
        common::place(),
    )
    .unwrap()
}

fn on_cpu() -> bool {
    common::place().device == DeviceSpec::Cpu
}

/// `allclose` with the manifest's recommended tolerance for `kind`;
/// returns the largest absolute error.
fn check(what: &str, kind: &str, got: &[f32], want: &[f32]) -> f32 {
    let t = &manifest()["recommended_tolerance"][kind];
    let (atol, rtol) = (t["atol"].as_f64().unwrap(), t["rtol"].as_f64().unwrap());
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        assert!(
            (err as f64) <= atol + rtol * w.abs() as f64,
            "{what}: element {i}: got {g}, want {w} (|diff| {err:e})"
        );
        worst = worst.max(err);
    }
    worst
}

fn check_family(family: &str) {
    let bytes = std::fs::read(test_data().join(format!("goldens/{family}.safetensors"))).unwrap();
    let m = model(family);
    let n = m.config.n_layer;
    assert_eq!(n, 2, "the fixture models have two blocks");
    let f64_diff = |kind: &str| {
        manifest()["tolerance_f32_vs_f64"][family][kind]["max_abs"]
            .as_f64()
            .unwrap() as f32
    };
    let mut worst = 0.0f32;
    for (rec, seq) in records() {
        let ids = encode_with_specials(&seq);
        let got = m.forward_layers(&ids, &[0, 1, n]).unwrap();
        let g = |what: &str| golden(&bytes, &format!("{rec}.{what}"));
        // The embedding is exact (so is the reference's, in f64 too).
        assert_eq!(
            got[0],
            g("embed"),
            "{family} {rec}: layer 0 is the embedding"
        );
        let want = g("layer1_out");
        let e = check(
            &format!("{family} {rec} layer 1"),
            "layer1_out",
            &got[1],
            &want,
        );
        worst = worst.max(e);
        // The residual stream, not the mixer output alone (which is what
        // the reference's `output_hidden_states` lists for 0 < N < n_layer).
        let mixer = g("layer1_hidden");
        let apart = got[1]
            .iter()
            .zip(&mixer)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            apart > 1e-2,
            "{family} {rec}: layer 1 is not the mixer output"
        );
        // The last layer is the plain pass, bit for bit.
        let plain = m.forward(&ids).unwrap();
        assert_eq!(got[2], plain, "{family} {rec}: layer {n} = final hidden");
        if on_cpu() {
            check(
                &format!("{family} {rec} layer {n}"),
                "hidden",
                &got[2],
                &g("hidden"),
            );
        }
    }
    eprintln!(
        "{family}: layer 1 max |diff| {worst:.2e} (reference f32 vs f64: {:.2e})",
        f64_diff("layer1_out")
    );
    if on_cpu() {
        // Rounding-level agreement: within a few times the reference's
        // own float32 rounding noise.
        assert!(
            worst <= 4.0 * f64_diff("layer1_out"),
            "{family}: layer 1 max |diff| {worst:e}"
        );
    }
}

#[test]
fn ps_tiny_layers_match_reference() {
    check_family("ps-tiny");
}

#[test]
fn ph_tiny_layers_match_reference() {
    check_family("ph-tiny");
}

/// Layer 1 is what a traced pass sees after block 0, summed; the order of
/// the list only orders the slabs; a batch gives what each sequence gives.
#[test]
fn layers_are_the_traced_stream_in_any_order_and_batch() {
    for family in ["ps-tiny", "ph-tiny"] {
        let m = model(family);
        let (_, seq) = &records()[3];
        let ids = encode_with_specials(seq);
        let mut after0 = None;
        common::traced(&m, &ids, |i, st| {
            if i == 0 {
                let mut sum = vec![0.0; st.hidden.len()];
                st.sum_into(&mut sum);
                after0 = Some(sum);
            }
        })
        .unwrap();
        let fwd = m.forward_layers(&ids, &[0, 1, 2]).unwrap();
        assert_eq!(Some(&fwd[1]), after0.as_ref(), "{family}: traced stream");
        let rev = m.forward_layers(&ids, &[2, 0, 1]).unwrap();
        assert_eq!(
            rev,
            [fwd[2].clone(), fwd[0].clone(), fwd[1].clone()],
            "{family}: list order"
        );
        assert_eq!(m.forward_layers(&ids, &[1]).unwrap(), [fwd[1].clone()]);

        // Three sequences of equal length in one call.
        let seqs: Vec<Vec<u32>> = (0..3)
            .map(|k| ids.iter().map(|&t| 7 + (t + k) % 4).collect())
            .collect();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let mut buf = HostBuffer::new();
        m.run(&refs, Out::Layers(&[1, 2], &mut buf)).unwrap();
        let per = ids.len() * m.width();
        assert_eq!(buf.len(), 2 * 3 * per);
        for (k, s) in seqs.iter().enumerate() {
            let alone = m.forward_layers(s, &[1, 2]).unwrap();
            for (j, layer) in alone.iter().enumerate() {
                let slab = &buf[j * 3 * per + k * per..j * 3 * per + (k + 1) * per];
                if on_cpu() {
                    assert_eq!(slab, &layer[..], "{family}: member {k} layer slot {j}");
                } else {
                    let e = slab
                        .iter()
                        .zip(layer)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0f32, f32::max);
                    assert!(e < 1e-3, "{family}: member {k} layer slot {j}: {e:e}");
                }
            }
        }
    }
}

#[test]
fn bad_layer_lists_are_refused() {
    let m = model("ph-tiny");
    let ids = encode_with_specials(b"ACGT");
    let e = m.forward_layers(&ids, &[3]).unwrap_err().to_string();
    assert!(e.contains("layer 3") && e.contains("0 to 2"), "{e}");
    let e = m.forward_layers(&ids, &[1, 0, 1]).unwrap_err().to_string();
    assert!(e.contains("twice"), "{e}");
    assert!(m.forward_layers(&ids, &[]).unwrap().is_empty());
}

/// PS models are reverse-complement equivariant at every layer, so the
/// strand-symmetric mean of any layer is the same for a sequence and its
/// reverse complement (README, `--layer`): `layer(rc ids) = flipLC(layer)`.
#[test]
fn ps_layers_are_rc_equivariant() {
    let m = model("ps-tiny");
    let (_, seq) = &records()[4];
    let ids = strand_core::tokenizer::encode_bases(seq);
    let rc: Vec<u32> = ids
        .iter()
        .rev()
        .map(|&t| m.config.complement_map[t as usize])
        .collect();
    let w = m.width();
    let (fwd, rev) = (
        m.forward_layers(&ids, &[0, 1, 2]).unwrap(),
        m.forward_layers(&rc, &[0, 1, 2]).unwrap(),
    );
    for (l, (f, r)) in fwd.iter().zip(&rev).enumerate() {
        let flipped: Vec<f32> = r
            .chunks_exact(w)
            .rev()
            .flat_map(|row| row.iter().rev().copied())
            .collect();
        let scale = f.iter().fold(0.0f32, |a, x| a.max(x.abs()));
        let e = f
            .iter()
            .zip(&flipped)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(e <= 1e-5 * scale, "layer {l}: {e:e} of {scale}");
        if l == 0 {
            assert_eq!(e, 0.0, "the embedding is exactly equivariant");
        }
    }
}
