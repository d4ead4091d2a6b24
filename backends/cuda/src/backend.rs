//! `impl Backend for CudaBackend`: each method forwards to its op family's module.

use crate::gpu::CudaBackend;
use beit_engine::{
    AdamWStep, Backend, BackendStorage, BinaryOp, CmpOp, ConvGeom, DType, HostData, Layout, ReduceOp, Result,
    StorageBox, UnaryOp, View,
};

fn boxed<S: BackendStorage>(s: S) -> StorageBox {
    Box::new(s)
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        self.driver.name().to_string()
    }

    fn synchronize(&self) -> Result<()> {
        self.driver.synchronize()
    }

    fn full(&self, dtype: DType, len: usize, value: f64) -> Result<StorageBox> {
        self.full_impl(dtype, len, value).map(boxed)
    }

    fn from_host(&self, data: &HostData) -> Result<StorageBox> {
        self.upload(data).map(boxed)
    }

    fn to_host(&self, src: View) -> Result<HostData> {
        self.download(src)
    }

    fn copy_strided(&self, src: View, dst: &mut dyn BackendStorage, dst_layout: &Layout) -> Result<()> {
        self.copy_strided_impl(src, dst, dst_layout)
    }

    fn cast(&self, src: View, dtype: DType) -> Result<StorageBox> {
        self.cast_impl(src, dtype).map(boxed)
    }

    fn unary(&self, op: UnaryOp, src: View) -> Result<StorageBox> {
        self.unary_impl(op, src).map(boxed)
    }

    fn binary(&self, op: BinaryOp, lhs: View, rhs: View) -> Result<StorageBox> {
        self.binary_impl(op, lhs, rhs).map(boxed)
    }

    fn cmp(&self, op: CmpOp, lhs: View, rhs: View) -> Result<StorageBox> {
        self.cmp_impl(op, lhs, rhs).map(boxed)
    }

    fn where_cond(&self, cond: View, on_true: View, on_false: View) -> Result<StorageBox> {
        self.where_impl(cond, on_true, on_false).map(boxed)
    }

    fn reduce(&self, op: ReduceOp, src: View, dims: &[usize]) -> Result<StorageBox> {
        self.reduce_impl(op, src, dims).map(boxed)
    }

    fn matmul(&self, lhs: View, rhs: View) -> Result<StorageBox> {
        self.matmul_impl(lhs, rhs).map(boxed)
    }

    fn softmax_last(&self, src: View) -> Result<StorageBox> {
        self.softmax_impl(src).map(boxed)
    }

    fn softmax_last_backward(&self, y: View, dy: View) -> Result<StorageBox> {
        self.softmax_backward_impl(y, dy).map(boxed)
    }

    fn layer_norm(
        &self,
        x: View,
        weight: Option<View>,
        bias: Option<View>,
        eps: f64,
    ) -> Result<(StorageBox, StorageBox, StorageBox)> {
        let (y, mean, rstd) = self.layer_norm_impl(x, weight, bias, eps)?;
        Ok((boxed(y), boxed(mean), boxed(rstd)))
    }

    fn layer_norm_backward(
        &self,
        x: View,
        weight: Option<View>,
        mean: View,
        rstd: View,
        dy: View,
    ) -> Result<(StorageBox, Option<StorageBox>, Option<StorageBox>)> {
        let (dx, dw, db) = self.layer_norm_backward_impl(x, weight, mean, rstd, dy)?;
        Ok((boxed(dx), dw.map(boxed), db.map(boxed)))
    }

    fn gelu_backward(&self, x: View, dy: View) -> Result<StorageBox> {
        self.gelu_backward_impl(x, dy).map(boxed)
    }

    fn cross_entropy(&self, logits: View, targets: View, smoothing: f64, ignore_index: i64) -> Result<StorageBox> {
        self.cross_entropy_impl(logits, targets, smoothing, ignore_index).map(boxed)
    }

    fn cross_entropy_backward(
        &self,
        logits: View,
        targets: View,
        smoothing: f64,
        ignore_index: i64,
        dloss: View,
    ) -> Result<StorageBox> {
        self.cross_entropy_backward_impl(logits, targets, smoothing, ignore_index, dloss).map(boxed)
    }

    fn index_select(&self, src: View, dim: usize, indices: View) -> Result<StorageBox> {
        self.index_select_impl(src, dim, indices).map(boxed)
    }

    fn index_add(&self, dst: View, dim: usize, indices: View, src: View) -> Result<StorageBox> {
        self.index_add_impl(dst, dim, indices, src).map(boxed)
    }

    fn im2col(&self, x: View, geom: &ConvGeom) -> Result<StorageBox> {
        self.im2col_impl(x, geom).map(boxed)
    }

    fn col2im(&self, cols: View, geom: &ConvGeom) -> Result<StorageBox> {
        self.col2im_impl(cols, geom).map(boxed)
    }

    fn bernoulli_scaled(&self, dtype: DType, len: usize, keep: f64, seed: u64) -> Result<StorageBox> {
        self.bernoulli_impl(dtype, len, keep, seed).map(boxed)
    }

    fn topk_last(&self, src: View, k: usize) -> Result<(StorageBox, StorageBox)> {
        let (v, i) = self.topk_impl(src, k)?;
        Ok((boxed(v), boxed(i)))
    }

    fn adamw_step(
        &self,
        param: &mut dyn BackendStorage,
        grad: View,
        m: &mut dyn BackendStorage,
        v: &mut dyn BackendStorage,
        hp: &AdamWStep,
    ) -> Result<()> {
        self.adamw_impl(param, grad, m, v, hp)
    }
}
