//! Linear weights pre-packed for inference ([`PackedWeight`]): the panels our GEMM reads,
//! made once when the weight is loaded instead of on every call, in place of the loaded
//! buffer (the same bytes as the `[n, k]` weight, plus zero columns up to a multiple of 32;
//! the loaded buffer is freed once packed). They start where the allocator put them, not
//! on a cache line: aligning them measured no faster, and its 16 spare values kept the
//! buffers a load drops from being reused (24 MB more peak RSS for BEiT-Base).

use crate::storage::CpuStorage;
use crate::{gemm, pool, CpuBackend};
use beit_engine::backend::Memory;
use beit_engine::{BackendStorage, DType, Error, HostData, Layout, Result, StorageBox, View};
use gemm::{Bf16Gemm, NR};
use half::bf16;
use std::any::Any;

/// A Linear weight `w [n, k]` stored as the packed B operand `wᵀ` of our GEMM
/// ([`gemm::Prepacked`]). Only [`crate::linear`] multiplies with it and `to_host` reads it
/// back; every other kernel refuses it with an error naming the op.
#[derive(Debug)]
pub(crate) struct PackedWeight {
    /// The panels: f32 values, or for a bf16 weight the 32-bit pairs of adjacent depths
    /// that `vdpbf16ps` multiplies, stored as f32 bit patterns.
    panels: CpuStorage,
    /// The weight's dtype (f32 or bf16).
    dtype: DType,
    /// Output features (rows of `w`).
    n: usize,
    /// Input features (columns of `w`).
    k: usize,
}

