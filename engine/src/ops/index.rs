//! Gather (`index_select`) and scatter-add (`index_add`) along one dim.

use crate::{DType, Error, Result, Tensor};

fn check_indices(indices: &Tensor, op: &'static str) -> Result<()> {
    if !matches!(indices.dtype(), DType::I64 | DType::U32) {
        return Err(Error::DType { op, dtype: indices.dtype(), expected: Some(DType::I64) });
    }
    if indices.rank() != 1 {
        return Err(Error::invalid(op, format!("indices must be 1-D, got {:?}", indices.shape())));
    }
    Ok(())
}

impl Tensor {
    /// Entries of `self` along `dim` at 1-D i64/u32 `indices` (repeats allowed).
    pub fn index_select(&self, dim: usize, indices: &Tensor) -> Result<Tensor> {
        check_indices(indices, "index_select")?;
        if dim >= self.rank() {
            return Err(Error::invalid("index_select", format!("dim {dim} for shape {:?}", self.shape())));
        }
        let out = self.device().backend().index_select(self.view(), dim, indices.view())?;
        let mut shape = self.shape().to_vec();
        shape[dim] = indices.numel();
        let (idx, in_shape) = (indices.clone(), self.shape().to_vec());
        Tensor::from_op(out, &shape, self.device(), "index_select", &[self], move |g, _| {
            let zeros = Tensor::zeros(&in_shape, g.dtype(), g.device())?;
            Ok(vec![Some(zeros.index_add(dim, &idx, g)?)])
        })
    }

    /// A copy of `self` with `src` added at `indices` along `dim` (repeats accumulate).
    pub fn index_add(&self, dim: usize, indices: &Tensor, src: &Tensor) -> Result<Tensor> {
        check_indices(indices, "index_add")?;
        self.check_same(src, "index_add")?;
        let mut expect = self.shape().to_vec();
        if dim >= expect.len() {
            return Err(Error::invalid("index_add", format!("dim {dim} for shape {:?}", self.shape())));
        }
        expect[dim] = indices.numel();
        if src.shape() != expect.as_slice() {
            return Err(Error::ShapeMismatch { op: "index_add", lhs: expect, rhs: src.shape().to_vec() });
        }
        let out = self.device().backend().index_add(self.view(), dim, indices.view(), src.view())?;
        let idx = indices.clone();
        Tensor::from_op(out, self.shape(), self.device(), "index_add", &[self, src], move |g, needs| {
            let gs = if needs[1] { Some(g.index_select(dim, &idx)?) } else { None };
            Ok(vec![needs[0].then(|| g.clone()), gs])
        })
    }
}
