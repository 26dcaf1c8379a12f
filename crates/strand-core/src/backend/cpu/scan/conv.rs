//! The causal depthwise conv + SiLU of one walk position, all channels:
//! the input `u` of `x_proj` and of the scan (spec section 5).

use super::{Isa, Pass};
use crate::backend::cpu::simd::{prefetch, Lanes8, Simd};

pub(super) fn conv_row(isa: Isa, p: &Pass, l: usize, urow: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only chosen when the CPU has AVX2 and FMA.
        Isa::Avx2 => unsafe { conv_row_avx2(p, l, urow) },
        Isa::Portable => conv_row_generic::<Lanes8>(p, l, urow),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn conv_row_avx2(p: &Pass, l: usize, urow: &mut [f32]) {
    conv_row_generic::<crate::backend::cpu::simd::Avx2>(p, l, urow)
}

/// `urow = silu(b + Σ_t w[t] x[src(t)])` at position `l`: forward, tap `t`
/// reads position `l - (K-1-t)`; reverse (mirrored taps), `l + (K-1-t)`.
/// The few taps form the outer loop, so the channel loop inside carries
/// no branches; `urow` stays in L1 between taps.
#[inline(always)]
fn conv_row_generic<S: Simd>(p: &Pass, l: usize, urow: &mut [f32]) {
    let s = p.ssm;
    let (di, k) = (s.di, s.k);
    // Taps `k0..K` have a source position (tap K-1 always does).
    let k0 = if p.reverse {
        (l + k).saturating_sub(p.len)
    } else {
        (k - 1).saturating_sub(l)
    };
    // Rows are visited in order and each is first read here, from memory:
    // asking for the `x` half of one a few positions ahead hides that.
    let ahead = l + k + 4;
    if ahead < p.len {
        for c in (0..di).step_by(16) {
            prefetch(p.xz[ahead * p.ld_xz + c..].as_ptr());
        }
    }
    let src = |t: usize| {
        if p.reverse {
            l + k - 1 - t
        } else {
            l + 1 + t - k
        }
    };
    let x_row = |t: usize| &p.xz[src(t) * p.ld_xz..][..di];
    let w_row = |t: usize| &s.conv_wt[t * di..][..di];
    urow[..di].copy_from_slice(&s.conv_b);
    for t in k0..k {
        let (x, w) = (x_row(t), w_row(t));
        if t + 1 < k {
            conv_tap::<S, false>(&mut urow[..di], w, x);
        } else {
            conv_tap::<S, true>(&mut urow[..di], w, x);
        }
    }
}

/// `acc += w·x`, then SiLU if this is the last tap.
#[inline(always)]
fn conv_tap<S: Simd, const LAST: bool>(acc: &mut [f32], w: &[f32], x: &[f32]) {
    #[inline(always)]
    fn step<V: Simd, const LAST: bool>(acc: &mut [f32], w: &[f32], x: &[f32], c: usize) {
        let v = V::load(&w[c..]).fma(V::load(&x[c..]), V::load(&acc[c..]));
        if LAST { v.silu() } else { v }.store(&mut acc[c..]);
    }
    assert!(w.len() == acc.len() && x.len() == acc.len());
    let mut c = 0;
    while c + S::LANES <= acc.len() {
        step::<S, LAST>(acc, w, x, c);
        c += S::LANES;
    }
    while c < acc.len() {
        step::<f32, LAST>(acc, w, x, c);
        c += 1;
    }
}
