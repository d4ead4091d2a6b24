//! A bounded, thread-safe pool of freed buffers, so that large kernel outputs reuse warm
//! memory instead of page-faulting fresh pages in on every op.
//!
//! [`crate::CpuStorage`] hands its vector back here when dropped; kernels take their
//! output vectors from here. Reused vectors keep their (initialised, stale) elements, so
//! a kernel that overwrites its whole output needs no zero fill and no unsafe code.

use crate::scalar::Scalar;
use beit_engine::HostData;
use std::any::Any;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Buffers smaller than this are left to the system allocator.
const MIN_BYTES: usize = 64 << 10;
/// At most this many bytes are kept by default; the oldest buffers go first.
const DEFAULT_MAX_BYTES: usize = 1 << 30;
/// Environment variable that sets the pool's bound in MiB (0 turns pooling off), e.g. for
/// small devices where 1 GiB of warm buffers is too much.
pub(crate) const POOL_ENV: &str = "BEIT_CPU_POOL_MB";
/// At most this many buffers are kept (bounds the search on every take).
const MAX_BUFFERS: usize = 256;

/// A freed vector (`Vec<T>` for some [`Scalar`] `T`) and its capacity in bytes.
struct Entry {
    bytes: usize,
    buf: Box<dyn Any + Send>,
}

/// The pooled buffers, oldest first, and their total size.
struct Pool {
    entries: Vec<Entry>,
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { entries: Vec::new(), bytes: 0 });

fn lock() -> MutexGuard<'static, Pool> {
    // The pool's state stays consistent even if a holder panicked.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bound on pooled bytes: [`POOL_ENV`] if set (a bad value is reported once and the
/// default kept), else [`DEFAULT_MAX_BYTES`].
fn max_bytes() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| match parse_pool_mb(std::env::var(POOL_ENV).ok().as_deref()) {
        Ok(bytes) => bytes,
        Err(msg) => {
            eprintln!("warning: {msg}; keeping the default of {} MiB", DEFAULT_MAX_BYTES >> 20);
            DEFAULT_MAX_BYTES
        }
    })
}

/// Bytes for a [`POOL_ENV`] value (MiB); `None` gives the default.
fn parse_pool_mb(value: Option<&str>) -> Result<usize, String> {
    match value {
        None => Ok(DEFAULT_MAX_BYTES),
        Some(v) if v.trim().is_empty() => Ok(DEFAULT_MAX_BYTES),
        Some(v) => v.trim().parse::<usize>().map(|mb| mb.saturating_mul(1 << 20)).map_err(|_| format!("{POOL_ENV}={v:?} is not a whole number of MiB")),
    }
}

/// A vector of `len` elements with unspecified values (stale contents of a reused buffer,
/// or `T::default()`), for kernels that overwrite every element.
pub(crate) fn reuse<T: Scalar>(len: usize) -> Vec<T> {
    match take::<T>(len) {
        Some(mut v) => {
            v.truncate(len);
            v.resize(len, T::default());
            v
        }
        None => vec![T::default(); len],
    }
}

/// A vector of `len` copies of `value`.
pub(crate) fn filled<T: Scalar>(len: usize, value: T) -> Vec<T> {
    match take::<T>(len) {
        Some(mut v) => {
            v.clear();
            v.resize(len, value);
            v
        }
        None => vec![value; len],
    }
}

/// The best-fitting pooled `Vec<T>` with room for `len` elements (at most twice that).
fn take<T: Scalar>(len: usize) -> Option<Vec<T>> {
    let want = len * size_of::<T>();
    if want < MIN_BYTES {
        return None;
    }
    let mut pool = lock();
    let best = (pool.entries.iter().enumerate())
        .filter(|(_, e)| e.bytes >= want && e.bytes / 2 <= want && e.buf.is::<Vec<T>>())
        .min_by_key(|(_, e)| e.bytes)?
        .0;
    let entry = pool.entries.remove(best);
    pool.bytes -= entry.bytes;
    entry.buf.downcast::<Vec<T>>().ok().map(|b| *b)
}

/// Keep `v` for reuse when it is large enough, evicting the oldest buffers over the bounds.
fn give<T: Scalar>(v: Vec<T>) {
    let bytes = v.capacity() * size_of::<T>();
    let max = max_bytes();
    if !(MIN_BYTES..=max).contains(&bytes) {
        return;
    }
    let evicted: Vec<Entry> = {
        let mut pool = lock();
        pool.entries.push(Entry { bytes, buf: Box::new(v) });
        pool.bytes += bytes;
        let mut n = 0;
        let mut left = pool.bytes;
        while left > max || pool.entries.len() - n > MAX_BUFFERS {
            left -= pool.entries[n].bytes;
            n += 1;
        }
        pool.bytes = left;
        pool.entries.drain(..n).collect()
    };
    // Freed outside the lock.
    drop(evicted);
}

/// Keep the vector inside `data` for reuse (see [`give`]).
pub(crate) fn recycle(data: HostData) {
    match data {
        HostData::F32(v) => give(v),
        HostData::F64(v) => give(v),
        HostData::I64(v) => give(v),
        HostData::U32(v) => give(v),
        HostData::U8(v) | HostData::Bool(v) => give(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_as_asked_and_skips_small_buffers() {
        let len = MIN_BYTES; // f64: 8 × MIN_BYTES bytes, pooled.
        recycle(HostData::F64(vec![7.0; len]));
        let w = filled::<f64>(len - 3, 1.5);
        assert!(w.len() == len - 3 && w.iter().all(|&x| x == 1.5));
        recycle(HostData::F64(w));
        assert_eq!(reuse::<f64>(len + 5).len(), len + 5);
        // Small buffers are not pooled: a fresh small vector holds the default value.
        recycle(HostData::F32(vec![3.0; 4]));
        assert_eq!(reuse::<f32>(4), [0.0; 4]);
    }

    #[test]
    fn the_bound_comes_from_the_environment_in_mib() {
        assert_eq!(parse_pool_mb(None), Ok(DEFAULT_MAX_BYTES));
        assert_eq!(parse_pool_mb(Some("")), Ok(DEFAULT_MAX_BYTES));
        assert_eq!(parse_pool_mb(Some("0")), Ok(0));
        assert_eq!(parse_pool_mb(Some(" 64 ")), Ok(64 << 20));
        assert!(parse_pool_mb(Some("lots")).unwrap_err().contains("BEIT_CPU_POOL_MB=\"lots\""));
    }
}
