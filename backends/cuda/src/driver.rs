//! The CUDA driver side of one device: context, non-blocking stream, the PTX modules
//! (loaded once) and kernel launches.

use beit_engine::{Error, Result};
use cust::context::Context;
use cust::device::Device as CuDevice;
use cust::error::CudaError;
use cust::module::Module;
use cust::stream::{Stream, StreamFlags};
use cust::sys;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

/// The kernel files (`kernels/<name>.cu`), compiled to PTX by the build script.
const MODULES: [(&str, &str); 9] = [
    ("elementwise", include_str!(concat!(env!("OUT_DIR"), "/elementwise.ptx"))),
    ("reduce", include_str!(concat!(env!("OUT_DIR"), "/reduce.ptx"))),
    ("rows", include_str!(concat!(env!("OUT_DIR"), "/rows.ptx"))),
    ("loss", include_str!(concat!(env!("OUT_DIR"), "/loss.ptx"))),
    ("index", include_str!(concat!(env!("OUT_DIR"), "/index.ptx"))),
    ("conv", include_str!(concat!(env!("OUT_DIR"), "/conv.ptx"))),
    ("random", include_str!(concat!(env!("OUT_DIR"), "/random.ptx"))),
    ("optim", include_str!(concat!(env!("OUT_DIR"), "/optim.ptx"))),
    ("gemm", include_str!(concat!(env!("OUT_DIR"), "/gemm.ptx"))),
];

/// Threads per block of the elementwise and row kernels.
pub(crate) const BLOCK: u32 = 256;

/// A loaded kernel (a driver handle, valid while its module is loaded: for the process).
#[derive(Clone, Copy)]
struct Kernel(sys::CUfunction);
// SAFETY: a CUfunction is an immutable driver handle, usable from any thread.
unsafe impl Send for Kernel {}

/// Launch geometry: grid and block sizes (x, y, z) and dynamic shared memory.
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

/// Context, stream and kernels of one device.
pub(crate) struct Driver {
    /// `cuda:N`.
    pub name: String,
    ctx: Context,
    stream: Stream,
    modules: Vec<(&'static str, Module)>,
    kernels: Mutex<HashMap<String, Kernel>>,
}

/// The result of a raw driver call: `Ok` on success, else the driver's name and text of the
/// error code, naming the device and what failed.
pub(crate) fn check(device: &str, what: &str, r: sys::CUresult) -> Result<()> {
    if r == sys::CUresult::CUDA_SUCCESS {
        return Ok(());
    }
    let text = |f: unsafe extern "C" fn(sys::CUresult, *mut *const std::os::raw::c_char) -> sys::CUresult| {
        let mut p: *const std::os::raw::c_char = std::ptr::null();
        // SAFETY: the driver returns a static NUL-terminated string (or leaves p null).
        unsafe {
            if f(r, &mut p) == sys::CUresult::CUDA_SUCCESS && !p.is_null() {
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            } else {
                "unknown".to_string()
            }
        }
    };
    Err(Error::Backend {
        backend: device.to_string(),
        msg: format!("{what}: {} ({}, code {})", text(sys::cuGetErrorString), text(sys::cuGetErrorName), r as i32),
    })
}

/// A driver error as the engine's error, naming the device and what failed.
pub(crate) fn cuda_error(device: &str, what: &str, e: CudaError) -> Error {
    Error::Backend { backend: device.to_string(), msg: format!("{what}: {e} ({e:?})") }
}

impl Driver {
    /// Initialise the driver, retain device `ordinal`'s primary context, create a
    /// non-blocking stream and load the PTX modules.
    pub fn new(ordinal: usize) -> Result<Driver> {
        let name = format!("cuda:{ordinal}");
        let fail = |what: &str, e: CudaError| cuda_error(&name, what, e);
        cust::init(cust::CudaFlags::empty()).map_err(|e| fail("cuInit (is an NVIDIA driver installed?)", e))?;
        let count = CuDevice::num_devices().map_err(|e| fail("counting devices", e))?;
        if ordinal >= count as usize {
            return Err(Error::Device { spec: name, msg: format!("only {count} CUDA device(s) present") });
        }
        let device = CuDevice::get_device(ordinal as u32).map_err(|e| fail("opening the device", e))?;
        let ctx = Context::new(device).map_err(|e| fail("retaining the primary context", e))?;
        let stream = Stream::new(StreamFlags::NON_BLOCKING, None).map_err(|e| fail("creating a stream", e))?;
        let modules = MODULES
            .iter()
            .map(|&(m, ptx)| Ok((m, Module::from_ptx(ptx, &[]).map_err(|e| fail(&format!("loading {m}.ptx"), e))?)))
            .collect::<Result<_>>()?;
        Ok(Driver { name, ctx, stream, modules, kernels: Mutex::new(HashMap::new()) })
    }

    /// Make this device's context current on the calling thread.
    pub fn enter(&self) -> Result<()> {
        // SAFETY: the context handle stays valid while `self.ctx` is alive.
        self.check("cuCtxSetCurrent", unsafe { sys::cuCtxSetCurrent(self.ctx.as_raw()) })
    }

    /// A driver error of this device.
    pub fn error(&self, what: &str, e: CudaError) -> Error {
        cuda_error(&self.name, what, e)
    }

    /// The result of a raw driver call on this device.
    pub fn check(&self, what: &str, r: sys::CUresult) -> Result<()> {
        check(&self.name, what, r)
    }

    /// The raw stream handle (for cuBLAS and copies).
    pub fn stream(&self) -> sys::CUstream {
        self.stream.as_inner()
    }

    /// Wait for the stream; reports errors of kernels run since the last wait.
    pub fn synchronize(&self) -> Result<()> {
        self.enter()?;
        self.stream.synchronize().map_err(|e| self.error("stream synchronize (a kernel failed)", e))
    }

    fn kernel(&self, module: &str, name: &str) -> Result<Kernel> {
        let mut cache = self.kernels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&k) = cache.get(name) {
            return Ok(k);
        }
        let m = self.modules.iter().find(|(n, _)| *n == module).map(|(_, m)| m).ok_or_else(|| Error::Backend {
            backend: self.name.clone(),
            msg: format!("no kernel module `{module}`"),
        })?;
        let f = m.get_function(name).map_err(|e| self.error(&format!("kernel `{name}` in {module}.ptx"), e))?;
        let k = Kernel(f.to_raw());
        cache.insert(name.to_string(), k);
        Ok(k)
    }

    /// Launch `module::name` on the stream with the given argument pointers.
    ///
    /// # Safety
    /// `args` must point at values whose types and order match the kernel's parameters, and
    /// every device pointer among them must be valid for the accesses the kernel makes.
    pub unsafe fn launch(&self, module: &str, name: &str, g: Grid, args: &[*mut c_void]) -> Result<()> {
        self.enter()?;
        let k = self.kernel(module, name)?;
        let r = sys::cuLaunchKernel(
            k.0,
            g.grid.0,
            g.grid.1,
            g.grid.2,
            g.block.0,
            g.block.1,
            g.block.2,
            0,
            self.stream.as_inner(),
            args.as_ptr() as *mut *mut c_void,
            std::ptr::null_mut(),
        );
        self.check(&format!("launching `{name}`"), r)
    }
}

/// Kernel arguments: an array of pointers to each value, in the kernel's parameter order.
macro_rules! args {
    ($($x:expr),* $(,)?) => {
        [$(&$x as *const _ as *mut std::ffi::c_void),*]
    };
}
pub(crate) use args;
