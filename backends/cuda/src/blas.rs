//! cuBLAS loaded at run time with dlopen (`libcublas.so.13`, then `.12`, or the path in
//! `$BEIT_CUBLAS`): the handful of entry points the backend calls. Without it (or with
//! `BEIT_CUDA_NO_CUBLAS=1`) matmul runs on the backend's own GEMM kernel. TF32 tensor-core
//! math is off unless `BEIT_CUDA_TF32=1` or [`crate::set_tf32`] turns it on.

use libloading::Library;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

type Handle = *mut c_void;
type Status = i32;
/// `cublas<S|D>gemmStridedBatched`.
type GemmFn<T> = unsafe extern "C" fn(
    Handle,
    i32,
    i32,
    i32,
    i32,
    i32,
    *const T,
    *const T,
    i32,
    i64,
    *const T,
    i32,
    i64,
    *const T,
    *mut T,
    i32,
    i64,
    i32,
) -> Status;

const CUBLAS_DEFAULT_MATH: i32 = 0;
const CUBLAS_TF32_TENSOR_OP_MATH: i32 = 3;

/// An open cuBLAS handle bound to the backend's stream.
struct Cublas {
    handle: Handle,
    sgemm: GemmFn<f32>,
    dgemm: GemmFn<f64>,
    set_math_mode: unsafe extern "C" fn(Handle, i32) -> Status,
    /// Kept loaded for the function pointers above.
    _lib: Library,
}

// SAFETY: the handle is only used under the `Gemm` mutex, from one thread at a time.
unsafe impl Send for Cublas {}

/// Which GEMM the backend runs: cuBLAS when it loaded, else the built-in kernel.
pub(crate) struct Gemm {
    blas: Option<Mutex<Cublas>>,
    /// Why cuBLAS is not used, or which library is.
    note: String,
    tf32: AtomicBool,
}

/// One operand of a column-major GEMM call: transpose flag, leading dimension, batch stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlasOperand {
    pub trans: bool,
    pub ld: i32,
}

