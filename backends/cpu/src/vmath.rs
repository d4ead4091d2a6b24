//! GELU and e^x over f32 slices in explicit SIMD (AVX-512F, or AVX2 + FMA), the formulas of
//! [`crate::fastmath`] with fused multiply-adds and polynomials in Estrin's form. A loop of
//! the scalar functions is bound by the latency of its one long chain of dependent
//! operations (and LLVM left GELU in the GEMM epilogue's 16-lane chunks partly scalar: 18
//! cycles an element on Zen 3, against 5 here); the tail of a slice shorter than a vector
//! takes the scalar functions. The instruction set is the GEMM's ([`gemm::isa`]).

use crate::fastmath::{exp_f32, gelu_f32};
#[cfg(target_arch = "x86_64")]
use crate::gemm::{self, Isa};

/// GELU (erf form) of every element of `xs`, in place.
pub(crate) fn gelu_in_place(xs: &mut [f32]) {
    // SAFETY (each arm): `isa` found the features the function is compiled for.
    #[cfg(target_arch = "x86_64")]
    match gemm::isa() {
        Some(Isa::Avx512) => return unsafe { x86::gelu_avx512(xs) },
        Some(Isa::Avx2) => return unsafe { x86::gelu_avx2(xs) },
        None => {}
    }
    xs.iter_mut().for_each(|x| *x = gelu_f32(*x));
}

