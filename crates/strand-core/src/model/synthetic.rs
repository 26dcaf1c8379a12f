//! Random-weight checkpoints of any configuration, written in the exact
//! Hugging Face layout, for benchmarks and tests.
//!
//! Values follow the shapes of the reference initialisation so the model
//! behaves like a trained one numerically: `A_log = ln(U[1, 16])`, step
//! sizes `softplus(dt_bias)` log-uniform in `[0.001, 0.1]`, `D ≈ 1`, norm
//! weights `≈ 1`, embeddings standard normal, other weights
//! `N(0, 1/fan_in)`. Going through a real checkpoint file means the loader
//! is exercised too.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::config::Config;
use super::weights::Expected;
use crate::error::{Error, Result};

/// A small deterministic generator (SplitMix64); no dependency needed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Writes `config.json` and `model.safetensors` for `config` (a JSON
/// object as in a published checkpoint) into `dir`.
pub fn write_checkpoint(dir: &Path, config: &serde_json::Value, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let cfg_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(config).expect("a JSON value serialises");
    std::fs::write(&cfg_path, &text).map_err(|e| Error::io(&cfg_path, e))?;
    let cfg = Config::from_json(text.as_bytes(), &cfg_path)?;

    let mut rng = Rng::new(seed);
    let mut data: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    let expected = Expected::for_config(&cfg, "caduceus.backbone.")?;
    for (name, (shape, required)) in &expected.map {
        if !required {
            continue;
        }
        let count: usize = shape.iter().product();
        if name.ends_with("complement_map") {
            let bytes = cfg
                .complement_map
                .iter()
                .flat_map(|&c| (c as i64).to_le_bytes())
                .collect();
            data.insert(name.clone(), (Dtype::I64, shape.clone(), bytes));
            continue;
        }
        let fan_in = *shape.last().expect("tensors have a shape") as f64;
        let leaf = name.rsplit('.').next().unwrap_or(name);
        let is = |s: &str| name.ends_with(s);
        let mut gen = || -> f64 {
            if leaf == "A_log" {
                (1.0 + 15.0 * rng.uniform()).ln()
            } else if leaf == "D" {
                1.0 + 0.1 * rng.normal()
            } else if is("dt_proj.bias") {
                let dt = (0.001f64.ln() + rng.uniform() * (0.1f64.ln() - 0.001f64.ln())).exp();
                dt + (-(-dt).exp_m1()).ln() // inverse softplus
            } else if is("norm.weight") || is("norm_f.weight") || is("submodule.weight") {
                1.0 + 0.1 * rng.normal()
            } else if is("norm.bias") || is("norm_f.bias") || is("submodule.bias") {
                0.05 * rng.normal()
            } else if name.contains("embeddings") {
                rng.normal()
            } else {
                rng.normal() / fan_in.sqrt()
            }
        };
        let bytes = (0..count)
            .flat_map(|_| (gen() as f32).to_le_bytes())
            .collect();
        data.insert(name.clone(), (Dtype::F32, shape.clone(), bytes));
    }
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(k, (dt, shape, bytes))| {
            let view = TensorView::new(*dt, shape.clone(), bytes).expect("sizes match shapes");
            (k.clone(), view)
        })
        .collect();
    let path = dir.join("model.safetensors");
    let meta = Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]));
    safetensors::serialize_to_file(views, meta, &path).map_err(|e| Error::Checkpoint {
        path: path.clone(),
        msg: e.to_string(),
    })
}

/// A config in the published layout: PS or PH, `d_model` × `n_layer`,
/// everything else as in the released Caduceus checkpoints.
pub fn published_config(rcps: bool, d_model: usize, n_layer: usize) -> serde_json::Value {
    let comp: serde_json::Map<String, serde_json::Value> =
        [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]
            .iter()
            .enumerate()
            .map(|(i, &c)| (i.to_string(), c.into()))
            .collect();
    serde_json::json!({
        "architectures": ["CaduceusForMaskedLM"],
        "model_type": "caduceus",
        "d_model": d_model,
        "n_layer": n_layer,
        "vocab_size": 16,
        "pad_vocab_size_multiple": 8,
        "rms_norm": true,
        "residual_in_fp32": false,
        "fused_add_norm": true,
        "norm_epsilon": 1e-5,
        "bidirectional": true,
        "bidirectional_strategy": "add",
        "bidirectional_weight_tie": true,
        "rcps": rcps,
        "complement_map": comp,
        "ssm_cfg": {"d_state": 16, "d_conv": 4, "expand": 2, "dt_rank": "auto",
                    "conv_bias": true, "bias": false, "use_fast_path": true}
    })
}
