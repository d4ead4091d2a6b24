//! Views and copies: reshape, permute, transpose, narrow, broadcast, contiguous, cat.

use crate::{Error, Layout, Result, Tensor};

impl Tensor {
    /// Same data, new shape; one dim may be `usize::MAX` to be inferred. A view when
    /// the strides allow it, a copy otherwise.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let shape = infer_shape(self.numel(), shape, self.shape())?;
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let src = self.contiguous_if(self.layout().reshape(&shape).is_none())?;
        let layout = src.layout().reshape(&shape).expect("a contiguous layout reshapes");
        let in_shape = src.shape().to_vec();
        Ok(src.view_op(layout, "reshape", move |g, _| Ok(vec![Some(g.reshape(&in_shape)?)])))
    }

    /// Flatten dims `start..=end` into one.
    pub fn flatten(&self, start: usize, end: usize) -> Result<Tensor> {
        if start > end || end >= self.rank() {
            return Err(Error::invalid("flatten", format!("dims {start}..={end} of {:?}", self.shape())));
        }
        let s = self.shape();
        let mut shape = s[..start].to_vec();
        shape.push(s[start..=end].iter().product());
        shape.extend_from_slice(&s[end + 1..]);
        self.reshape(&shape)
    }

    /// Insert a size-1 dim at `d`.
    pub fn unsqueeze(&self, d: usize) -> Result<Tensor> {
        if d > self.rank() {
            return Err(Error::invalid("unsqueeze", format!("dim {d} for shape {:?}", self.shape())));
        }
        let mut shape = self.shape().to_vec();
        shape.insert(d, 1);
        self.reshape(&shape)
    }

    /// Remove the size-1 dim `d`.
    pub fn squeeze(&self, d: usize) -> Result<Tensor> {
        if d >= self.rank() || self.shape()[d] != 1 {
            return Err(Error::invalid("squeeze", format!("dim {d} of {:?} is not of size 1", self.shape())));
        }
        let mut shape = self.shape().to_vec();
        shape.remove(d);
        self.reshape(&shape)
    }

    /// Reorder dims: new dim `i` is old dim `perm[i]`. Always a view.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let layout = self.layout().permute(perm)?;
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(self.view_op(layout, "permute", move |g, _| Ok(vec![Some(g.permute(&inverse)?)])))
    }

    /// Swap two dims. A view.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor> {
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        if a >= perm.len() || b >= perm.len() {
            return Err(Error::invalid("transpose", format!("dims {a}, {b} of {:?}", self.shape())));
        }
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Swap the last two dims (matrix transpose). A view.
    pub fn t(&self) -> Result<Tensor> {
        let r = self.rank();
        if r < 2 {
            return Err(Error::invalid("t", format!("needs at least 2 dims, got {:?}", self.shape())));
        }
        self.transpose(r - 2, r - 1)
    }

    /// `len` entries of dim `dim` from `start`. A view.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        let layout = self.layout().narrow(dim, start, len)?;
        let full = self.shape().to_vec();
        Ok(self.view_op(layout, "narrow", move |g, _| {
            let out = Tensor::zeros(&full, g.dtype(), g.device())?;
            Ok(vec![Some(out.write_slice(dim, start, g)?)])
        }))
    }

    /// A copy of `self` (no grad) with `src` written at `start..` along `dim`.
    fn write_slice(self, dim: usize, start: usize, src: &Tensor) -> Result<Tensor> {
        let dst_layout = self.layout().narrow(dim, start, src.shape()[dim])?;
        let device = self.device().clone();
        let mut dst = self.detach();
        drop(self);
        let storage = dst
            .storage_mut()
            .ok_or_else(|| Error::Autograd("write_slice: destination buffer is shared".into()))?;
        device.backend().copy_strided(src.view(), storage, &dst_layout)?;
        Ok(dst)
    }

    /// Broadcast to `shape` (NumPy rules). A view with stride 0 on stretched dims.
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let layout = self.layout().broadcast_to(shape)?;
        let in_shape = self.shape().to_vec();
        Ok(self.view_op(layout, "broadcast", move |g, _| Ok(vec![Some(g.sum_to_shape(&in_shape)?)])))
    }

    /// A contiguous copy, or `self` if it already is contiguous.
    pub fn contiguous(&self) -> Result<Tensor> {
        self.contiguous_if(!self.is_contiguous())
    }

    /// A contiguous copy in a buffer of its own (tracked as [`Tensor::contiguous`] is).
    pub(crate) fn contiguous_copy(&self) -> Result<Tensor> {
        self.contiguous_if(true)
    }

    fn contiguous_if(&self, copy: bool) -> Result<Tensor> {
        if !copy {
            return Ok(self.clone());
        }
        let backend = self.device().backend();
        let mut out = backend.full(self.dtype(), self.numel(), 0.0)?;
        backend.copy_strided(self.view(), &mut *out, &Layout::contiguous(self.shape()))?;
        Tensor::from_op(out, self.shape(), self.device(), "contiguous", &[self], |g, _| Ok(vec![Some(g.clone())]))
    }

    /// Concatenate along `dim`; all other dims must agree.
    pub fn cat(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let first = *tensors.first().ok_or_else(|| Error::invalid("cat", "no tensors"))?;
        if dim >= first.rank() {
            return Err(Error::invalid("cat", format!("dim {dim} out of range for {:?}", first.shape())));
        }
        let mut shape = first.shape().to_vec();
        shape[dim] = 0;
        for t in tensors {
            first.check_same(t, "cat")?;
            let ok = t.rank() == first.rank()
                && t.shape().iter().zip(first.shape()).enumerate().all(|(i, (a, b))| i == dim || a == b);
            if !ok {
                return Err(Error::ShapeMismatch { op: "cat", lhs: first.shape().to_vec(), rhs: t.shape().to_vec() });
            }
            shape[dim] += t.shape()[dim];
        }
        let backend = first.device().backend();
        let mut out = backend.full(first.dtype(), shape.iter().product(), 0.0)?;
        let full = Layout::contiguous(&shape);
        let mut sizes = Vec::with_capacity(tensors.len());
        let mut start = 0;
        for t in tensors {
            let len = t.shape()[dim];
            backend.copy_strided(t.view(), &mut *out, &full.narrow(dim, start, len)?)?;
            sizes.push((start, len));
            start += len;
        }
        Tensor::from_op(out, &shape, first.device(), "cat", tensors, move |g, needs| {
            sizes
                .iter()
                .zip(needs)
                .map(|(&(s, l), &need)| if need { g.narrow(dim, s, l).map(Some) } else { Ok(None) })
                .collect()
        })
    }
}

/// Resolve one `usize::MAX` entry and check the element count.
fn infer_shape(numel: usize, shape: &[usize], from: &[usize]) -> Result<Vec<usize>> {
    let mut out = shape.to_vec();
    let unknown: Vec<usize> = (0..shape.len()).filter(|&i| shape[i] == usize::MAX).collect();
    let known: usize = shape.iter().filter(|&&d| d != usize::MAX).product();
    match unknown.as_slice() {
        [] => {}
        [i] if known > 0 && numel.is_multiple_of(known) => out[*i] = numel / known,
        _ => return Err(Error::invalid("reshape", format!("cannot infer {shape:?} from {from:?}"))),
    }
    if out.iter().product::<usize>() != numel {
        return Err(Error::ShapeMismatch { op: "reshape", lhs: from.to_vec(), rhs: shape.to_vec() });
    }
    Ok(out)
}
