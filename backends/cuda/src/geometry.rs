//! Strided geometry passed to kernels: a merged shape ([`Dims`]) and, per operand, its
//! strides and first offset ([`Offs`]). Mirrors `Dims`/`Offs` in kernels/common.cuh.

use beit_engine::{Error, Layout, Result};

/// Most dims a kernel walks after merging (MAX_RANK in common.cuh).
pub(crate) const MAX_RANK: usize = 8;

/// A merged shape, row-major.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Dims {
    size: [i64; MAX_RANK],
    rank: i32,
}

/// One operand's strides over a [`Dims`] and its first element's offset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Offs {
    stride: [i64; MAX_RANK],
    base: i64,
}

/// A joint walk over `N` views of `shape`: size-1 dims dropped, and neighbouring dims merged
/// where every view is contiguous across them.
pub(crate) fn walk<const N: usize>(op: &'static str, shape: &[usize], layouts: [&Layout; N]) -> Result<(Dims, [Offs; N])> {
    let dims: Vec<usize> = (0..shape.len()).collect();
    walk_dims(op, shape, &dims, layouts)
}

/// Like [`walk`] over the subset `dims` of the views' dims (in that order).
pub(crate) fn walk_dims<const N: usize>(
    op: &'static str,
    shape: &[usize],
    dims: &[usize],
    layouts: [&Layout; N],
) -> Result<(Dims, [Offs; N])> {
    let (mut sizes, mut strides) = (Vec::<usize>::new(), Vec::<[usize; N]>::new());
    for &d in dims {
        let size = shape[d];
        if size == 1 {
            continue;
        }
        let s: [usize; N] = std::array::from_fn(|i| layouts[i].strides()[d]);
        match (sizes.last_mut(), strides.last_mut()) {
            (Some(ld), Some(ls)) if (0..N).all(|i| ls[i] == s[i] * size) => {
                *ld *= size;
                *ls = s;
            }
            _ => {
                sizes.push(size);
                strides.push(s);
            }
        }
    }
    if sizes.len() > MAX_RANK {
        return Err(Error::invalid(op, format!("the CUDA backend walks at most {MAX_RANK} non-mergeable dims, got {:?}", shape)));
    }
    let mut d = Dims { rank: sizes.len() as i32, ..Dims::default() };
    let mut o = [Offs::default(); N];
    for (k, (&size, s)) in sizes.iter().zip(&strides).enumerate() {
        d.size[k] = size as i64;
        for i in 0..N {
            o[i].stride[k] = s[i] as i64;
        }
    }
    for i in 0..N {
        o[i].base = layouts[i].offset() as i64;
    }
    Ok((d, o))
}

impl Dims {
    /// Number of merged dims.
    pub fn rank(&self) -> usize {
        self.rank as usize
    }
}

impl Offs {
    /// The same strides from offset 0.
    pub fn at_zero(mut self) -> Offs {
        self.base = 0;
        self
    }
    /// Stride of merged dim `k`.
    pub fn stride(&self, k: usize) -> usize {
        self.stride[k] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_contiguous_runs_and_drops_unit_dims() {
        let a = Layout::contiguous(&[2, 1, 3, 4]);
        let b = Layout::contiguous(&[3, 4]).broadcast_to(&[2, 1, 3, 4]).unwrap();
        let (d, [oa, ob]) = walk("t", a.shape(), [&a, &b]).unwrap();
        assert_eq!(d.rank(), 2);
        assert_eq!(&d.size[..2], &[2, 12]);
        assert_eq!((&oa.stride[..2], &ob.stride[..2]), (&[12i64, 1][..], &[0i64, 1][..]));
        let t = Layout::contiguous(&[5, 6]).permute(&[1, 0]).unwrap();
        let (d, [ot]) = walk("t", t.shape(), [&t]).unwrap();
        assert_eq!((&d.size[..d.rank()], &ot.stride[..2]), (&[6i64, 5][..], &[1i64, 6][..]));
    }

    #[test]
    fn too_many_dims_is_an_error() {
        let l = Layout::contiguous(&[2; 10]).permute(&[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]).unwrap();
        assert!(walk("t", l.shape(), [&l]).is_err());
        assert_eq!(walk("t", &[2; 10], [&Layout::contiguous(&[2; 10])]).unwrap().0.rank(), 1);
    }
}
