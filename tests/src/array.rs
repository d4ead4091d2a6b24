//! [`Array`]: a plain row-major float64 n-d array, the host-side currency of the
//! references. Indexing is done by hand, independently of the engine's layouts.

use beit_engine::{DType, Device, HostData, Result, Tensor};

/// A row-major float64 array with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The dims (empty for a scalar).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values in row-major order.
    pub data: Vec<f64>,
}

/// Row-major strides of `shape`.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// The multi-index of row-major position `flat` in `shape`.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        index[i] = flat % d;
        flat /= d;
    }
    index
}

/// NumPy broadcast of two shapes (panics when they do not broadcast: references only
/// see valid shapes).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i + s.len() >= n { s[i + s.len() - n] } else { 1 };
    (0..n)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            (x, y) => panic!("reference: {a:?} and {b:?} do not broadcast ({x} vs {y})"),
        })
        .collect()
}

impl Array {
    /// An array from its parts; the length must match the shape.
    pub fn new(shape: &[usize], data: Vec<f64>) -> Array {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "Array::new: {shape:?} vs {} values", data.len());
        Array { shape: shape.to_vec(), data }
    }

    /// An array of `value`.
    pub fn full(shape: &[usize], value: f64) -> Array {
        Array::new(shape, vec![value; shape.iter().product()])
    }

    /// A 0-dim array.
    pub fn scalar(value: f64) -> Array {
        Array::new(&[], vec![value])
    }

    /// Download a tensor of any dtype.
    pub fn from_tensor(t: &Tensor) -> Result<Array> {
        Ok(Array::new(t.shape(), t.to_vec_f64()?))
    }

    /// Upload as a contiguous tensor of float `dtype`.
    pub fn to_tensor(&self, dtype: DType, dev: &Device) -> Result<Tensor> {
        let host = match dtype {
            DType::F32 => HostData::F32(self.data.iter().map(|&x| x as f32).collect()),
            DType::F64 => HostData::F64(self.data.clone()),
            DType::BF16 => HostData::BF16(self.data.iter().map(|&x| half::bf16::from_f64(x)).collect()),
            other => panic!("Array::to_tensor: {other} is not a float dtype"),
        };
        Tensor::from_host(&host, &self.shape, dev)
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The value at a multi-index.
    pub fn at(&self, index: &[usize]) -> f64 {
        self.data[index.iter().zip(strides_of(&self.shape)).map(|(i, s)| i * s).sum::<usize>()]
    }

    /// The values rounded to `dtype` (what a backend computing in that dtype starts from).
    pub fn rounded(&self, dtype: DType) -> Array {
        match dtype {
            DType::F32 => self.map(|x| x as f32 as f64),
            _ => self.clone(),
        }
    }

    /// The same values with another shape of equal size.
    pub fn reshape(&self, shape: &[usize]) -> Array {
        Array::new(shape, self.data.clone())
    }

    /// Elementwise `f`.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Array {
        Array::new(&self.shape, self.data.iter().map(|&x| f(x)).collect())
    }

    /// `f(self, other)` elementwise with NumPy broadcasting.
    pub fn zip(&self, other: &Array, f: impl Fn(f64, f64) -> f64) -> Array {
        let shape = broadcast_shape(&self.shape, &other.shape);
        let (a, b) = (self.broadcast_to(&shape), other.broadcast_to(&shape));
        Array::new(&shape, a.data.iter().zip(&b.data).map(|(&x, &y)| f(x, y)).collect())
    }

    /// A copy broadcast to `shape`.
    pub fn broadcast_to(&self, shape: &[usize]) -> Array {
        let extra = shape.len() - self.rank();
        let data = (0..shape.iter().product())
            .map(|flat| {
                let index = unravel(flat, shape);
                let src: Vec<usize> =
                    (0..self.rank()).map(|i| if self.shape[i] == 1 { 0 } else { index[i + extra] }).collect();
                self.at(&src)
            })
            .collect();
        Array::new(shape, data)
    }

    /// New dim `i` is old dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Array {
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        let data = (0..self.numel())
            .map(|flat| {
                let index = unravel(flat, &shape);
                let mut src = vec![0; self.rank()];
                for (i, &p) in perm.iter().enumerate() {
                    src[p] = index[i];
                }
                self.at(&src)
            })
            .collect();
        Array::new(&shape, data)
    }

    /// Swap dims `a` and `b`.
    pub fn transpose(&self, a: usize, b: usize) -> Array {
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Fold the values over `dims` with `f` from `init`; reduced dims are kept with size 1
    /// when `keepdim`, dropped otherwise.
    pub fn fold(&self, dims: &[usize], keepdim: bool, init: f64, f: impl Fn(f64, f64) -> f64) -> Array {
        let mut kept = self.shape.clone();
        for &d in dims {
            kept[d] = 1;
        }
        let mut out = vec![init; kept.iter().product()];
        let out_strides = strides_of(&kept);
        for (flat, &x) in self.data.iter().enumerate() {
            let index = unravel(flat, &self.shape);
            let o: usize = (0..self.rank()).map(|i| if dims.contains(&i) { 0 } else { index[i] * out_strides[i] }).sum();
            out[o] = f(out[o], x);
        }
        let shape: Vec<usize> = if keepdim {
            kept
        } else {
            self.shape.iter().enumerate().filter(|(i, _)| !dims.contains(i)).map(|(_, &d)| d).collect()
        };
        Array::new(&shape, out)
    }

    /// The rows of the last dim, as slices.
    pub fn rows(&self) -> std::slice::Chunks<'_, f64> {
        self.data.chunks(self.shape.last().copied().unwrap_or(1).max(1))
    }

    /// Apply `f` to every row of the last dim (output rows have the same length).
    pub fn map_rows(&self, f: impl Fn(&[f64]) -> Vec<f64>) -> Array {
        Array::new(&self.shape, self.rows().flat_map(f).collect())
    }
}
