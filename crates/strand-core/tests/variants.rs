//! Config variants against an independent float64 reference.
//!
//! The reference below is written only from `docs/caduceus-model.md` (the
//! shared spec), deliberately naive: every flip the spec writes (revL, revC,
//! flipLC, the PS half swap of the fused block, the unfused
//! `RCPSAddNormWrapper` path) is materialised as a copy, the selective scan
//! is the plain recurrence, and all arithmetic is f64. strand-core is treated
//! as a black box: the reference reads the same `model.safetensors` that
//! `write_checkpoint` produced, by the HF key names of spec section 9, and
//! the test compares embeddings, every block's stream, the final hidden
//! states and the LM logits.
//!
//! The grid covers rcps × fused_add_norm × rms_norm × bidirectional ×
//! strategy (add / ew_multiply / null) × weight tie, with the SSM knobs
//! (bias, conv_bias, dt_rank, d_state, d_conv, expand, vocab padding,
//! d_model) cycled so that every value appears with rcps both true and false
//! (asserted).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};
use strand_core::model::synthetic::{published_config, write_checkpoint};
use strand_core::Model;

mod common;
mod reference;

use reference::*;

/// Allowed `max |strand - reference| / max |reference|` (the brief's bound;
/// the f32-vs-f64 level of the reference itself is ~1e-6).
const REL_TOL: f64 = 1e-4;

// ---------------------------------------------------------------------------
// The config grid.
// ---------------------------------------------------------------------------

/// One point of the grid. `strategy: None` writes JSON null.
#[derive(Clone, Debug)]
struct Variant {
    rcps: bool,
    fused: bool,
    rms: bool,
    bidirectional: bool,
    strategy: Option<&'static str>,
    tie: bool,
    bias: bool,
    conv_bias: bool,
    /// `None` = "auto".
    dt_rank: Option<usize>,
    d_state: usize,
    d_conv: usize,
    expand: usize,
    /// `(vocab_size, pad_vocab_size_multiple)`.
    vocab: (usize, usize),
    d_model: usize,
    residual_in_fp32: bool,
}

impl Variant {
    fn config(&self) -> Value {
        let mut c = published_config(self.rcps, self.d_model, 2);
        let (vocab, multiple) = self.vocab;
        // The unpadded map, as a fresh (not yet saved) config would list it.
        let comp: serde_json::Map<String, Value> = (0..vocab)
            .map(|i| {
                let to = match i {
                    7 => 10,
                    10 => 7,
                    8 => 9,
                    9 => 8,
                    other => other,
                };
                (i.to_string(), json!(to))
            })
            .collect();
        c["vocab_size"] = json!(vocab);
        c["pad_vocab_size_multiple"] = json!(multiple);
        c["complement_map"] = Value::Object(comp);
        c["fused_add_norm"] = json!(self.fused);
        c["rms_norm"] = json!(self.rms);
        c["residual_in_fp32"] = json!(self.residual_in_fp32);
        c["bidirectional"] = json!(self.bidirectional);
        c["bidirectional_strategy"] = json!(self.strategy);
        c["bidirectional_weight_tie"] = json!(self.tie);
        c["ssm_cfg"] = json!({
            "d_state": self.d_state,
            "d_conv": self.d_conv,
            "expand": self.expand,
            "dt_rank": self.dt_rank.map_or(json!("auto"), |r| json!(r)),
            "conv_bias": self.conv_bias,
            "bias": self.bias,
            "use_fast_path": true,
        });
        c
    }

    /// `flag=value` labels, for the coverage assertion and the log.
    fn labels(&self) -> Vec<String> {
        vec![
            format!("fused_add_norm={}", self.fused),
            format!("rms_norm={}", self.rms),
            format!("bidirectional={}", self.bidirectional),
            format!("strategy={}", self.strategy.unwrap_or("null")),
            format!("weight_tie={}", self.tie),
            format!("bias={}", self.bias),
            format!("conv_bias={}", self.conv_bias),
            format!(
                "dt_rank={}",
                self.dt_rank.map_or("auto".to_string(), |r| r.to_string())
            ),
            format!("d_state={}", self.d_state),
            format!("d_conv={}", self.d_conv),
            format!("expand={}", self.expand),
            format!("vocab={}/{}", self.vocab.0, self.vocab.1),
            format!("d_model={}", self.d_model),
            format!("residual_in_fp32={}", self.residual_in_fp32),
        ]
    }
}

