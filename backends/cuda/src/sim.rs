//! [`Driver`] on the CPU (feature `cuda-sim`): the kernels of `kernels/*.cu`, compiled by
//! the host C++ compiler against `kernels/sim/cuda_sim.h`, run by `kernels/sim/runtime.cpp`
//! with one fiber per CUDA thread. Device memory is host memory, and the simulator checks
//! what a GPU would only get wrong silently:
//! - every launch's argument count and sizes against the kernel's parameters;
//! - launch shapes against CUDA's limits, and barriers or shuffles some threads never reach;
//! - writes past either end of a buffer (each buffer sits between guard bytes, checked
//!   after every launch, naming the kernel and the first changed byte);
//! - host copies outside a live buffer;
//! - reads of memory no kernel wrote: every buffer handed out is filled with 0xFF bytes
//!   (NaN in floats, −1 in integers).
//!
//! There is no cuBLAS: matmul runs the built-in GEMM kernel. The device has
//! `BEIT_SIM_MEMORY_MB` of memory (default 4096), so out-of-memory paths can be tested.
//! `BEIT_CUDA_DEBUG=1` prints every launch to stderr, as on the GPU.

use crate::driver::{Arg, Driver, Grid};
use beit_engine::{Error, Result};
use std::alloc::Layout;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Mutex;

/// A kernel in the simulator's table (`beit_sim::Entry`).
#[repr(C)]
struct Entry {
    name: *const c_char,
    thunk: *const c_void,
    params: u32,
    sizes: *const u16,
}

extern "C" {
    fn beit_sim_find(module: *const c_char, name: *const c_char) -> *const Entry;
    fn beit_sim_launch(
        kernel: *const Entry,
        grid: *const u32,
        block: *const u32,
        args: *const *mut c_void,
        err: *mut c_char,
        cap: usize,
    ) -> i32;
}

/// Guard bytes before and after every buffer (and the buffers' alignment, as cudaMalloc's).
const GUARD: usize = 256;
/// The guard bytes' value.
const CANARY: u8 = 0xA5;
/// How many guard bytes after a buffer's used part are checked after each launch.
const CHECKED_SLACK: usize = 256;

/// One allocation: `GUARD` bytes, the buffer, `GUARD` bytes.
struct Buffer {
    bytes: usize,
    /// The part in use by its current tensor (the rest, up to `bytes`, is guarded too).
    used: usize,
}

/// Live buffers by device address (the address of their first byte).
#[derive(Default)]
struct Memory {
    live: BTreeMap<u64, Buffer>,
    total: usize,
}

/// The simulated device `cuda-sim:N`.
pub(crate) struct SimDriver {
    name: String,
    capacity: usize,
    memory: Mutex<Memory>,
    kernels: Mutex<HashMap<(String, String), usize>>,
    /// `BEIT_CUDA_DEBUG=1`: print each launch.
    debug: bool,
}

fn layout(bytes: usize) -> Layout {
    Layout::from_size_align(bytes + 2 * GUARD, GUARD).expect("buffer sizes fit a Layout")
}

impl SimDriver {
    /// Device `ordinal` with `BEIT_SIM_MEMORY_MB` MiB of memory.
    pub fn new(ordinal: usize) -> Result<SimDriver> {
        let name = format!("cuda-sim:{ordinal}");
        let mb = match std::env::var("BEIT_SIM_MEMORY_MB") {
            Ok(v) => v.trim().parse::<usize>().map_err(|_| Error::Device {
                spec: name.clone(),
                msg: format!("BEIT_SIM_MEMORY_MB={v:?} is not a whole number of MiB"),
            })?,
            Err(_) => 4096,
        };
        let debug = std::env::var("BEIT_CUDA_DEBUG").is_ok_and(|v| v == "1");
        Ok(SimDriver { name, capacity: mb << 20, memory: Mutex::default(), kernels: Mutex::default(), debug })
    }

