//! [`CudaBackend`]: one device's driver, allocator and GEMM engine, plus the buffer helpers
//! every op shares (downcasts, bounds checks, contiguous gathers, fills, transfers).

use crate::alloc::{Allocator, CudaStorage};
use crate::blas::Gemm;
use crate::driver::{args, Driver, Grid};
use crate::geometry::walk;
use beit_engine::{BackendStorage, DType, Error, HostData, Layout, Result, View};
use std::sync::Arc;

/// The CUDA backend of one device.
pub struct CudaBackend {
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) alloc: Arc<Allocator>,
    pub(crate) gemm: Gemm,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend({}, {})", self.driver.name(), self.gemm.describe())
    }
}

/// A view's data as one contiguous run: the device address of its first element, and the
/// gathered copy that holds it when the view was not contiguous.
pub(crate) struct Contig {
    pub ptr: u64,
    _copy: Option<CudaStorage>,
}

/// Kernel-name suffix of a dtype.
pub(crate) fn suffix(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::BF16 => "bf16",
        DType::I64 => "i64",
        DType::U32 => "u32",
        DType::U8 | DType::Bool => "u8",
    }
}

/// Kernel-name suffix of a dtype's element size (for kernels that only move bits).
pub(crate) fn bits(dtype: DType) -> &'static str {
    match dtype.size_in_bytes() {
        1 => "b1",
        4 => "b4",
        _ => "b8",
    }
}

/// Error unless `dtype` is a float type.
pub(crate) fn float(op: &'static str, dtype: DType) -> Result<()> {
    if !dtype.is_float() {
        return Err(Error::DType { op, dtype, expected: None });
    }
    Ok(())
}

pub(crate) use beit_engine::checks::{rows_of, same_dtype, same_shape};

impl CudaBackend {
    /// The device buffer behind `s`, or an error when it belongs to another backend.
    pub(crate) fn storage<'a>(&self, op: &'static str, s: &'a dyn BackendStorage) -> Result<&'a CudaStorage> {
        s.as_any().downcast_ref::<CudaStorage>().ok_or_else(|| self.foreign(op))
    }

    /// Mutable access to the device buffer behind `s`.
    pub(crate) fn storage_mut<'a>(&self, op: &'static str, s: &'a mut dyn BackendStorage) -> Result<&'a mut CudaStorage> {
        let name = self.driver.name().to_string();
        s.as_any_mut().downcast_mut::<CudaStorage>().ok_or(Error::Backend {
            backend: name,
            msg: format!("{op}: the buffer is not a CUDA buffer"),
        })
    }

    fn foreign(&self, op: &'static str) -> Error {
        Error::Backend { backend: self.driver.name().to_string(), msg: format!("{op}: the buffer is not a CUDA buffer") }
    }

    /// The buffer of a view, checked to be ours and to hold every element the layout reaches.
    pub(crate) fn buffer<'a>(&self, op: &'static str, v: View<'a>) -> Result<&'a CudaStorage> {
        let s = self.storage(op, v.storage)?;
        if v.layout.span_end() > s.len() {
            return Err(Error::invalid(
                op,
                format!("layout {:?} reaches past the end of a buffer of {} elements", v.layout, s.len()),
            ));
        }
        Ok(s)
    }

    /// A fresh uninitialised buffer.
    pub(crate) fn alloc(&self, dtype: DType, len: usize) -> Result<CudaStorage> {
        if dtype == DType::BF16 {
            let msg = "bf16 tensors are CPU-only (bf16 inference runs on the CPU backend)".to_string();
            return Err(Error::Backend { backend: "cuda".into(), msg });
        }
        self.alloc.alloc(dtype, len)
    }

    /// The elements of `v` in row-major order, in place when the view is contiguous.
    pub(crate) fn contiguous(&self, op: &'static str, v: View) -> Result<Contig> {
        let s = self.buffer(op, v)?;
        if v.layout.is_contiguous() {
            return Ok(Contig { ptr: s.at(v.layout.offset()), _copy: None });
        }
        let copy = self.gather(op, v)?;
        Ok(Contig { ptr: copy.at(0), _copy: Some(copy) })
    }

    /// A contiguous copy of a view.
    pub(crate) fn gather(&self, op: &'static str, v: View) -> Result<CudaStorage> {
        let mut out = self.alloc(v.dtype(), v.layout.numel())?;
        self.copy_into(op, v, &mut out, &Layout::contiguous(v.shape()))?;
        Ok(out)
    }

