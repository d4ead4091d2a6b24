//! Test helpers: buffers from f64 values, non-contiguous layouts, comparisons.

use crate::{CpuBackend, CpuStorage};
use beit_engine::rng::Rng;
use beit_engine::{DType, HostData, Layout, StorageBox, View};

/// The backend under test.
pub const B: CpuBackend = CpuBackend;

/// Host data of `dtype` from f64 values (`as` casts; bool is `x != 0`).
pub fn host(dtype: DType, v: &[f64]) -> HostData {
    match dtype {
        DType::F32 => HostData::F32(v.iter().map(|&x| x as f32).collect()),
        DType::F64 => HostData::F64(v.to_vec()),
        DType::BF16 => HostData::BF16(v.iter().map(|&x| half::bf16::from_f64(x)).collect()),
        DType::I64 => HostData::I64(v.iter().map(|&x| x as i64).collect()),
        DType::U32 => HostData::U32(v.iter().map(|&x| x as u32).collect()),
        DType::U8 => HostData::U8(v.iter().map(|&x| x as u8).collect()),
        DType::Bool => HostData::Bool(v.iter().map(|&x| u8::from(x != 0.0)).collect()),
    }
}

/// `n` uniform values in `[-2, 2)`.
pub fn rand_vals(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.uniform_range(-2.0, 2.0)).collect()
}

/// A buffer's values as f64.
pub fn vals(s: &StorageBox) -> Vec<f64> {
    s.as_any().downcast_ref::<CpuStorage>().expect("a CPU buffer").data().to_f64_vec()
}

/// A test tensor: a buffer and a layout into it.
pub struct Tt {
    /// The buffer.
    pub s: CpuStorage,
    /// The view of it.
    pub l: Layout,
}

impl Tt {
    /// A contiguous tensor of `shape` holding `v`.
    pub fn new(dtype: DType, shape: &[usize], v: &[f64]) -> Tt {
        assert_eq!(shape.iter().product::<usize>(), v.len());
        Tt { s: CpuStorage::new(host(dtype, v)), l: Layout::contiguous(shape) }
    }

    /// A contiguous tensor of random values in `[-2, 2)`.
    pub fn rand(dtype: DType, shape: &[usize], seed: u64) -> Tt {
        Tt::new(dtype, shape, &rand_vals(shape.iter().product(), seed))
    }

    /// The view.
    pub fn view(&self) -> View<'_> {
        View { storage: &self.s, layout: &self.l }
    }

    /// The logical values in row-major order (read through the engine's offsets iterator).
    pub fn vals(&self) -> Vec<f64> {
        let all = self.s.data().to_f64_vec();
        self.l.offsets().map(|o| all[o]).collect()
    }

    /// The same logical values, stored dims-reversed after 3 padding elements:
    /// a non-contiguous view with an offset.
    pub fn scrambled(&self) -> Tt {
        let shape = self.l.shape().to_vec();
        let rev: Vec<usize> = shape.iter().rev().copied().collect();
        let rev_strides = beit_engine::layout::contiguous_strides(&rev);
        let l = Layout::new(shape.clone(), rev_strides.into_iter().rev().collect(), 3);
        let mut buf = vec![0.0; 3 + self.l.numel()];
        for (v, o) in self.vals().into_iter().zip(l.offsets()) {
            buf[o] = v;
        }
        Tt { s: CpuStorage::new(host(self.s.data().dtype(), &buf)), l }
    }

    /// The view broadcast to `shape`.
    pub fn broadcast(mut self, shape: &[usize]) -> Tt {
        self.l = self.l.broadcast_to(shape).unwrap();
        self
    }

    /// The view with permuted dims.
    pub fn permute(mut self, perm: &[usize]) -> Tt {
        self.l = self.l.permute(perm).unwrap();
        self
    }
}

/// Assert `|got − want| <= tol·(1 + |want|)` elementwise (NaN matches NaN).
#[track_caller]
pub fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * (1.0 + w.abs());
        assert!(ok, "element {i}: got {g}, want {w} (tol {tol})");
    }
}
