//! Buffers: fills, upload and download, strided copies and dtype casts.

use crate::packed::PackedWeight;
use crate::scalar::Scalar;
use crate::storage::{any_dispatch, boxed, slice_mut, Src};
use crate::strided::{copy_into, map1};
use crate::{pool, CpuBackend, CpuStorage};
use beit_engine::backend::Memory;
use beit_engine::{BackendStorage, DType, HostData, Layout, Result, StorageBox, View};
use num_traits::AsPrimitive;

impl Memory for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }

    /// `len` copies of `value` cast to `dtype` (bool: `value != 0`).
    fn full(&self, dtype: DType, len: usize, value: f64) -> Result<StorageBox> {
        if dtype == DType::Bool {
            return Ok(boxed(dtype, pool::filled(len, u8::from(value != 0.0))));
        }
        Ok(any_dispatch!(dtype, T => boxed::<T>(dtype, pool::filled(len, value.as_()))))
    }

    /// A view gathered into row-major host data (a packed weight unpacked).
    fn to_host(&self, src: View) -> Result<HostData> {
        if let Some(p) = PackedWeight::of(src.storage) {
            return p.to_host(src.layout);
        }
        let dtype = src.dtype();
        any_dispatch!(dtype, T => Ok(T::host(Src::<T>::new("to_host", src)?.contiguous().into_owned(), dtype)))
    }

    /// Copy `src` into `dst` at `dst_layout`.
    fn copy_strided(&self, src: View, dst: &mut dyn BackendStorage, dst_layout: &Layout) -> Result<()> {
        const OP: &str = "copy_strided";
        beit_engine::checks::copy_destination(OP, src, dst, dst_layout)?;
        any_dispatch!(src.dtype(), T => {
            let s = Src::<T>::new(OP, src)?;
            copy_into(s, slice_mut::<T>(OP, dst)?, dst_layout);
            Ok(())
        })
    }

    /// Convert a view to `dtype`: floats to integers truncate toward zero (saturating),
    /// anything to bool is `x != 0`.
    fn cast(&self, src: View, dtype: DType) -> Result<StorageBox> {
        any_dispatch!(src.dtype(), S => {
            let s = Src::<S>::new("cast", src)?;
            Ok(if dtype == DType::Bool {
                boxed(dtype, map1(s, |x| u8::from(x != S::default())))
            } else {
                any_dispatch!(dtype, D => boxed::<D>(dtype, map1(s, |x| x.as_())))
            })
        })
    }

    fn from_host(&self, data: &HostData) -> Result<StorageBox> {
        Ok(Box::new(CpuStorage::new(data.clone())))
    }

    fn from_host_owned(&self, data: HostData) -> Result<StorageBox> {
        Ok(Box::new(CpuStorage::new(data)))
    }

    fn release_cached(&self) {
        pool::release_pool()
    }
}