/// rcps × bidirectional × fused × rms × (strategy × tie when bidirectional):
/// 28 points per rcps value. The SSM knobs cycle with co-prime-ish periods
/// of the per-rcps index, so both rcps values get the same knob sequence.
fn grid() -> Vec<Variant> {
    let mut out = Vec::new();
    for rcps in [false, true] {
        let mut k = 0usize;
        for bidirectional in [true, false] {
            for fused in [true, false] {
                for rms in [true, false] {
                    let strategies: &[Option<&'static str>] = if bidirectional {
                        &[Some("add"), Some("ew_multiply"), None]
                    } else {
                        &[Some("add")]
                    };
                    for &strategy in strategies {
                        for tie in if bidirectional {
                            &[true, false][..]
                        } else {
                            &[true][..]
                        } {
                            out.push(Variant {
                                rcps,
                                fused,
                                rms,
                                bidirectional,
                                strategy,
                                tie: *tie,
                                bias: k % 2 == 1,
                                conv_bias: k % 3 != 2,
                                dt_rank: if (k / 2) % 2 == 1 { Some(3) } else { None },
                                d_state: if k % 5 < 2 { 8 } else { 16 },
                                d_conv: if (k / 3) % 2 == 0 { 3 } else { 4 },
                                expand: if k % 4 == 3 { 1 } else { 2 },
                                vocab: [(12, 8), (16, 8), (12, 1)][k % 3],
                                d_model: if (k / 5) % 2 == 0 { 8 } else { 12 },
                                residual_in_fp32: k % 2 == 0,
                            });
                            k += 1;
                        }
                    }
                }
            }
        }
    }
    out
}

/// `max |got - want| / max |want|`.
fn rel_err(got: &[f32], want: &Act) -> f64 {
    let flat: Vec<f64> = want.iter().flatten().copied().collect();
    assert_eq!(got.len(), flat.len(), "output size");
    let scale = flat.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(&flat)
        .fold(0.0f64, |m, (&g, &w)| m.max((g as f64 - w).abs()));
    diff / scale.max(f64::MIN_POSITIVE)
}

/// ~40 tokens: mostly nucleotides (N included), plus a few special ids,
/// which are fixed points of the complement map.
fn random_ids(rng: &mut StdRng, len: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..len)
        .map(|_| {
            if rng.random_range(0..10) == 0 {
                [1u32, 3, 6][rng.random_range(0..3)]
            } else {
                7 + rng.random_range(0..5u32)
            }
        })
        .collect();
    ids[len / 2] = 11; // at least one N
    ids
}

#[test]
fn reference_matches_strand_on_config_grid() {
    let start = Instant::now();
    let grid = grid();

    // Every flag value appears with rcps both true and false.
    let mut seen: [BTreeSet<String>; 2] = Default::default();
    for v in &grid {
        seen[v.rcps as usize].extend(v.labels());
    }
    assert_eq!(seen[0], seen[1], "flag values differ between PH and PS");
    for must in [
        "fused_add_norm=false",
        "rms_norm=false",
        "bidirectional=false",
        "strategy=ew_multiply",
        "strategy=null",
        "weight_tie=false",
        "bias=true",
        "conv_bias=false",
        "dt_rank=3",
        "dt_rank=auto",
        "d_state=8",
        "d_conv=3",
        "expand=1",
        "vocab=12/8",
        "d_model=12",
    ] {
        assert!(seen[0].contains(must), "grid lacks {must}");
    }

    let tmp = tempfile::tempdir().expect("temp dir");
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut worst_hidden = (0.0f64, String::new());
    let mut worst_logits = (0.0f64, String::new());
    for (idx, v) in grid.iter().enumerate() {
        let dir = tmp.path().join(format!("v{idx}"));
        write_checkpoint(&dir, &v.config(), 1000 + idx as u64).expect("write checkpoint");
        let what = format!("variant {idx} (rcps={} {})", v.rcps, v.labels().join(" "));
        let ids = random_ids(&mut rng, 40);
        let (e_hidden, e_logits) = compare(&dir, &ids, &what);
        if e_hidden > worst_hidden.0 {
            worst_hidden = (e_hidden, what.clone());
        }
        if e_logits > worst_logits.0 {
            worst_logits = (e_logits, what);
        }
    }
    println!(
        "{} variants in {:.2?}\nworst hidden rel err {:.2e}: {}\nworst logits rel err {:.2e}: {}",
        grid.len(),
        start.elapsed(),
        worst_hidden.0,
        worst_hidden.1,
        worst_logits.0,
        worst_logits.1,
    );
}

