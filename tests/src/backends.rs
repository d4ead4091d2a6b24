//! The backends this build has, and running one case on each of them.

use beit_backend_cpu::CpuBackend;
use beit_engine::backend::prelude::*;
use beit_engine::{AdamWStep, BackendStorage, BinaryOp, CmpOp, ConvGeom, DType, Device, HostData, Layout, ReduceOp, Result, StorageBox, Tensor, UnaryOp, View};
use std::sync::{Arc, OnceLock};

/// A conformance case: runs on one device, fails by returning `Err` or panicking.
pub type CaseFn = fn(&Device) -> Result<()>;

/// The CPU device: every build has it, and it holds the float64 references.
pub fn cpu() -> Device {
    beit_backend_cpu::cpu()
}

/// Whether `dev` computes in float64 (required on the CPU, optional elsewhere).
pub fn supports_f64(dev: &Device) -> bool {
    Tensor::ones(&[2], DType::F64, dev).and_then(|t| t.exp()?.sum_all()).is_ok()
}

/// Whether `dev` holds bf16 tensors (casts to and from them; the CPU's Linear takes bf16
/// weights).
pub fn supports_bf16(dev: &Device) -> bool {
    Tensor::ones(&[2], DType::F32, dev).and_then(|t| t.to_dtype(DType::BF16)?.to_dtype(DType::F32)).is_ok()
}

/// The float dtypes a case checks on `dev`: f32 everywhere, f64 where supported.
pub fn float_dtypes(dev: &Device) -> Vec<DType> {
    let mut dtypes = vec![DType::F32];
    if supports_f64(dev) {
        dtypes.push(DType::F64);
    }
    dtypes
}

/// Runs `case` on `dev`; an error fails the test with the case name and device.
pub fn run_on(name: &str, dev: &Device, case: CaseFn) {
    if let Err(e) = case(dev) {
        panic!("{name} on {dev}: {e}");
    }
}

/// Runs `case` on the CPU.
pub fn run_on_cpu(name: &str, case: CaseFn) {
    run_on(name, &cpu(), case);
}

/// CUDA device 0 for `test`: the GPU with the `cuda` feature (`None`, after printing why,
/// when none can be opened), else the simulated device, which must open.
#[cfg(any(feature = "cuda", feature = "cuda-sim"))]
pub fn cuda(test: &str) -> Option<Device> {
    match beit_backend_cuda::open(0) {
        Ok(dev) => Some(dev),
        Err(e) if cfg!(feature = "cuda") => {
            eprintln!("SKIPPED {test} on cuda:0 (no usable GPU: {e})");
            None
        }
        Err(e) => panic!("{test}: the simulated CUDA device does not open: {e}"),
    }
}

/// Runs `case` on CUDA device 0 ([`cuda`]: the GPU, or the simulator in a `cuda-sim` build).
#[cfg(any(feature = "cuda", feature = "cuda-sim"))]
pub fn run_on_cuda(name: &str, case: CaseFn) {
    if let Some(dev) = cuda(name) {
        run_on(name, &dev, case);
    }
}

/// A backend with the CPU's primitive kernels only: every kernel with a composed default
/// (`linear`, softmax, LayerNorm, attention, the GELU gradient, cross-entropy, the
/// convolutions) is left to it, as a new backend would start. The conformance suite runs
/// every case on it too (`::composed`), so the defaults are held to the same references.
#[derive(Debug)]
pub struct PrimitivesOnly;

impl Memory for PrimitivesOnly {
    fn name(&self) -> String {
        "cpu-primitives".into()
    }
    fn full(&self, dtype: DType, len: usize, value: f64) -> Result<StorageBox> {
        CpuBackend.full(dtype, len, value)
    }
    fn from_host(&self, data: &HostData) -> Result<StorageBox> {
        CpuBackend.from_host(data)
    }
    fn to_host(&self, src: View) -> Result<HostData> {
        CpuBackend.to_host(src)
    }
    fn copy_strided(&self, src: View, dst: &mut dyn BackendStorage, dst_layout: &Layout) -> Result<()> {
        CpuBackend.copy_strided(src, dst, dst_layout)
    }
    fn cast(&self, src: View, dtype: DType) -> Result<StorageBox> {
        CpuBackend.cast(src, dtype)
    }
}

impl Elementwise for PrimitivesOnly {
    fn unary(&self, op: UnaryOp, src: View) -> Result<StorageBox> {
        CpuBackend.unary(op, src)
    }
    fn binary(&self, op: BinaryOp, lhs: View, rhs: View) -> Result<StorageBox> {
        CpuBackend.binary(op, lhs, rhs)
    }
    fn cmp(&self, op: CmpOp, lhs: View, rhs: View) -> Result<StorageBox> {
        CpuBackend.cmp(op, lhs, rhs)
    }
    fn where_cond(&self, cond: View, on_true: View, on_false: View) -> Result<StorageBox> {
        CpuBackend.where_cond(cond, on_true, on_false)
    }
}

impl Reduce for PrimitivesOnly {
    fn reduce(&self, op: ReduceOp, src: View, dims: &[usize]) -> Result<StorageBox> {
        CpuBackend.reduce(op, src, dims)
    }
}

impl Index for PrimitivesOnly {
    fn index_select(&self, src: View, dim: usize, indices: View) -> Result<StorageBox> {
        CpuBackend.index_select(src, dim, indices)
    }
    fn index_add(&self, dst: View, dim: usize, indices: View, src: View) -> Result<StorageBox> {
        CpuBackend.index_add(dst, dim, indices, src)
    }
    fn topk_last(&self, src: View, k: usize) -> Result<(StorageBox, StorageBox)> {
        CpuBackend.topk_last(src, k)
    }
}

impl Matmul for PrimitivesOnly {
    fn matmul(&self, lhs: View, rhs: View) -> Result<StorageBox> {
        CpuBackend.matmul(lhs, rhs)
    }
}

impl Rows for PrimitivesOnly {}

impl Loss for PrimitivesOnly {}

impl Conv for PrimitivesOnly {
    fn im2col(&self, x: View, geom: &ConvGeom) -> Result<StorageBox> {
        CpuBackend.im2col(x, geom)
    }
    fn col2im(&self, cols: View, geom: &ConvGeom) -> Result<StorageBox> {
        CpuBackend.col2im(cols, geom)
    }
}

impl Optim for PrimitivesOnly {
    fn adamw_step(&self, param: &mut dyn BackendStorage, grad: View, m: &mut dyn BackendStorage, v: &mut dyn BackendStorage, hp: &AdamWStep) -> Result<()> {
        CpuBackend.adamw_step(param, grad, m, v, hp)
    }
}

impl Random for PrimitivesOnly {
    fn bernoulli_scaled(&self, dtype: DType, len: usize, keep: f64, seed: u64) -> Result<StorageBox> {
        CpuBackend.bernoulli_scaled(dtype, len, keep, seed)
    }
}

/// The [`PrimitivesOnly`] device, shared.
pub fn primitives_only() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(|| Device::new(Arc::new(PrimitivesOnly))).clone()
}

/// Runs `case` on the [`PrimitivesOnly`] device.
pub fn run_on_primitives(name: &str, case: CaseFn) {
    run_on(name, &primitives_only(), case);
}
