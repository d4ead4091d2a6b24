//! Element traits the kernels are generic over: [`Scalar`] (every dtype), [`Num`]
//! (arithmetic: f32, f64, i64) and [`Real`] (floats).

use crate::{erf, fastmath};
use beit_engine::{DType, Element, HostData};

/// A Rust type that a CPU buffer can hold (`u8` also stands for [`DType::Bool`]).
pub(crate) trait Scalar: Element + Default + PartialOrd {
    /// The elements of `h`, when it holds this type.
    fn slice(h: &HostData) -> Option<&[Self]>;
    /// The elements of `h`, mutably, when it holds this type.
    fn slice_mut(h: &mut HostData) -> Option<&mut [Self]>;
    /// Wrap a vector as host data of `dtype` (which only matters for `u8`: U8 or Bool).
    fn host(v: Vec<Self>, dtype: DType) -> HostData;
}

macro_rules! scalar {
    ($t:ty, $($variant:ident)|+) => {
        impl Scalar for $t {
            fn slice(h: &HostData) -> Option<&[Self]> {
                match h {
                    $(HostData::$variant(v))|+ => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(h: &mut HostData) -> Option<&mut [Self]> {
                match h {
                    $(HostData::$variant(v))|+ => Some(v),
                    _ => None,
                }
            }
            fn host(v: Vec<Self>, dtype: DType) -> HostData {
                if dtype == DType::Bool {
                    HostData::Bool(v.into_iter().map(|x| u8::from(x != <$t>::default())).collect())
                } else {
                    Self::into_host(v)
                }
            }
        }
    };
}
scalar!(f32, F32);
scalar!(f64, F64);
scalar!(half::bf16, BF16);
scalar!(i64, I64);
scalar!(u32, U32);
scalar!(u8, U8 | Bool);

/// Arithmetic for the dtypes that support it; integer ops wrap, float min/max propagate NaN.
pub(crate) trait Num: Scalar {
    /// Accumulator for sums: f64 for floats, i64 for integers.
    type Acc: Copy + Send + Sync + Default;
    /// Widen to the accumulator.
    fn acc(self) -> Self::Acc;
    /// Add two accumulators.
    fn acc_add(a: Self::Acc, b: Self::Acc) -> Self::Acc;
    /// The square, widened to the accumulator first (wrapping for integers).
    fn acc_square(self) -> Self::Acc;
    /// Narrow an accumulator back.
    fn from_acc(a: Self::Acc) -> Self;
    /// a + b
    fn plus(self, o: Self) -> Self;
    /// a - b
    fn minus(self, o: Self) -> Self;
    /// a · b
    fn times(self, o: Self) -> Self;
    /// max(a, b)
    fn max_of(self, o: Self) -> Self;
    /// min(a, b)
    fn min_of(self, o: Self) -> Self;
    /// The identity of max (the lowest value).
    const LOWEST: Self;
    /// The identity of min (the highest value).
    const HIGHEST: Self;
}

macro_rules! num_float {
    ($t:ty) => {
        impl Num for $t {
            type Acc = f64;
            fn acc(self) -> f64 {
                self as f64
            }
            fn acc_add(a: f64, b: f64) -> f64 {
                a + b
            }
            #[inline(always)]
            fn acc_square(self) -> f64 {
                let a = self as f64;
                a * a
            }
            fn from_acc(a: f64) -> Self {
                a as $t
            }
            #[inline(always)]
            fn plus(self, o: Self) -> Self {
                self + o
            }
            #[inline(always)]
            fn minus(self, o: Self) -> Self {
                self - o
            }
            #[inline(always)]
            fn times(self, o: Self) -> Self {
                self * o
            }
            #[inline(always)]
            fn max_of(self, o: Self) -> Self {
                if self > o || self.is_nan() {
                    self
                } else {
                    o
                }
            }
            #[inline(always)]
            fn min_of(self, o: Self) -> Self {
                if self < o || self.is_nan() {
                    self
                } else {
                    o
                }
            }
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
        }
    };
}
num_float!(f32);
num_float!(f64);

impl Num for i64 {
    type Acc = i64;
    fn acc(self) -> i64 {
        self
    }
    fn acc_add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
    #[inline(always)]
    fn acc_square(self) -> i64 {
        self.wrapping_mul(self)
    }
    fn from_acc(a: i64) -> Self {
        a
    }
    #[inline(always)]
    fn plus(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    #[inline(always)]
    fn minus(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    #[inline(always)]
    fn times(self, o: Self) -> Self {
        self.wrapping_mul(o)
    }
    #[inline(always)]
    fn max_of(self, o: Self) -> Self {
        self.max(o)
    }
    #[inline(always)]
    fn min_of(self, o: Self) -> Self {
        self.min(o)
    }
    const LOWEST: Self = i64::MIN;
    const HIGHEST: Self = i64::MAX;
}

/// A float dtype: the type of every differentiable kernel.
pub(crate) trait Real:
    Num<Acc = f64> + num_traits::Float + std::iter::Sum + std::ops::AddAssign + std::ops::MulAssign
{
    /// Convert from f64 (rounding).
    fn of(x: f64) -> Self;
    /// Convert to f64 (exact).
    fn to64(self) -> f64;
    /// e^x; in f32 a branch-free version that vectorises.
    fn fexp(self) -> Self;
    /// `x ← e^(x − shift)` for every `x` of `xs`; in f32 in explicit SIMD.
    #[inline(always)]
    fn exp_shifted(xs: &mut [Self], shift: Self) {
        xs.iter_mut().for_each(|x| *x = (*x - shift).fexp());
    }
    /// The error function.
    fn erf(self) -> Self;
    /// GELU, erf form: x·Φ(x).
    fn gelu(self) -> Self;
    /// `out[i] = xs[i].gelu()`; in f32 in explicit SIMD.
    fn gelu_to(xs: &[Self], out: &mut [Self]) {
        fastmath::simd(
            #[inline(always)]
            || out.iter_mut().zip(xs).for_each(|(y, &x)| *y = x.gelu()),
        )
    }
    /// d GELU/dx = Φ(x) + x·φ(x).
    fn gelu_grad(self) -> Self;
    /// `out[i] = dys[i]·xs[i].gelu_grad()`; in f32 in explicit SIMD.
    fn gelu_backward_to(xs: &[Self], dys: &[Self], out: &mut [Self]) {
        fastmath::simd(
            #[inline(always)]
            || out.iter_mut().zip(xs.iter().zip(dys)).for_each(|(o, (&x, &dy))| *o = dy * x.gelu_grad()),
        )
    }
    /// The `(rows, columns)` tile of [`Real::gemm`] when it is our own GEMM, which packs
    /// strided operands itself; `None` for `matrixmultiply`.
    fn gemm_tiles() -> Option<(usize, usize)> {
        None
    }
    /// C = A·B for strided A `[m, k]`, B `[k, n]` and a row-major C `[m, n]` (overwritten) on
    /// all threads, when this type has our GEMM ([`crate::gemm::sgemm_threads`]: the operand
    /// that the threads share is packed once); false (nothing written) where it has not.
    ///
    /// # Safety
    /// As for [`Real::gemm`].
    unsafe fn gemm_threads(m: usize, k: usize, n: usize, a: (*const Self, isize, isize), b: (*const Self, isize, isize), c: *mut Self) -> bool {
        let _ = (m, k, n, a, b, c);
        false
    }
    /// C = A·B for strided A `[m, k]`, B `[k, n]`, C `[m, n]` (overwritten, row-major for
    /// our GEMM), on this thread.
    ///
    /// # Safety
    /// Every element addressed through the pointers and strides must be in bounds, and C
    /// must not alias A or B.
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
        c: (*mut Self, isize, isize),
    );
}

impl Real for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn to64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn fexp(self) -> Self {
        fastmath::exp_f32(self)
    }
    fn exp_shifted(xs: &mut [Self], shift: Self) {
        crate::vmath::exp_shifted_in_place(xs, shift)
    }
    fn gelu_to(xs: &[Self], out: &mut [Self]) {
        crate::vmath::gelu_to(xs, out)
    }
    fn gelu_backward_to(xs: &[Self], dys: &[Self], out: &mut [Self]) {
        crate::vmath::gelu_backward_to(xs, dys, out)
    }
    fn erf(self) -> Self {
        erf::erf(self as f64) as f32
    }
    #[inline(always)]
    fn gelu(self) -> Self {
        fastmath::gelu_f32(self)
    }
    #[inline(always)]
    fn gelu_grad(self) -> Self {
        fastmath::gelu_grad_f32(self)
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
        c: (*mut Self, isize, isize),
    ) {
        if crate::gemm::available() {
            let (a, b) = (crate::gemm::Mat { ptr: a.0, rs: a.1, cs: a.2 }, crate::gemm::Mat { ptr: b.0, rs: b.1, cs: b.2 });
            // C is row-major in every caller.
            debug_assert_eq!(c.2, 1);
            return crate::gemm::sgemm(m, k, n, a, &b, c.0, c.1 as usize, &crate::gemm::Post::NONE);
        }
        matrixmultiply::sgemm(m, k, n, 1.0, a.0, a.1, a.2, b.0, b.1, b.2, 0.0, c.0, c.1, c.2)
    }
    unsafe fn gemm_threads(m: usize, k: usize, n: usize, a: (*const Self, isize, isize), b: (*const Self, isize, isize), c: *mut Self) -> bool {
        use crate::gemm::{sgemm_threads, Mat, Post};
        if !crate::gemm::available() {
            return false;
        }
        let (a, b) = (Mat { ptr: a.0, rs: a.1, cs: a.2 }, Mat { ptr: b.0, rs: b.1, cs: b.2 });
        sgemm_threads(m, k, n, a, &b, crate::blocks::OutPtr(c), n, &Post::NONE);
        true
    }
    fn gemm_tiles() -> Option<(usize, usize)> {
        if crate::gemm::available() {
            return Some(crate::gemm::tile());
        }
        None
    }
}

impl Real for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn to64(self) -> f64 {
        self
    }
    fn fexp(self) -> Self {
        self.exp()
    }
    fn erf(self) -> Self {
        erf::erf(self)
    }
    fn gelu(self) -> Self {
        erf::gelu(self)
    }
    fn gelu_grad(self) -> Self {
        erf::gelu_grad(self)
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
        c: (*mut Self, isize, isize),
    ) {
        matrixmultiply::dgemm(m, k, n, 1.0, a.0, a.1, a.2, b.0, b.1, b.2, 0.0, c.0, c.1, c.2)
    }
}

/// Σ f(a, b) over pairs of `a` and `b` (equal lengths), with 8 independent accumulators
/// (vectorisable, and more accurate than one running sum).
#[inline]
pub(crate) fn sum2<T: Real>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = ca.remainder().iter().zip(cb.remainder()).fold(T::zero(), |s, (&x, &y)| s + f(x, y));
    for (xa, xb) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(xa).zip(xb) {
            *s += f(x, y);
        }
    }
    acc.into_iter().fold(tail, |s, x| s + x)
}

/// Σ f(x) over `xs`, as [`sum2`].
#[inline]
pub(crate) fn sum_by<T: Real>(xs: &[T], f: impl Fn(T) -> T) -> T {
    sum2(xs, xs, |x, _| f(x))
}

/// The largest value of a slice (NaN if any element is NaN; −∞ if empty).
#[inline]
pub(crate) fn max_of<T: Real>(xs: &[T]) -> T {
    // 16 independent lanes, so that the loop vectorises.
    let mut acc = [T::LOWEST; 16];
    let chunks = xs.chunks_exact(16);
    let tail = chunks.remainder().iter().fold(T::LOWEST, |m, &x| m.max_of(x));
    for c in chunks {
        for (m, &x) in acc.iter_mut().zip(c) {
            *m = m.max_of(x);
        }
    }
    acc.into_iter().fold(tail, |m, x| m.max_of(x))
}
