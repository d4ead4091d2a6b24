//! [`Lanes`]: a vector of f32 lanes of one x86-64 instruction set (AVX2's `__m256`,
//! AVX-512F's `__m512`), so that a loop in explicit SIMD is written once, generic over the
//! width, and compiled for each set inside a `#[target_feature]` function.

use std::arch::x86_64::*;

/// One instruction set's vector of f32 lanes.
///
/// # Safety
/// Every method needs the CPU to have the vector's instruction set; callers use them inside
/// functions compiled for it (`#[target_feature]`), into which they are inlined.
pub(crate) trait Lanes: Copy {
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

/// Two vectors of `V` as one of twice the lanes: each operation is issued for both halves
/// in turn, so that two independent chains of dependent operations interleave in the
/// instruction stream (a long function such as GELU is otherwise bound by its latency, the
/// out-of-order window too small to overlap successive loop iterations).
#[derive(Clone, Copy)]
pub(crate) struct Pair<V>(V, V);

/// The methods of [`Lanes`] for [`Pair`], each applied to both halves.
macro_rules! pairwise {
    ($($name:ident($($arg:ident),*)),*) => {
        $(
            #[inline(always)]
            unsafe fn $name(self, $($arg: Self),*) -> Self {
                Pair(self.0.$name($($arg.0),*), self.1.$name($($arg.1),*))
            }
        )*
    };
}

impl<V: Lanes> Lanes for Pair<V> {
    const N: usize = 2 * V::N;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Pair(V::splat(v), V::splat(v))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Pair(V::load(p), V::load(p.add(V::N)))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        self.0.store(p);
        self.1.store(p.add(V::N))
    }
    pairwise!(add(o), sub(o), mul(o), div(o), fma(b, c), max(o), min(o), abs(), where_negative(neg, other), nan_or(v), scale_pow2(shifted, round));
}

/// `(in_pairs, whole)` for `n` values: how many of them fill whole [`Pair`]s of `V`, and how
/// many whole vectors of `V` (the pairs plus at most one vector).
#[inline(always)]
pub(crate) fn spans<V: Lanes>(n: usize) -> (usize, usize) {
    (n / (2 * V::N) * (2 * V::N), n / V::N * V::N)
}
