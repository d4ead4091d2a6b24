//! safetensors files: memory-mapped load, atomic save, exact names.

use super::state_dict::{Entry, StateDict};
use crate::{DType, Device, Error, HostData, Result, Tensor};
use ::safetensors::{Dtype, SafeTensorError, SafeTensors};
use memmap2::Mmap;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// One open, memory-mapped file.
struct MappedFile {
    path: String,
    mmap: Mmap,
    device: Device,
}

/// A tensor inside a memory-mapped file: dtype, shape and byte range.
pub(super) struct Mapped {
    file: Arc<MappedFile>,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: std::ops::Range<usize>,
}

impl Mapped {
    pub(super) fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The engine dtype the file's dtype is read as.
    pub(super) fn dtype(&self, name: &str) -> Result<DType> {
        Ok(match self.dtype {
            Dtype::F32 | Dtype::F16 | Dtype::BF16 => DType::F32,
            Dtype::F64 => DType::F64,
            Dtype::I64 | Dtype::I32 => DType::I64,
            Dtype::U32 => DType::U32,
            Dtype::U8 => DType::U8,
            Dtype::BOOL => DType::Bool,
            other => return Err(self.error(format!("tensor `{name}` has unsupported dtype {other:?}"))),
        })
    }

    fn error(&self, msg: String) -> Error {
        Error::Format { file: self.file.path.clone(), msg }
    }

    /// Read, convert and upload the tensor.
    pub(super) fn load(&self, name: &str) -> Result<Tensor> {
        self.dtype(name)?;
        let bytes = self
            .file
            .mmap
            .get(self.bytes.clone())
            .ok_or_else(|| self.error(format!("tensor `{name}`: bytes {:?} lie outside the file", self.bytes)))?;
        let oom = |n: usize, size: usize| {
            self.error(format!("tensor `{name}` of shape {:?}: cannot allocate {} bytes", self.shape, n.saturating_mul(size)))
        };
        let data = match self.dtype {
            Dtype::F32 => HostData::F32(decode(bytes, f32::from_le_bytes).map_err(|n| oom(n, 4))?),
            Dtype::F16 => HostData::F32(decode(bytes, |b| half::f16::from_le_bytes(b).to_f32()).map_err(|n| oom(n, 4))?),
            Dtype::BF16 => HostData::F32(decode(bytes, |b| half::bf16::from_le_bytes(b).to_f32()).map_err(|n| oom(n, 4))?),
            Dtype::F64 => HostData::F64(decode(bytes, f64::from_le_bytes).map_err(|n| oom(n, 8))?),
            Dtype::I64 => HostData::I64(decode(bytes, i64::from_le_bytes).map_err(|n| oom(n, 8))?),
            Dtype::I32 => HostData::I64(decode(bytes, |b| i32::from_le_bytes(b) as i64).map_err(|n| oom(n, 8))?),
            Dtype::U32 => HostData::U32(decode(bytes, u32::from_le_bytes).map_err(|n| oom(n, 4))?),
            Dtype::U8 => HostData::U8(decode(bytes, |[b]: [u8; 1]| b).map_err(|n| oom(n, 1))?),
            _ => HostData::Bool(decode(bytes, |[b]: [u8; 1]| b).map_err(|n| oom(n, 1))?),
        };
        self.file.release(self.bytes.clone());
        let numel: usize = self.shape.iter().product();
        if data.len() != numel {
            return Err(self.error(format!("tensor `{name}`: {} values for shape {:?}", data.len(), self.shape)));
        }
        Tensor::from_host_owned(data, &self.shape, &self.file.device)
    }
}

impl MappedFile {
    /// Drop the mapped pages of `range` from this process's resident memory once its
    /// tensor has been copied out, so that loading a checkpoint peaks at about one copy of
    /// the weights rather than two. The pages read back from the file if touched again.
    fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        // SAFETY: no borrow of the mapped bytes outlives `load`'s decode, and the mapping is
        // read-only and file-backed, so the contents seen after the advice are unchanged.
        // Failure only means the pages stay resident.
        let _ = unsafe { self.mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len()) };
        #[cfg(not(unix))]
        let _ = range;
    }
}

