//! Attention at inference, per (batch entry, head) on one thread: `S = q·kᵀ` by our GEMM
//! into an `L × L` buffer that stays in L2, `scale·S + bias` and softmax row by row, then
//! `S·v` written straight into the heads-merged output. f32 with AVX-512F or AVX2;
//! otherwise composed of the primitive kernels.

use crate::blocks::OutPtr;
use crate::rows::softmax_row;
use crate::storage::{boxed, Src};
use crate::{fastmath, gemm, pool, CpuBackend};
use beit_engine::checks::attention_shapes;
use beit_engine::backend::rows as composed;
use beit_engine::{DType, Result, StorageBox, View};
use rayon::prelude::*;
use std::cell::RefCell;

thread_local! {
    /// This thread's `L × L` scores.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `softmax(scale·q·kᵀ + bias)·v` for `[B, H, L, D]` operands, out `[B, L, H, D]`.
pub(crate) fn attention(q: View, k: View, v: View, bias: Option<View>, scale: f64) -> Result<StorageBox> {
    const OP: &str = "attention";
    let [b, h, l, d] = attention_shapes(OP, q, k, v, bias)?;
    if q.dtype() != DType::F32 || !gemm::available() {
        return composed::attention(&CpuBackend, q, k, v, bias, scale);
    }
    let heads = |view: View<'_>| -> Result<Heads> {
        let src = Src::<f32>::new(OP, view)?;
        let s: Vec<isize> = view.layout.strides().iter().map(|&s| s as isize).collect();
        // SAFETY: `Src::new` checked that the layout stays inside the buffer.
        let ptr = unsafe { src.data.as_ptr().add(view.layout.offset()) };
        Ok(Heads { first: gemm::Mat { ptr, rs: s[2], cs: s[3] }, batch: s[0], head: s[1] })
    };
    let (qm, km, vm) = (heads(q)?, heads(k)?, heads(v)?);
    let bias_m = bias.map(heads).transpose()?;
    let mut out = pool::reuse::<f32>(b * l * h * d);
    let o = OutPtr(out.as_mut_ptr());
    let scale = scale as f32;
    (0..b * h).into_par_iter().for_each(|t| {
        let (bi, hi) = (t / h, t % h);
        SCORES.with(|buf| {
            let mut s = buf.borrow_mut();
            s.resize(l * l, 0.0);
            // SAFETY: the operands' matrices are in bounds (checked layouts); the scores
            // buffer is L × L; entry (bi, hi) writes only its own head's columns of the output.
            unsafe {
                gemm::sgemm(l, d, l, qm.get(bi, hi, false), &km.get(bi, hi, true), s.as_mut_ptr(), l, &gemm::Post::NONE);
                let bias_row = bias_m.as_ref().map(|m| m.get(bi, hi, false));
                fastmath::widest(
                    #[inline(always)]
                    || bias_softmax(&mut s, l, scale, bias_row.as_ref()),
                );
                let p = gemm::Mat { ptr: s.as_ptr(), rs: l as isize, cs: 1 };
                gemm::sgemm(l, l, d, p, &vm.get(bi, hi, false), o.add(bi * l * h * d + hi * d).0, h * d, &gemm::Post::NONE);
            }
        })
    });
    Ok(boxed(DType::F32, out))
}

/// The `[L, ·]` matrices of a `[B, H, L, ·]` operand.
struct Heads {
    /// Entry (0, 0).
    first: gemm::Mat,
    /// Batch stride.
    batch: isize,
    /// Head stride.
    head: isize,
}

impl Heads {
    /// Entry `(bi, hi)`, or its transpose.
    ///
    /// # Safety
    /// `bi < B` and `hi < H` of the operand's checked layout.
    unsafe fn get(&self, bi: usize, hi: usize, transpose: bool) -> gemm::Mat {
        let ptr = self.first.ptr.offset(bi as isize * self.batch + hi as isize * self.head);
        let (rs, cs) = if transpose { (self.first.cs, self.first.rs) } else { (self.first.rs, self.first.cs) };
        gemm::Mat { ptr, rs, cs }
    }
}

/// Each row of the `L × L` scores `s` becomes `softmax(scale·s + bias)`, compiled for the
/// widest registers by the caller ([`fastmath::widest`]).
///
/// # Safety
/// `bias` addresses an `L × L` matrix.
#[inline(always)]
unsafe fn bias_softmax(s: &mut [f32], l: usize, scale: f32, bias: Option<&gemm::Mat>) {
    for (i, row) in s.chunks_exact_mut(l).enumerate() {
        match bias {
            Some(m) if m.cs == 1 => {
                let bias = std::slice::from_raw_parts(m.ptr.offset(i as isize * m.rs), l);
                row.iter_mut().zip(bias).for_each(|(x, b)| *x = *x * scale + b);
            }
            Some(m) => {
                let at = |j: usize| *m.ptr.offset(i as isize * m.rs + j as isize * m.cs);
                row.iter_mut().enumerate().for_each(|(j, x)| *x = *x * scale + at(j));
            }
            None => row.iter_mut().for_each(|x| *x *= scale),
        }
        softmax_row(row);
    }
}
