//! [`OpCase`]: one differentiable op on fixed random inputs, with its float64 reference,
//! checked forward (every float dtype the backend has) and backward (finite differences).

use crate::gradcheck::{analytic_grads, gradcheck};
use crate::{assert_close, cpu, float_dtypes, supports_f64, Array};
use beit_engine::{DType, Device, Result, Tensor};

/// An input's values and how its buffer is laid out; the tensor a case sees always has the
/// logical values, but may be a non-contiguous view of a larger buffer.
#[derive(Clone, Debug)]
pub struct Input {
    /// The logical values.
    pub values: Array,
    /// The tensor is `stored.permute(perm)`: logical dim `i` is stored dim `perm[i]`.
    perm: Vec<usize>,
    /// Whether the stored buffer has a NaN before and after each row of its last dim, so that
    /// the view has an offset and a row stride larger than its row (a narrowed view).
    pad: bool,
}

impl From<Array> for Input {
    fn from(values: Array) -> Input {
        Input::new(values)
    }
}

impl Input {
    /// A contiguous input.
    pub fn new(values: Array) -> Input {
        let perm = (0..values.rank()).collect();
        Input { values, perm, pad: false }
    }

    /// Stored with its dims permuted: the tensor is a permuted view, logical dim `i` being
    /// stored dim `perm[i]`.
    pub fn permuted(mut self, perm: &[usize]) -> Input {
        assert_eq!(perm.len(), self.values.rank(), "Input::permuted: {perm:?}");
        self.perm = perm.to_vec();
        self
    }

    /// Stored transposed in its last two dims (a `.t()` view).
    pub fn transposed(self) -> Input {
        let r = self.values.rank();
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.permuted(&perm)
    }

    /// Stored inside a wider, NaN-padded buffer (a narrowed view with an offset): a kernel
    /// that reads outside the view poisons its output.
    pub fn padded(mut self) -> Input {
        assert!(self.values.rank() > 0, "Input::padded: a 0-dim input has no rows");
        self.pad = true;
        self
    }

    /// The input as a tensor of float `dtype` on `dev`, with this layout.
    pub fn tensor(&self, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut inverse = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            inverse[p] = i;
        }
        let stored = self.values.permute(&inverse);
        let t = if self.pad {
            let last = stored.rank() - 1;
            let n = stored.shape[last];
            let mut shape = stored.shape.clone();
            shape[last] += 2;
            let data = stored.rows().flat_map(|row| [&[f64::NAN][..], row, &[f64::NAN]].concat()).collect();
            Array::new(&shape, data).to_tensor(dtype, dev)?.narrow(last, 1, n)?
        } else {
            stored.to_tensor(dtype, dev)?
        };
        let identity = self.perm.iter().enumerate().all(|(i, &p)| i == p);
        if identity {
            Ok(t)
        } else {
            t.permute(&self.perm)
        }
    }
}

/// Tolerances of an [`OpCase`], each relative to the largest reference magnitude
/// ([`crate::assert_close`]).
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    /// Forward in f32 against the f64 reference on f32-rounded inputs.
    pub f32: f64,
    /// Forward in f64 against the f64 reference.
    pub f64: f64,
    /// f32 analytic gradients against the CPU's f64 analytic gradients.
    pub grad_f32: f64,
    /// f64 analytic gradients against central differences.
    pub grad_f64: f64,
}

impl Tol {
    /// Elementwise ops: a few f32 ulps; f64 close to exact; gradients to finite-difference
    /// accuracy.
    pub const DEFAULT: Tol = Tol { f32: 1e-5, f64: 1e-10, grad_f32: 1e-4, grad_f64: 1e-6 };

    fn forward(&self, dtype: DType) -> f64 {
        if dtype == DType::F64 {
            self.f64
        } else {
            self.f32
        }
    }
}

/// The engine op under test, on the case's inputs.
type OpFn = Box<dyn Fn(&[Tensor]) -> Result<Tensor>>;
/// Its float64 reference, on the same (logical) input values.
type RefFn = Box<dyn Fn(&[Array]) -> Array>;

/// One differentiable op on fixed inputs, with its reference and tolerances.
pub struct OpCase {
    inputs: Vec<Input>,
    op: OpFn,
    reference: RefFn,
    tol: Tol,
}

impl OpCase {
    /// A case: `op` maps the input tensors to one float tensor, `reference` maps their values
    /// to the expected values. Both see the inputs in the order given.
    pub fn new(
        inputs: Vec<Input>,
        op: impl Fn(&[Tensor]) -> Result<Tensor> + 'static,
        reference: impl Fn(&[Array]) -> Array + 'static,
    ) -> OpCase {
        OpCase { inputs, op: Box::new(op), reference: Box::new(reference), tol: Tol::DEFAULT }
    }

    /// Replace the default tolerances.
    pub fn tol(mut self, tol: Tol) -> OpCase {
        self.tol = tol;
        self
    }

    /// The inputs as tensors of `dtype` on `dev`.
    pub fn tensors(&self, dtype: DType, dev: &Device) -> Result<Vec<Tensor>> {
        self.inputs.iter().map(|i| i.tensor(dtype, dev)).collect()
    }

    /// The output in every float dtype `dev` has, against the reference computed on the
    /// inputs rounded to that dtype.
    pub fn check_forward(&self, dev: &Device) -> Result<()> {
        for dtype in float_dtypes(dev) {
            let y = (self.op)(&self.tensors(dtype, dev)?)?;
            assert_eq!(y.dtype(), dtype, "forward: output dtype");
            let rounded: Vec<Array> = self.inputs.iter().map(|i| i.values.rounded(dtype)).collect();
            let want = (self.reference)(&rounded);
            assert_close(&format!("forward in {dtype} on {dev}"), &Array::from_tensor(&y)?, &want, self.tol.forward(dtype));
        }
        Ok(())
    }

    /// Gradients: in f64 against central differences where `dev` has f64, and in f32 against
    /// the CPU's f64 analytic gradients (the only check for a backend without f64).
    pub fn check_grad(&self, dev: &Device) -> Result<()> {
        if supports_f64(dev) {
            gradcheck(&self.tensors(DType::F64, dev)?, &self.op, self.tol.grad_f64)?;
        }
        let want = analytic_grads(&self.tensors(DType::F64, &cpu())?, &self.op)?;
        let got = analytic_grads(&self.tensors(DType::F32, dev)?, &self.op)?;
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(&format!("f32 gradient of input {j} on {dev} vs f64 on cpu"), g, w, self.tol.grad_f32);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Gen;

    /// Each layout gives a view with the logical values; permuted and padded ones are not
    /// contiguous, and padded ones start at an offset.
    #[test]
    fn layouts_keep_values() {
        let values = Gen::new(1).normal(&[2, 3, 4], 1.0);
        let cases = [
            (Input::new(values.clone()), true),
            (Input::new(values.clone()).transposed(), false),
            (Input::new(values.clone()).permuted(&[2, 0, 1]).padded(), false),
            (Input::new(values.clone()).padded(), false),
        ];
        for (input, contiguous) in cases {
            for dtype in [DType::F32, DType::F64] {
                let t = input.tensor(dtype, &cpu()).unwrap();
                assert_eq!(t.is_contiguous(), contiguous, "{input:?}");
                assert_eq!(input.pad, t.layout().offset() > 0, "{input:?}");
                assert_eq!(Array::from_tensor(&t).unwrap(), values.rounded(dtype), "{input:?}");
            }
        }
    }
}
