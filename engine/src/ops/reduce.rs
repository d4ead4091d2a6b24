//! Reductions: sum, mean, max, min and sum of squares over dims, and summing a broadcast
//! gradient back.

use crate::{CmpOp, Error, ReduceOp, Result, Tensor};

impl Tensor {
    fn reduce_dims(&self, dims: &[isize], op: &'static str) -> Result<Vec<usize>> {
        let mut out = dims.iter().map(|&d| self.norm_dim(d, op)).collect::<Result<Vec<_>>>()?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn reduce_raw(&self, op: ReduceOp, dims: &[usize]) -> Result<Tensor> {
        let mut shape = self.shape().to_vec();
        for &d in dims {
            shape[d] = 1;
        }
        let out = self.device().backend().reduce(op, self.view(), dims)?;
        Tensor::from_storage(out, &shape, self.device())
    }

    /// Sum over `dims` (negative counts from the end); `keepdim` keeps them as size 1.
    pub fn sum(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let dims = self.reduce_dims(dims, "sum")?;
        let in_shape = self.shape().to_vec();
        let y = self.reduce_raw(ReduceOp::Sum, &dims)?;
        let y = y.track_as("sum", &[self], move |g, _| Ok(vec![Some(g.broadcast_as(&in_shape)?)]));
        drop_dims(y, &dims, keepdim)
    }

    /// Sum of every element, as a 0-dim tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        let dims: Vec<isize> = (0..self.rank() as isize).collect();
        self.sum(&dims, false)
    }

    /// `Σ x²` over `dims`, without a squared copy (for norms); the gradient is `2·x·g`.
    pub fn sum_squares(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let dims = self.reduce_dims(dims, "sum_squares")?;
        let y = self.reduce_raw(ReduceOp::SumSquares, &dims)?;
        let x = self.clone();
        let y = y.track_as("sum_squares", &[self], move |g, _| Ok(vec![Some(g.broadcast_as(x.shape())?.mul(&x)?.mul_scalar(2.0)?)]));
        drop_dims(y, &dims, keepdim)
    }

    /// `Σ x²` of every element, as a 0-dim tensor.
    pub fn sum_squares_all(&self) -> Result<Tensor> {
        let dims: Vec<isize> = (0..self.rank() as isize).collect();
        self.sum_squares(&dims, false)
    }

    /// Mean over `dims`.
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let d = self.reduce_dims(dims, "mean")?;
        let count: usize = d.iter().map(|&i| self.shape()[i]).product();
        self.sum(dims, keepdim)?.mul_scalar(1.0 / count as f64)
    }

    /// Mean of every element, as a 0-dim tensor.
    pub fn mean_all(&self) -> Result<Tensor> {
        self.sum_all()?.mul_scalar(1.0 / self.numel().max(1) as f64)
    }

    /// Maximum over `dims`; the gradient is shared evenly among tied maxima.
    pub fn max(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.extremum(dims, keepdim, ReduceOp::Max, "max")
    }

    /// Minimum over `dims`; the gradient is shared evenly among tied minima.
    pub fn min(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.extremum(dims, keepdim, ReduceOp::Min, "min")
    }

    fn extremum(&self, dims: &[isize], keepdim: bool, op: ReduceOp, name: &'static str) -> Result<Tensor> {
        let dims = self.reduce_dims(dims, name)?;
        let y = self.reduce_raw(op, &dims)?;
        let (x, y_saved) = (self.clone(), y.clone());
        let red: Vec<isize> = dims.iter().map(|&d| d as isize).collect();
        let y = y.track_as(name, &[self], move |g, _| {
            let hit = x.compare(&y_saved, CmpOp::Eq)?.to_dtype(x.dtype())?;
            let count = hit.sum(&red, true)?;
            Ok(vec![Some(hit.mul(&g.div(&count)?)?)])
        });
        drop_dims(y, &dims, keepdim)
    }

    /// Sum this (broadcast) gradient down to `shape`, the inverse of broadcasting.
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let extra = self.rank().checked_sub(shape.len()).ok_or_else(|| Error::Broadcast {
            op: "sum_to_shape",
            lhs: self.shape().to_vec(),
            rhs: shape.to_vec(),
        })?;
        let mut dims = Vec::new();
        for (i, &d) in self.shape().iter().enumerate() {
            let target = if i < extra { 1 } else { shape[i - extra] };
            if i < extra || (target == 1 && d != 1) {
                dims.push(i as isize);
            } else if target != d {
                return Err(Error::Broadcast { op: "sum_to_shape", lhs: self.shape().to_vec(), rhs: shape.to_vec() });
            }
        }
        let summed = if dims.is_empty() { self.clone() } else { self.sum(&dims, true)? };
        summed.reshape(shape)
    }
}

/// Drop the reduced (size-1) dims unless `keepdim`.
fn drop_dims(y: Tensor, dims: &[usize], keepdim: bool) -> Result<Tensor> {
    if keepdim {
        return Ok(y);
    }
    let shape: Vec<usize> =
        y.shape().iter().enumerate().filter(|(i, _)| !dims.contains(i)).map(|(_, &d)| d).collect();
    y.reshape(&shape)
}
