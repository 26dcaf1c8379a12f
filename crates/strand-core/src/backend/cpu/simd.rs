//! Lane-parallel f32 math for the CPU kernels.
//!
//! Kernels are written once against [`Simd`] and instantiated for AVX2+FMA
//! (8 lanes, chosen at run time), for portable 8-lane arrays (which the
//! compiler vectorises for whatever the build targets) and for single lanes
//! (tails). `exp` and `ln` are the Cephes single-precision polynomials
//! (about 1 ulp), written on top of a few primitives so every instantiation
//! computes the same formulas.

/// A vector of `LANES` f32 values.
pub trait Simd: Copy {
    const LANES: usize;
    fn splat(x: f32) -> Self;
    /// Loads `LANES` values from the front of `p`.
    fn load(p: &[f32]) -> Self;
    fn store(self, p: &mut [f32]);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    /// `self * b + c` (fused where the hardware has it).
    fn fma(self, b: Self, c: Self) -> Self;
    fn max(self, o: Self) -> Self;
    fn min(self, o: Self) -> Self;
    /// Round to nearest, ties to even.
    fn round(self) -> Self;
    /// `2^n` for integral `n` in `[-126, 127]`.
    fn pow2i(n: Self) -> Self;
    /// `(m, e)` with `x = m * 2^e`, `m` in `[0.5, 1)`, for positive normal `x`.
    fn frexp(self) -> (Self, Self);
    /// Lane-wise `if self < o { a } else { b }`.
    fn lt_select(self, o: Self, a: Self, b: Self) -> Self;
    /// Lane-wise `if self == o { a } else { b }`.
    fn eq_select(self, o: Self, a: Self, b: Self) -> Self;

    /// `e^x`. Inputs below -87 give about 1.6e-38 instead of smaller values
    /// (or 0); nothing downstream can tell the difference.
    #[inline(always)]
    fn exp(self) -> Self {
        let x = self.min(Self::splat(88.376_26)).max(Self::splat(-87.0));
        let fx = x.mul(Self::splat(std::f32::consts::LOG2_E)).round();
        let x = fx.fma(Self::splat(-0.693_359_4), x);
        let x = fx.fma(Self::splat(2.121_944_4e-4), x);
        let z = x.mul(x);
        let mut y = Self::splat(1.987_569_1e-4);
        y = y.fma(x, Self::splat(1.398_199_9e-3));
        y = y.fma(x, Self::splat(8.333_452e-3));
        y = y.fma(x, Self::splat(4.166_579_6e-2));
        y = y.fma(x, Self::splat(1.666_666_5e-1));
        y = y.fma(x, Self::splat(0.5));
        y = y.fma(z, x.add(Self::splat(1.0)));
        y.mul(Self::pow2i(fx))
    }

    /// `2^x`, clamped to `[-126, 127]` (the scan's `exp(δA)` in base 2,
    /// with `log2(e)` folded into `A` at load: fewer operations than
    /// [`Simd::exp`] at the same accuracy).
    #[inline(always)]
    fn exp2(self) -> Self {
        self.min(Self::splat(127.0)).exp2_nonpos()
    }

    /// [`Simd::exp2`] for `x <= 127` (callers guarantee it; the scan's
    /// `δA` is never positive), one operation cheaper in its hottest loop.
    #[inline(always)]
    fn exp2_nonpos(self) -> Self {
        let x = self.max(Self::splat(-126.0));
        let fx = x.round();
        let f = x.sub(fx);
        // Relative-error least-squares fit of 2^f on [-1/2, 1/2] (1.6e-8).
        let mut y = Self::splat(1.533_757e-4);
        for c in [
            1.339_986e-3,
            9.618_52e-3,
            5.550_329e-2,
            2.402_264_6e-1,
            6.931_472e-1,
            1.0,
        ] {
            y = y.fma(f, Self::splat(c));
        }
        y.mul(Self::pow2i(fx))
    }

