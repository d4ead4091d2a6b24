//! Elementwise kernels: unary and binary maths, comparison, select, and the GELU gradient.

use crate::CpuBackend;
use crate::scalar::{Num, Real, Scalar};
use crate::storage::{any_dispatch, boxed, float_dispatch, same_dtype, same_shape, Src};
use crate::strided::{map1, map1_runs, map2, map2_runs, map3};
use beit_engine::backend::Elementwise;
use beit_engine::{BinaryOp, CmpOp, DType, Error, Result, StorageBox, UnaryOp, View};


impl Elementwise for CpuBackend {
    /// Elementwise unary op on a float view.
    fn unary(&self, op: UnaryOp, src: View) -> Result<StorageBox> {
        let dtype = src.dtype();
        float_dispatch!("unary", dtype, T => Ok(boxed(dtype, unary_t::<T>(op, Src::new("unary", src)?))))
    }

    /// Elementwise binary op: floats all ops, i64 all but `Div`.
    fn binary(&self, op: BinaryOp, lhs: View, rhs: View) -> Result<StorageBox> {
        const OP: &str = "binary";
        check_pair(OP, lhs, rhs)?;
        let dtype = lhs.dtype();
        if dtype == DType::I64 {
            let v = binary_num::<i64>(op, Src::new(OP, lhs)?, Src::new(OP, rhs)?);
            return v.map(|v| boxed(dtype, v)).ok_or(Error::DType { op: "binary div", dtype, expected: None });
        }
        float_dispatch!(OP, dtype, T => {
            let (a, b) = (Src::<T>::new(OP, lhs)?, Src::<T>::new(OP, rhs)?);
            Ok(boxed(dtype, binary_num(op, a, b).unwrap_or_else(|| map2(a, b, |x, y| x / y))))
        })
    }

    /// Elementwise comparison of two views of any one dtype, giving bool.
    fn cmp(&self, op: CmpOp, lhs: View, rhs: View) -> Result<StorageBox> {
        const OP: &str = "cmp";
        check_pair(OP, lhs, rhs)?;
        any_dispatch!(lhs.dtype(), T => {
            let (a, b) = (Src::<T>::new(OP, lhs)?, Src::<T>::new(OP, rhs)?);
            Ok(boxed(DType::Bool, cmp_t(op, a, b)))
        })
    }

    /// `cond ? on_true : on_false` elementwise; `cond` is u8 or bool.
    fn where_cond(&self, cond: View, on_true: View, on_false: View) -> Result<StorageBox> {
        const OP: &str = "where_cond";
        check_pair(OP, on_true, on_false)?;
        same_shape(OP, cond.shape(), on_true.shape())?;
        let c = Src::<u8>::new(OP, cond)?;
        let dtype = on_true.dtype();
        any_dispatch!(dtype, T => {
            let (a, b) = (Src::<T>::new(OP, on_true)?, Src::<T>::new(OP, on_false)?);
            Ok(boxed(dtype, map3(c, a, b, |c, x, y| if c != 0 { x } else { y })))
        })
    }

