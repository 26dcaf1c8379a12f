//! Conformance with the upstream reference: every fixture model and record,
//! every golden tensor, within the tolerances of `test-data/goldens/manifest.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use strand_core::tokenizer::{encode_bases, encode_with_specials, reverse_complement};
use strand_core::Model;

mod common;

fn test_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-data")
}

/// FASTA records of `sequences.fa` (name, sequence).
fn records() -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(test_data().join("sequences.fa")).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix('>') {
            out.push((h.split_whitespace().next().unwrap().to_string(), Vec::new()));
        } else {
            out.last_mut()
                .unwrap()
                .1
                .extend_from_slice(line.trim().as_bytes());
        }
    }
    out
}

struct Goldens {
    bytes: Vec<u8>,
    tol: BTreeMap<String, (f32, f32)>,
}

impl Goldens {
    fn load(family: &str) -> Goldens {
        let dir = test_data().join("goldens");
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let tol = manifest["recommended_tolerance"]
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.clone(),
                    (v.get("atol")?.as_f64()? as f32, v["rtol"].as_f64()? as f32),
                ))
            })
            .collect();
        Goldens {
            bytes: std::fs::read(dir.join(format!("{family}.safetensors"))).unwrap(),
            tol,
        }
    }
    fn f32(&self, name: &str) -> Vec<f32> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("golden {name} missing"));
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
    fn ids(&self, name: &str) -> Vec<u32> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).unwrap();
        t.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect()
    }
    fn has(&self, name: &str) -> bool {
        SafeTensors::deserialize(&self.bytes)
            .unwrap()
            .tensor(name)
            .is_ok()
    }
    /// allclose with the manifest tolerance for `kind`; returns the worst error.
    fn check(&self, name: &str, kind: &str, got: &[f32]) -> f32 {
        let want = self.f32(name);
        assert_eq!(got.len(), want.len(), "{name}: length");
        let (atol, rtol) = self.tol[kind];
        let mut worst = (0.0f32, 0usize);
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let err = (g - w).abs();
            assert!(
                err <= atol + rtol * w.abs(),
                "{name}: element {i}: got {g}, want {w} (|diff| {err} > atol {atol} + rtol {rtol}·|want|)"
            );
            if err > worst.0 {
                worst = (err, i);
            }
        }
        worst.0
    }
}

fn model(name: &str) -> Model {
    let dir = test_data().join("models").join(name);
    Model::load_dir(&dir, name, common::place()).unwrap()
}

fn check_family(family: &str) {
    let g = Goldens::load(family);
    let lm = model(family);
    let cls = model(&format!("{family}-cls"));
    for (rec, seq) in records() {
        let ids = encode_with_specials(&seq);
        assert_eq!(ids, g.ids(&format!("{rec}.input_ids")), "{rec}: token ids");
        let nosep = encode_bases(&seq);
        assert_eq!(
            nosep,
            g.ids(&format!("{rec}.nosep.input_ids")),
            "{rec}: nosep ids"
        );

        assert_eq!(
            lm.embed(&ids).unwrap(),
            g.f32(&format!("{rec}.embed")),
            "{rec}: embed is exact"
        );
        let mut first = None;
        let hidden = common::traced(&lm, &ids, |i, st| {
            if i == 0 {
                first = Some(st.clone())
            }
        })
        .unwrap();
        let st = first.unwrap();
        let res = st.residual.clone().unwrap();
        g.check(&format!("{rec}.layer1_hidden"), "layer1_hidden", &st.hidden);
        g.check(&format!("{rec}.layer1_residual"), "layer1_residual", &res);
        let out: Vec<f32> = st.hidden.iter().zip(&res).map(|(a, b)| a + b).collect();
        g.check(&format!("{rec}.layer1_out"), "layer1_out", &out);
        let e = g.check(&format!("{rec}.hidden"), "hidden", &hidden);
        g.check(
            &format!("{rec}.logits"),
            "logits",
            &lm.lm_logits(&hidden).unwrap(),
        );
        let hn = lm.forward(&nosep).unwrap();
        g.check(&format!("{rec}.nosep.hidden"), "nosep.hidden", &hn);
        g.check(
            &format!("{rec}.nosep.logits"),
            "nosep.logits",
            &lm.lm_logits(&hn).unwrap(),
        );

        let hc = cls.forward(&ids).unwrap();
        g.check(
            &format!("{rec}.class_logits"),
            "class_logits",
            &cls.class_logits(&hc).unwrap(),
        );
        if g.has(&format!("{rec}.rc.input_ids")) {
            let mut rc_ids = encode_with_specials(&reverse_complement(&seq));
            assert_eq!(
                rc_ids,
                g.ids(&format!("{rec}.rc.input_ids")),
                "{rec}: rc ids"
            );
            let fwd = cls.class_logits(&hc).unwrap();
            let rc = cls.class_logits(&cls.forward(&rc_ids).unwrap()).unwrap();
            let conj: Vec<f32> = fwd.iter().zip(&rc).map(|(a, b)| (a + b) / 2.0).collect();
            g.check(
                &format!("{rec}.class_logits_conjoin"),
                "class_logits_conjoin",
                &conj,
            );
            rc_ids.clear();
        }
        eprintln!("{family} {rec}: hidden max |diff| {e:.2e}");
    }

    // Masked-position logits of len1000 without special tokens.
    let seq = records()
        .into_iter()
        .find(|(r, _)| r == "len1000")
        .unwrap()
        .1;
    let positions = g.ids("len1000.nosep.masked_positions");
    let v = lm.config.vocab_size;
    let mut got = Vec::new();
    for &p in &positions {
        let mut ids = encode_bases(&seq);
        ids[p as usize] = strand_core::tokenizer::id::MASK;
        let logits = lm.lm_logits(&lm.forward(&ids).unwrap()).unwrap();
        got.extend_from_slice(&logits[p as usize * v..(p as usize + 1) * v]);
    }
    g.check("len1000.nosep.masked_logits", "nosep.masked_logits", &got);
}

#[test]
fn ps_tiny_matches_reference() {
    check_family("ps-tiny");
}

#[test]
fn ph_tiny_matches_reference() {
    check_family("ph-tiny");
}
