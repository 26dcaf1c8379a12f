//! What a forward pass costs in memory, as a pure function of the model's
//! config and the backend: one formula, which the runner checks against a
//! device's free memory before any work ([`crate::Model::max_window`],
//! [`crate::runner::check_pass`]) and which `--dry-run` prints without
//! loading the model or opening the device.
//!
//! A pass of `rows` tokens needs `reserve + per_token × rows` bytes of the
//! device's memory, on top of the weights ([`weight_bytes`]):
//!
//! - **CPU** (f32, one sequence at a time, so `rows` is one sequence's
//!   length whatever the batch): the residual stream (`hidden` and
//!   `residual`, `width` floats each), the mixer's work buffers reused by
//!   every block (`xz` 2·d_inner, `y` and `u` d_inner each, `xd`
//!   dt_rank + 2·d_state), for untied or multiplying mixers the copies `x`
//!   and `other` (d_model each), and the hidden states handed back
//!   (`width`): `4 × (3·width + 4·d_inner + dt_rank + 2·d_state [+ 2·d_model])`.
//!   No reserve.
//! - **CUDA** (a batch of `B` sequences of `L` tokens is one pass of
//!   `B·L` rows): `hidden` in the activation type, `residual` in f32,
//!   `xz`, `y` (2·d_inner each) and `xd` (2 × (dt_rank + 2·d_state)) in
//!   the activation type, and the untied path's copies; plus a fixed
//!   [`GPU_RESERVE`] for cuBLAS workspaces, the bounded `u` segment and
//!   fragmentation.

use crate::backend::Precision;
use crate::model::plan::fused;
use crate::model::Config;

/// Bytes of a GPU's memory kept back from every pass: cuBLAS workspaces,
/// the conv output segment of `x_proj` and fragmentation.
pub const GPU_RESERVE: u64 = 512 << 20;

/// The backend a pass runs on, as far as its memory goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Cpu,
    /// A GPU, with its activation precision.
    Cuda(Precision),
}

/// The memory a forward pass needs on one device ([`PassMemory::of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassMemory {
    /// Bytes per token of a pass: activations, work buffers and (CPU) the
    /// hidden states handed back.
    pub per_token: u64,
    /// Bytes kept back whatever the pass's size ([`GPU_RESERVE`]; 0 on the
    /// CPU).
    pub reserve: u64,
    /// Whether a batch of sequences runs as one pass (a GPU) rather than
    /// one sequence at a time (the CPU).
    pub batched: bool,
}

impl PassMemory {
    /// The formula of the module documentation for `cfg` on `engine`.
    pub fn of(cfg: &Config, engine: Engine) -> PassMemory {
        let (w, d, di) = (cfg.width() as u64, cfg.d_model as u64, cfg.d_inner() as u64);
        let xdw = (cfg.dt_rank + 2 * cfg.d_state) as u64;
        let general = if fused(cfg) { 0 } else { 2 * d };
        match engine {
            Engine::Cpu => PassMemory {
                per_token: 4 * (2 * w + 4 * di + xdw + general + w),
                reserve: 0,
                batched: false,
            },
            Engine::Cuda(prec) => {
                let ab = match prec {
                    Precision::F32 => 4,
                    Precision::Bf16 => 2,
                };
                PassMemory {
                    per_token: w * ab
                        + w * 4
                        + 2 * di * ab
                        + 2 * xdw * ab
                        + 2 * di * ab
                        + general * ab,
                    reserve: GPU_RESERVE,
                    batched: true,
                }
            }
        }
    }

    /// Bytes of one pass over `batch` sequences of `len` tokens.
    pub fn bytes(&self, len: u64, batch: u64) -> u64 {
        let rows = if self.batched {
            len.saturating_mul(batch)
        } else {
            len
        };
        self.reserve
            .saturating_add(self.per_token.saturating_mul(rows))
    }

    /// The most tokens one pass may hold in `free` bytes.
    pub fn tokens_in(&self, free: u64) -> u64 {
        free.saturating_sub(self.reserve) / self.per_token.max(1)
    }
}

