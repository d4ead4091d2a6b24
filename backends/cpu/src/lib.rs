//! beit-backend-cpu: the CPU implementation of [`beit_engine::Backend`].
//!
//! Buffers are plain vectors ([`CpuStorage`]), recycled through a bounded pool when dropped;
//! kernels read arbitrary strided views and write fresh row-major buffers, in parallel on
//! rayon's global pool. Matmul, Linear layers and convolutions run on our GEMM (`gemm/`,
//! AVX-512 or AVX2 + FMA) where the CPU has it, else on `matrixmultiply`'s, one
//! single-threaded call per rayon task; Linear weights may be pre-packed for inference
//! (`packed.rs`).
#![warn(missing_docs)]

mod attention;
mod conv;
mod conv2d;
mod elementwise;
mod erf;
mod fastmath;
mod gemm;
mod index;
mod linear;
mod loss;
mod matmul;
mod norm;
mod optim;
mod packed;
mod pool;
mod random;
mod reduce;
mod rows;
mod scalar;
mod storage;
mod strided;
mod vmath;
#[cfg(test)]
mod testutil;

pub use linear::{bf16_linear, Bf16Linear};
pub use pool::release_pool;
pub use storage::CpuStorage;

use beit_engine::{
    AdamWStep, Backend, BackendStorage, BinaryOp, CmpOp, ConvGeom, DType, Device, Epilogue, HostData, Layout, ReduceOp, Result,
    StorageBox, UnaryOp, View,
};
use std::sync::{Arc, OnceLock};

/// The CPU backend. Stateless: every instance behaves the same; use [`cpu`] for the shared device.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

