//! GELU, its derivative and e^x over f32 slices in explicit SIMD (AVX-512F, or AVX2 + FMA), the formulas of
//! [`crate::fastmath`] with fused multiply-adds and polynomials in Estrin's form. A loop of
//! the scalar functions is bound by the latency of its one long chain of dependent
//! operations (and LLVM left GELU in the GEMM epilogue's 16-lane chunks partly scalar: 18
//! cycles an element on Zen 3, against 5 here); the tail of a slice shorter than a vector
//! takes the scalar functions. The instruction set is the GEMM's ([`gemm::isa`]).

use crate::fastmath::{exp_f32, gelu_f32, gelu_grad_f32};
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

/// `dy · GELU'(x)` for each `x` of `xs` and `dy` of `dys`, into `out` (all of one length).
pub(crate) fn gelu_backward_to(xs: &[f32], dys: &[f32], out: &mut [f32]) {
    assert!(dys.len() == xs.len() && out.len() == xs.len(), "vmath::gelu_backward_to: input and output lengths");
    // SAFETY (each arm): `isa` found the features the function is compiled for.
    #[cfg(target_arch = "x86_64")]
    match gemm::isa() {
        Some(Isa::Avx512) => return unsafe { x86::gelu_backward_avx512(xs, dys, out) },
        Some(Isa::Avx2) => return unsafe { x86::gelu_backward_avx2(xs, dys, out) },
        None => {}
    }
    out.iter_mut().zip(xs.iter().zip(dys)).for_each(|(o, (&x, &dy))| *o = dy * gelu_grad_f32(x));
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
    use super::{exp_f32, gelu_f32, gelu_grad_f32};
    use crate::fastmath::FRAC_1_SQRT_2PI;
    use crate::lanes::{spans, Lanes, Pair};
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

    /// Φ(x) from erfc, as the scalar `norm_cdf_f32`.
    #[inline(always)]
    unsafe fn norm_cdf<V: Lanes>(x: V) -> V {
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
        x.where_negative(lower, one.sub(lower))
    }

    /// GELU, x·Φ(x), as [`gelu_f32`].
    ///
    /// # Safety
    /// In a function compiled for `V`'s instruction set ([`Lanes`]).
    #[inline(always)]
    pub(crate) unsafe fn gelu<V: Lanes>(x: V) -> V {
        x.mul(norm_cdf(x))
    }

    /// d GELU/dx = Φ(x) + x·φ(x), as [`gelu_grad_f32`].
    #[inline(always)]
    unsafe fn gelu_grad<V: Lanes>(x: V) -> V {
        let s = V::splat;
        norm_cdf(x).add(x.mul(s(FRAC_1_SQRT_2PI)).mul(exp(s(-0.5).mul(x).mul(x))))
    }

    /// Fills `out[..n]`: `pairs(i)` gives the values from `i` on for a pair of vectors
    /// ([`Pair`]: two chains of the long functions here interleaved run 25% faster on Zen 3
    /// than one), then `one(i)` for one vector `V`, the scalar `tail(i)` for each value
    /// left. Each reads its inputs at `i` before the store, so that an input may be `out`.
    ///
    /// # Safety
    /// `out` and the inputs the functions read address `n` values each.
    #[inline(always)]
    unsafe fn each<V: Lanes>(n: usize, out: *mut f32, pairs: impl Fn(usize) -> Pair<V>, one: impl Fn(usize) -> V, tail: impl Fn(usize) -> f32) {
        let (in_pairs, whole) = spans::<V>(n);
        for i in (0..in_pairs).step_by(2 * V::N) {
            pairs(i).store(out.add(i));
        }
        if whole > in_pairs {
            one(in_pairs).store(out.add(in_pairs));
        }
        (whole..n).for_each(|i| *out.add(i) = tail(i));
    }

    /// [`super::gelu_to`] in vectors `V`.
    ///
    /// # Safety
    /// In a function compiled for `V`'s instruction set; `out` is as long as `xs`.
    #[inline(always)]
    unsafe fn gelu_on<V: Lanes>(xs: &[f32], out: &mut [f32]) {
        let x = xs.as_ptr();
        each::<V>(xs.len(), out.as_mut_ptr(), |i| gelu(Pair::load(x.add(i))), |i| gelu(V::load(x.add(i))), |i| gelu_f32(*x.add(i)))
    }

    /// [`super::gelu_backward_to`] in vectors `V`.
    ///
    /// # Safety
    /// In a function compiled for `V`'s instruction set; `dys` and `out` are as long as `xs`.
    #[inline(always)]
    unsafe fn gelu_backward_on<V: Lanes>(xs: &[f32], dys: &[f32], out: &mut [f32]) {
        let (x, dy) = (xs.as_ptr(), dys.as_ptr());
        each::<V>(
            xs.len(),
            out.as_mut_ptr(),
            |i| Pair::<V>::load(dy.add(i)).mul(gelu_grad(Pair::load(x.add(i)))),
            |i| V::load(dy.add(i)).mul(gelu_grad(V::load(x.add(i)))),
            |i| *dy.add(i) * gelu_grad_f32(*x.add(i)),
        )
    }

    /// [`super::exp_shifted_in_place`] in vectors `V`.
    ///
    /// # Safety
    /// In a function compiled for `V`'s instruction set.
    #[inline(always)]
    unsafe fn exp_on<V: Lanes>(xs: &mut [f32], shift: f32) {
        let (x, sv, sp) = (xs.as_mut_ptr(), V::splat(shift), Pair::<V>::splat(shift));
        each::<V>(xs.len(), x, |i| exp(Pair::load(x.add(i)).sub(sp)), |i| exp(V::load(x.add(i)).sub(sv)), |i| exp_f32(*x.add(i) - shift))
    }

    /// The functions above compiled for AVX-512F (`$avx512`) and for AVX2 and FMA (`$avx2`).
    macro_rules! compiled {
        ($($generic:ident => $avx512:ident, $avx2:ident ($($arg:ident: $ty:ty),*);)*) => {
            $(
                /// The generic function of the same stem with AVX-512F.
                ///
                /// # Safety
                /// The CPU has AVX-512F; as for the generic function.
                #[target_feature(enable = "avx512f")]
                pub(super) unsafe fn $avx512($($arg: $ty),*) {
                    $generic::<__m512>($($arg),*)
                }

                /// The generic function of the same stem with AVX2 and FMA.
                ///
                /// # Safety
                /// The CPU has AVX2 and FMA; as for the generic function.
                #[target_feature(enable = "avx2,fma")]
                pub(super) unsafe fn $avx2($($arg: $ty),*) {
                    $generic::<__m256>($($arg),*)
                }
            )*
        };
    }

    compiled! {
        gelu_on => gelu_avx512, gelu_avx2(xs: &[f32], out: &mut [f32]);
        gelu_backward_on => gelu_backward_avx512, gelu_backward_avx2(xs: &[f32], dys: &[f32], out: &mut [f32]);
        exp_on => exp_avx512, exp_avx2(xs: &mut [f32], shift: f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erf;

    /// One form of the functions here.
    struct Form {
        name: &'static str,
        gelu: fn(&[f32], &mut [f32]),
        gelu_backward: fn(&[f32], &[f32], &mut [f32]),
        exp: fn(&mut [f32], f32),
    }

    /// Every form this CPU runs.
    fn forms() -> Vec<Form> {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut out = vec![
            Form { name: "dispatch", gelu: gelu_to, gelu_backward: gelu_backward_to, exp: exp_shifted_in_place },
            Form {
                name: "scalar",
                gelu: |xs, ys| ys.iter_mut().zip(xs).for_each(|(y, x)| *y = gelu_f32(*x)),
                gelu_backward: |xs, dys, out| out.iter_mut().zip(xs.iter().zip(dys)).for_each(|(o, (x, dy))| *o = dy * gelu_grad_f32(*x)),
                exp: |xs, s| xs.iter_mut().for_each(|x| *x = exp_f32(*x - s)),
            },
        ];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            // SAFETY (each): pushed only where the CPU has the features.
            if has!("avx2") && has!("fma") {
                out.push(Form {
                    name: "avx2",
                    gelu: |xs, ys| unsafe { x86::gelu_avx2(xs, ys) },
                    gelu_backward: |xs, dys, out| unsafe { x86::gelu_backward_avx2(xs, dys, out) },
                    exp: |xs, s| unsafe { x86::exp_avx2(xs, s) },
                });
            }
            if has!("avx512f") {
                out.push(Form {
                    name: "avx512",
                    gelu: |xs, ys| unsafe { x86::gelu_avx512(xs, ys) },
                    gelu_backward: |xs, dys, out| unsafe { x86::gelu_backward_avx512(xs, dys, out) },
                    exp: |xs, s| unsafe { x86::exp_avx512(xs, s) },
                });
            }
        }
        out
    }

    /// Lengths that end in each part of [`x86`]'s loops for both vector widths (pairs,
    /// one vector, elements); `usize::MAX`: the whole grid.
    const LENGTHS: [usize; 14] = [usize::MAX, 0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 47, 48, 63];

    /// A grid of [-20, 20] (not a multiple of any vector width long), with the special values.
    fn grid() -> Vec<f32> {
        let mut xs: Vec<f32> = (0..2921).map(|i| -20.0 + i as f32 * 0.0137).collect();
        xs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e-30, -1e-30, 88.5, -103.0, -150.0]);
        xs
    }

    #[test]
    fn gelu_matches_f64_in_every_form_and_tail() {
        let xs = grid();
        for Form { name, gelu, .. } in forms() {
            for len in LENGTHS.map(|l| l.min(xs.len())) {
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
    fn gelu_backward_matches_f64_in_every_form_and_tail() {
        let xs = grid();
        let dys: Vec<f32> = (0..xs.len()).map(|i| 1.5 - (i % 7) as f32 * 0.5).collect();
        for Form { name, gelu_backward, .. } in forms() {
            for len in LENGTHS.map(|l| l.min(xs.len())) {
                let mut out = vec![f32::NAN; len];
                gelu_backward(&xs[..len], &dys[..len], &mut out);
                for ((&x, &dy), &got) in xs.iter().zip(&dys).zip(&out) {
                    let (x64, dy64) = (x as f64, dy as f64);
                    let want = dy64 * erf::gelu_grad(x64);
                    // GELU' = Φ(x) + x·φ(x) crosses zero: the error relative to its terms.
                    let terms = dy64.abs() * (0.5 * erf::erfc(-x64 / 2f64.sqrt()) + (x64 * (-0.5 * x64 * x64).exp()).abs());
                    let err = (got as f64 - want).abs();
                    let ok = if want.is_nan() { got.is_nan() } else { err <= (1e-6 + 2.5e-7 * x64 * x64) * terms || err < 1e-37 };
                    assert!(ok, "{name} (length {len}): {dy}·gelu'({x}) = {got}, want {want}");
                }
            }
        }
    }

    #[test]
    fn exp_matches_f64_in_every_form_and_tail() {
        let xs = grid();
        for Form { name, exp, .. } in forms() {
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