    /// `dy · GELU'(x)` elementwise.
    fn gelu_backward(&self, x: View, dy: View) -> Result<StorageBox> {
        const OP: &str = "gelu_backward";
        check_pair(OP, x, dy)?;
        let dtype = x.dtype();
        float_dispatch!(OP, dtype, T => {
            let (xs, g) = (Src::<T>::new(OP, x)?, Src::<T>::new(OP, dy)?);
            Ok(boxed(dtype, map2_runs(xs, g, T::gelu_backward_to, #[inline(always)] |x, g| g * x.gelu_grad())))
        })
    }
}


fn unary_t<T: Real>(op: UnaryOp, s: Src<T>) -> Vec<T> {
    match op {
        UnaryOp::Neg => map1(s, |x| -x),
        UnaryOp::Exp => map1(s, T::fexp),
        UnaryOp::Log => map1(s, T::ln),
        UnaryOp::Sqrt => map1(s, T::sqrt),
        UnaryOp::Tanh => map1(s, T::tanh),
        UnaryOp::Erf => map1(s, Real::erf),
        UnaryOp::Abs => map1(s, T::abs),
        UnaryOp::Relu => map1(s, |x| x.max_of(T::zero())),
        UnaryOp::Sqr => map1(s, |x| x * x),
        UnaryOp::Recip => map1(s, T::recip),
        UnaryOp::Sigmoid => map1(
            s,
            #[inline(always)]
            |x| T::one() / (T::one() + (-x).fexp()),
        ),
        UnaryOp::Gelu => map1_runs(s, T::gelu_to, T::gelu),
        UnaryOp::Affine { mul, add } => {
            let (mul, add) = (T::of(mul), T::of(add));
            map1(s, |x| x * mul + add)
        }
        UnaryOp::Powf(p) => {
            let p = T::of(p);
            map1(s, |x| x.powf(p))
        }
    }
}

fn check_pair(op: &'static str, lhs: View, rhs: View) -> Result<()> {
    same_dtype(op, lhs, rhs)?;
    same_shape(op, lhs.shape(), rhs.shape())
}


/// The binary ops every numeric dtype has (`None` for `Div`).
fn binary_num<T: Num>(op: BinaryOp, a: Src<T>, b: Src<T>) -> Option<Vec<T>> {
    Some(match op {
        BinaryOp::Add => map2(a, b, T::plus),
        BinaryOp::Sub => map2(a, b, T::minus),
        BinaryOp::Mul => map2(a, b, T::times),
        BinaryOp::Maximum => map2(a, b, T::max_of),
        BinaryOp::Minimum => map2(a, b, T::min_of),
        BinaryOp::Div => return None,
    })
}


fn cmp_t<T: Scalar>(op: CmpOp, a: Src<T>, b: Src<T>) -> Vec<u8> {
    match op {
        CmpOp::Eq => map2(a, b, |x, y| u8::from(x == y)),
        CmpOp::Ne => map2(a, b, |x, y| u8::from(x != y)),
        CmpOp::Lt => map2(a, b, |x, y| u8::from(x < y)),
        CmpOp::Le => map2(a, b, |x, y| u8::from(x <= y)),
        CmpOp::Gt => map2(a, b, |x, y| u8::from(x > y)),
        CmpOp::Ge => map2(a, b, |x, y| u8::from(x >= y)),
    }
}



#[cfg(test)]
mod tests {
    use super::*;
    use crate::erf;
    use crate::testutil::{assert_close, vals, Tt, B};
    use crate::CpuStorage;
    use beit_engine::backend::prelude::*;
    use beit_engine::{BackendStorage, HostData, Layout};

    fn unary_ref(op: UnaryOp, x: f64) -> f64 {
        match op {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Erf => erf::erf(x),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Sqr => x * x,
            UnaryOp::Recip => 1.0 / x,
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Gelu => erf::gelu(x),
            UnaryOp::Affine { mul, add } => x * mul + add,
            UnaryOp::Powf(p) => x.powf(p),
        }
    }

    #[test]
    fn unary_ops_on_strided_views() {
        use UnaryOp::*;
        let ops = [
            Neg,
            Exp,
            Log,
            Sqrt,
            Tanh,
            Erf,
            Abs,
            Relu,
            Sqr,
            Recip,
            Sigmoid,
            Gelu,
            Affine { mul: 1.5, add: -0.25 },
            Powf(1.7),
        ];
        for (dtype, tol) in [(DType::F64, 1e-14), (DType::F32, 2e-6)] {
            for shape in [&[1][..], &[7], &[197, 3, 61]] {
                let t = Tt::rand(dtype, shape, 11).scrambled();
                let positive = Tt::new(dtype, shape, &t.vals().iter().map(|x| x.abs() + 0.1).collect::<Vec<_>>());
                for op in ops {
                    let x = if matches!(op, Log | Sqrt | Powf(_)) { &positive } else { &t };
                    let want: Vec<f64> = x.vals().iter().map(|&v| unary_ref(op, v)).collect();
                    assert_close(&vals(&B.unary(op, x.view()).unwrap()), &want, tol);
                }
            }
        }
        assert!(matches!(B.unary(Exp, Tt::rand(DType::I64, &[3], 1).view()), Err(Error::DType { .. })));
    }

    #[test]
    fn binary_ops_with_broadcast_and_transposed_operands() {
        use BinaryOp::*;
        let f = |op: BinaryOp, a: f64, b: f64| match op {
            Add => a + b,
            Sub => a - b,
            Mul => a * b,
            Div => a / b,
            Maximum => a.max(b),
            Minimum => a.min(b),
        };
        for dtype in [DType::F32, DType::F64, DType::I64] {
            for shape in [vec![1, 1], vec![7, 5], vec![197, 211]] {
                let a = Tt::new(
                    dtype,
                    &shape,
                    &Tt::rand(DType::F64, &shape, 3).vals().iter().map(|x| x * 50.0).collect::<Vec<_>>(),
                );
                let rows = Tt::rand(dtype, &[shape[0], 1], 4).broadcast(&shape);
                let scalar = || Tt::new(dtype, &[], &[3.0]).broadcast(&shape);
                for (lhs, rhs) in [(a.scrambled(), rows), (scalar(), a.scrambled()), (a, scalar())] {
                    for op in [Add, Sub, Mul, Div, Maximum, Minimum] {
                        let got = B.binary(op, lhs.view(), rhs.view());
                        if dtype == DType::I64 && op == Div {
                            assert!(matches!(got, Err(Error::DType { .. })));
                            continue;
                        }
                        let want: Vec<f64> = lhs.vals().iter().zip(rhs.vals()).map(|(&a, b)| f(op, a, b)).collect();
                        assert_close(&vals(&got.unwrap()), &want, 1e-6);
                    }
                }
            }
        }
        let (a, b) = (Tt::rand(DType::F32, &[3], 1), Tt::rand(DType::F64, &[3], 1));
        assert!(matches!(B.binary(Add, a.view(), b.view()), Err(Error::DTypeMismatch { .. })));
        let c = Tt::rand(DType::F32, &[4], 1);
        assert!(matches!(B.binary(Add, a.view(), c.view()), Err(Error::ShapeMismatch { .. })));
    }

    #[test]
    fn comparisons_and_select() {
        for dtype in [DType::F32, DType::I64, DType::U8] {
            let a = Tt::new(dtype, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).scrambled();
            let b = Tt::new(dtype, &[3], &[2.0, 2.0, 5.0]).broadcast(&[2, 3]);
            let ge = B.cmp(CmpOp::Ge, a.view(), b.view()).unwrap();
            assert_eq!(ge.dtype(), DType::Bool);
            assert_eq!(vals(&ge), [0.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
            assert_eq!(vals(&B.cmp(CmpOp::Eq, a.view(), b.view()).unwrap()), [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
            assert_eq!(vals(&B.cmp(CmpOp::Lt, a.view(), b.view()).unwrap()), [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
            let cond = Tt { s: CpuStorage::new(HostData::Bool(vec![1, 0, 1])), l: Layout::contiguous(&[3]) }
                .broadcast(&[2, 3]);
            let w = B.where_cond(cond.view(), a.view(), b.view()).unwrap();
            assert_eq!((w.dtype(), vals(&w)), (dtype, vec![1.0, 2.0, 3.0, 4.0, 2.0, 6.0]));
        }
        let nan = Tt::new(DType::F64, &[2], &[f64::NAN, 1.0]);
        assert_eq!(vals(&B.cmp(CmpOp::Ne, nan.view(), nan.view()).unwrap()), [1.0, 0.0]);
    }

    #[test]
    fn casts_fill_and_transfers() {
        let x = Tt::new(DType::F32, &[2, 2], &[-1.7, 0.0, 2.9, 0.5]).scrambled();
        let cast = |t: &Tt, d| B.cast(t.view(), d).unwrap();
        assert_eq!(vals(&cast(&x, DType::I64)), [-1.0, 0.0, 2.0, 0.0]);
        assert_eq!(cast(&x, DType::Bool).dtype(), DType::Bool);
        assert_eq!(vals(&cast(&x, DType::Bool)), [1.0, 0.0, 1.0, 1.0]);
        let b = Tt { s: CpuStorage::new(HostData::Bool(vec![1, 0])), l: Layout::contiguous(&[2]) };
        assert_eq!(vals(&cast(&b, DType::F64)), [1.0, 0.0]);
        assert_eq!(vals(&cast(&Tt::new(DType::U32, &[1], &[7.0]), DType::F32)), [7.0]);
        assert_eq!(vals(&B.full(DType::Bool, 2, 0.5).unwrap()), [1.0, 1.0]);
        assert_eq!(
            B.full(DType::I64, 3, -2.0).unwrap().as_any().downcast_ref::<CpuStorage>().unwrap().data(),
            &HostData::I64(vec![-2; 3])
        );
        assert_eq!(B.to_host(x.view()).unwrap(), HostData::F32(vec![-1.7, 0.0, 2.9, 0.5]));

        let mut dst = CpuStorage::new(HostData::F32(vec![0.0; 5]));
        let dl = Layout::new(vec![2, 2], vec![1, 2], 1);
        B.copy_strided(x.view(), &mut dst, &dl).unwrap();
        assert_eq!(dst.data(), &HostData::F32(vec![0.0, -1.7, 2.9, 0.0, 0.5]));
        let too_far = Layout::new(vec![2, 2], vec![1, 2], 2);
        assert!(matches!(B.copy_strided(x.view(), &mut dst, &too_far), Err(Error::Invalid { .. })));
    }

    /// A buffer of another backend.
    #[derive(Debug)]
    struct Foreign;
    impl BackendStorage for Foreign {
        fn dtype(&self) -> DType {
            DType::F32
        }
        fn len(&self) -> usize {
            4
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
            self
        }
    }

    #[test]
    fn foreign_buffers_and_out_of_bounds_views_are_errors() {
        let l = Layout::contiguous(&[4]);
        let v = View { storage: &Foreign, layout: &l };
        assert!(matches!(B.unary(UnaryOp::Exp, v), Err(Error::Backend { .. })));
        let t = Tt::rand(DType::F32, &[4], 1);
        let long = Layout::contiguous(&[5]);
        assert!(matches!(B.unary(UnaryOp::Exp, View { storage: &t.s, layout: &long }), Err(Error::Invalid { .. })));
    }

    #[test]
    fn gelu_backward_matches_the_derivative() {
        for dtype in [DType::F32, DType::F64] {
            let x = Tt::rand(dtype, &[7, 197], 5).scrambled();
            let dy = Tt::rand(dtype, &[7, 197], 6);
            let want: Vec<f64> = x.vals().iter().zip(dy.vals()).map(|(&x, g)| g * erf::gelu_grad(x)).collect();
            assert_close(&vals(&B.gelu_backward(x.view(), dy.view()).unwrap()), &want, 1e-6);
        }
    }
}
