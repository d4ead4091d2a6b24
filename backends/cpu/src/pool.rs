//! A thread-safe pool of freed buffers, sized to the working set, so that large kernel
//! outputs reuse warm memory instead of page-faulting fresh pages in on every op.
//!
//! [`crate::CpuStorage`] reports its vector here when created ([`adopt`]) and hands it back
//! when dropped ([`recycle`]); kernels take their output vectors from here ([`reuse`],
//! [`filled`]), and scratch vectors too, handed back with [`give_back`]. Reused vectors
//! keep their (initialised, stale) elements, so a kernel that overwrites its whole output
//! needs no zero fill and no unsafe code.
//!
//! The pool counts the bytes (capacities, not lengths) of the pool-sized buffers that are
//! live, i.e. held by a `CpuStorage`, and remembers their high-water mark. It keeps a
//! returned buffer only while live + pooled bytes stay within that mark plus a slack of
//! 1/8 of it (at least [`MIN_SLACK`]), evicting the oldest buffers first; so a process
//! holds about its peak working set, not its working set plus a fixed reserve. A fresh
//! allocation the pool cannot serve also evicts first, so the bound holds at every point.
//! [`release_pool`] frees everything pooled and forgets the mark.

use crate::scalar::Scalar;
use beit_engine::HostData;
use std::any::Any;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Buffers smaller than this are left to the system allocator (and not counted).
const MIN_BYTES: usize = 64 << 10;
/// The slack over the high-water mark is `high >> SLACK_SHIFT` (1/8) ...
const SLACK_SHIFT: u32 = 3;
/// ... and at least this much. Measured on a 30-step `beit tokenizer train` (mark 220 MiB,
/// buffers up to 36 MiB): floors up to 40 MiB leave ~15 pool misses a step (2 GB in all),
/// 64 MiB ~6 (0.4 GB); BEiT-base inference needs less (from 8 MiB the only misses are the
/// first forward's), but no slack at all thrashes (batch 8: 3.4 GB of misses).
const MIN_SLACK: usize = 64 << 20;
/// Environment variable that bounds the pooled bytes in MiB (0 turns pooling off), e.g.
/// for small devices; by default only the working-set bound applies.
pub(crate) const POOL_ENV: &str = "BEIT_CPU_POOL_MB";
/// At most this many buffers are kept (bounds the search on every take).
const MAX_BUFFERS: usize = 256;

/// A freed vector (`Vec<T>` for some [`Scalar`] `T`) and its capacity in bytes.
#[derive(Debug)]
struct Entry {
    bytes: usize,
    buf: Box<dyn Any + Send>,
}

/// The pooled buffers, oldest first, and the accounting that bounds them.
struct Pool {
    entries: Vec<Entry>,
    /// Total capacity of `entries` in bytes.
    pooled: usize,
    /// Bytes of adopted buffers not yet recycled.
    live: usize,
    /// The most `live` has been since the start (or the last [`Pool::release`]).
    high: usize,
    /// The explicit bound on `pooled` ([`POOL_ENV`]; `usize::MAX` when unset).
    cap: usize,
}

impl Pool {
    const fn new(cap: usize) -> Self {
        Pool { entries: Vec::new(), pooled: 0, live: 0, high: 0, cap }
    }

    /// The bound on live + pooled bytes for a high-water mark of `high`.
    fn limit(high: usize) -> usize {
        high.saturating_add((high >> SLACK_SHIFT).max(MIN_SLACK))
    }

    /// Evict the oldest buffers until the bounds hold with `extra` more bytes about to go
    /// live; the evicted buffers are returned, to be freed outside the lock.
    fn trim(&mut self, extra: usize) -> Vec<Entry> {
        let live = self.live.saturating_add(extra);
        let room = Self::limit(self.high.max(live)).saturating_sub(live).min(self.cap);
        let (mut n, mut left) = (0, self.pooled);
        while left > room || self.entries.len() - n > MAX_BUFFERS {
            left -= self.entries[n].bytes;
            n += 1;
        }
        self.pooled = left;
        self.entries.drain(..n).collect()
    }

    /// Count `bytes` as live.
    fn adopt(&mut self, bytes: usize) -> Vec<Entry> {
        self.live += bytes;
        self.high = self.high.max(self.live);
        self.trim(0)
    }

    /// Stop counting `bytes` as live (the buffer left the backend).
    fn disown(&mut self, bytes: usize) {
        self.live = self.live.saturating_sub(bytes);
    }

    /// A live buffer of `bytes` is back: keep it if the bounds allow, newest last.
    fn give(&mut self, bytes: usize, buf: Box<dyn Any + Send>) -> Vec<Entry> {
        self.disown(bytes);
        self.entries.push(Entry { bytes, buf });
        self.pooled += bytes;
        self.trim(0)
    }

