//! [`CpuStorage`], typed access to it, and the checks every kernel shares.

use crate::scalar::Scalar;
use crate::{pool, strided};
use beit_engine::{BackendStorage, DType, Error, HostData, Layout, Result, StorageBox, View};
use std::any::Any;
use std::borrow::Cow;

/// A CPU buffer: one vector of a single element type, booleans as 0/1 bytes.
///
/// The buffer pool counts every `CpuStorage` vector as live from creation to drop (see
/// `pool.rs`), so all of them are made by [`CpuStorage::new`].
#[derive(Debug, PartialEq)]
pub struct CpuStorage(HostData);

impl CpuStorage {
    /// A buffer holding `data`.
    pub fn new(data: HostData) -> Self {
        pool::adopt(&data);
        CpuStorage(data)
    }

    /// The elements.
    pub fn data(&self) -> &HostData {
        &self.0
    }

    /// The elements, by value.
    pub fn into_data(mut self) -> HostData {
        pool::disown(&self.0);
        std::mem::replace(&mut self.0, HostData::U8(Vec::new()))
    }
}

impl Clone for CpuStorage {
    fn clone(&self) -> Self {
        CpuStorage::new(self.0.clone())
    }
}

impl Drop for CpuStorage {
    /// Hands the buffer to the pool for reuse by later kernel outputs.
    fn drop(&mut self) {
        pool::recycle(std::mem::replace(&mut self.0, HostData::U8(Vec::new())));
    }
}

impl BackendStorage for CpuStorage {
    fn dtype(&self) -> DType {
        self.0.dtype()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Box a fresh vector as a buffer of `dtype` (`dtype` only matters for `u8`: U8 or Bool).
pub(crate) fn boxed<T: Scalar>(dtype: DType, v: Vec<T>) -> StorageBox {
    Box::new(CpuStorage::new(T::host(v, dtype)))
}

fn not_cpu(op: &'static str, s: &dyn BackendStorage) -> Error {
    let msg = if s.is_packed() {
        format!("{op}: this Linear weight is pre-packed for inference; only linear (without gradients) and to_host read it")
    } else {
        format!("{op}: the buffer is not a CPU buffer")
    };
    Error::Backend { backend: "cpu".into(), msg }
}

fn wrong_dtype(op: &'static str, dtype: DType, expected: DType) -> Error {
    Error::DType { op, dtype, expected: Some(expected) }
}

/// The elements of a mutable buffer as `T`.
pub(crate) fn slice_mut<'a, T: Scalar>(op: &'static str, s: &'a mut dyn BackendStorage) -> Result<&'a mut [T]> {
    let dtype = s.dtype();
    if !s.as_any().is::<CpuStorage>() {
        return Err(not_cpu(op, s));
    }
    let cpu = s.as_any_mut().downcast_mut::<CpuStorage>().expect("a CPU buffer, checked above");
    T::slice_mut(&mut cpu.0).ok_or_else(|| wrong_dtype(op, dtype, T::DTYPE))
}

/// A typed strided view: the whole buffer and the layout that picks elements from it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Src<'a, T> {
    /// The whole buffer.
    pub data: &'a [T],
    /// Which elements, in which order.
    pub layout: &'a Layout,
}

impl<'a, T: Scalar> Src<'a, T> {
    /// Downcast `v`, check its dtype is `T` and that its layout stays inside the buffer.
    pub fn new(op: &'static str, v: View<'a>) -> Result<Self> {
        let cpu = v.storage.as_any().downcast_ref::<CpuStorage>().ok_or_else(|| not_cpu(op, v.storage))?;
        let data = T::slice(&cpu.0).ok_or_else(|| wrong_dtype(op, v.dtype(), T::DTYPE))?;
        if v.layout.span_end() > data.len() {
            return Err(Error::invalid(
                op,
                format!("layout {:?} reaches past the end of a buffer of {} elements", v.layout, data.len()),
            ));
        }
        Ok(Src { data, layout: v.layout })
    }

    /// The view's shape.
    pub fn shape(&self) -> &'a [usize] {
        self.layout.shape()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.layout.numel()
    }

    /// The elements in row-major order: borrowed when the view is contiguous.
    pub fn contiguous(&self) -> Cow<'a, [T]> {
        if self.layout.is_contiguous() {
            let start = self.layout.offset();
            Cow::Borrowed(&self.data[start..start + self.numel()])
        } else {
            Cow::Owned(strided::map1(*self, |x| x))
        }
    }
}

pub(crate) use beit_engine::checks::{rows_of, same_dtype, same_shape};

/// Run `$body` with `$T` bound to the Rust type of a float `$dtype`; other dtypes are an error.
macro_rules! float_dispatch {
    ($op:expr, $dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            beit_engine::DType::F32 => {
                type $T = f32;
                $body
            }
            beit_engine::DType::F64 => {
                type $T = f64;
                $body
            }
            dtype => Err(beit_engine::Error::DType { op: $op, dtype, expected: None }),
        }
    };
}

/// Like [`float_dispatch`], also binding i64.
macro_rules! num_dispatch {
    ($op:expr, $dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            beit_engine::DType::I64 => {
                type $T = i64;
                $body
            }
            dtype => $crate::storage::float_dispatch!($op, dtype, $T => $body),
        }
    };
}

/// Run `$body` with `$T` bound to the Rust type of any `$dtype` (Bool as u8).
macro_rules! any_dispatch {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            beit_engine::DType::F32 => {
                type $T = f32;
                $body
            }
            beit_engine::DType::F64 => {
                type $T = f64;
                $body
            }
            beit_engine::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            beit_engine::DType::I64 => {
                type $T = i64;
                $body
            }
            beit_engine::DType::U32 => {
                type $T = u32;
                $body
            }
            beit_engine::DType::U8 | beit_engine::DType::Bool => {
                type $T = u8;
                $body
            }
        }
    };
}

pub(crate) use {any_dispatch, float_dispatch, num_dispatch};
