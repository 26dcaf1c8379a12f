//! Lane-parallel f32 math for the CPU kernels.
//!
//! Kernels are written once against [`Simd`] and instantiated for AVX2+FMA
//! (8 lanes, chosen at run time), for portable 8-lane arrays (which the
//! compiler vectorises for whatever the build targets) and for single lanes
//! (tails). The transcendental functions are built on a few primitives so
//! every instantiation computes the same formulas: relative error below
//! 1.2e-7 for the exponentials and 2.5e-7 for softplus and SiLU.
//!
//! Exponentials split the exponent into `n + k/8 + f`: `2^(k/8)` comes from
//! an eight-entry table (one `vpermps`), `2^n` is added to that entry's
//! exponent field, and `|f| <= 1/16` leaves a cubic for `2^f` where
//! `[-1/2, 1/2]` would need degree 6. The scan evaluates one exponential
//! per state and position, so every operation saved there counts.

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
    /// Lane-wise `table[bits & 7]`, `bits` being the lane's bit pattern.
    fn lookup8(table: &[f32; 8], idx: Self) -> Self;
    /// The bit pattern shifted left by `K`.
    fn shl_bits<const K: i32>(self) -> Self;
    /// The sum of the two bit patterns as wrapping 32-bit integers.
    fn add_bits(self, o: Self) -> Self;

    /// `e^x`. Inputs below -87 give about 1.6e-38 instead of smaller values
    /// (or 0); nothing downstream can tell the difference.
    #[inline(always)]
    fn exp(self) -> Self {
        exp_in_range(self.min(Self::splat(88.376_26)).max(Self::splat(-87.0)))
    }

    /// `2^x` for `x <= 127` (callers guarantee it; the scan's `δA` is never
    /// positive), clamped below at -126: the scan's `exp(δA)` in base 2,
    /// with `log2(e)` folded into `A` at load (fewer operations than
    /// [`Simd::exp`] at the same accuracy).
    #[inline(always)]
    fn exp2_nonpos(self) -> Self {
        let x = self.max(Self::splat(-126.0));
        let t = x.add(Self::splat(EIGHTHS_ROUND));
        let f = x.sub(t.sub(Self::splat(EIGHTHS_ROUND)));
        // 2^f = 1 + f·q(f): minimax relative error 2.5e-8 on [-1/16, 1/16].
        let q = f
            .fma(Self::splat(0.055_496_223), Self::splat(0.240_257_64))
            .fma(f, Self::splat(0.693_147_24));
        let s = pow2_eighths(t);
        s.mul(f).fma(q, s)
    }

    /// `x * sigmoid(x)`.
    #[inline(always)]
    fn silu(self) -> Self {
        let one = Self::splat(1.0);
        self.div(one.add(Self::splat(0.0).sub(self).exp()))
    }

    /// `log(1 + e^x)` as `max(x, 0) + log1p(e^-|x|)`. Above 20, where the
    /// reference returns `x` itself, the second term is below half an ulp
    /// of `x`, so the result is `x` there too.
    #[inline(always)]
    fn softplus(self) -> Self {
        let zero = Self::splat(0.0);
        let e = exp_in_range(self.min(zero.sub(self)).max(Self::splat(-87.0)));
        // log1p(e) = 2·atanh(v/2) = v + v³/12 + v⁵/80 + … with
        // v = 2e/(2 + e) in (0, 2/3]; the odd series, fitted for relative
        // error (4.5e-9), keeps full precision however small `e` is.
        let v = e.add(e).div(e.add(Self::splat(2.0)));
        let z = v.mul(v);
        let p = z
            .fma(Self::splat(5.471_124e-4), Self::splat(2.187_638_5e-3))
            .fma(z, Self::splat(0.012_506_728))
            .fma(z, Self::splat(0.083_333_02));
        self.max(zero).add(v.mul(z).fma(p, v))
    }
}

/// Asks for the cache line holding `p` ahead of its use; a no-op where
/// there is no prefetch instruction.
#[inline(always)]
pub fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address, and SSE is
    // part of x86-64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// `e^x` for `x` in `[-87, 88.37]`.
#[inline(always)]
fn exp_in_range<S: Simd>(x: S) -> S {
    // x·log2(e) = m/8 + f; the reduced argument r = x - (m/8)·ln 2 takes
    // ln 2 in two parts, the first short enough (9 bits) that its product
    // with m/8 is exact even where `fma` is not fused.
    let t = x.fma(S::splat(std::f32::consts::LOG2_E), S::splat(EIGHTHS_ROUND));
    let m8 = t.sub(S::splat(EIGHTHS_ROUND));
    let r = m8.fma(S::splat(-0.693_359_4), x);
    let r = m8.fma(S::splat(2.121_944_4e-4), r);
    // e^r = 1 + r·q(r): minimax relative error 2.5e-8 for |r| <= ln(2)/16.
    let q = r
        .fma(S::splat(0.166_642_9), S::splat(0.500_065))
        .fma(r, S::splat(1.0));
    let s = pow2_eighths(t);
    s.mul(r).fma(q, s)
}

/// `2^(m/8)` for the `m` that `x + EIGHTHS_ROUND` rounded `x` to, given
/// that sum `t` (`m/8` in `[-126, 128)`).
///
/// The addition leaves `m = 8n + k` in the low mantissa bits of `t`: the
/// lowest three are `k`, which picks `2^(k/8)` from a table, and shifting
/// left by 20 moves `n` into the exponent field (the bits above it shift
/// out), where an integer addition applies it to the table entry.
#[inline(always)]
fn pow2_eighths<S: Simd>(t: S) -> S {
    S::lookup8(&EXP2_EIGHTHS, t).add_bits(t.shl_bits::<20>())
}

