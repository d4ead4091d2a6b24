//! NCCL loaded at run time with dlopen, once per process: the path in `$BEIT_NCCL` when it
//! is set, then `libnccl.so.2` (the soname every NCCL 2 release has, and what PyTorch's
//! `nvidia-nccl-cu12`/`-cu13` wheels ship), then `libnccl.so`. Only the entry points
//! [`crate::Nccl`] calls are bound; their signatures and the enum values below are those of
//! NVIDIA's `nccl.h`.

use beit_engine::{Error, Result};
use libloading::Library;
use std::ffi::{c_char, c_int, c_void, CStr, OsString};
use std::sync::OnceLock;

/// `ncclResult_t`; `ncclSuccess` is 0.
pub(crate) type NcclResult = c_int;
/// `ncclComm_t`: an opaque communicator handle.
pub(crate) type CommHandle = *mut c_void;
/// `cudaStream_t` (the same handle as the driver's `CUstream`).
pub(crate) type StreamHandle = *mut c_void;

/// `ncclUint8` of `ncclDataType_t`.
pub(crate) const NCCL_UINT8: c_int = 1;
/// `ncclInt64`.
pub(crate) const NCCL_INT64: c_int = 4;
/// `ncclFloat32`.
pub(crate) const NCCL_FLOAT32: c_int = 7;
/// `ncclFloat64`.
pub(crate) const NCCL_FLOAT64: c_int = 8;
/// `ncclSum` of `ncclRedOp_t`.
pub(crate) const NCCL_SUM: c_int = 0;

/// Bytes of an `ncclUniqueId` (`NCCL_UNIQUE_ID_BYTES`).
pub(crate) const UNIQUE_ID_BYTES: usize = 128;

/// `ncclUniqueId`: `struct { char internal[128]; }`, passed by value to `ncclCommInitRank`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct UniqueId {
    pub internal: [u8; UNIQUE_ID_BYTES],
}

/// `ncclAllReduce(send, recv, count, datatype, op, comm, stream)`.
type AllReduceFn =
    unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, CommHandle, StreamHandle) -> NcclResult;
/// `ncclBroadcast(send, recv, count, datatype, root, comm, stream)`.
type BroadcastFn =
    unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, CommHandle, StreamHandle) -> NcclResult;

/// The loaded library and the entry points the backend calls.
pub(crate) struct NcclLib {
    /// Which file was loaded (`libnccl.so.2`, or the path in `$BEIT_NCCL`).
    pub name: String,
    pub get_unique_id: unsafe extern "C" fn(*mut UniqueId) -> NcclResult,
    pub comm_init_rank: unsafe extern "C" fn(*mut CommHandle, c_int, UniqueId, c_int) -> NcclResult,
    pub all_reduce: AllReduceFn,
    pub broadcast: BroadcastFn,
    pub comm_destroy: unsafe extern "C" fn(CommHandle) -> NcclResult,
    pub comm_abort: unsafe extern "C" fn(CommHandle) -> NcclResult,
    get_error_string: unsafe extern "C" fn(NcclResult) -> *const c_char,
    /// Kept loaded for the function pointers above.
    _lib: Library,
}

/// The process's NCCL, loaded on first use; an error naming every file tried when none
/// loads (or one lacks an entry point).
pub(crate) fn nccl() -> Result<&'static NcclLib> {
    static NCCL: OnceLock<std::result::Result<NcclLib, String>> = OnceLock::new();
    let lib = NCCL.get_or_init(|| load(&candidates(std::env::var_os("BEIT_NCCL"))));
    lib.as_ref().map_err(|msg| Error::Backend { backend: "nccl".into(), msg: msg.clone() })
}

/// The files to try, in order, given the value of `$BEIT_NCCL`.
fn candidates(beit_nccl: Option<OsString>) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(path) = beit_nccl.filter(|p| !p.is_empty()) {
        names.push(path.to_string_lossy().into_owned());
    }
    names.extend(["libnccl.so.2", "libnccl.so"].map(String::from));
    names
}

/// The first of `names` that loads, bound.
fn load(names: &[String]) -> std::result::Result<NcclLib, String> {
    let mut errors = Vec::new();
    for name in names {
        // SAFETY: loading NCCL runs its initialisers, which have no preconditions.
        match unsafe { Library::new(name) } {
            Ok(lib) => return bind(lib, name.clone()),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    Err(format!(
        "cannot load NCCL (tried {}); set BEIT_NCCL to the path of libnccl.so.2 (e.g. from the nvidia-nccl-cu12 pip package)",
        errors.join("; ")
    ))
}

fn bind(lib: Library, name: String) -> std::result::Result<NcclLib, String> {
    let sym = |e: libloading::Error| format!("{name}: {e}");
    // SAFETY: each symbol is read with the type of its C declaration in nccl.h.
    unsafe {
        Ok(NcclLib {
            get_unique_id: *lib.get(b"ncclGetUniqueId\0").map_err(sym)?,
            comm_init_rank: *lib.get(b"ncclCommInitRank\0").map_err(sym)?,
            all_reduce: *lib.get(b"ncclAllReduce\0").map_err(sym)?,
            broadcast: *lib.get(b"ncclBroadcast\0").map_err(sym)?,
            comm_destroy: *lib.get(b"ncclCommDestroy\0").map_err(sym)?,
            comm_abort: *lib.get(b"ncclCommAbort\0").map_err(sym)?,
            get_error_string: *lib.get(b"ncclGetErrorString\0").map_err(sym)?,
            name,
            _lib: lib,
        })
    }
}

impl NcclLib {
    /// `Ok` when `r` is `ncclSuccess`, else an error of `backend` naming `call` and NCCL's
    /// text for the code.
    pub fn check(&self, backend: &str, call: &str, r: NcclResult) -> Result<()> {
        if r == 0 {
            return Ok(());
        }
        // SAFETY: ncclGetErrorString returns a static NUL-terminated string for any code.
        let text = unsafe {
            let p = (self.get_error_string)(r);
            if p.is_null() { "no description".into() } else { CStr::from_ptr(p).to_string_lossy().into_owned() }
        };
        Err(Error::Backend { backend: backend.to_string(), msg: format!("{call} failed: {text} (ncclResult_t {r})") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_beit_nccl_then_the_sonames() {
        assert_eq!(candidates(None), ["libnccl.so.2", "libnccl.so"]);
        assert_eq!(candidates(Some("".into())), ["libnccl.so.2", "libnccl.so"]);
        assert_eq!(candidates(Some("/opt/nccl/libnccl.so.2".into())), ["/opt/nccl/libnccl.so.2", "libnccl.so.2", "libnccl.so"]);
    }

    #[test]
    fn a_missing_library_is_an_error_naming_each_file_tried() {
        let names = ["/nonexistent/libnccl.so.2".to_string(), "libnccl-missing.so.9".to_string()];
        let Err(e) = load(&names) else { panic!("a library that does not exist loaded") };
        assert!(e.starts_with("cannot load NCCL (tried /nonexistent/libnccl.so.2: "), "{e}");
        assert!(e.contains("; libnccl-missing.so.9: ") && e.contains("BEIT_NCCL"), "{e}");
    }
}