    /// Natural logarithm of positive normal values.
    #[inline(always)]
    fn ln(self) -> Self {
        let (m, e) = self.frexp();
        let sqrt_half = Self::splat(std::f32::consts::FRAC_1_SQRT_2);
        // Map m into [sqrt(1/2), sqrt(2)) and adjust the exponent to match.
        let e = m.lt_select(sqrt_half, e.sub(Self::splat(1.0)), e);
        let x = m.lt_select(sqrt_half, m.add(m), m).sub(Self::splat(1.0));
        let z = x.mul(x);
        let mut y = Self::splat(7.037_683_6e-2);
        for c in [
            -1.151_461e-1,
            1.167_699_9e-1,
            -1.242_014_1e-1,
            1.424_932_3e-1,
            -1.666_805_8e-1,
            2.000_071_5e-1,
            -2.499_999_4e-1,
            3.333_333e-1,
        ] {
            y = y.fma(x, Self::splat(c));
        }
        y = y.mul(x).mul(z);
        y = e.fma(Self::splat(-2.121_944_4e-4), y);
        y = z.fma(Self::splat(-0.5), y);
        let x = x.add(y);
        e.fma(Self::splat(0.693_359_4), x)
    }

    /// `x * sigmoid(x)`.
    #[inline(always)]
    fn silu(self) -> Self {
        let one = Self::splat(1.0);
        self.div(one.add(Self::splat(0.0).sub(self).exp()))
    }

    /// `log(1 + e^x)`, and `x` itself above 20 (the reference threshold).
    #[inline(always)]
    fn softplus(self) -> Self {
        let t = self.min(Self::splat(20.0)).exp();
        let u = Self::splat(1.0).add(t);
        // log1p(t) = log(u) * t / (u - 1) keeps full precision for tiny t.
        let l = u.ln().mul(t).div(u.sub(Self::splat(1.0)));
        let l = u.eq_select(Self::splat(1.0), t, l);
        Self::splat(20.0).lt_select(self, self, l)
    }
}