/// Floats of the weights a loaded model holds in host memory
/// ([`crate::model::weights::Weights`]), from the config alone: the
/// checkpoint's tensors as f32 (tied aliases once), plus the copies made
/// at load time (PS models' channel-flipped `out_proj`, the LM head).
pub fn weight_floats(cfg: &Config) -> u64 {
    let (d, di, n, k, r, v) = (
        cfg.d_model as u64,
        cfg.d_inner() as u64,
        cfg.d_state as u64,
        cfg.d_conv as u64,
        cfg.dt_rank as u64,
        cfg.vocab_size as u64,
    );
    let norm = if cfg.rms_norm { d } else { 2 * d };
    let bias = |n: u64| if cfg.bias { n } else { 0 };
    let in_proj = 2 * di * d + bias(2 * di);
    let out_proj = d * di + bias(d);
    let ssm =
        di * k + if cfg.conv_bias { di } else { 0 } + (r + 2 * n) * di + di * r + di + di * n + di;
    let untied = cfg.bidirectional && !cfg.bidirectional_weight_tie;
    let projections = if untied { 2 } else { 1 };
    let flips = if cfg.rcps { projections } else { 0 };
    let directions = if cfg.bidirectional { 2 } else { 1 };
    let layer = norm + projections * (in_proj + out_proj) + flips * out_proj + directions * ssm;
    let head = v * cfg.width() as u64;
    let score = (cfg.num_labels() as u64) * d;
    v * d + cfg.n_layer as u64 * layer + norm + head + score
}

/// Floats the CPU backend adds to the weights: each SSM's parameters laid
/// out again for its lanes (`x_proj` copied, the rest transposed).
pub fn cpu_lane_floats(cfg: &Config) -> u64 {
    let (di, n, k, r) = (
        cfg.d_inner() as u64,
        cfg.d_state as u64,
        cfg.d_conv as u64,
        cfg.dt_rank as u64,
    );
    let per_ssm = di * k + di + (r + 2 * n) * di + di * r + di + di * n + di;
    let directions = if cfg.bidirectional { 2 } else { 1 };
    cfg.n_layer as u64 * directions * per_ssm
}