    fn err(&self, msg: String) -> Error {
        Error::Backend { backend: self.name.clone(), msg }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kernel `module::name`, looked up once.
    fn kernel(&self, module: &str, name: &str) -> Result<&'static Entry> {
        let mut cache = self.kernels.lock().unwrap_or_else(|p| p.into_inner());
        let key = (module.to_string(), name.to_string());
        if let Some(&e) = cache.get(&key) {
            // SAFETY: entries are statics of the simulator's library.
            return Ok(unsafe { &*(e as *const Entry) });
        }
        let (m, n) = (CString::new(module).expect("module names have no NUL"), CString::new(name).expect("kernel names have no NUL"));
        // SAFETY: two NUL-terminated strings; the result is null or a static entry.
        let e = unsafe { beit_sim_find(m.as_ptr(), n.as_ptr()) };
        if e.is_null() {
            return Err(self.err(format!("no kernel `{name}` in {module}.cu")));
        }
        cache.insert(key, e as usize);
        // SAFETY: as above.
        Ok(unsafe { &*e })
    }

    /// Error unless `args` match the kernel's parameter count and sizes.
    fn check_args(&self, module: &str, e: &Entry, name: &str, args: &[Arg]) -> Result<()> {
        // SAFETY: `sizes` has `params` entries (plus a 0).
        let want = unsafe { std::slice::from_raw_parts(e.sizes, e.params as usize) };
        let got: Vec<usize> = args.iter().map(|a| a.size).collect();
        if want.len() != got.len() || want.iter().zip(&got).any(|(&w, &g)| w as usize != g) {
            return Err(self.err(format!(
                "launching `{name}` of {module}.cu: the kernel takes {} parameters of sizes {want:?} bytes, the launch \
                 passes {} of sizes {got:?}",
                want.len(),
                got.len()
            )));
        }
        Ok(())
    }

    /// The live buffer holding `[ptr, ptr + bytes)`, or an error naming the copy.
    fn check_range(&self, what: &str, ptr: u64, bytes: usize) -> Result<()> {
        let mem = self.memory();
        let inside = mem.live.range(..=ptr).next_back().is_some_and(|(&base, b)| ptr + bytes as u64 <= base + b.bytes as u64);
        if !inside {
            return Err(self.err(format!("{what}: {bytes} bytes at {ptr:#x} are not inside one live device buffer")));
        }
        Ok(())
    }

    /// After a launch: the first guard byte a kernel changed, as an error naming it (the
    /// guard is restored).
    fn check_guards(&self, module: &str, name: &str, g: Grid) -> Result<()> {
        let mem = self.memory();
        for (&base, b) in &mem.live {
            let p = base as *mut u8;
            let slack = CHECKED_SLACK.min(b.bytes - b.used);
            // SAFETY: both guards and the slack lie inside the allocation `layout(b.bytes)` at p − GUARD.
            let (front, slack, back) = unsafe {
                (
                    std::slice::from_raw_parts_mut(p.sub(GUARD), GUARD),
                    std::slice::from_raw_parts_mut(p.add(b.used), slack),
                    std::slice::from_raw_parts_mut(p.add(b.bytes), GUARD),
                )
            };
            let before = front.iter().rposition(|&x| x != CANARY).map(|i| GUARD - i);
            let after = slack.iter().position(|&x| x != CANARY).or_else(|| {
                back.iter().position(|&x| x != CANARY).map(|i| b.bytes - b.used + i)
            });
            if before.is_none() && after.is_none() {
                continue;
            }
            front.fill(CANARY);
            slack.fill(CANARY);
            back.fill(CANARY);
            let at = match (before, after) {
                (Some(k), _) => format!("{k} bytes before its start"),
                (_, Some(k)) => format!("byte {k} past its end"),
                (None, None) => unreachable!("a changed guard byte was found"),
            };
            return Err(self.err(format!(
                "kernel `{name}` of {module}.cu ({g:?}) wrote outside a device buffer of {} bytes at {base:#x}: {at}",
                b.used
            )));
        }
        Ok(())
    }
}

impl Driver for SimDriver {
    fn name(&self) -> &str {
        &self.name
    }

    fn enter(&self) -> Result<()> {
        Ok(())
    }

