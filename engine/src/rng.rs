//! Counter-based random numbers: the same `(seed, index)` gives the same value on
//! every backend, so dropout masks agree between CPU and GPU runs.

/// SplitMix64 finaliser: a bijective 64-bit mix.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform value in `[0, 1)` with 24 random bits (exact in f32), for element `index`.
pub fn uniform(seed: u64, index: u64) -> f64 {
    let z = mix64(mix64(seed) ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (z >> 40) as f64 / (1u64 << 24) as f64
}

/// A seeded stream of random numbers on the host (initialisation, masking, shuffling).
#[derive(Clone, Debug)]
pub struct Rng {
    seed: u64,
    counter: u64,
}

impl Rng {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { seed, counter: 0 }
    }

    /// The next raw 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.counter += 1;
        mix64(mix64(self.seed) ^ self.counter.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// A fresh seed for a device-side draw (dropout masks).
    pub fn next_seed(&mut self) -> u64 {
        self.next_u64()
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform_range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Normal(0, std) truncated to `[a, b]` by rejection (timm/BEiT `trunc_normal_`).
    pub fn trunc_normal(&mut self, std: f64, a: f64, b: f64) -> f64 {
        loop {
            let x = self.normal() * std;
            if x >= a && x <= b {
                return x;
            }
        }
    }
}
