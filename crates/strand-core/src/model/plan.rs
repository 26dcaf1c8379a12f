//! What one block computes, as a list of scan passes per channel half.
//!
//! This is where the reference semantics (spec sections 4-6) are turned
//! into flip-free work that every backend executes the same way.
//!
//! PH: `h' = Mf(n) ⊕ revL(Mr(revL n))`: a left-to-right pass with the
//! forward weights and a right-to-left pass with the reverse weights.
//!
//! PS, half A: the same on `nA`. Half B: the reference computes
//! `flipLC(BiMamba(flipLC(nB)))`. With `x' = revC(nB)` that is
//! `revC(revL(Mf(revL x')) ⊕ Mr(x'))`: the *reverse* weights walk left to
//! right, the *forward* weights walk right to left, and the final `revC`
//! is folded into the output projection (rows reversed at load). The norm
//! writes `x'` directly (see [`crate::backend::cpu`]), so no activation is
//! ever flipped in memory.
//!
//! With tied projections and `add`, both passes share one `in_proj` GEMM
//! and one `out_proj` GEMM: `out = (y_1 + y_2) W_out^T + 2 b_out`.

use super::config::{BiStrategy, Config};
use super::weights::{Layer, Linear, Ssm};

/// One direction's work within a half.
pub struct ScanPass<'a> {
    pub ssm: &'a Ssm,
    /// Index of `ssm` in the layer: 0 forward weights, 1 reverse weights.
    pub ssm_index: usize,
    /// Walk positions right to left.
    pub reverse: bool,
    pub in_proj: &'a Linear,
    pub out_proj: &'a Linear,
}

/// All passes of one channel half of one block.
pub struct HalfPlan<'a> {
    pub passes: Vec<ScanPass<'a>>,
    pub strategy: BiStrategy,
    /// Passes share `in_proj` and `out_proj` and combine by addition: one
    /// input GEMM, summed scan outputs, one output GEMM.
    pub fused: bool,
}

/// Whether a config's mixers take the fused path ([`HalfPlan::fused`]):
/// tied projections (or one direction) combined by addition.
pub fn fused(cfg: &Config) -> bool {
    let tied = !cfg.bidirectional || cfg.bidirectional_weight_tie;
    tied && (!cfg.bidirectional || cfg.bidirectional_strategy == BiStrategy::Add)
}

/// The plan for half `half` (0 = A or the only half of PH, 1 = B of PS).
pub fn half_plan<'a>(cfg: &Config, layer: &'a Layer, half: usize) -> HalfPlan<'a> {
    let flip = half == 1;
    let out_f = if flip {
        layer
            .out_fwd_flip
            .as_ref()
            .expect("PS layers carry flipped out_proj")
    } else {
        &layer.out_fwd
    };
    let in_f = &layer.in_fwd;
    let fwd = |reverse| ScanPass {
        ssm: &layer.ssm_fwd,
        ssm_index: 0,
        reverse,
        in_proj: in_f,
        out_proj: out_f,
    };
    let mut passes = Vec::with_capacity(2);
    // Half A walks forward weights left to right; half B the other way.
    passes.push(fwd(flip));
    if let Some(ssm_rev) = &layer.ssm_rev {
        let in_r = layer.in_rev.as_ref().unwrap_or(in_f);
        let out_r = if flip {
            layer.out_rev_flip.as_ref().unwrap_or(out_f)
        } else {
            layer.out_rev.as_ref().unwrap_or(out_f)
        };
        passes.push(ScanPass {
            ssm: ssm_rev,
            ssm_index: 1,
            reverse: !flip,
            in_proj: in_r,
            out_proj: out_r,
        });
    }
    debug_assert_eq!(
        fused(cfg),
        layer.in_rev.is_none()
            && layer.out_rev.is_none()
            && (passes.len() == 1 || cfg.bidirectional_strategy == BiStrategy::Add)
    );
    HalfPlan {
        fused: fused(cfg),
        passes,
        strategy: cfg.bidirectional_strategy,
    }
}
