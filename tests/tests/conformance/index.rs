//! Gather and scatter-add along one dim, with repeated indices (whose gradients accumulate),
//! i64 and u32 indices, and strided inputs.

use beit_conformance::{op_cases, Gen, Input, OpCase};
use beit_engine::{Device, Result, Tensor};

/// Indices with repeats, into a dim of size 5.
const IDX: [i64; 6] = [4, 0, 4, 2, 1, 4];

/// [`IDX`] as i64, or as u32 when `as_u32`.
fn indices(as_u32: bool, dev: &Device) -> Result<Tensor> {
    if as_u32 {
        Tensor::from_vec(IDX.map(|i| i as u32).to_vec(), &[IDX.len()], dev)
    } else {
        Tensor::from_slice(&IDX, &[IDX.len()], dev)
    }
}

/// `x.index_select(dim, IDX)`.
fn select(x: Input, dim: usize, as_u32: bool) -> OpCase {
    OpCase::new(
        vec![x],
        move |x| x[0].index_select(dim, &indices(as_u32, x[0].device())?),
        move |x| r::index_select(&x[0], dim, &IDX),
    )
}

/// `dst.index_add(dim, IDX, src)`.
fn add(dst: Input, src: Input, dim: usize) -> OpCase {
    OpCase::new(
        vec![dst, src],
        move |x| x[0].index_add(dim, &indices(false, x[0].device())?, &x[1]),
        move |x| r::index_add(&x[0], dim, &IDX, &x[1]),
    )
}

op_cases! {
    /// Rows of a `[5, 7]` matrix.
    index_select_rows => select(Gen::new(1).normal(&[5, 7], 1.0).into(), 0, false);
    /// Columns of a transposed `[3, 5]` view, u32 indices.
    index_select_columns_u32 => select(Input::new(Gen::new(2).normal(&[3, 5], 1.0)).transposed(), 1, true);
    /// The middle dim of a narrowed `[2, 5, 3]` view.
    index_select_middle => select(Input::new(Gen::new(3).normal(&[2, 5, 3], 1.0)).padded(), 1, false);
    /// Rows of `[6, 3]` into `[5, 3]`.
    index_add_rows => {
        let mut g = Gen::new(4);
        add(g.normal(&[5, 3], 1.0).into(), g.normal(&[6, 3], 1.0).into(), 0)
    };
    /// The last dim of a `[2, 3, 5]` destination from a transposed source.
    index_add_last => {
        let mut g = Gen::new(5);
        let src = Input::new(g.normal(&[2, 3, 6], 1.0)).permuted(&[1, 0, 2]);
        add(g.normal(&[2, 3, 5], 1.0).into(), src, 2)
    };
}

/// Float64 references of this file's ops, in plain loops (no code shared with the engine),
/// and the shared building blocks of [`beit_conformance::reference`].
mod r {
    pub use beit_conformance::reference::*;
    use beit_conformance::Array;

    /// `x` with `src` added at `indices` along `dim` (repeats accumulate).
    pub fn index_add(x: &Array, dim: usize, indices: &[i64], src: &Array) -> Array {
        let (_, outer, inner) = split_at(x, dim, indices.len());
        let d = x.shape[dim];
        let mut out = x.clone();
        for o in 0..outer {
            for (p, &i) in indices.iter().enumerate() {
                for e in 0..inner {
                    out.data[(o * d + i as usize) * inner + e] += src.data[(o * indices.len() + p) * inner + e];
                }
            }
        }
        out
    }
}
