//! GELU and e^x over f32 slices in explicit SIMD (AVX-512F, or AVX2 + FMA), the formulas of
//! [`crate::fastmath`] with fused multiply-adds and polynomials in Estrin's form. A loop of
//! the scalar functions is bound by the latency of its one long chain of dependent
//! operations (and LLVM left GELU in the GEMM epilogue's 16-lane chunks partly scalar: 18
//! cycles an element on Zen 3, against 5 here); the tail of a slice shorter than a vector
//! takes the scalar functions. The instruction set is the GEMM's ([`gemm::isa`]).

use crate::fastmath::{exp_f32, gelu_f32};
#[cfg(target_arch = "x86_64")]
use crate::gemm::{self, Isa};

/// GELU (erf form) of every element of `xs`, into `out` (of the same length).
pub(crate) fn gelu_to(xs: &[f32], out: &mut [f32]) {
    assert_eq!(xs.len(), out.len(), "vmath::gelu_to: input and output lengths");
    // SAFETY (each arm): `isa` found the features the function is compiled for.
    #[cfg(target_arch = "x86_64")]
    match gemm::isa() {
        Some(Isa::Avx512) => return unsafe { x86::gelu_avx512(xs, out) },
        Some(Isa::Avx2) => return unsafe { x86::gelu_avx2(xs, out) },
        None => {}
    }
    out.iter_mut().zip(xs).for_each(|(y, &x)| *y = gelu_f32(x));
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

/// GELU of each lane, as [`gelu_f32`], for loops in explicit SIMD elsewhere.
#[cfg(target_arch = "x86_64")]
pub(crate) use x86::gelu as gelu_lanes;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{exp_f32, gelu_f32};
    use crate::lanes::{Lanes, Pair};
    use std::arch::x86_64::*;

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
    pub(crate) unsafe fn gelu<V: Lanes>(x: V) -> V {
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

    /// `out[i] = f(xs[i])` for the `n` elements at `xs` (`out` may be `xs`): `f` in pairs of
    /// vectors ([`Pair`]: two chains of the long functions here interleaved run 25% faster
    /// on Zen 3 than one), then `f` on one vector `V`, the scalar `tail` on the rest.
    ///
    /// # Safety
    /// `xs` and `out` address `n` values each.
    #[inline(always)]
    unsafe fn each<V: Lanes>(n: usize, xs: *const f32, out: *mut f32, pairs: impl Fn(Pair<V>) -> Pair<V>, f: impl Fn(V) -> V, tail: impl Fn(f32) -> f32) {
        let (in_pairs, whole) = (n / (2 * V::N) * (2 * V::N), n / V::N * V::N);
        for i in (0..in_pairs).step_by(2 * V::N) {
            pairs(Pair::load(xs.add(i))).store(out.add(i));
        }
        if whole > in_pairs {
            f(V::load(xs.add(in_pairs))).store(out.add(in_pairs));
        }
        (whole..n).for_each(|i| *out.add(i) = tail(*xs.add(i)));
    }

    /// [`super::gelu_to`] with AVX-512F.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `out` is as long as `xs`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gelu_avx512(xs: &[f32], out: &mut [f32]) {
        each::<__m512>(xs.len(), xs.as_ptr(), out.as_mut_ptr(), |v| gelu(v), |v| gelu(v), gelu_f32)
    }

    /// [`super::gelu_to`] with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `out` is as long as `xs`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gelu_avx2(xs: &[f32], out: &mut [f32]) {
        each::<__m256>(xs.len(), xs.as_ptr(), out.as_mut_ptr(), |v| gelu(v), |v| gelu(v), gelu_f32)
    }

    /// [`super::exp_shifted_in_place`] with AVX-512F.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn exp_avx512(xs: &mut [f32], shift: f32) {
        let (sv, sp) = (__m512::splat(shift), Pair::<__m512>::splat(shift));
        each::<__m512>(xs.len(), xs.as_ptr(), xs.as_mut_ptr(), |v| exp(v.sub(sp)), |v| exp(v.sub(sv)), |x| exp_f32(x - shift))
    }

    /// [`super::exp_shifted_in_place`] with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_avx2(xs: &mut [f32], shift: f32) {
        let (sv, sp) = (__m256::splat(shift), Pair::<__m256>::splat(shift));
        each::<__m256>(xs.len(), xs.as_ptr(), xs.as_mut_ptr(), |v| exp(v.sub(sp)), |v| exp(v.sub(sv)), |x| exp_f32(x - shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erf;

    /// Every form this CPU runs, by name: (GELU, e^(x − shift)).
    #[allow(clippy::type_complexity)]
    fn forms() -> Vec<(&'static str, fn(&[f32], &mut [f32]), fn(&mut [f32], f32))> {
        let mut out: Vec<(&'static str, fn(&[f32], &mut [f32]), fn(&mut [f32], f32))> = vec![
            ("dispatch", gelu_to, exp_shifted_in_place),
            ("scalar", |xs, ys| ys.iter_mut().zip(xs).for_each(|(y, x)| *y = gelu_f32(*x)), |xs, s| xs.iter_mut().for_each(|x| *x = exp_f32(*x - s))),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            // SAFETY (each): pushed only where the CPU has the features.
            if has!("avx2") && has!("fma") {
                out.push(("avx2", |xs, ys| unsafe { x86::gelu_avx2(xs, ys) }, |xs, s| unsafe { x86::exp_avx2(xs, s) }));
            }
            if has!("avx512f") {
                out.push(("avx512", |xs, ys| unsafe { x86::gelu_avx512(xs, ys) }, |xs, s| unsafe { x86::exp_avx512(xs, s) }));
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
                let mut ys = vec![f32::NAN; len];
                gelu(&xs[..len], &mut ys);
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