/// One lane: the scalar reference and the tail of every kernel.
impl Simd for f32 {
    const LANES: usize = 1;
    #[inline(always)]
    fn splat(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn load(p: &[f32]) -> Self {
        p[0]
    }
    #[inline(always)]
    fn store(self, p: &mut [f32]) {
        p[0] = self
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self * o
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        self / o
    }
    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        // Not `mul_add`: without hardware FMA that is a slow libm call.
        self * b + c
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        if self > o {
            self
        } else {
            o
        }
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        if self < o {
            self
        } else {
            o
        }
    }
    #[inline(always)]
    fn round(self) -> Self {
        self.round_ties_even()
    }
    #[inline(always)]
    fn pow2i(n: Self) -> Self {
        f32::from_bits(((n as i32 + 127) as u32) << 23)
    }
    #[inline(always)]
    fn frexp(self) -> (Self, Self) {
        let b = self.to_bits();
        let e = ((b >> 23) & 0xff) as i32 - 126;
        (f32::from_bits((b & 0x807f_ffff) | 0x3f00_0000), e as f32)
    }
    #[inline(always)]
    fn lt_select(self, o: Self, a: Self, b: Self) -> Self {
        if self < o {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn eq_select(self, o: Self, a: Self, b: Self) -> Self {
        if self == o {
            a
        } else {
            b
        }
    }
}

/// Eight portable lanes; the compiler vectorises the lane loops for the
/// build's target (SSE2 at least on x86-64, NEON on aarch64).
#[derive(Clone, Copy)]
pub struct Lanes8(pub [f32; 8]);

macro_rules! lanewise {
    ($self:ident => |$v:ident| $e:expr) => {{
        let mut r = [0.0f32; 8];
        for i in 0..8 {
            let $v = $self.0[i];
            r[i] = $e;
        }
        Lanes8(r)
    }};
    ($self:ident, $($o:ident),* => |$($v:ident),*| $e:expr) => {{
        let mut r = [0.0f32; 8];
        for i in 0..8 {
            let ($($v),*) = ($self.0[i], $($o.0[i]),*);
            r[i] = $e;
        }
        Lanes8(r)
    }};
}

impl Simd for Lanes8 {
    const LANES: usize = 8;
    #[inline(always)]
    fn splat(x: f32) -> Self {
        Lanes8([x; 8])
    }
    #[inline(always)]
    fn load(p: &[f32]) -> Self {
        Lanes8(p[..8].try_into().expect("slice of 8"))
    }
    #[inline(always)]
    fn store(self, p: &mut [f32]) {
        p[..8].copy_from_slice(&self.0)
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        lanewise!(self, o => |a, b| a + b)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        lanewise!(self, o => |a, b| a - b)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        lanewise!(self, o => |a, b| a * b)
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        lanewise!(self, o => |a, b| a / b)
    }
    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        lanewise!(self, b, c => |x, y, z| x * y + z)
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        lanewise!(self, o => |a, b| Simd::max(a, b))
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        lanewise!(self, o => |a, b| Simd::min(a, b))
    }
    #[inline(always)]
    fn round(self) -> Self {
        lanewise!(self => |a| a.round_ties_even())
    }
    #[inline(always)]
    fn pow2i(n: Self) -> Self {
        lanewise!(n => |a| <f32 as Simd>::pow2i(a))
    }
    #[inline(always)]
    fn frexp(self) -> (Self, Self) {
        (
            lanewise!(self => |a| a.frexp().0),
            lanewise!(self => |a| a.frexp().1),
        )
    }
    #[inline(always)]
    fn lt_select(self, o: Self, a: Self, b: Self) -> Self {
        lanewise!(self, o, a, b => |x, y, p, q| if x < y { p } else { q })
    }
    #[inline(always)]
    fn eq_select(self, o: Self, a: Self, b: Self) -> Self {
        lanewise!(self, o, a, b => |x, y, p, q| if x == y { p } else { q })
    }
}

#[cfg(target_arch = "x86_64")]
pub use avx2::Avx2;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// Eight lanes in one AVX register. Only use inside functions compiled
    /// with `#[target_feature(enable = "avx2,fma")]` after checking
    /// [`Avx2::available`]; the methods are inlined into them.
    #[derive(Clone, Copy)]
    pub struct Avx2(__m256);

    impl Avx2 {
        pub fn available() -> bool {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
    }