/// The process-wide CPU device (one shared [`CpuBackend`]).
pub fn cpu() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(|| Device::new(Arc::new(CpuBackend))).clone()
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn full(&self, dtype: DType, len: usize, value: f64) -> Result<StorageBox> {
        elementwise::full(dtype, len, value)
    }

    fn from_host(&self, data: &HostData) -> Result<StorageBox> {
        Ok(Box::new(CpuStorage::new(data.clone())))
    }

    fn from_host_owned(&self, data: HostData) -> Result<StorageBox> {
        Ok(Box::new(CpuStorage::new(data)))
    }

    fn to_host(&self, src: View) -> Result<HostData> {
        match packed::PackedWeight::of(src.storage) {
            Some(p) => p.to_host(src.layout),
            None => elementwise::to_host(src),
        }
    }

    fn copy_strided(&self, src: View, dst: &mut dyn BackendStorage, dst_layout: &Layout) -> Result<()> {
        elementwise::copy_strided(src, dst, dst_layout)
    }

    fn cast(&self, src: View, dtype: DType) -> Result<StorageBox> {
        elementwise::cast(src, dtype)
    }

    fn unary(&self, op: UnaryOp, src: View) -> Result<StorageBox> {
        elementwise::unary(op, src)
    }

    fn binary(&self, op: BinaryOp, lhs: View, rhs: View) -> Result<StorageBox> {
        elementwise::binary(op, lhs, rhs)
    }

    fn cmp(&self, op: CmpOp, lhs: View, rhs: View) -> Result<StorageBox> {
        elementwise::cmp(op, lhs, rhs)
    }

    fn where_cond(&self, cond: View, on_true: View, on_false: View) -> Result<StorageBox> {
        elementwise::where_cond(cond, on_true, on_false)
    }

    fn reduce(&self, op: ReduceOp, src: View, dims: &[usize]) -> Result<StorageBox> {
        reduce::reduce(op, src, dims)
    }

    fn matmul(&self, lhs: View, rhs: View) -> Result<StorageBox> {
        matmul::matmul(lhs, rhs)
    }

    fn linear(&self, x: View, w: View, epilogue: &Epilogue) -> Result<StorageBox> {
        linear::linear(x, w, epilogue)
    }

    fn pack_weight(&self, w: &mut dyn BackendStorage, n: usize, k: usize) -> Result<Option<StorageBox>> {
        packed::pack(w, n, k)
    }

    fn release_cached(&self) {
        release_pool()
    }

    fn attention(&self, q: View, k: View, v: View, bias: Option<View>, scale: f64) -> Result<StorageBox> {
        attention::attention(q, k, v, bias, scale)
    }

    fn softmax_last(&self, src: View) -> Result<StorageBox> {
        rows::softmax_last(src)
    }

    fn softmax_last_backward(&self, y: View, dy: View) -> Result<StorageBox> {
        rows::softmax_last_backward(y, dy)
    }

    fn layer_norm(
        &self,
        x: View,
        weight: Option<View>,
        bias: Option<View>,
        eps: f64,
    ) -> Result<(StorageBox, StorageBox, StorageBox)> {
        norm::layer_norm(x, weight, bias, eps)
    }

    fn layer_norm_backward(
        &self,
        x: View,
        weight: Option<View>,
        mean: View,
        rstd: View,
        dy: View,
    ) -> Result<(StorageBox, Option<StorageBox>, Option<StorageBox>)> {
        norm::layer_norm_backward(x, weight, mean, rstd, dy)
    }

    fn gelu_backward(&self, x: View, dy: View) -> Result<StorageBox> {
        elementwise::gelu_backward(x, dy)
    }

    fn cross_entropy(&self, logits: View, targets: View, smoothing: f64, ignore_index: i64) -> Result<StorageBox> {
        loss::cross_entropy(logits, targets, smoothing, ignore_index)
    }

    fn cross_entropy_backward(
        &self,
        logits: View,
        targets: View,
        smoothing: f64,
        ignore_index: i64,
        dloss: View,
    ) -> Result<StorageBox> {
        loss::cross_entropy_backward(logits, targets, smoothing, ignore_index, dloss)
    }

    fn index_select(&self, src: View, dim: usize, indices: View) -> Result<StorageBox> {
        index::index_select(src, dim, indices)
    }

    fn index_add(&self, dst: View, dim: usize, indices: View, src: View) -> Result<StorageBox> {
        index::index_add(dst, dim, indices, src)
    }

    fn conv2d(&self, x: View, w: View, bias: Option<View>, geom: &ConvGeom) -> Result<StorageBox> {
        conv2d::conv2d(x, w, bias, geom)
    }

    fn conv2d_weight_grad(&self, x: View, dy: View, geom: &ConvGeom) -> Result<StorageBox> {
        conv2d::conv2d_weight_grad(x, dy, geom)
    }

    fn im2col(&self, x: View, geom: &ConvGeom) -> Result<StorageBox> {
        conv::im2col(x, geom)
    }

    fn col2im(&self, cols: View, geom: &ConvGeom) -> Result<StorageBox> {
        conv::col2im(cols, geom)
    }

    fn bernoulli_scaled(&self, dtype: DType, len: usize, keep: f64, seed: u64) -> Result<StorageBox> {
        random::bernoulli_scaled(dtype, len, keep, seed)
    }

    fn topk_last(&self, src: View, k: usize) -> Result<(StorageBox, StorageBox)> {
        index::topk_last(src, k)
    }

    fn adamw_step(
        &self,
        param: &mut dyn BackendStorage,
        grad: View,
        m: &mut dyn BackendStorage,
        v: &mut dyn BackendStorage,
        hp: &AdamWStep,
    ) -> Result<()> {
        optim::adamw_step(param, grad, m, v, hp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shared_device_named_cpu() {
        let (a, b) = (cpu(), cpu());
        assert!(a.same(&b));
        assert_eq!(a.name(), "cpu");
        let data = HostData::U32(vec![1, 2, 3]);
        let s = a.backend().from_host(&data).unwrap();
        let l = Layout::contiguous(&[3]);
        assert_eq!(a.backend().to_host(View { storage: &*s, layout: &l }).unwrap(), data);
    }
}
