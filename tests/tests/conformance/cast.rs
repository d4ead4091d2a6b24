//! Dtype conversion: float to float (rounding, and the gradient cast back), float to integer
//! (truncation toward zero), integer and bool to float; strided inputs.

use beit_conformance::gradcheck::{analytic_grads, output_weights};
use beit_conformance::{assert_close, conformance, float_dtypes, supports_f64, Array, Gen, Input};
use beit_engine::{DType, Device, HostData, Tensor};

/// Floats with fractional parts of both signs, stored transposed.
fn fractions() -> Input {
    Input::new(Array::new(&[2, 4], vec![-2.7, -0.5, 0.0, 0.4, 1.0, 3.9, 126.5, -7.99])).transposed()
}

/// The float dtypes `dev` has, as (from, to) pairs of distinct dtypes.
fn float_pairs(dev: &Device) -> Vec<(DType, DType)> {
    if supports_f64(dev) {
        vec![(DType::F64, DType::F32), (DType::F32, DType::F64)]
    } else {
        Vec::new()
    }
}

conformance! {
    /// Float to float: rounds to f32, widens exactly to f64.
    fn to_dtype_float(dev: &Device) -> Result<()> {
        let x = Input::new(Gen::new(1).normal(&[7, 5], 1.0)).padded();
        for (from, to) in float_pairs(dev) {
            let y = x.tensor(from, dev)?.to_dtype(to)?;
            assert_eq!(y.dtype(), to);
            let want = x.values.rounded(from).rounded(to);
            assert_close(&format!("{from} to {to}"), &Array::from_tensor(&y)?, &want, 0.0);
        }
        Ok(())
    }

    /// The gradient of a float cast is the incoming gradient cast back (exactly: `R` rounded
    /// to f32). Finite differences cannot see through an f32 rounding, so this is the
    /// gradient check of `to_dtype`.
    fn to_dtype_gradcheck(dev: &Device) -> Result<()> {
        let x = Input::new(Gen::new(2).normal(&[3, 7], 1.0)).transposed();
        for (from, to) in float_pairs(dev) {
            let grads = analytic_grads(&[x.tensor(from, dev)?], |x| x[0].to_dtype(to))?;
            let want = output_weights(&x.values.shape).rounded(DType::F32);
            assert_close(&format!("gradient of {from} to {to}"), &grads[0], &want, 0.0);
        }
        Ok(())
    }

    /// Float to i64 and u8 truncates toward zero.
    fn to_dtype_integer(dev: &Device) -> Result<()> {
        let x = fractions();
        for from in float_dtypes(dev) {
            let i = x.tensor(from, dev)?.to_dtype(DType::I64)?;
            let want: Vec<i64> = x.values.data.iter().map(|&v| v.trunc() as i64).collect();
            assert_eq!(i.to_vec::<i64>()?, want, "{from} to i64");
            let u = x.tensor(from, dev)?.abs()?.to_dtype(DType::U8)?;
            let want: Vec<u8> = x.values.data.iter().map(|&v| v.abs().trunc() as u8).collect();
            assert_eq!(u.to_host()?, HostData::U8(want), "{from} to u8");
        }
        Ok(())
    }

    /// i64, u32, u8 and bool to every float dtype.
    fn to_dtype_from_integer(dev: &Device) -> Result<()> {
        let sources = [
            (HostData::I64(vec![-3, 0, 7, 1 << 20]), vec![-3.0, 0.0, 7.0, 1048576.0]),
            (HostData::U32(vec![0, 5, 65536, 9]), vec![0.0, 5.0, 65536.0, 9.0]),
            (HostData::U8(vec![0, 1, 200, 255]), vec![0.0, 1.0, 200.0, 255.0]),
            (HostData::Bool(vec![1, 0, 0, 1]), vec![1.0, 0.0, 0.0, 1.0]),
        ];
        for (host, want) in sources {
            let t = Tensor::from_host(&host, &[4], dev)?;
            for to in float_dtypes(dev) {
                let y = t.to_dtype(to)?;
                assert_eq!(y.dtype(), to);
                assert_close(&format!("{} to {to}", host.dtype()), &Array::from_tensor(&y)?, &Array::new(&[4], want.clone()), 0.0);
            }
        }
        Ok(())
    }
}
