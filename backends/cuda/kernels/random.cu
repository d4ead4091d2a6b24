// Dropout masks from the engine's counter-based generator (engine/src/rng.rs): element i is
// 1/keep when uniform(seed, i) < keep, else 0, bit for bit the CPU backend's mask.
#include "common.cuh"

// SplitMix64 finaliser (rng::mix64).
__device__ __forceinline__ u64 mix64(u64 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// rng::uniform: 24 random bits in [0, 1). `mixed_seed` is mix64(seed), done once on the host.
__device__ __forceinline__ double uniform(u64 mixed_seed, u64 index) {
    const u64 z = mix64(mixed_seed ^ (index * 0x9E3779B97F4A7C15ULL));
    return (double)(z >> 40) / 16777216.0;
}

template <typename T> __device__ void bernoulli_scaled(i64 n, double keep, u64 mixed_seed, T scale, T* out) {
    GRID_LOOP(i, n) out[i] = uniform(mixed_seed, (u64)i) < keep ? scale : T(0);
}
extern "C" __global__ void bernoulli_scaled_f32(i64 n, double keep, u64 mixed_seed, float scale, float* out) {
    bernoulli_scaled(n, keep, mixed_seed, scale, out);
}
extern "C" __global__ void bernoulli_scaled_f64(i64 n, double keep, u64 mixed_seed, double scale, double* out) {
    bernoulli_scaled(n, keep, mixed_seed, scale, out);
}