/// How cuBLAS can read a row-major-indexed `[rows, cols]` matrix with strides `(rs, cs)`:
/// directly (`cs == 1`, column-major transposed view) or transposed (`rs == 1`). Strides of
/// size-1 dims do not matter. `None` when neither works (the caller makes a copy).
pub(crate) fn blas_operand(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<BlasOperand> {
    let fits = |v: usize| i32::try_from(v).ok();
    let (rs_n, cs_n) = (if rows == 1 { cols.max(1) } else { rs }, if cols == 1 { 1 } else { cs });
    if cs_n == 1 && rs_n >= cols.max(1) {
        return Some(BlasOperand { trans: false, ld: fits(rs_n)? });
    }
    let (rs_t, cs_t) = (if rows == 1 { 1 } else { rs }, if cols == 1 { rows.max(1) } else { cs });
    if rs_t == 1 && cs_t >= rows.max(1) {
        return Some(BlasOperand { trans: true, ld: fits(cs_t)? });
    }
    None
}

fn load(stream: *mut c_void) -> Result<Cublas, String> {
    let names: Vec<String> = match std::env::var("BEIT_CUBLAS") {
        Ok(p) if !p.is_empty() => vec![p],
        _ => ["libcublas.so.13", "libcublas.so.12", "libcublas.so"].map(String::from).to_vec(),
    };
    let mut errors = Vec::new();
    for name in &names {
        // SAFETY: loading cuBLAS runs its initialisers, which have no preconditions.
        match unsafe { Library::new(name) } {
            Ok(lib) => return bind(lib, name, stream),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    Err(format!("cuBLAS not found ({})", errors.join("; ")))
}

fn bind(lib: Library, name: &str, stream: *mut c_void) -> Result<Cublas, String> {
    let sym = |e: libloading::Error| format!("{name}: {e}");
    // SAFETY: the symbol types are cuBLAS's documented C signatures; the handle is fresh and
    // the stream is the backend's.
    unsafe {
        let create = *lib.get::<unsafe extern "C" fn(*mut Handle) -> Status>(b"cublasCreate_v2\0").map_err(sym)?;
        let set_stream =
            *lib.get::<unsafe extern "C" fn(Handle, *mut c_void) -> Status>(b"cublasSetStream_v2\0").map_err(sym)?;
        let mut handle: Handle = std::ptr::null_mut();
        match create(&mut handle) {
            0 => {}
            s => return Err(format!("{name}: cublasCreate failed with status {s}")),
        }
        match set_stream(handle, stream) {
            0 => {}
            s => return Err(format!("{name}: cublasSetStream failed with status {s}")),
        }
        Ok(Cublas {
            handle,
            sgemm: *lib.get(b"cublasSgemmStridedBatched\0").map_err(sym)?,
            dgemm: *lib.get(b"cublasDgemmStridedBatched\0").map_err(sym)?,
            set_math_mode: *lib.get(b"cublasSetMathMode\0").map_err(sym)?,
            _lib: lib,
        })
    }
}

/// A column-major strided batched GEMM: `C = op(A)·op(B)` with `C` `[m, n]` (ld `ldc`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmCall {
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub a: (u64, BlasOperand, i64),
    pub b: (u64, BlasOperand, i64),
    pub c: (u64, i32, i64),
    pub batch: i32,
}

impl Gemm {
    /// cuBLAS on `stream` when it loads and is not disabled, else the built-in kernel
    /// (always without a stream: the simulator has no cuBLAS).
    pub fn new(stream: Option<*mut c_void>) -> Gemm {
        let tf32 = AtomicBool::new(std::env::var("BEIT_CUDA_TF32").is_ok_and(|v| v == "1"));
        let Some(stream) = stream else {
            return Gemm { blas: None, note: "built-in GEMM kernel (cuBLAS is not simulated)".into(), tf32 };
        };
        if std::env::var("BEIT_CUDA_NO_CUBLAS").is_ok_and(|v| v == "1") {
            return Gemm { blas: None, note: "built-in GEMM kernel (BEIT_CUDA_NO_CUBLAS=1)".into(), tf32 };
        }
        match load(stream) {
            Ok(c) => Gemm { blas: Some(Mutex::new(c)), note: "cuBLAS".into(), tf32 },
            Err(e) => Gemm { blas: None, note: format!("built-in GEMM kernel ({e})"), tf32 },
        }
    }

    /// Whether cuBLAS is in use.
    pub fn has_blas(&self) -> bool {
        self.blas.is_some()
    }

    /// Which GEMM runs, and whether TF32 is on.
    pub fn describe(&self) -> String {
        format!("{}, TF32 {}", self.note, if self.tf32.load(Ordering::Relaxed) { "on" } else { "off" })
    }

    /// Turn TF32 tensor-core math for f32 matmuls on or off.
    pub fn set_tf32(&self, on: bool) {
        self.tf32.store(on, Ordering::Relaxed);
    }

    /// Run one strided batched GEMM in f32 or f64 through cuBLAS; `Err(status)` on failure.
    ///
    /// # Safety
    /// The device addresses with their leading dimensions and batch strides must describe
    /// live buffers of the element type on the context current on this thread.
    pub unsafe fn run(&self, f64: bool, g: &GemmCall) -> Result<(), String> {
        let blas = self.blas.as_ref().ok_or("cuBLAS is not loaded")?;
        let c = blas.lock().unwrap_or_else(|p| p.into_inner());
        let mode = if self.tf32.load(Ordering::Relaxed) { CUBLAS_TF32_TENSOR_OP_MATH } else { CUBLAS_DEFAULT_MATH };
        let s = (c.set_math_mode)(c.handle, mode);
        if s != 0 {
            return Err(format!("cublasSetMathMode failed with status {s}"));
        }
        let op = |o: BlasOperand| i32::from(o.trans);
        let status = if f64 {
            let (one, zero) = (1.0f64, 0.0f64);
            (c.dgemm)(
                c.handle, op(g.a.1), op(g.b.1), g.m, g.n, g.k, &one, g.a.0 as *const f64, g.a.1.ld, g.a.2,
                g.b.0 as *const f64, g.b.1.ld, g.b.2, &zero, g.c.0 as *mut f64, g.c.1, g.c.2, g.batch,
            )
        } else {
            let (one, zero) = (1.0f32, 0.0f32);
            (c.sgemm)(
                c.handle, op(g.a.1), op(g.b.1), g.m, g.n, g.k, &one, g.a.0 as *const f32, g.a.1.ld, g.a.2,
                g.b.0 as *const f32, g.b.1.ld, g.b.2, &zero, g.c.0 as *mut f32, g.c.1, g.c.2, g.batch,
            )
        };
        match status {
            0 => Ok(()),
            s => Err(format!("cublas{}gemmStridedBatched failed with status {s} for {g:?}", if f64 { "D" } else { "S" })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operands_read_directly_or_transposed() {
        // Row-major [4, 3]: column-major [3, 4] with ld 3, no transpose.
        assert_eq!(blas_operand(4, 3, 3, 1), Some(BlasOperand { trans: false, ld: 3 }));
        // A [3, 4] weight seen as [4, 3] (strides (1, 4)): transposed, ld 4.
        assert_eq!(blas_operand(4, 3, 1, 4), Some(BlasOperand { trans: true, ld: 4 }));
        // Padded rows (a narrowed view): ld is the row stride.
        assert_eq!(blas_operand(4, 3, 10, 1), Some(BlasOperand { trans: false, ld: 10 }));
        // Vectors take any stride on their size-1 dim.
        assert_eq!(blas_operand(1, 5, 0, 1), Some(BlasOperand { trans: false, ld: 5 }));
        assert_eq!(blas_operand(5, 1, 1, 0), Some(BlasOperand { trans: false, ld: 1 }));
        // Neither rows nor columns unit-stride, or overlapping rows: needs a copy.
        assert_eq!(blas_operand(4, 3, 6, 2), None);
        assert_eq!(blas_operand(4, 3, 2, 1), None);
    }
}
