//! Buffers: fill, upload and download, strided copy and cast (kernels/memory.cu).

use crate::alloc::{boxed, CudaStorage};
use crate::driver::{args, Grid};
use crate::geometry::walk;
use crate::gpu::{suffix, CudaBackend};
use beit_engine::backend::Memory;
use beit_engine::{BackendStorage, DType, HostData, Layout, Result, StorageBox, View};

/// The bit pattern of `value` cast to `dtype` (Rust `as` semantics; bool: `value != 0`).
fn value_bits(dtype: DType, value: f64) -> u64 {
    match dtype {
        DType::F32 => (value as f32).to_bits() as u64,
        DType::F64 => value.to_bits(),
        DType::BF16 => u64::from(half::bf16::from_f64(value).to_bits()),
        DType::I64 => value as i64 as u64,
        DType::U32 => value as u32 as u64,
        DType::U8 => value as u8 as u64,
        DType::Bool => u64::from(value != 0.0),
    }
}

impl CudaBackend {
    /// `len` copies of `value` cast to `dtype`.
    pub(crate) fn full_impl(&self, dtype: DType, len: usize, value: f64) -> Result<CudaStorage> {
        self.fill_bits(dtype, len, value_bits(dtype, value))
    }


}

impl Memory for CudaBackend {
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

    /// Copy `src` into `dst` at `dst_layout`.
    fn copy_strided(&self, src: View, dst: &mut dyn BackendStorage, dst_layout: &Layout) -> Result<()> {
        const OP: &str = "copy_strided";
        beit_engine::checks::copy_destination(OP, src, dst, dst_layout)?;
        let dst = self.storage_mut(OP, dst)?;
        self.copy_into(OP, src, dst, dst_layout)
    }

    /// Convert a view to `dtype`.
    fn cast(&self, src: View, dtype: DType) -> Result<StorageBox> {
        const OP: &str = "cast";
        let s = self.buffer(OP, src)?;
        let n = src.layout.numel();
        let out = self.alloc(dtype, n)?;
        if n == 0 {
            return Ok(boxed(out));
        }
        let (d, [os]) = walk(OP, src.shape(), [src.layout])?;
        let name = format!("cast_{}_{}", suffix(src.dtype()), suffix(dtype));
        let (n64, sp, op, to_bool) = (n as i64, s.at(0), out.at(0), i32::from(dtype == DType::Bool));
        // SAFETY: the layout was checked against its buffer; `out` holds n elements of dtype.
        unsafe { self.driver.launch("memory", &name, Grid::elements(n), &args![n64, d, os, sp, op, to_bool])? };
        Ok(boxed(out))
    }
}

#[cfg(test)]
mod tests {
    use super::value_bits;
    use beit_engine::DType;

    #[test]
    fn fill_values_follow_rust_casts() {
        assert_eq!(value_bits(DType::F32, 1.5), 1.5f32.to_bits() as u64);
        assert_eq!(value_bits(DType::I64, -2.7), (-2i64) as u64);
        assert_eq!(value_bits(DType::U8, 300.0), 255);
        assert_eq!(value_bits(DType::Bool, 0.5), 1);
    }
}
