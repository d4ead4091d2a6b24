//! Seeded random inputs: every case draws from its own fixed seed, so a failure
//! reproduces, and every backend sees the same values.

use crate::Array;
use beit_engine::rng::Rng;

/// A seeded generator of input arrays.
pub struct Gen(Rng);

impl Gen {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Gen {
        Gen(Rng::new(seed))
    }

    /// Uniform values in `[lo, hi)`.
    pub fn uniform(&mut self, shape: &[usize], lo: f64, hi: f64) -> Array {
        self.array(shape, |r| r.uniform_range(lo, hi))
    }

    /// Normal(0, std) values.
    pub fn normal(&mut self, shape: &[usize], std: f64) -> Array {
        self.array(shape, |r| r.normal() * std)
    }

    /// Values of random sign with magnitude in `[lo, hi)`: keeps inputs away from kinks and
    /// poles at 0 (relu, abs, 1/x) by at least `lo`.
    pub fn signed(&mut self, shape: &[usize], lo: f64, hi: f64) -> Array {
        self.array(shape, |r| {
            let m = r.uniform_range(lo, hi);
            if r.uniform() < 0.5 {
                -m
            } else {
                m
            }
        })
    }

    /// Small whole numbers `0..n` as floats: inputs with many exact ties (comparisons).
    pub fn whole(&mut self, shape: &[usize], n: usize) -> Array {
        self.array(shape, |r| r.below(n) as f64)
    }

    /// `len` indices in `0..bound`.
    pub fn indices(&mut self, len: usize, bound: usize) -> Vec<i64> {
        (0..len).map(|_| self.0.below(bound) as i64).collect()
    }

    /// `len` booleans, each true with probability `p`.
    pub fn bools(&mut self, len: usize, p: f64) -> Vec<bool> {
        (0..len).map(|_| self.0.uniform() < p).collect()
    }

    fn array(&mut self, shape: &[usize], mut f: impl FnMut(&mut Rng) -> f64) -> Array {
        let n = shape.iter().product();
        Array::new(shape, (0..n).map(|_| f(&mut self.0)).collect())
    }
}