/// Bytes of the weights on `engine`'s device: on the CPU the host weights
/// and the scan's copies; on a GPU their f32 size (bf16 stores the GEMM
/// weights in half the bytes but adds the `[W | W]` output projections,
/// so f32 is the bound).
pub fn weight_bytes(cfg: &Config, engine: Engine) -> u64 {
    match engine {
        Engine::Cpu => 4 * (weight_floats(cfg) + cpu_lane_floats(cfg)),
        Engine::Cuda(_) => 4 * weight_floats(cfg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synthetic::published_config;

    fn config(json: serde_json::Value) -> Config {
        Config::from_json(json.to_string().as_bytes(), "test".as_ref()).expect("config")
    }

    #[test]
    fn the_cpu_formula_counts_its_buffers() {
        // PS 256 x 16: width 512, d_inner 512, dt_rank 16, d_state 16.
        let c = config(published_config(true, 256, 16));
        let m = PassMemory::of(&c, Engine::Cpu);
        assert_eq!(m.per_token, 4 * (3 * 512 + 4 * 512 + 16 + 32));
        assert_eq!(m.reserve, 0);
        // One sequence at a time: the batch does not add up.
        assert_eq!(m.bytes(1000, 8), m.bytes(1000, 1));
        assert_eq!(m.tokens_in(m.bytes(4096, 1)), 4096);
    }

    #[test]
    fn a_gpu_pass_holds_the_whole_batch() {
        let c = config(published_config(false, 256, 16));
        let bf16 = PassMemory::of(&c, Engine::Cuda(Precision::Bf16));
        let f32 = PassMemory::of(&c, Engine::Cuda(Precision::F32));
        // PH: width 256; hidden bf16 + residual f32 + xz, y, xd.
        assert_eq!(bf16.per_token, 256 * 2 + 256 * 4 + 4 * 512 * 2 + 2 * 48 * 2);
        assert!(f32.per_token > bf16.per_token);
        assert_eq!(bf16.bytes(1000, 8), GPU_RESERVE + 8000 * bf16.per_token);
        assert_eq!(bf16.tokens_in(GPU_RESERVE - 1), 0);
        assert_eq!(bf16.tokens_in(bf16.bytes(1000, 8)), 8000);
    }

    /// Floats a loaded model actually holds.
    fn held(w: &crate::model::weights::Weights) -> u64 {
        use crate::model::weights::{Linear, Norm, Ssm};
        let lin = |l: &Linear| (l.w.len() + l.b.as_ref().map_or(0, Vec::len)) as u64;
        let opt = |l: &Option<Linear>| l.as_ref().map_or(0, lin);
        let norm = |n: &Norm| (n.weight.len() + n.bias.as_ref().map_or(0, Vec::len)) as u64;
        let ssm = |s: &Ssm| {
            (s.conv_w.len()
                + s.conv_b.as_ref().map_or(0, Vec::len)
                + s.dt_w.len()
                + s.dt_b.len()
                + s.a.len()
                + s.d.len()) as u64
                + lin(&s.x_proj)
        };
        let layers: u64 = w
            .layers
            .iter()
            .map(|l| {
                norm(&l.norm)
                    + lin(&l.in_fwd)
                    + lin(&l.out_fwd)
                    + opt(&l.in_rev)
                    + opt(&l.out_rev)
                    + opt(&l.out_fwd_flip)
                    + opt(&l.out_rev_flip)
                    + ssm(&l.ssm_fwd)
                    + l.ssm_rev.as_ref().map_or(0, ssm)
            })
            .sum();
        w.embedding.len() as u64
            + layers
            + norm(&w.norm_f)
            + lin(&w.lm_head)
            + w.score.as_ref().map_or(0, Vec::len) as u64
    }

    /// The count from the config is what loading holds, for every test
    /// model (PS, PH, classifiers) and untied or multiplying variants.
    #[test]
    fn weight_floats_match_a_loaded_model() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test-data/models");
        for name in ["ps-tiny", "ph-tiny", "ps-tiny-cls", "ph-tiny-cls"] {
            let m = crate::Model::load(&format!("{dir}/{name}"), crate::DeviceSpec::Cpu)
                .expect("test model");
            assert_eq!(weight_floats(&m.config), held(&m.weights), "{name}");
        }
        let tmp = tempfile::tempdir().expect("temp dir");
        for (i, (rcps, tie, strategy)) in [
            (true, false, "add"),
            (false, false, "ew_multiply"),
            (false, true, "add"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut json = published_config(rcps, 32, 2);
            json["bidirectional_weight_tie"] = tie.into();
            json["bidirectional_strategy"] = strategy.into();
            let dir = tmp.path().join(i.to_string());
            crate::model::synthetic::write_checkpoint(&dir, &json, 1).expect("checkpoint");
            let m =
                crate::Model::load_dir(&dir, "synthetic", crate::DeviceSpec::Cpu).expect("loads");
            assert_eq!(weight_floats(&m.config), held(&m.weights), "{json}");
        }
    }

    /// What the runner checks ([`crate::Model::max_window`]) is this
    /// module's formula for the model's engine.
    #[test]
    fn a_model_answers_with_the_formula() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../test-data/models/ph-tiny"
        );
        let m = crate::Model::load(dir, crate::DeviceSpec::Cpu).expect("test model");
        assert_eq!(m.engine_kind(), Engine::Cpu);
        assert_eq!(m.pass_memory(), PassMemory::of(&m.config, Engine::Cpu));
        let max = m.max_window().expect("memory for 1,024 tokens") as u64;
        let free = crate::backend::host_available_bytes().expect("Linux") / 2;
        // Within the free memory (which moves between the two reads).
        assert!(m.pass_memory().bytes(max, 1) <= free + free / 10, "{max}");
    }

    #[test]
    fn untied_mixers_add_their_copies() {
        let mut json = published_config(false, 64, 2);
        json["bidirectional_weight_tie"] = false.into();
        let untied = config(json);
        let tied = config(published_config(false, 64, 2));
        let (a, b) = (
            PassMemory::of(&untied, Engine::Cpu),
            PassMemory::of(&tied, Engine::Cpu),
        );
        assert_eq!(a.per_token, b.per_token + 4 * 2 * 64);
    }
}
