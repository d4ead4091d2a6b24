//! Dtype conversion.

use crate::{DType, Result, Tensor};

impl Tensor {
    /// Convert to `dtype`. Float-to-float casts pass gradients back (cast to the input's
    /// dtype); casts to integer dtypes cut nothing because integers carry no gradient.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let out = self.device().backend().cast(self.view(), dtype)?;
        let src = self.dtype();
        if !dtype.is_float() || !src.is_float() {
            let t = Tensor::from_storage(out, self.shape(), self.device())?;
            return Ok(t);
        }
        Tensor::from_op(out, self.shape(), self.device(), "to_dtype", &[self], move |g, _| {
            Ok(vec![Some(g.to_dtype(src)?)])
        })
    }
}
