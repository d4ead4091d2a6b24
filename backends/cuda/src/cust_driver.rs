//! [`Driver`] on a real GPU through `cust`: the device's primary context, one non-blocking
//! stream, the PTX modules (loaded once) and kernel launches. `BEIT_CUDA_DEBUG=1` prints every
//! launch to stderr and waits after it, so a failing kernel is named in the error (the GPU
//! check reruns failed cases this way).

use crate::driver::{Arg, Driver, Grid};
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
const MODULES: [(&str, &str); 10] = [
    ("memory", include_str!(concat!(env!("OUT_DIR"), "/memory.ptx"))),
    ("elementwise", include_str!(concat!(env!("OUT_DIR"), "/elementwise.ptx"))),
    ("reduce", include_str!(concat!(env!("OUT_DIR"), "/reduce.ptx"))),
    ("rows", include_str!(concat!(env!("OUT_DIR"), "/rows.ptx"))),
    ("loss", include_str!(concat!(env!("OUT_DIR"), "/loss.ptx"))),
    ("index", include_str!(concat!(env!("OUT_DIR"), "/index.ptx"))),
    ("conv", include_str!(concat!(env!("OUT_DIR"), "/conv.ptx"))),
    ("random", include_str!(concat!(env!("OUT_DIR"), "/random.ptx"))),
    ("optim", include_str!(concat!(env!("OUT_DIR"), "/optim.ptx"))),
    ("matmul", include_str!(concat!(env!("OUT_DIR"), "/matmul.ptx"))),
];

/// Most arguments a launch passes (our kernels take at most 10).
const MAX_ARGS: usize = 16;

/// A loaded kernel (a driver handle, valid while its module is loaded: for the process).
#[derive(Clone, Copy)]
struct Kernel(sys::CUfunction);
// SAFETY: a CUfunction is an immutable driver handle, usable from any thread.
unsafe impl Send for Kernel {}

/// Context, stream and kernels of one device.
pub(crate) struct CustDriver {
    /// `cuda:N`.
    name: String,
    ctx: Context,
    stream: Stream,
    modules: Vec<(&'static str, Module)>,
    kernels: Mutex<HashMap<String, Kernel>>,
    /// `BEIT_CUDA_DEBUG=1`: print and synchronize after each launch.
    debug: bool,
}

/// The result of a raw driver call: `Ok` on success, else the driver's name and text of the
/// error code, naming the device and what failed.
fn check(device: &str, what: &str, r: sys::CUresult) -> Result<()> {
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
fn cuda_error(device: &str, what: &str, e: CudaError) -> Error {
    Error::Backend { backend: device.to_string(), msg: format!("{what}: {e} ({e:?})") }
}

impl CustDriver {
    /// Initialise the driver, retain device `ordinal`'s primary context, create a
    /// non-blocking stream and load the PTX modules.
    pub fn new(ordinal: usize) -> Result<CustDriver> {
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
        let debug = std::env::var("BEIT_CUDA_DEBUG").is_ok_and(|v| v == "1");
        Ok(CustDriver { name, ctx, stream, modules, kernels: Mutex::new(HashMap::new()), debug })
    }

    /// A driver error of this device.
    fn error(&self, what: &str, e: CudaError) -> Error {
        cuda_error(&self.name, what, e)
    }

    /// The result of a raw driver call on this device.
    fn check(&self, what: &str, r: sys::CUresult) -> Result<()> {
        check(&self.name, what, r)
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
}

impl Driver for CustDriver {
    fn name(&self) -> &str {
        &self.name
    }

    fn enter(&self) -> Result<()> {
        // SAFETY: the context handle stays valid while `self.ctx` is alive.
        self.check("cuCtxSetCurrent", unsafe { sys::cuCtxSetCurrent(self.ctx.as_raw()) })
    }

    fn alloc(&self, bytes: usize) -> Result<u64> {
        self.enter()?;
        let mut ptr = 0;
        // SAFETY: plain allocation into a local out-parameter.
        self.check("cuMemAlloc", unsafe { sys::cuMemAlloc_v2(&mut ptr, bytes) })?;
        Ok(ptr)
    }

    fn free(&self, ptr: u64) -> Result<()> {
        self.enter()?;
        // SAFETY: the caller passes a pointer from `alloc` that it owns.
        self.check("cuMemFree", unsafe { sys::cuMemFree_v2(ptr) })
    }

    fn mem_info(&self) -> Result<(usize, usize)> {
        self.enter()?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: out-parameters only.
        self.check("cuMemGetInfo", unsafe { sys::cuMemGetInfo_v2(&mut free, &mut total) })?;
        Ok((free, total))
    }

    unsafe fn upload(&self, dst: u64, src: *const u8, bytes: usize) -> Result<()> {
        self.enter()?;
        // The pageable source is staged before the call returns.
        self.check("upload", sys::cuMemcpyHtoDAsync_v2(dst, src.cast(), bytes, self.stream.as_inner()))
    }

    unsafe fn download(&self, dst: *mut u8, src: u64, bytes: usize) -> Result<()> {
        self.enter()?;
        self.check("download", sys::cuMemcpyDtoHAsync_v2(dst.cast(), src, bytes, self.stream.as_inner()))
    }

    unsafe fn launch(&self, module: &str, name: &str, g: Grid, args: &[Arg]) -> Result<()> {
        self.enter()?;
        let k = self.kernel(module, name)?;
        let mut ptrs = [std::ptr::null_mut::<c_void>(); MAX_ARGS];
        if args.len() > MAX_ARGS {
            return Err(Error::invalid("launch", format!("kernel `{name}` launched with {} arguments (at most {MAX_ARGS})", args.len())));
        }
        for (p, a) in ptrs.iter_mut().zip(args) {
            *p = a.ptr;
        }
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
            ptrs.as_mut_ptr(),
            std::ptr::null_mut(),
        );
        self.check(&format!("launching `{name}`"), r)?;
        if self.debug {
            eprintln!("cuda launch: {module}::{name} grid {:?} block {:?}", g.grid, g.block);
            self.synchronize().map_err(|e| Error::Backend {
                backend: self.name.clone(),
                msg: format!("kernel `{name}` of {module}.cu ({g:?}): {e}"),
            })?;
        }
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        self.enter()?;
        self.stream.synchronize().map_err(|e| self.error("stream synchronize (a kernel failed)", e))
    }

    fn blas_stream(&self) -> Option<*mut c_void> {
        Some(self.stream.as_inner().cast())
    }
}