impl BackendStorage for PackedWeight {
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn len(&self) -> usize {
        self.n * self.k
    }
    fn is_packed(&self) -> bool {
        true
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The contiguous weight `w [n, k]` pre-packed: f32 on a CPU with our GEMM, bf16 where this
/// CPU multiplies bf16 weights with `vdpbf16ps` and `k` is even. Its vector leaves `w` (left
/// empty) and is freed once packed, rather than pooled, as a loaded weight is not reused.
/// None elsewhere, `w` untouched.
pub(crate) fn pack(w: &mut dyn BackendStorage, n: usize, k: usize) -> Result<Option<StorageBox>> {
    let dtype = w.dtype();
    let depth = match dtype {
        DType::F32 => k,
        DType::BF16 if gemm::bf16_form() == Some(Bf16Gemm::Dot) && k.is_multiple_of(2) => k / 2,
        _ => return Ok(None),
    };
    let Some(cpu) = w.as_any_mut().downcast_mut::<CpuStorage>().filter(|_| gemm::available()) else { return Ok(None) };
    if cpu.data().len() != n * k {
        return Err(Error::invalid("pack_weight", format!("a buffer of {} elements is not a [{n}, {k}] weight", cpu.data().len())));
    }
    // Often a buffer this load just dropped (a replaced placeholder, or the f32 values a bf16
    // weight was converted from); cut to size, as a weight lives long.
    let mut panels = pool::reuse::<f32>(n.div_ceil(NR) * NR * depth);
    panels.shrink_to_fit();
    match std::mem::replace(cpu, CpuStorage::new(HostData::U8(Vec::new()))).into_data() {
        HostData::F32(v) => {
            // B = wᵀ: element (k, n) is w's (n, k).
            let b = gemm::Mat { ptr: v.as_ptr(), rs: 1, cs: k as isize };
            // SAFETY: `v` holds the `n × k` weight, row-major.
            unsafe { gemm::prepack(&b, k, n, &mut panels) }
        }
        HostData::BF16(v) => {
            // In memory, w's (c, 2p) and (c, 2p + 1) are the 32-bit pair (c, p), the first low.
            let aligned = (v.as_ptr() as usize).is_multiple_of(4);
            let copy: Vec<u32> = if aligned { Vec::new() } else { v.chunks_exact(2).map(|p| u32::from(p[0].to_bits()) | u32::from(p[1].to_bits()) << 16).collect() };
            let ptr = if aligned { v.as_ptr().cast() } else { copy.as_ptr().cast() };
            // SAFETY: `ptr` holds the `n × k/2` pairs, row-major, 4-byte aligned.
            unsafe { gemm::prepack(&gemm::Mat { ptr, rs: 1, cs: k as isize / 2 }, k / 2, n, &mut panels) }
        }
        _ => unreachable!("the dtype was checked above"),
    }
    Ok(Some(Box::new(PackedWeight { panels: CpuStorage::new(HostData::F32(panels)), dtype, n, k })))
}

impl PackedWeight {
    /// `storage` as a packed weight, if it is one.
    pub(crate) fn of(storage: &dyn BackendStorage) -> Option<&PackedWeight> {
        storage.as_any().downcast_ref()
    }

    /// The weight's shape `[n, k]`.
    pub(crate) fn shape(&self) -> [usize; 2] {
        [self.n, self.k]
    }

    /// The panels as the GEMM's B operand, its depth in f32 values (f32) or in pairs (bf16).
    pub(crate) fn operand(&self) -> gemm::Prepacked {
        let HostData::F32(v) = self.panels.data() else { unreachable!("packed panels are stored as f32") };
        let k = if self.dtype == DType::BF16 { self.k / 2 } else { self.k };
        gemm::Prepacked { ptr: v.as_ptr(), k }
    }

    /// The elements `layout` picks from the unpacked `[n, k]` weight, in row-major order.
    pub(crate) fn to_host(&self, layout: &Layout) -> Result<HostData> {
        let HostData::F32(v) = self.panels.data() else { unreachable!("packed panels are stored as f32") };
        let (n, k) = (self.n, self.k);
        // Value (r, c) of wᵀ's panels: panel r / NR, row c, column r % NR.
        let at = |r: usize, c: usize, depth: usize| v[r / NR * NR * depth + c * NR + r % NR];
        let whole = match self.dtype {
            DType::BF16 => {
                let mut w = vec![bf16::ZERO; n * k];
                for (r, row) in w.chunks_exact_mut(k).enumerate() {
                    for (p, pair) in row.chunks_exact_mut(2).enumerate() {
                        let bits = at(r, p, k / 2).to_bits();
                        pair[0] = bf16::from_bits(bits as u16);
                        pair[1] = bf16::from_bits((bits >> 16) as u16);
                    }
                }
                HostData::BF16(w)
            }
            _ => HostData::F32((0..n * k).map(|i| at(i / k, i % k, k)).collect()),
        };
        if layout.is_contiguous() && layout.offset() == 0 && layout.shape() == self.shape() {
            return Ok(whole);
        }
        CpuBackend.to_host(View { storage: &CpuStorage::new(whole), layout })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Tt;

    /// Packing then unpacking gives the weight back, bit for bit, whole and through a
    /// transposed view, for f32 and (where this CPU packs them) bf16 weights with a ragged
    /// last panel; what is not packed is left as it was.
    #[test]
    fn unpacks_to_the_weight() {
        let (n, k) = (70, 38);
        for dtype in [DType::F32, DType::BF16, DType::F64] {
            let mut w = Tt::rand(dtype, &[n, k], 7);
            let want = CpuBackend.to_host(w.view()).unwrap();
            let Some(packed) = pack(&mut w.s, n, k).unwrap() else {
                assert!(dtype != DType::F32 || !gemm::available(), "f32 weights are packed where the GEMM runs");
                assert_eq!(CpuBackend.to_host(w.view()).unwrap(), want, "{dtype}: left as it was");
                continue;
            };
            let p = PackedWeight::of(&*packed).unwrap();
            assert_eq!((p.dtype(), p.len()), (dtype, n * k));
            assert_eq!(p.to_host(&w.l).unwrap(), want, "{dtype}");
            let t = w.l.permute(&[1, 0]).unwrap();
            let unpacked = CpuStorage::new(want);
            assert_eq!(p.to_host(&t).unwrap(), CpuBackend.to_host(View { storage: &unpacked, layout: &t }).unwrap(), "{dtype} transposed");
        }
    }
}