/// Runs strand and the reference on the checkpoint in `dir`, asserts every
/// stage is within [`REL_TOL`], returns the (hidden, logits) relative errors.
fn compare(dir: &Path, ids: &[u32], what: &str) -> (f64, f64) {
    let reference = RefModel::load(dir);
    let model = Model::load_dir(dir, "variant", common::place())
        .unwrap_or_else(|e| panic!("{what}: strand refuses it: {e}"));
    assert_eq!(
        model.config.vocab_size, reference.c.vocab,
        "{what}: padded vocab"
    );
    let width = reference.c.d * if reference.c.rcps { 2 } else { 1 };
    assert_eq!(model.width(), width, "{what}: width");

    let ids_usize: Vec<usize> = ids.iter().map(|&t| t as usize).collect();
    let (r_embed, r_trace, r_hidden) = reference.forward(&ids_usize);
    let r_logits = reference.lm_logits(&r_hidden);

    let e_embed = rel_err(
        &model
            .embed(ids)
            .unwrap_or_else(|e| panic!("{what}: embed: {e}")),
        &r_embed,
    );
    // Per-block streams localise a failure to the block that introduced it.
    let mut e_trace = 0.0f64;
    let hidden = common::traced(&model, ids, |i, st| {
        let (rh, rr) = &r_trace[i];
        let eh = rel_err(&st.hidden, rh);
        let er = st
            .residual
            .as_ref()
            .map_or(f64::INFINITY, |r| rel_err(r, rr));
        assert!(
            eh <= REL_TOL && er <= REL_TOL,
            "{what}: block {i}: hidden rel err {eh:.2e}, residual rel err {er:.2e}"
        );
        e_trace = e_trace.max(eh).max(er);
    })
    .unwrap_or_else(|e| panic!("{what}: forward: {e}"));
    let logits = model
        .lm_logits(&hidden)
        .unwrap_or_else(|e| panic!("{what}: lm logits: {e}"));
    let e_hidden = rel_err(&hidden, &r_hidden);
    let e_logits = rel_err(&logits, &r_logits);
    println!(
        "{what}: embed {e_embed:.1e} blocks {e_trace:.1e} hidden {e_hidden:.1e} logits {e_logits:.1e}"
    );
    assert!(
        e_embed <= REL_TOL,
        "{what}: embedding rel err {e_embed:.2e}"
    );
    assert!(e_hidden <= REL_TOL, "{what}: hidden rel err {e_hidden:.2e}");
    assert!(e_logits <= REL_TOL, "{what}: logits rel err {e_logits:.2e}");
    (e_hidden, e_logits)
}

/// Rewrites the f32 tensors of `model.safetensors` whose name satisfies
/// `select`, value by value (index within the tensor, old value).
fn patch_checkpoint(dir: &Path, select: impl Fn(&str) -> bool, f: impl Fn(usize, f32) -> f32) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).expect("read model.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("parse model.safetensors");
    let owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let mut data = view.data().to_vec();
            if view.dtype() == Dtype::F32 && select(&name) {
                for (i, b) in data.chunks_exact_mut(4).enumerate() {
                    let old = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    b.copy_from_slice(&f(i, old).to_le_bytes());
                }
            }
            (name, view.dtype(), view.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(name, dtype, shape, data)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
                .expect("unchanged sizes");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).expect("write model.safetensors");
}

/// Step sizes far outside the initialisation range: `dt_proj.bias` set to
/// values around and far beyond softplus's threshold of 20 (and deep in its
/// negative tail), so `delta` is large (the state forgets at once) or
/// ~1e-13. Checks strand stays finite and matches the f64 reference there.
#[test]
fn extreme_step_sizes_match_reference() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut rng = StdRng::seed_from_u64(0xd7);
    let extremes = [-30.0f32, 19.5, 20.0, 20.5, 25.0, 60.0, 100.0, 0.0];
    for rcps in [false, true] {
        let dir = tmp.path().join(format!("dt-{rcps}"));
        write_checkpoint(&dir, &published_config(rcps, 8, 2), 99).expect("write checkpoint");
        patch_checkpoint(
            &dir,
            |name| name.ends_with("dt_proj.bias"),
            |i, _| extremes[i % extremes.len()],
        );
        let ids = random_ids(&mut rng, 40);
        compare(&dir, &ids, &format!("extreme dt_proj.bias, rcps={rcps}"));
    }
}

/// Section 5: only `add`, `ew_multiply` (and null) exist upstream; strand
/// must say so with a load error, not a panic or a silent fallback.
#[test]
fn concat_strategy_is_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for rcps in [false, true] {
        let dir = tmp.path().join(format!("concat-{rcps}"));
        // Write a valid checkpoint, then edit only the config.
        let mut config = published_config(rcps, 8, 2);
        write_checkpoint(&dir, &config, 7).expect("write checkpoint");
        config["bidirectional_strategy"] = json!("concat");
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string_pretty(&config).expect("serialise"),
        )
        .expect("write config.json");
        let outcome = std::panic::catch_unwind(|| {
            Model::load_dir(&dir, "concat", common::place()).map(|_| ())
        });
        match outcome {
            Err(_) => panic!("rcps={rcps}: loading a concat config panicked"),
            Ok(Ok(())) => panic!("rcps={rcps}: a concat config was accepted"),
            Ok(Err(e)) => println!("rcps={rcps}: refused: {e}"),
        }
    }
}