/// Little-endian values of `N` bytes each, in a buffer reserved fallibly (a huge tensor is
/// an error, not an abort); the error is the number of values that could not be allocated.
fn decode<T, const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> std::result::Result<Vec<T>, usize> {
    let n = bytes.len() / N;
    let mut out = Vec::new();
    out.try_reserve_exact(n).map_err(|_| n)?;
    out.extend(bytes.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        f(a)
    }));
    Ok(out)
}

/// Open a safetensors file: the header is parsed and checked now (a truncated or corrupt
/// file is an error naming it), tensors are read from the memory map by
/// [`StateDict::get`] onto `device`. Supported dtypes: F32, F64, F16 and BF16 (read as
/// f32), I64, I32 (read as i64), U32, U8, BOOL; others are an error on access naming the
/// tensor.
pub fn load_safetensors(path: impl AsRef<Path>, device: &Device) -> Result<StateDict> {
    let path_ref = path.as_ref();
    let path = path_ref.display().to_string();
    let io = |source| Error::Io { path: path.clone(), source };
    let file = std::fs::File::open(path_ref).map_err(io)?;
    // SAFETY: the map is only read. As with every memory-mapped reader (candle, the
    // safetensors Python package), the file must not be truncated by another process while
    // mapped; files this crate saves are replaced by rename, never rewritten in place.
    let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
    let (header_len, meta) = SafeTensors::read_metadata(&mmap)
        .map_err(|e| Error::Format { file: path.clone(), msg: format!("not a valid safetensors file: {e}") })?;
    let base = 8 + header_len;
    let metadata = meta.metadata().clone();
    let mapped = Arc::new(MappedFile { path: path.clone(), mmap, device: device.clone() });
    let mut entries = Vec::new();
    for name in meta.offset_keys() {
        let Some(info) = meta.info(&name) else { continue };
        let (start, end) = info.data_offsets;
        let entry = Mapped {
            file: mapped.clone(),
            dtype: info.dtype,
            shape: info.shape.clone(),
            bytes: base + start..base + end,
        };
        entries.push((name, Entry::Mapped(entry)));
    }
    Ok(StateDict::with_source(path, metadata, entries))
}

/// Host bytes of one tensor, as safetensors wants them.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl ::safetensors::View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn raw(t: &Tensor) -> Result<Raw> {
    let (dtype, data) = match t.to_host()? {
        HostData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        HostData::F64(v) => (Dtype::F64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        HostData::BF16(v) => (Dtype::BF16, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        HostData::I64(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        HostData::U32(v) => (Dtype::U32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        HostData::U8(v) => (Dtype::U8, v),
        HostData::Bool(v) => (Dtype::BOOL, v),
    };
    Ok(Raw { dtype, shape: t.shape().to_vec(), data })
}

/// Write `tensors` to a safetensors file at `path` under their exact names, each in its
/// own dtype, with optional `__metadata__`. The file is written to a temporary sibling and
/// renamed into place, so a failed save leaves any earlier file intact (and readers that
/// mapped it unaffected). A duplicate name is an error naming it.
pub fn save_safetensors<'a>(
    path: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    metadata: Option<&HashMap<String, String>>,
) -> Result<()> {
    let path_ref = path.as_ref();
    let file = path_ref.display().to_string();
    let mut seen = HashSet::new();
    let mut raws = Vec::new();
    for (name, t) in tensors {
        if !seen.insert(name) {
            return Err(Error::Format { file, msg: format!("duplicate tensor name `{name}`") });
        }
        raws.push((name, raw(t)?));
    }
    let views = raws.iter().map(|(n, r)| (*n, r));
    ::safetensors::serialize_to_file(views, metadata.cloned(), path_ref).map_err(|e| match e {
        SafeTensorError::IoError(source) => Error::Io { path: file, source },
        e => Error::Format { file, msg: format!("cannot serialise: {e}") },
    })
}