    fn alloc(&self, bytes: usize) -> Result<u64> {
        let mut mem = self.memory();
        if mem.total + bytes > self.capacity {
            return Err(self.err(format!(
                "cuMemAlloc: out of memory ({bytes} bytes asked, {} of {} in use on the simulated device)",
                mem.total, self.capacity
            )));
        }
        // SAFETY: the layout is non-zero-sized.
        let p = unsafe { std::alloc::alloc(layout(bytes)) };
        if p.is_null() {
            return Err(self.err(format!("cuMemAlloc: the host has no room for {bytes} bytes")));
        }
        // SAFETY: the allocation holds bytes + 2·GUARD bytes.
        unsafe { std::ptr::write_bytes(p, CANARY, bytes + 2 * GUARD) };
        let base = p as u64 + GUARD as u64;
        mem.total += bytes;
        mem.live.insert(base, Buffer { bytes, used: 0 });
        Ok(base)
    }

    fn free(&self, ptr: u64) -> Result<()> {
        let mut mem = self.memory();
        let b = mem.live.remove(&ptr).ok_or_else(|| self.err(format!("cuMemFree: {ptr:#x} is not a live buffer")))?;
        mem.total -= b.bytes;
        // SAFETY: allocated in `alloc` with this layout.
        unsafe { std::alloc::dealloc((ptr as usize - GUARD) as *mut u8, layout(b.bytes)) };
        Ok(())
    }

    fn mem_info(&self) -> Result<(usize, usize)> {
        Ok((self.capacity - self.memory().total, self.capacity))
    }

    unsafe fn upload(&self, dst: u64, src: *const u8, bytes: usize) -> Result<()> {
        self.check_range("upload", dst, bytes)?;
        std::ptr::copy_nonoverlapping(src, dst as *mut u8, bytes);
        Ok(())
    }

    unsafe fn download(&self, dst: *mut u8, src: u64, bytes: usize) -> Result<()> {
        self.check_range("download", src, bytes)?;
        std::ptr::copy_nonoverlapping(src as *const u8, dst, bytes);
        Ok(())
    }