    /// Copy view `src` into `dst` at `dst_layout` (same shape and dtype, checked by callers).
    pub(crate) fn copy_into(&self, op: &'static str, src: View, dst: &mut CudaStorage, dst_layout: &Layout) -> Result<()> {
        let n = src.layout.numel();
        if n == 0 {
            return Ok(());
        }
        let s = self.buffer(op, src)?;
        let (d, [os, od]) = walk(op, src.shape(), [src.layout, dst_layout])?;
        let (sp, dp, n64) = (s.at(0), dst.at(0), n as i64);
        let name = format!("copy_{}", crate::gpu::bits(src.dtype()));
        // SAFETY: both layouts were checked to stay inside their buffers.
        unsafe { self.driver.launch("memory", &name, Grid::elements(n), &args![n64, d, os, od, sp, dp]) }
    }

    /// `len` elements of `dtype` all equal to the bits of `value`.
    pub(crate) fn fill_bits(&self, dtype: DType, len: usize, value: u64) -> Result<CudaStorage> {
        let out = self.alloc(dtype, len)?;
        if len == 0 {
            return Ok(out);
        }
        let (n, p) = (len as i64, out.at(0));
        let name = format!("fill_{}", bits(dtype));
        // SAFETY: the kernel writes `len` elements of the element size it is named for.
        unsafe {
            match dtype.size_in_bytes() {
                1 => self.driver.launch("memory", &name, Grid::elements(len), &args![n, value as u8, p])?,
                4 => self.driver.launch("memory", &name, Grid::elements(len), &args![n, value as u32, p])?,
                _ => self.driver.launch("memory", &name, Grid::elements(len), &args![n, value, p])?,
            }
        }
        Ok(out)
    }

    /// Upload host data.
    pub(crate) fn upload(&self, data: &HostData) -> Result<CudaStorage> {
        let out = self.alloc(data.dtype(), data.len())?;
        let bytes = data.len() * data.dtype().size_in_bytes();
        if bytes > 0 {
            let src = match data {
                HostData::F32(v) => v.as_ptr().cast::<u8>(),
                HostData::F64(v) => v.as_ptr().cast(),
                HostData::BF16(v) => v.as_ptr().cast(),
                HostData::I64(v) => v.as_ptr().cast(),
                HostData::U32(v) => v.as_ptr().cast(),
                HostData::U8(v) | HostData::Bool(v) => v.as_ptr(),
            };
            // SAFETY: `src` holds `bytes` bytes and `out` has room for them.
            unsafe { self.driver.upload(out.at(0), src, bytes)? };
        }
        Ok(out)
    }

    /// Download a view in row-major order.
    pub(crate) fn download(&self, v: View) -> Result<HostData> {
        let n = v.layout.numel();
        let c = self.contiguous("to_host", v)?;
        let dtype = v.dtype();
        let mut host = match dtype {
            DType::F32 => HostData::F32(vec![0.0; n]),
            DType::F64 => HostData::F64(vec![0.0; n]),
            DType::BF16 => HostData::BF16(vec![half::bf16::ZERO; n]),
            DType::I64 => HostData::I64(vec![0; n]),
            DType::U32 => HostData::U32(vec![0; n]),
            DType::U8 => HostData::U8(vec![0; n]),
            DType::Bool => HostData::Bool(vec![0; n]),
        };
        let dst = match &mut host {
            HostData::F32(v) => v.as_mut_ptr().cast::<u8>(),
            HostData::F64(v) => v.as_mut_ptr().cast(),
            HostData::BF16(v) => v.as_mut_ptr().cast(),
            HostData::I64(v) => v.as_mut_ptr().cast(),
            HostData::U32(v) => v.as_mut_ptr().cast(),
            HostData::U8(v) | HostData::Bool(v) => v.as_mut_ptr(),
        };
        if n > 0 {
            // SAFETY: `dst` has room for `n` elements; we wait for the copy before returning.
            unsafe { self.driver.download(dst, c.ptr, n * dtype.size_in_bytes())? };
        }
        self.driver.synchronize()?;
        Ok(host)
    }

    /// One little-endian integer of `bytes` (4 or 8) bytes read back from device address
    /// `ptr` (index checks).
    pub(crate) fn read_int(&self, ptr: u64, bytes: usize) -> Result<i64> {
        let mut v = [0u8; 8];
        let bytes = bytes.min(8);
        // SAFETY: `ptr` addresses `bytes` bytes of a live buffer; we wait for the copy below.
        unsafe { self.driver.download(v.as_mut_ptr(), ptr, bytes)? };
        self.driver.synchronize()?;
        Ok(match bytes {
            4 => i64::from(u32::from_le_bytes([v[0], v[1], v[2], v[3]])),
            _ => i64::from_le_bytes(v),
        })
    }
}
