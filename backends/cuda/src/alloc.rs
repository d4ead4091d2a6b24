//! Device buffers and the caching allocator: freed buffers go back to a cache keyed by
//! rounded size and are reused by later allocations of that size class (all work runs on
//! one stream, so reuse in stream order is safe). The cache is emptied and the allocation
//! retried when the device runs out of memory; a failure then reports the size asked for
//! and what is free.

use crate::driver::Driver;
use beit_engine::{BackendStorage, DType, Error, Result, StorageBox};
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Cached free blocks by size class, and their total bytes.
#[derive(Default)]
struct Cache {
    free: HashMap<usize, Vec<u64>>,
    bytes: usize,
}

/// The caching allocator of one device.
pub(crate) struct Allocator {
    driver: Arc<dyn Driver>,
    cache: Mutex<Cache>,
}

/// The size class of a request: a multiple of 512 bytes and of 1/16 of the next power of
/// two (so at most 12.5% over the request beyond the 512-byte granule).
pub(crate) fn size_class(bytes: usize) -> usize {
    let granule = (bytes.next_power_of_two() / 16).max(512);
    bytes.div_ceil(granule) * granule
}

impl Allocator {
    /// An empty cache for the device of `driver`.
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        Allocator { driver, cache: Mutex::new(Cache::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Device memory for `len` elements of `dtype` (uninitialised).
    pub fn alloc(self: &Arc<Self>, dtype: DType, len: usize) -> Result<CudaStorage> {
        let bytes = len.checked_mul(dtype.size_in_bytes()).ok_or_else(|| {
            Error::invalid("alloc", format!("{len} elements of {dtype} overflow the address space"))
        })?;
        let class = size_class(bytes);
        let ptr = if bytes == 0 { 0 } else { self.take(class).map_or_else(|| self.fresh(class, len, dtype), Ok)? };
        if ptr != 0 {
            self.driver.lend(ptr, bytes);
        }
        Ok(CudaStorage { ptr, len, dtype, class, alloc: self.clone() })
    }

    fn take(&self, class: usize) -> Option<u64> {
        let mut c = self.lock();
        let p = c.free.get_mut(&class)?.pop()?;
        c.bytes -= class;
        Some(p)
    }

    fn fresh(&self, class: usize, len: usize, dtype: DType) -> Result<u64> {
        if let Ok(ptr) = self.driver.alloc(class) {
            return Ok(ptr);
        }
        let released = self.empty_cache()?;
        self.driver.alloc(class).map_err(|e| {
            let (free, total) = self.driver.mem_info().unwrap_or((0, 0));
            Error::Backend {
                backend: self.driver.name().to_string(),
                msg: format!(
                    "out of memory: asked for {class} bytes ({len} × {dtype}); {free} of {total} bytes free after \
                     releasing {released} cached bytes ({e})"
                ),
            }
        })
    }

    /// Free every cached block; the number of bytes released.
    pub fn empty_cache(&self) -> Result<usize> {
        let mut c = self.lock();
        for p in c.free.drain().flat_map(|(_, v)| v) {
            // Every cached pointer came from the driver's alloc and is owned by the cache.
            self.driver.free(p)?;
        }
        Ok(std::mem::take(&mut c.bytes))
    }

    fn release(&self, ptr: u64, class: usize) {
        let mut c = self.lock();
        c.free.entry(class).or_default().push(ptr);
        c.bytes += class;
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        // Errors here only leak memory of a context that is going away.
        let _ = self.empty_cache();
    }
}

/// A device buffer of one dtype; dropping it returns the memory to the allocator's cache.
pub struct CudaStorage {
    ptr: u64,
    len: usize,
    dtype: DType,
    class: usize,
    alloc: Arc<Allocator>,
}

impl CudaStorage {
    /// The device address of element `offset`.
    pub(crate) fn at(&self, offset: usize) -> u64 {
        self.ptr + (offset * self.dtype.size_in_bytes()) as u64
    }
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaStorage({} × {} on {})", self.len, self.dtype, self.alloc.driver.name())
    }
}

impl Drop for CudaStorage {
    fn drop(&mut self) {
        if self.ptr != 0 {
            self.alloc.release(self.ptr, self.class);
        }
    }
}

impl BackendStorage for CudaStorage {
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn len(&self) -> usize {
        self.len
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A buffer as the engine's [`StorageBox`].
pub(crate) fn boxed<S: BackendStorage>(s: S) -> StorageBox {
    Box::new(s)
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up_by_at_most_an_eighth() {
        for bytes in [1, 511, 512, 513, 4000, 1 << 20, (1 << 20) + 1, 3 << 29, 12_345_678] {
            let c = size_class(bytes);
            assert!(c >= bytes && c.is_multiple_of(512), "{bytes} -> {c}");
            assert!(c - bytes <= (bytes / 8).max(511), "{bytes} -> {c}");
        }
        assert_eq!(size_class(12_345_678), size_class(12_345_679));
    }
}