    /// The best-fitting pooled `Vec<T>` with room for `len` elements (at most twice that).
    /// On a miss, makes room for the fresh vector the caller is about to allocate.
    fn take<T: Scalar>(&mut self, len: usize) -> Result<Vec<T>, Vec<Entry>> {
        let want = len * size_of::<T>();
        let best = (self.entries.iter().enumerate())
            .filter(|(_, e)| e.bytes >= want && e.bytes / 2 <= want && e.buf.is::<Vec<T>>())
            .min_by_key(|(_, e)| e.bytes);
        let Some((best, _)) = best else { return Err(self.trim(want)) };
        let entry = self.entries.remove(best);
        self.pooled -= entry.bytes;
        Ok(*entry.buf.downcast::<Vec<T>>().expect("checked by is::<Vec<T>>"))
    }

    /// Empty the pool and restart the high-water mark from what is live now.
    fn release(&mut self) -> Vec<Entry> {
        self.pooled = 0;
        self.high = self.live;
        std::mem::take(&mut self.entries)
    }
}

/// The bound on pooled bytes from [`POOL_ENV`], read once (a bad value is reported once and
/// ignored); `usize::MAX` when unset.
fn max_bytes() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| match parse_pool_mb(std::env::var(POOL_ENV).ok().as_deref()) {
        Ok(bytes) => bytes.unwrap_or(usize::MAX),
        Err(msg) => {
            tracing::warn!("{msg}; keeping the default (sized to the working set)");
            usize::MAX
        }
    })
}

/// Bytes for a [`POOL_ENV`] value (MiB); `None` (unset or blank) means no explicit bound.
fn parse_pool_mb(value: Option<&str>) -> Result<Option<usize>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => (v.parse::<usize>())
            .map(|mb| Some(mb.saturating_mul(1 << 20)))
            .map_err(|_| format!("{POOL_ENV}={:?} is not a whole number of MiB", value.unwrap_or_default())),
    }
}

/// The process-wide pool, or `None` when [`POOL_ENV`] turned pooling off.
fn lock() -> Option<MutexGuard<'static, Pool>> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    let cap = max_bytes();
    // The pool's state stays consistent even if a holder panicked.
    (cap > 0).then(|| POOL.get_or_init(|| Mutex::new(Pool::new(cap))).lock().unwrap_or_else(|e| e.into_inner()))
}

/// The capacity of the vector inside `data`, in bytes.
fn capacity_bytes(data: &HostData) -> usize {
    match data {
        HostData::F32(v) => v.capacity() * size_of::<f32>(),
        HostData::F64(v) => v.capacity() * size_of::<f64>(),
        HostData::BF16(v) => v.capacity() * size_of::<half::bf16>(),
        HostData::I64(v) => v.capacity() * size_of::<i64>(),
        HostData::U32(v) => v.capacity() * size_of::<u32>(),
        HostData::U8(v) | HostData::Bool(v) => v.capacity(),
    }
}

/// Run `f` on the pool when `bytes` is pool-sized and pooling is on, then free what it
/// evicted outside the lock.
fn with_pool(bytes: usize, f: impl FnOnce(&mut Pool) -> Vec<Entry>) {
    if bytes < MIN_BYTES {
        return;
    }
    let Some(mut pool) = lock() else { return };
    let evicted = f(&mut pool);
    drop((pool, evicted)); // the lock first, then the evicted buffers
}

/// Count the vector inside `data` as live: a `CpuStorage` now holds it.
pub(crate) fn adopt(data: &HostData) {
    with_pool(capacity_bytes(data), |pool| pool.adopt(capacity_bytes(data)));
}

/// Stop counting the vector inside `data` as live: it leaves the backend by value.
pub(crate) fn disown(data: &HostData) {
    with_pool(capacity_bytes(data), |pool| {
        pool.disown(capacity_bytes(data));
        Vec::new()
    });
}

/// Take back the (adopted) vector inside `data`, keeping it for reuse if the bounds allow.
pub(crate) fn recycle(data: HostData) {
    fn give<T: Scalar>(v: Vec<T>) {
        let bytes = v.capacity() * size_of::<T>();
        with_pool(bytes, |pool| pool.give(bytes, Box::new(v)));
    }
    match data {
        HostData::F32(v) => give(v),
        HostData::F64(v) => give(v),
        HostData::BF16(v) => give(v),
        HostData::I64(v) => give(v),
        HostData::U32(v) => give(v),
        HostData::U8(v) | HostData::Bool(v) => give(v),
    }
}

