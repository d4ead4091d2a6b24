//! Float64 building blocks that several ops' references share (matmul, GELU, softmax,
//! gather and concatenation), in plain loops over [`Array`]s. Each op's own reference sits
//! in its conformance case file, in a `mod r` beside its cases, so that adding an op does not
//! touch this crate. None of it shares code with the engine or any backend (the error
//! function is this crate's own, [`crate::erf`]), so that a backend bug cannot hide in its
//! reference.

use crate::array::broadcast_shape;
use crate::erf::normal_cdf;
use crate::Array;

/// Batched matmul `[..., m, k] @ [..., k, n]`, batch dims broadcast.
pub fn matmul(a: &Array, b: &Array) -> Array {
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, n) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 1]);
    assert_eq!(k, b.shape[rb - 2], "reference matmul: inner dims");
    let batch = broadcast_shape(&a.shape[..ra - 2], &b.shape[..rb - 2]);
    let a = a.broadcast_to(&[&batch[..], &[m, k]].concat());
    let b = b.broadcast_to(&[&batch[..], &[k, n]].concat());
    let count: usize = batch.iter().product();
    let mut out = vec![0.0; count * m * n];
    for p in 0..count {
        let (x, y) = (&a.data[p * m * k..], &b.data[p * k * n..]);
        for i in 0..m {
            for j in 0..n {
                out[(p * m + i) * n + j] = (0..k).map(|l| x[i * k + l] * y[l * n + j]).sum();
            }
        }
    }
    Array::new(&[&batch[..], &[m, n]].concat(), out)
}

/// GELU, erf form: x·Φ(x).
pub fn gelu(x: f64) -> f64 {
    x * normal_cdf(x)
}

/// `log Σ exp(row)`, shifted by the row maximum.
pub fn log_sum_exp(row: &[f64]) -> f64 {
    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + row.iter().map(|&v| (v - m).exp()).sum::<f64>().ln()
}

/// Softmax over the last dim.
pub fn softmax_last(x: &Array) -> Array {
    x.map_rows(|row| {
        let lse = log_sum_exp(row);
        row.iter().map(|&v| (v - lse).exp()).collect()
    })
}

/// The shape of `x` with dim `dim` set to `len`, and the sizes before and after `dim`.
pub fn split_at(x: &Array, dim: usize, len: usize) -> (Vec<usize>, usize, usize) {
    let mut shape = x.shape.clone();
    shape[dim] = len;
    let outer = x.shape[..dim].iter().product();
    let inner = x.shape[dim + 1..].iter().product();
    (shape, outer, inner)
}

/// Entries of `x` along `dim` at `indices`.
pub fn index_select(x: &Array, dim: usize, indices: &[i64]) -> Array {
    let (shape, outer, inner) = split_at(x, dim, indices.len());
    let d = x.shape[dim];
    let mut out = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for &i in indices {
            let start = (o * d + i as usize) * inner;
            out.extend_from_slice(&x.data[start..start + inner]);
        }
    }
    Array::new(&shape, out)
}

/// Concatenation along `dim`.
pub fn cat(xs: &[&Array], dim: usize) -> Array {
    let total = xs.iter().map(|x| x.shape[dim]).sum();
    let (shape, outer, inner) = split_at(xs[0], dim, total);
    let mut out = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for x in xs {
            let run = x.shape[dim] * inner;
            out.extend_from_slice(&x.data[o * run..(o + 1) * run]);
        }
    }
    Array::new(&shape, out)
}
