//! Buffers: allocation, upload, download, strided copies, dtype casts.

use super::{BackendStorage, StorageBox, View};
use crate::{DType, HostData, Layout, Result};

/// Buffers in and out of a device, and between its layouts and dtypes.
pub trait Memory {
    /// Device name, e.g. `cpu` or `cuda:0`.
    fn name(&self) -> String;
    /// Wait until all queued work is done (no-op on synchronous backends).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    /// A buffer of `len` elements all equal to `value` (cast to `dtype`).
    fn full(&self, dtype: DType, len: usize, value: f64) -> Result<StorageBox>;
    /// Upload host data.
    #[allow(clippy::wrong_self_convention)]
    fn from_host(&self, data: &HostData) -> Result<StorageBox>;
    /// Upload host data the caller gives up (backends that can adopt the buffer skip a copy).
    #[allow(clippy::wrong_self_convention)]
    fn from_host_owned(&self, data: HostData) -> Result<StorageBox> {
        self.from_host(&data)
    }
    /// Download a view, gathered into row-major order.
    fn to_host(&self, src: View) -> Result<HostData>;
    /// Copy a view into `dst` at `dst_layout` (same shape, same dtype).
    fn copy_strided(&self, src: View, dst: &mut dyn BackendStorage, dst_layout: &Layout) -> Result<()>;
    /// Convert a view to another dtype (floats to integers truncate toward zero).
    fn cast(&self, src: View, dtype: DType) -> Result<StorageBox>;
    /// Free the buffers this backend keeps for reuse (the CPU's pool of dropped buffers),
    /// e.g. after loading a model, whose checkpoint buffers were copied into packed or
    /// converted weights and are garbage now. The default does nothing: the backend keeps
    /// none, or frees them itself under memory pressure.
    fn release_cached(&self) {}
}