    // SAFETY (all methods): only reachable from `#[target_feature(enable =
    // "avx2,fma")]` code entered after `Avx2::available()` returned true;
    // loads and stores are bounds-checked against the slice first.
    impl Simd for Avx2 {
        const LANES: usize = 8;
        #[inline(always)]
        fn splat(x: f32) -> Self {
            unsafe { Avx2(_mm256_set1_ps(x)) }
        }
        #[inline(always)]
        fn load(p: &[f32]) -> Self {
            assert!(p.len() >= 8);
            unsafe { Avx2(_mm256_loadu_ps(p.as_ptr())) }
        }
        #[inline(always)]
        fn store(self, p: &mut [f32]) {
            assert!(p.len() >= 8);
            unsafe { _mm256_storeu_ps(p.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_add_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_sub_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_mul_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn div(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_div_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn fma(self, b: Self, c: Self) -> Self {
            unsafe { Avx2(_mm256_fmadd_ps(self.0, b.0, c.0)) }
        }
        #[inline(always)]
        fn max(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_max_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn min(self, o: Self) -> Self {
            unsafe { Avx2(_mm256_min_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn round(self) -> Self {
            unsafe {
                Avx2(_mm256_round_ps::<
                    { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
                >(self.0))
            }
        }
        #[inline(always)]
        fn pow2i(n: Self) -> Self {
            unsafe {
                let i = _mm256_add_epi32(_mm256_cvtps_epi32(n.0), _mm256_set1_epi32(127));
                Avx2(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(i)))
            }
        }
        #[inline(always)]
        fn frexp(self) -> (Self, Self) {
            unsafe {
                let b = _mm256_castps_si256(self.0);
                let e = _mm256_sub_epi32(
                    _mm256_and_si256(_mm256_srli_epi32::<23>(b), _mm256_set1_epi32(0xff)),
                    _mm256_set1_epi32(126),
                );
                let m = _mm256_or_si256(
                    _mm256_and_si256(b, _mm256_set1_epi32(0x807f_ffffu32 as i32)),
                    _mm256_set1_epi32(0x3f00_0000),
                );
                (Avx2(_mm256_castsi256_ps(m)), Avx2(_mm256_cvtepi32_ps(e)))
            }
        }
        #[inline(always)]
        fn lt_select(self, o: Self, a: Self, b: Self) -> Self {
            unsafe {
                let m = _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0);
                Avx2(_mm256_blendv_ps(b.0, a.0, m))
            }
        }
        #[inline(always)]
        fn eq_select(self, o: Self, a: Self, b: Self) -> Self {
            unsafe {
                let m = _mm256_cmp_ps::<_CMP_EQ_OQ>(self.0, o.0);
                Avx2(_mm256_blendv_ps(b.0, a.0, m))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<S: Simd>(f: impl Fn(S) -> S, reference: impl Fn(f64) -> f64, xs: &[f32], rel: f64) {
        for chunk in xs.chunks_exact(S::LANES) {
            let mut out = vec![0.0; S::LANES];
            f(S::load(chunk)).store(&mut out);
            for (&x, &y) in chunk.iter().zip(&out) {
                let want = reference(x as f64);
                let err = (y as f64 - want).abs() / want.abs().max(1e-30);
                assert!(err <= rel, "x={x} got={y} want={want} rel={err}");
            }
        }
    }

    fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32)
            .collect()
    }

    #[test]
    fn exp_ln_softplus_silu_are_accurate() {
        let xs = grid(-80.0, 80.0, 4096);
        let pos = grid(1e-6, 1e6, 4096);
        let sp = grid(-30.0, 30.0, 4096);
        let softplus = |x: f64| if x > 20.0 { x } else { x.exp().ln_1p() };
        let silu = |x: f64| x / (1.0 + (-x).exp());
        check::<f32>(|v| v.exp(), f64::exp, &xs, 3e-7);
        check::<f32>(|v| v.exp2(), f64::exp2, &grid(-120.0, 120.0, 4096), 3e-7);
        check::<f32>(|v| v.ln(), f64::ln, &pos, 3e-7);
        check::<f32>(|v| v.softplus(), softplus, &sp, 5e-7);
        check::<f32>(|v| v.silu(), silu, &grid(-20.0, 20.0, 4096), 5e-7);
        check::<Lanes8>(|v| v.exp(), f64::exp, &xs, 3e-7);
        check::<Lanes8>(|v| v.softplus(), softplus, &sp, 5e-7);
        #[cfg(target_arch = "x86_64")]
        if Avx2::available() {
            #[target_feature(enable = "avx2,fma")]
            fn run(xs: &[f32], pos: &[f32], sp: &[f32]) {
                let softplus = |x: f64| if x > 20.0 { x } else { x.exp().ln_1p() };
                check::<Avx2>(|v| v.exp(), f64::exp, xs, 3e-7);
                check::<Avx2>(|v| v.exp2(), f64::exp2, xs, 3e-7);
                check::<Avx2>(|v| v.ln(), f64::ln, pos, 3e-7);
                check::<Avx2>(|v| v.softplus(), softplus, sp, 5e-7);
            }
            // SAFETY: guarded by the feature check above.
            unsafe { run(&xs, &pos, &sp) }
        }
    }
}
