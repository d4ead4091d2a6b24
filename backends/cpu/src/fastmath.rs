//! Branch-free f32 transcendentals that vectorise (libm's `expf` does not), and wrappers
//! that compile hot loops for AVX2+FMA or AVX-512F when the CPU has them.

/// Run `f` compiled for AVX2 and FMA when the CPU supports them, so that the loops
/// inlined into it vectorise 8 lanes wide; plain `f()` elsewhere.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Run `f` compiled for AVX-512F when the CPU has it, else as [`simd`]: for the loops that
/// run beside our GEMM, which uses the widest registers too.
#[inline(always)]
pub(crate) fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { avx512(f) };
        }
    }
    simd(f)
}

/// The constants of [`exp_f32`] (and of its vector form in [`crate::vmath`]).
pub(crate) mod exp_consts {
    /// Inputs are clamped to `[LOWEST, HIGHEST]`: e^x is 0 below, ∞ above.
    pub(crate) const LOWEST: f32 = -104.0;
    /// See [`LOWEST`].
    pub(crate) const HIGHEST: f32 = 89.0;
    /// ln 2 in two parts (Cody and Waite), so that `x − n·ln 2` is exact.
    pub(crate) const LN2_HI: f32 = 0.693_359_4;
    /// See [`LN2_HI`].
    pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
    /// Adding 1.5·2^23 rounds to an integer, which then sits in the low mantissa bits.
    pub(crate) const ROUND: f32 = 12_582_912.0;
    /// Cephes' polynomial p, highest degree first: e^r ≈ 1 + r + r²·p(r) on |r| ≤ ln 2 / 2.
    pub(crate) const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
}

/// e^x in f32 (Cephes `expf`: within 2 ulp), exact 0 for very negative x, ∞ on overflow.
/// Written without calls or integer casts so that loops over it vectorise; the polynomial
/// in Estrin's form (a shorter chain of dependent operations than Horner's).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    use exp_consts::*;
    // max/min (not clamp) map to single vector instructions; NaN is restored below.
    #[allow(clippy::manual_clamp)]
    let xc = x.max(LOWEST).min(HIGHEST);
    let shifted = xc * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let [p0, p1, p2, p3, p4, p5] = P;
    let p = ((p0 * r + p1) * r2 + (p2 * r + p3)) * r2 + (p4 * r + p5);
    let y = p * r2 + r + 1.0;
    // 2^n as two normal factors, so that overflow and underflow round naturally.
    let n = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let half = n >> 1;
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let v = y * pow2(half) * pow2(n - half);
    if x.is_nan() {
        x
    } else {
        v
    }
}

/// The coefficients of Numerical Recipes' `erfcc`, lowest degree first:
/// erfc(z) ≈ t·e^(−z² + Σ Cᵢ tⁱ) with t = 1/(1 + z/2).
pub(crate) const ERFC_POLY: [f32; 10] = [
    -1.265_512_2,
    1.000_023_7,
    0.374_091_96,
    0.096_784_18,
    -0.186_288_06,
    0.278_868_07,
    -1.135_204,
    1.488_515_9,
    -0.822_152_2,
    0.170_872_77,
];

/// Φ(x), the standard normal CDF, in f32, from Numerical Recipes' `erfcc` (fractional
/// error 1.2e-7); with the rounding of x² in f32, the relative error stays below
/// 1e-6 + 2.5e-7·x², in the lower tail too. The polynomial in Estrin's form.
#[inline(always)]
fn norm_cdf_f32(x: f32) -> f32 {
    const C: [f32; 10] = ERFC_POLY;
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let (t2, pair) = (t * t, |i: usize| C[i + 1] * t + C[i]);
    let t4 = t2 * t2;
    let poly = pair(8) * (t4 * t4) + ((pair(6) * t2 + pair(4)) * t4 + (pair(2) * t2 + pair(0)));
    // Φ(−|x|) = erfc(|x|/√2)/2.
    let lower = 0.5 * t * exp_f32(poly - 0.5 * x * x);
    if x >= 0.0 {
        1.0 - lower
    } else {
        lower
    }
}

/// GELU (erf form) in f32: x·Φ(x).
#[inline(always)]
pub(crate) fn gelu_f32(x: f32) -> f32 {
    x * norm_cdf_f32(x)
}

/// 1/√(2π), the scale of the normal density φ.
pub(crate) const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// d GELU/dx in f32: Φ(x) + x·φ(x).
#[inline(always)]
pub(crate) fn gelu_grad_f32(x: f32) -> f32 {
    norm_cdf_f32(x) + x * FRAC_1_SQRT_2PI * exp_f32(-0.5 * x * x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erf;

    /// `f` against `want` on a grid of [-20, 20]: error below `tol(x)` relative to `scale(x)`
    /// (or below f32's normal range).
    fn check(
        name: &str,
        f: impl Fn(f32) -> f32,
        want: impl Fn(f64) -> f64,
        scale: impl Fn(f64) -> f64,
        tol: impl Fn(f64) -> f64,
    ) {
        let mut x = -20.0f32;
        while x <= 20.0 {
            let (g, w) = (f(x) as f64, want(x as f64));
            let err = (g - w).abs();
            assert!(err <= tol(x as f64) * scale(x as f64) || err < 1e-37, "{name}({x}) = {g}, want {w}");
            x += 0.0137;
        }
    }

    fn rel(w: impl Fn(f64) -> f64) -> impl Fn(f64) -> f64 {
        move |x| w(x).abs()
    }

    #[test]
    fn exp_is_within_a_few_ulp() {
        check("exp", exp_f32, f64::exp, rel(f64::exp), |_| 3e-7);
        let exp4 = |x: f64| (x * 4.0).exp();
        check("exp", |x| exp_f32(x * 4.0), exp4, rel(exp4), |_| 3e-7);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn gelu_and_gradient_are_accurate() {
        // Relative accuracy also in the lower tail, where x·Φ(x) is tiny.
        let tol = |x: f64| 1e-6 + 2.5e-7 * x * x;
        check("gelu", gelu_f32, erf::gelu, rel(erf::gelu), tol);
        // gelu' = Φ(x) + x·φ(x) crosses zero: errors relative to the size of its terms.
        let terms = |x: f64| 0.5 * erf::erfc(-x / 2f64.sqrt()) + (x * (-0.5 * x * x).exp()).abs();
        check("gelu'", gelu_grad_f32, erf::gelu_grad, terms, tol);
        assert!(gelu_f32(f32::NAN).is_nan());
        assert_eq!(gelu_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(simd(|| gelu_f32(1.0)), gelu_f32(1.0));
    }
}