/// `e^(x − shift)` of every element `x` of `xs`, in place.
pub(crate) fn exp_shifted_in_place(xs: &mut [f32], shift: f32) {
    // SAFETY (each arm): `isa` found the features the function is compiled for.
    #[cfg(target_arch = "x86_64")]
    match gemm::isa() {
        Some(Isa::Avx512) => return unsafe { x86::exp_avx512(xs, shift) },
        Some(Isa::Avx2) => return unsafe { x86::exp_avx2(xs, shift) },
        None => {}
    }
    xs.iter_mut().for_each(|x| *x = exp_f32(*x - shift));
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{exp_f32, gelu_f32};
    use std::arch::x86_64::*;

    /// One instruction set's vector of f32 lanes. Every method is inlined into a function
    /// compiled for that instruction set, which is what makes calling it sound.
    trait Lanes: Copy {
        /// f32 lanes per vector.
        const N: usize;
        unsafe fn splat(v: f32) -> Self;
        unsafe fn load(p: *const f32) -> Self;
        unsafe fn store(self, p: *mut f32);
        unsafe fn add(self, o: Self) -> Self;
        unsafe fn sub(self, o: Self) -> Self;
        unsafe fn mul(self, o: Self) -> Self;
        unsafe fn div(self, o: Self) -> Self;
        /// `self·b + c`, rounded once.
        unsafe fn fma(self, b: Self, c: Self) -> Self;
        unsafe fn max(self, o: Self) -> Self;
        unsafe fn min(self, o: Self) -> Self;
        unsafe fn abs(self) -> Self;
        /// `neg` in the lanes where `self < 0`, `other` elsewhere (NaN included).
        unsafe fn where_negative(self, neg: Self, other: Self) -> Self;
        /// `self` in its NaN lanes, `v` elsewhere.
        unsafe fn nan_or(self, v: Self) -> Self;
        /// `self·2^n` for the integers `n = shifted − round` (both seen as 32-bit integers:
        /// `n` sits in the low mantissa bits), as `self·2^h·2^(n−h)` with `h = n/2`, so that
        /// overflow and underflow round as they would in one step.
        unsafe fn scale_pow2(self, shifted: Self, round: Self) -> Self;
    }

    /// The two-operand methods of [`Lanes`], each one intrinsic.
    macro_rules! binary {
        ($($name:ident = $f:ident),*) => {
            $(
                #[inline(always)]
                unsafe fn $name(self, o: Self) -> Self {
                    $f(self, o)
                }
            )*
        };
    }

    impl Lanes for __m256 {
        const N: usize = 8;
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            _mm256_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self)
        }
        binary!(add = _mm256_add_ps, sub = _mm256_sub_ps, mul = _mm256_mul_ps, div = _mm256_div_ps, max = _mm256_max_ps, min = _mm256_min_ps);
        #[inline(always)]
        unsafe fn fma(self, b: Self, c: Self) -> Self {
            _mm256_fmadd_ps(self, b, c)
        }
        #[inline(always)]
        unsafe fn abs(self) -> Self {
            _mm256_andnot_ps(_mm256_set1_ps(-0.0), self)
        }
        #[inline(always)]
        unsafe fn where_negative(self, neg: Self, other: Self) -> Self {
            _mm256_blendv_ps(other, neg, _mm256_cmp_ps::<_CMP_LT_OQ>(self, _mm256_setzero_ps()))
        }
        #[inline(always)]
        unsafe fn nan_or(self, v: Self) -> Self {
            _mm256_blendv_ps(v, self, _mm256_cmp_ps::<_CMP_UNORD_Q>(self, self))
        }
        #[inline(always)]
        unsafe fn scale_pow2(self, shifted: Self, round: Self) -> Self {
            let n = _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_castps_si256(round));
            let half = _mm256_srai_epi32::<1>(n);
            let bias = _mm256_set1_epi32(127);
            let pow2 = |e: __m256i| _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(e, bias)));
            _mm256_mul_ps(_mm256_mul_ps(self, pow2(half)), pow2(_mm256_sub_epi32(n, half)))
        }
    }

    impl Lanes for __m512 {
        const N: usize = 16;
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            _mm512_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self)
        }
        binary!(add = _mm512_add_ps, sub = _mm512_sub_ps, mul = _mm512_mul_ps, div = _mm512_div_ps, max = _mm512_max_ps, min = _mm512_min_ps);
        #[inline(always)]
        unsafe fn fma(self, b: Self, c: Self) -> Self {
            _mm512_fmadd_ps(self, b, c)
        }
        #[inline(always)]
        unsafe fn abs(self) -> Self {
            _mm512_abs_ps(self)
        }
        #[inline(always)]
        unsafe fn where_negative(self, neg: Self, other: Self) -> Self {
            _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(self, _mm512_setzero_ps()), other, neg)
        }
        #[inline(always)]
        unsafe fn nan_or(self, v: Self) -> Self {
            _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(self, self), v, self)
        }
        #[inline(always)]
        unsafe fn scale_pow2(self, shifted: Self, round: Self) -> Self {
            let n = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_castps_si512(round));
            let half = _mm512_srai_epi32::<1>(n);
            let bias = _mm512_set1_epi32(127);
            let pow2 = |e: __m512i| _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(e, bias)));
            _mm512_mul_ps(_mm512_mul_ps(self, pow2(half)), pow2(_mm512_sub_epi32(n, half)))
        }
    }
    /// e^x: Cephes' reduction and polynomial, as [`exp_f32`].
    #[inline(always)]
    unsafe fn exp<V: Lanes>(x: V) -> V {
        use crate::fastmath::exp_consts::*;
        let s = V::splat;
        let xc = x.max(s(LOWEST)).min(s(HIGHEST));
        let round = s(ROUND);
        let shifted = xc.fma(s(std::f32::consts::LOG2_E), round);
        let n = shifted.sub(round);
        let r = n.fma(s(-LN2_LO), n.fma(s(-LN2_HI), xc));
        let r2 = r.mul(r);
        let [p0, p1, p2, p3, p4, p5] = P;
        let q = s(p0).fma(r, s(p1)).fma(r2, s(p2).fma(r, s(p3))).fma(r2, s(p4).fma(r, s(p5)));
        let y = q.mul(r2).add(r).add(s(1.0));
        x.nan_or(y.scale_pow2(shifted, round))
    }

    /// GELU, x·Φ(x), with Φ from erfc as [`gelu_f32`].
    #[inline(always)]
    unsafe fn gelu<V: Lanes>(x: V) -> V {
        use crate::fastmath::ERFC_POLY as C;
        let s = V::splat;
        let one = s(1.0);
        let t = one.div(x.abs().fma(s(0.5 * std::f32::consts::FRAC_1_SQRT_2), one));
        let (t2, pair) = (t.mul(t), |i: usize| s(C[i + 1]).fma(t, s(C[i])));
        let t4 = t2.mul(t2);
        let low = pair(2).fma(t2, pair(0));
        let high = pair(6).fma(t2, pair(4));
        let poly = pair(8).fma(t4.mul(t4), high.fma(t4, low));
        let lower = s(0.5).mul(t).mul(exp(s(-0.5).mul(x).fma(x, poly)));
        x.mul(x.where_negative(lower, one.sub(lower)))
    }

    /// `f` on each whole vector of `xs`, the scalar `tail` on the rest.
    #[inline(always)]
    unsafe fn each<V: Lanes>(xs: &mut [f32], f: impl Fn(V) -> V, tail: impl Fn(f32) -> f32) {
        let whole = xs.len() / V::N * V::N;
        let p = xs.as_mut_ptr();
        for i in (0..whole).step_by(V::N) {
            f(V::load(p.add(i))).store(p.add(i));
        }
        xs[whole..].iter_mut().for_each(|x| *x = tail(*x));
    }

    /// [`super::gelu_in_place`] with AVX-512F.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gelu_avx512(xs: &mut [f32]) {
        each::<__m512>(xs, |v| gelu(v), gelu_f32)
    }

    /// [`super::gelu_in_place`] with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gelu_avx2(xs: &mut [f32]) {
        each::<__m256>(xs, |v| gelu(v), gelu_f32)
    }

    /// [`super::exp_shifted_in_place`] with AVX-512F.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn exp_avx512(xs: &mut [f32], shift: f32) {
        let sv = _mm512_set1_ps(shift);
        each::<__m512>(xs, |v| exp(v.sub(sv)), |x| exp_f32(x - shift))
    }

    /// [`super::exp_shifted_in_place`] with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_avx2(xs: &mut [f32], shift: f32) {
        let sv = _mm256_set1_ps(shift);
        each::<__m256>(xs, |v| exp(v.sub(sv)), |x| exp_f32(x - shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erf;

    /// Every form this CPU runs, by name: (GELU, e^(x − shift)).
    #[allow(clippy::type_complexity)]
    fn forms() -> Vec<(&'static str, fn(&mut [f32]), fn(&mut [f32], f32))> {
        let mut out: Vec<(&'static str, fn(&mut [f32]), fn(&mut [f32], f32))> = vec![
            ("dispatch", gelu_in_place, exp_shifted_in_place),
            ("scalar", |xs| xs.iter_mut().for_each(|x| *x = gelu_f32(*x)), |xs, s| xs.iter_mut().for_each(|x| *x = exp_f32(*x - s))),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            // SAFETY (each): pushed only where the CPU has the features.
            if has!("avx2") && has!("fma") {
                out.push(("avx2", |xs| unsafe { x86::gelu_avx2(xs) }, |xs, s| unsafe { x86::exp_avx2(xs, s) }));
            }
            if has!("avx512f") {
                out.push(("avx512", |xs| unsafe { x86::gelu_avx512(xs) }, |xs, s| unsafe { x86::exp_avx512(xs, s) }));
            }
        }
        out
    }

    /// A grid of [-20, 20] (not a multiple of any vector width long), with the special values.
    fn grid() -> Vec<f32> {
        let mut xs: Vec<f32> = (0..2921).map(|i| -20.0 + i as f32 * 0.0137).collect();
        xs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e-30, -1e-30, 88.5, -103.0, -150.0]);
        xs
    }

    #[test]
    fn gelu_matches_f64_in_every_form_and_tail() {
        let xs = grid();
        for (name, gelu, _) in forms() {
            for len in [xs.len(), 0, 1, 7, 8, 9, 15, 16, 17, 31, 33] {
                let mut ys = xs[..len].to_vec();
                gelu(&mut ys);
                for (&x, &y) in xs.iter().zip(&ys) {
                    let want = erf::gelu(x as f64);
                    let (x64, err) = (x as f64, (y as f64 - want).abs());
                    let ok = if want.is_nan() { y.is_nan() } else { err <= (1e-6 + 2.5e-7 * x64 * x64) * want.abs() || err < 1e-37 || y == want as f32 };
                    assert!(ok, "{name} (length {len}): gelu({x}) = {y}, want {want}");
                }
            }
        }
    }

    #[test]
    fn exp_matches_f64_in_every_form_and_tail() {
        let xs = grid();
        for (name, _, exp) in forms() {
            for (len, shift) in [(xs.len(), 0.0), (xs.len(), 3.5), (0, 0.0), (9, -1.0), (17, 2.0), (33, 0.25)] {
                let mut ys = xs[..len].to_vec();
                exp(&mut ys, shift);
                for (&x, &y) in xs.iter().zip(&ys) {
                    let want = ((x - shift) as f64).exp();
                    let err = (y as f64 - want).abs();
                    let ok = if x.is_nan() { y.is_nan() } else { err <= 3e-7 * want || err < 1e-37 || y as f64 == want };
                    assert!(ok, "{name} (length {len}): exp({x} - {shift}) = {y}, want {want}");
                }
            }
        }
    }
}
