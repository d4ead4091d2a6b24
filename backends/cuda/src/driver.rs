//! The driver calls the backend makes (memory, copies, kernel launches, stream waits), as
//! one trait with two implementations: `cust_driver` on a real GPU (feature `cuda`)
//! and `sim` on CPU threads (feature `cuda-sim`). Everything above this trait (the
//! allocator, every op's launch code) is the same for both.

use beit_engine::Result;
use std::ffi::c_void;

/// Threads per block of the elementwise and row kernels.
pub(crate) const BLOCK: u32 = 256;

/// Launch geometry: grid and block sizes (x, y, z).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
}

impl Grid {
    /// A grid-stride launch over `n` elements: 256-thread blocks, at most 65 536 blocks.
    pub fn elements(n: usize) -> Grid {
        let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 16) as u32;
        Grid { grid: (blocks, 1, 1), block: (BLOCK, 1, 1) }
    }
    /// One block of `threads` per row (grid-stride over rows beyond 65 535).
    pub fn rows(rows: usize, threads: u32) -> Grid {
        Grid { grid: (rows.clamp(1, 65_535) as u32, 1, 1), block: (threads, 1, 1) }
    }
    /// Blocks of 32x8 threads, one per 32 neighbouring columns.
    pub fn columns(cols: usize) -> Grid {
        Grid { grid: (cols.div_ceil(32).clamp(1, 65_535) as u32, 1, 1), block: (32, 8, 1) }
    }
}

/// Threads per block for a row kernel over rows of `d` elements: a multiple of 32, ≤ 256.
pub(crate) fn row_threads(d: usize) -> u32 {
    (d.next_power_of_two().clamp(32, BLOCK as usize)) as u32
}

/// One kernel argument: a pointer to its value and the value's size in bytes (the
/// simulator checks sizes against the kernel's parameters; the GPU only gets the pointers).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arg {
    pub ptr: *mut c_void,
    #[cfg_attr(not(feature = "cuda-sim"), allow(dead_code))]
    pub size: usize,
}

/// Kernel arguments in the kernel's parameter order: `args![n, ptr, ...]` borrows each value.
macro_rules! args {
    ($($x:expr),* $(,)?) => {
        [$($crate::driver::Arg { ptr: &$x as *const _ as *mut std::ffi::c_void, size: std::mem::size_of_val(&$x) }),*]
    };
}
pub(crate) use args;

/// One device's driver: device memory, host↔device copies, launches on one stream.
/// Device addresses are `u64`; copies and launches run in stream order.
pub(crate) trait Driver: Send + Sync {
    /// `cuda:N` (the simulator says so in its name).
    fn name(&self) -> &str;

    /// Make this device current on the calling thread (before library calls such as cuBLAS).
    fn enter(&self) -> Result<()>;

    /// `bytes` of fresh device memory; an error when the device has no room.
    fn alloc(&self, bytes: usize) -> Result<u64>;

    /// Give back memory from [`Driver::alloc`].
    fn free(&self, ptr: u64) -> Result<()>;

    /// A buffer from [`Driver::alloc`] (fresh or reused) now holds a tensor of `used` bytes.
    /// The simulator fills those bytes with a poison pattern and guards the rest.
    fn lend(&self, _ptr: u64, _used: usize) {}

    /// Free and total device memory in bytes.
    fn mem_info(&self) -> Result<(usize, usize)>;

    /// Copy `bytes` from host memory to device address `dst`, in stream order.
    ///
    /// # Safety
    /// `src` must hold `bytes` readable bytes and `dst` must address `bytes` of live memory.
    unsafe fn upload(&self, dst: u64, src: *const u8, bytes: usize) -> Result<()>;

    /// Copy `bytes` from device address `src` to host memory, in stream order; the data is
    /// there after the next [`Driver::synchronize`].
    ///
    /// # Safety
    /// `dst` must have room for `bytes` until then, and `src` must address `bytes` of live memory.
    unsafe fn download(&self, dst: *mut u8, src: u64, bytes: usize) -> Result<()>;

    /// Launch kernel `name` of kernel file `module` with the given arguments.
    ///
    /// # Safety
    /// `args` must match the kernel's parameters in order and type, and every device address
    /// among them must be valid for the accesses the kernel makes.
    unsafe fn launch(&self, module: &str, name: &str, g: Grid, args: &[Arg]) -> Result<()>;

    /// Wait for the stream; reports errors of kernels run since the last wait.
    fn synchronize(&self) -> Result<()>;

    /// The raw stream handle cuBLAS should use, or `None` where cuBLAS cannot run.
    fn blas_stream(&self) -> Option<*mut c_void>;
}
