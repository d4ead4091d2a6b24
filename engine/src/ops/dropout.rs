//! Dropout and drop-path (stochastic depth) with counter-based seeded masks.

use crate::{Error, Result, Tensor};

impl Tensor {
    /// Zero each element with probability `p` and scale the rest by `1/(1−p)`; the mask
    /// is a function of `seed` only, identical on every backend.
    pub fn dropout(&self, p: f64, seed: u64) -> Result<Tensor> {
        let mask = self.keep_mask(p, seed, self.shape(), 0, "dropout")?;
        match mask {
            Some(m) => self.mul(&m),
            None => Ok(self.clone()),
        }
    }

    /// Drop whole samples (dim 0) with probability `p`, scaling kept ones by `1/(1−p)`:
    /// the residual-branch regulariser of BEiT's blocks.
    pub fn drop_path(&self, p: f64, seed: u64) -> Result<Tensor> {
        self.drop_path_at(p, seed, 0)
    }

    /// [`Tensor::drop_path`] for samples `first..first + B` of a larger batch: sample `i`
    /// gets the draw of sample `first + i`, so a data-parallel member's shard drops what
    /// the whole batch would.
    pub fn drop_path_at(&self, p: f64, seed: u64, first: usize) -> Result<Tensor> {
        if self.rank() == 0 {
            return Err(Error::invalid("drop_path", "input is 0-dim"));
        }
        let mut shape = vec![1; self.rank()];
        shape[0] = self.shape()[0];
        match self.keep_mask(p, seed, &shape, first, "drop_path")? {
            Some(m) => self.mul(&m),
            None => Ok(self.clone()),
        }
    }

    /// The scaled keep-mask of `shape`, elements `skip..` of the seed's draws.
    fn keep_mask(&self, p: f64, seed: u64, shape: &[usize], skip: usize, op: &'static str) -> Result<Option<Tensor>> {
        self.check_float(op)?;
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(op, format!("drop probability {p} not in [0, 1)")));
        }
        if p == 0.0 {
            return Ok(None);
        }
        let n: usize = shape.iter().product();
        let m = self.device().backend().bernoulli_scaled(self.dtype(), skip + n, 1.0 - p, seed)?;
        let m = Tensor::from_storage(m, &[skip + n], self.device())?;
        Ok(Some(if skip == 0 { m } else { m.narrow(0, skip, n)? }.reshape(shape)?))
    }
}