    unsafe fn launch(&self, module: &str, name: &str, g: Grid, args: &[Arg]) -> Result<()> {
        let e = self.kernel(module, name)?;
        self.check_args(module, e, name, args)?;
        if self.debug {
            eprintln!("cuda launch: {module}::{name} grid {:?} block {:?}", g.grid, g.block);
        }
        let ptrs: Vec<*mut c_void> = args.iter().map(|a| a.ptr).collect();
        let (grid, block) = ([g.grid.0, g.grid.1, g.grid.2], [g.block.0, g.block.1, g.block.2]);
        let mut msg = [0 as c_char; 1024];
        if beit_sim_launch(e, grid.as_ptr(), block.as_ptr(), ptrs.as_ptr(), msg.as_mut_ptr(), msg.len()) != 0 {
            let text = CStr::from_ptr(msg.as_ptr()).to_string_lossy();
            return Err(self.err(format!("{text} ({module}.cu, {g:?})")));
        }
        self.check_guards(module, name, g)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn blas_stream(&self) -> Option<*mut c_void> {
        None
    }

    fn lend(&self, ptr: u64, used: usize) {
        let mut mem = self.memory();
        if let Some(b) = mem.live.get_mut(&ptr) {
            // SAFETY: [ptr, ptr + b.bytes) is the live buffer.
            unsafe {
                std::ptr::write_bytes(ptr as *mut u8, 0xFF, used);
                std::ptr::write_bytes((ptr as *mut u8).add(used), CANARY, b.bytes - used);
            }
            b.used = used;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::args;

    fn buffer(d: &SimDriver, bytes: usize) -> u64 {
        let p = d.alloc(bytes).expect("alloc");
        d.lend(p, bytes);
        p
    }

    fn read_i32(d: &SimDriver, p: u64, n: usize) -> Vec<i32> {
        let mut v = vec![0i32; n];
        // SAFETY: `p` holds at least `n` i32 (checked by the driver).
        unsafe { d.download(v.as_mut_ptr().cast(), p, 4 * n).expect("download") };
        v
    }

    fn block(threads: u32) -> Grid {
        Grid { grid: (1, 1, 1), block: (threads, 1, 1) }
    }

    #[test]
    fn warp_shuffles_exchange_values_between_lanes() {
        let d = SimDriver::new(0).unwrap();
        let p = buffer(&d, 4 * 64);
        unsafe { d.launch("selftest", "warp_sum", block(64), &args![p]) }.unwrap();
        let want: Vec<i32> = (0..64).map(|i| if i < 32 { 496 } else { 496 + 32 * 32 }).collect();
        assert_eq!(read_i32(&d, p, 64), want);
    }

    #[test]
    fn misuses_are_reported_with_the_kernel_and_block() {
        let d = SimDriver::new(0).unwrap();
        let p = buffer(&d, 4 * 64);
        let e = unsafe { d.launch("selftest", "sync_in_branch", block(64), &args![p]) }.unwrap_err().to_string();
        assert!(e.contains("`sync_in_branch` block (0, 0, 0)") && e.contains("32 wait at __syncthreads, 32 have returned"), "{e}");
        let e = unsafe { d.launch("selftest", "warp_sum", block(48), &args![p]) }.unwrap_err().to_string();
        assert!(e.contains("partial warp") && e.contains("block of 48 threads"), "{e}");
        let e = unsafe { d.launch("selftest", "warp_sum", block(2048), &args![p]) }.unwrap_err().to_string();
        assert!(e.contains("exceeds CUDA's limits"), "{e}");
        let small = 3i32;
        let e = unsafe { d.launch("selftest", "write_one_past", block(32), &args![small, p]) }.unwrap_err().to_string();
        assert!(e.contains("sizes [8, 8] bytes") && e.contains("sizes [4, 8]"), "{e}");
        let e = unsafe { d.launch("selftest", "no_such_kernel", block(32), &args![p]) }.unwrap_err().to_string();
        assert!(e.contains("no kernel `no_such_kernel` in selftest.cu"), "{e}");
    }

    #[test]
    fn writes_past_a_buffer_are_caught_and_the_guard_restored() {
        let d = SimDriver::new(0).unwrap();
        let p = buffer(&d, 4 * 100);
        let n = 100i64;
        let e = unsafe { d.launch("selftest", "write_one_past", block(128), &args![n, p]) }.unwrap_err().to_string();
        assert!(e.contains("`write_one_past`") && e.contains("buffer of 400 bytes") && e.contains("byte 0 past its end"), "{e}");
        let ok = 99i64;
        unsafe { d.launch("selftest", "write_one_past", block(128), &args![ok, p]) }.unwrap();
        let mut host = [0u8; 8];
        let e = unsafe { d.download(host.as_mut_ptr(), p + 396, 8) }.unwrap_err().to_string();
        assert!(e.contains("not inside one live device buffer"), "{e}");
    }

    #[test]
    fn a_missing_barrier_reads_stale_shared_memory() {
        let d = SimDriver::new(0).unwrap();
        let p = buffer(&d, 4 * 256);
        let (salt, with, without) = (1000i32, 1i32, 0i32);
        unsafe { d.launch("selftest", "shared_handoff", block(256), &args![salt, with, p]) }.unwrap();
        let want: Vec<i32> = (0..256).map(|i| 1000 + (i + 1) % 256).collect();
        assert_eq!(read_i32(&d, p, 256), want);
        let salt = 5000i32;
        unsafe { d.launch("selftest", "shared_handoff", block(256), &args![salt, without, p]) }.unwrap();
        let got = read_i32(&d, p, 256);
        let stale = got.iter().zip(0..).filter(|&(&g, i)| g != 5000 + (i + 1) % 256).count();
        assert!(stale > 0, "every thread saw its neighbour's write without a barrier");
    }

    #[test]
    fn memory_is_bounded_and_new_buffers_are_poisoned() {
        let d = SimDriver { capacity: 1 << 20, ..SimDriver::new(0).unwrap() };
        let p = buffer(&d, 1000);
        assert_eq!(read_i32(&d, p, 4), vec![-1; 4]);
        let e = d.alloc(1 << 20).unwrap_err().to_string();
        assert!(e.contains("out of memory") && e.contains("1048576 bytes asked"), "{e}");
        assert_eq!(d.mem_info().unwrap(), ((1 << 20) - 1000, 1 << 20));
        d.free(p).unwrap();
        assert!(d.free(p).is_err());
    }
}