/// `1.5·2^20`: adding it rounds `|x| < 2^19` to a multiple of 1/8 (see
/// [`pow2_eighths`]).
const EIGHTHS_ROUND: f32 = 1_572_864.0;

/// `2^(k/8)` for `k` in `0..8` (each within 3.2e-8 of the exact value),
/// less `k·2^20` in the bit pattern: the shifted bits [`pow2_eighths`] adds
/// carry `k` there as well as `n`.
const EXP2_EIGHTHS: [f32; 8] = {
    let v = [
        1.0,
        1.090_507_7,
        1.189_207_1,
        1.296_839_6,
        std::f32::consts::SQRT_2,
        1.542_210_8,
        1.681_792_9,
        1.834_008_1,
    ];
    let mut t = [0.0; 8];
    let mut k = 0;
    while k < 8 {
        t[k] = f32::from_bits(f32::to_bits(v[k]).wrapping_sub((k as u32) << 20));
        k += 1;
    }
    t
};

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
    fn lookup8(table: &[f32; 8], idx: Self) -> Self {
        table[(idx.to_bits() & 7) as usize]
    }
    #[inline(always)]
    fn shl_bits<const K: i32>(self) -> Self {
        f32::from_bits(self.to_bits() << K)
    }
    #[inline(always)]
    fn add_bits(self, o: Self) -> Self {
        f32::from_bits(self.to_bits().wrapping_add(o.to_bits()))
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
    fn lookup8(table: &[f32; 8], idx: Self) -> Self {
        lanewise!(idx => |i| <f32 as Simd>::lookup8(table, i))
    }
    #[inline(always)]
    fn shl_bits<const K: i32>(self) -> Self {
        lanewise!(self => |a| a.shl_bits::<K>())
    }
    #[inline(always)]
    fn add_bits(self, o: Self) -> Self {
        lanewise!(self, o => |a, b| a.add_bits(b))
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
        fn lookup8(table: &[f32; 8], idx: Self) -> Self {
            unsafe {
                let t = _mm256_loadu_ps(table.as_ptr());
                Avx2(_mm256_permutevar8x32_ps(t, _mm256_castps_si256(idx.0)))
            }
        }
        #[inline(always)]
        fn shl_bits<const K: i32>(self) -> Self {
            unsafe {
                let b = _mm256_slli_epi32::<K>(_mm256_castps_si256(self.0));
                Avx2(_mm256_castsi256_ps(b))
            }
        }
        #[inline(always)]
        fn add_bits(self, o: Self) -> Self {
            unsafe {
                let b = _mm256_add_epi32(_mm256_castps_si256(self.0), _mm256_castps_si256(o.0));
                Avx2(_mm256_castsi256_ps(b))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest relative error of `f` against the f64 `reference` over `xs`.
    fn worst<S: Simd>(f: impl Fn(S) -> S, reference: impl Fn(f64) -> f64, xs: &[f32]) -> f64 {
        let mut worst = 0.0f64;
        let mut out = vec![0.0; S::LANES];
        for chunk in xs.chunks_exact(S::LANES) {
            f(S::load(chunk)).store(&mut out);
            for (&x, &y) in chunk.iter().zip(&out) {
                let want = reference(x as f64);
                let err = (y as f64 - want).abs() / want.abs().max(1e-30);
                assert!(err.is_finite(), "x={x} got={y} want={want}");
                worst = worst.max(err);
            }
        }
        worst
    }

    fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32)
            .collect()
    }

    /// Checks every function on dense grids (a few hundred thousand points
    /// each, so every table entry and rounding case is hit many times).
    #[inline(always)]
    fn suite<S: Simd>(name: &str) {
        let softplus = |x: f64| if x > 20.0 { x } else { x.exp().ln_1p() };
        let silu = |x: f64| x / (1.0 + (-x).exp());
        let check =
            |what: &str, tol: f64, f: fn(S) -> S, reference: &dyn Fn(f64) -> f64, lo, hi| {
                let err = worst::<S>(f, reference, &grid(lo, hi, 1 << 18));
                assert!(
                    err <= tol,
                    "{name} {what}: relative error {err:.3e} > {tol:.0e}"
                );
            };
        check("exp", 2e-7, |v| v.exp(), &f64::exp, -87.0, 88.0);
        check("exp2", 2e-7, |v| v.exp2_nonpos(), &f64::exp2, -126.0, 127.0);
        check(
            "exp2 near 0",
            2e-7,
            |v| v.exp2_nonpos(),
            &f64::exp2,
            -1.0,
            0.0,
        );
        check("softplus", 3e-7, |v| v.softplus(), &softplus, -30.0, 30.0);
        check(
            "softplus tail",
            3e-7,
            |v| v.softplus(),
            &softplus,
            -86.0,
            -10.0,
        );
        check("silu", 3e-7, |v| v.silu(), &silu, -20.0, 20.0);
    }

    #[test]
    fn transcendentals_are_accurate() {
        suite::<f32>("f32");
        suite::<Lanes8>("lanes8");
        #[cfg(target_arch = "x86_64")]
        if Avx2::available() {
            #[target_feature(enable = "avx2,fma")]
            fn run() {
                suite::<Avx2>("avx2");
            }
            // SAFETY: guarded by the feature check above.
            unsafe { run() }
        }
    }
}