/// A pooled vector for `len` elements of `T`, if one fits.
fn take<T: Scalar>(len: usize) -> Option<Vec<T>> {
    let mut found = None;
    with_pool(len * size_of::<T>(), |pool| match pool.take::<T>(len) {
        Ok(v) => {
            found = Some(v);
            Vec::new()
        }
        Err(evicted) => evicted,
    });
    found
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

/// Takes back a scratch vector from [`reuse`] that never became a `CpuStorage`, keeping it
/// for reuse if the bounds allow: it is counted live for an instant (raising the
/// high-water mark to include it, as it was part of the working set), then returned.
pub(crate) fn give_back<T: Scalar>(v: Vec<T>) {
    let data = T::into_host(v);
    adopt(&data);
    recycle(data)
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

/// Free every buffer the CPU backend keeps for reuse, e.g. after an inference step when the
/// process will idle or do other work, and restart the pool's high-water mark from the
/// buffers live now. Later ops refill the pool up to their own working set.
pub fn release_pool() {
    if let Some(mut pool) = lock() {
        let freed = pool.release();
        drop(pool);
        drop(freed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    /// A boxed `Vec<f32>` of `bytes` capacity.
    fn buf(bytes: usize) -> Box<dyn Any + Send> {
        Box::new(Vec::<f32>::with_capacity(bytes / 4))
    }

    fn sizes(evicted: &[Entry]) -> Vec<usize> {
        evicted.iter().map(|e| e.bytes / MIB).collect()
    }

    #[test]
    fn fills_as_asked_and_skips_small_buffers() {
        let len = MIN_BYTES; // f64: 8 × MIN_BYTES bytes, pooled.
        drop(crate::CpuStorage::new(HostData::F64(vec![7.0; len])));
        let w = filled::<f64>(len - 3, 1.5);
        assert!(w.len() == len - 3 && w.iter().all(|&x| x == 1.5));
        drop(crate::CpuStorage::new(HostData::F64(w)));
        assert_eq!(reuse::<f64>(len + 5).len(), len + 5);
        // Small buffers are not pooled: a fresh small vector holds the default value.
        recycle(HostData::F32(vec![3.0; 4]));
        assert_eq!(reuse::<f32>(4), [0.0; 4]);
    }

    #[test]
    fn keeps_live_plus_pooled_within_the_high_water_mark_and_slack() {
        let mut p = Pool::new(usize::MAX);
        // A working set of 800 MiB in 200 MiB buffers: the mark is 800, the slack 100.
        for _ in 0..4 {
            assert!(p.adopt(200 * MIB).is_empty());
        }
        assert_eq!((p.live, p.high, p.pooled), (800 * MIB, 800 * MIB, 0));
        // All come back: all are kept (800 ≤ 900).
        for _ in 0..4 {
            assert!(p.give(200 * MIB, buf(200 * MIB)).is_empty());
        }
        assert_eq!((p.live, p.pooled, p.entries.len()), (0, 800 * MIB, 4));
        // Fifteen 80 MiB buffers that the pool cannot serve (200 is over twice 80): each
        // miss makes room first, so live + pooled stays within 900 MiB while the mark
        // holds, within the growing mark's bound after, and the 200 MiB buffers go.
        let mut evicted = Vec::new();
        for i in 0..15 {
            evicted.extend(sizes(&p.take::<f32>(80 * MIB / 4).map(|_| ()).unwrap_err()));
            assert!(p.adopt(80 * MIB).is_empty(), "the miss already made room");
            assert!(p.live + p.pooled <= Pool::limit(p.high), "step {i}: {} + {}", p.live, p.pooled);
            if p.live <= 800 * MIB {
                assert!(p.live + p.pooled <= 900 * MIB, "step {i}: {} + {}", p.live, p.pooled);
            }
        }
        assert_eq!(evicted, [200; 4]);
        // 1200 MiB live is a new mark (1350 with its slack); nothing is pooled any more.
        assert_eq!((p.live, p.high, p.pooled), (1200 * MIB, 1200 * MIB, 0));
        // Returned, they are all kept again.
        for _ in 0..15 {
            assert!(p.give(80 * MIB, buf(80 * MIB)).is_empty());
        }
        assert_eq!((p.live, p.pooled), (0, 1200 * MIB));
        // A take that fits is served from the pool and leaves the accounting alone ...
        let v = p.take::<f32>(60 * MIB / 4).unwrap();
        assert_eq!((v.capacity() * 4, p.pooled, p.live), (80 * MIB, 1120 * MIB, 0));
        // ... but not as another element type, nor from a buffer over twice the size.
        assert!(p.take::<f64>(60 * MIB / 8).unwrap_err().is_empty());
        assert!(p.take::<f32>(30 * MIB / 4).unwrap_err().is_empty());
        assert_eq!(p.entries.len(), 14);
    }

    #[test]
    fn a_buffer_going_live_over_the_bound_evicts_the_oldest_first() {
        let mut p = Pool::new(usize::MAX);
        p.adopt(80 * MIB); // The mark: 80 MiB, plus the 64 MiB floor of slack.
        p.give(80 * MIB, buf(80 * MIB));
        // 70 MiB goes live from outside the pool (e.g. a host upload): 70 + 80 > 144.
        assert_eq!(sizes(&p.adopt(70 * MIB)), [80]);
        assert_eq!((p.live, p.pooled, p.high), (70 * MIB, 0, 80 * MIB));
        // Small jobs keep MIN_SLACK over their mark: here 1 MiB live, 64 buffers pooled.
        let mut p = Pool::new(usize::MAX);
        p.adopt(MIB);
        let n = MIN_SLACK / MIB;
        for i in 0..n + 4 {
            let evicted = p.give(MIB, buf(MIB)).len() + p.adopt(MIB).len();
            assert_eq!(evicted, usize::from(i >= n), "buffer {i}");
        }
        assert_eq!((p.live, p.pooled, p.high), (MIB, MIN_SLACK, MIB));
    }

    #[test]
    fn the_explicit_bound_and_the_buffer_count_still_apply() {
        let mut p = Pool::new(64 * MIB);
        p.adopt(100 * MIB);
        assert_eq!(sizes(&p.give(100 * MIB, buf(100 * MIB))), [100]);
        assert_eq!((p.live, p.pooled, p.high), (0, 0, 100 * MIB));
        let mut p = Pool::new(usize::MAX);
        for _ in 0..MAX_BUFFERS + 10 {
            p.adopt(MIN_BYTES);
        }
        let evicted: usize = (0..MAX_BUFFERS + 10).map(|_| p.give(MIN_BYTES, buf(MIN_BYTES)).len()).sum();
        assert_eq!((evicted, p.entries.len(), p.pooled), (10, MAX_BUFFERS, MAX_BUFFERS * MIN_BYTES));
    }

    #[test]
    fn release_empties_the_pool_and_restarts_the_mark() {
        let mut p = Pool::new(usize::MAX);
        for _ in 0..3 {
            p.adopt(100 * MIB);
        }
        p.give(100 * MIB, buf(100 * MIB));
        p.give(100 * MIB, buf(100 * MIB));
        assert_eq!((p.live, p.pooled, p.high), (100 * MIB, 200 * MIB, 300 * MIB));
        assert_eq!(sizes(&p.release()), [100, 100]);
        assert_eq!((p.live, p.pooled, p.high, p.entries.len()), (100 * MIB, 0, 100 * MIB, 0));
        // The new mark (100 MiB, 64 slack) bounds what is kept: the last 100 MiB comes
        // back and is kept, but goes when 70 MiB goes live (under the old mark it would stay).
        assert!(p.give(100 * MIB, buf(100 * MIB)).is_empty());
        assert_eq!(sizes(&p.adopt(70 * MIB)), [100]);
        assert_eq!((p.live, p.pooled, p.high), (70 * MIB, 0, 100 * MIB));
    }

    #[test]
    fn storage_adopts_and_recycles_through_the_process_wide_pool() {
        // Other tests share the process-wide pool, so only check what they cannot undo.
        let len = 3 * MIN_BYTES;
        let v = vec![7.0f64; len];
        let ptr = v.as_ptr();
        drop(crate::CpuStorage::new(HostData::F64(v)));
        // A later take of a size no other test uses finds this very buffer.
        let w = reuse::<f64>(len - 7);
        assert_eq!((w.as_ptr(), w.len(), w[0]), (ptr, len - 7, 7.0));
        drop(crate::CpuStorage::new(HostData::F64(w)));
        release_pool();
    }

    #[test]
    fn the_bound_comes_from_the_environment_in_mib() {
        assert_eq!(parse_pool_mb(None), Ok(None));
        assert_eq!(parse_pool_mb(Some("")), Ok(None));
        assert_eq!(parse_pool_mb(Some("  ")), Ok(None));
        assert_eq!(parse_pool_mb(Some("0")), Ok(Some(0)));
        assert_eq!(parse_pool_mb(Some(" 64 ")), Ok(Some(64 << 20)));
        assert_eq!(parse_pool_mb(Some("99999999999999999999")).map_err(|_| ()), Err(()));
        assert!(parse_pool_mb(Some("lots")).unwrap_err().contains("BEIT_CPU_POOL_MB=\"lots\""));
        assert!(parse_pool_mb(Some("-1")).is_err());
    }
}
