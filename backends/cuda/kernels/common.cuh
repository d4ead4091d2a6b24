// Shared helpers of the beit-rs CUDA kernels: strided geometry, grid-stride loops, typed
// maths overloads and warp-shuffle block reductions. Every index is 64-bit.
#pragma once
#include <stdint.h>

typedef long long i64;
typedef unsigned long long u64;

// Maximum rank of a strided view after merging contiguous dims (mirrors geometry.rs).
#define MAX_RANK 8

// The merged shape of a strided walk (mirrors `Dims` in geometry.rs).
struct Dims {
    i64 size[MAX_RANK];
    int rank;
};

// One operand's strides over a `Dims` and the offset of its first element (mirrors `Offs`).
struct Offs {
    i64 stride[MAX_RANK];
    i64 base;
};

#define GRID_LOOP(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n); i += (i64)blockDim.x * gridDim.x)

// Block-per-row loop: every block takes rows blockIdx.x, blockIdx.x + gridDim.x, ...
#define ROW_LOOP(r, rows) for (i64 r = blockIdx.x; r < (i64)(rows); r += gridDim.x)

// Element offsets of row-major position `i` in one, two or three operands.
__device__ __forceinline__ i64 offset1(const Dims& d, const Offs& a, i64 i) {
    i64 oa = a.base;
    for (int r = d.rank - 1; r >= 0; --r) {
        i64 q = i / d.size[r];
        oa += (i - q * d.size[r]) * a.stride[r];
        i = q;
    }
    return oa;
}

__device__ __forceinline__ void offset2(const Dims& d, const Offs& a, const Offs& b, i64 i, i64& oa, i64& ob) {
    oa = a.base;
    ob = b.base;
    for (int r = d.rank - 1; r >= 0; --r) {
        i64 q = i / d.size[r];
        i64 digit = i - q * d.size[r];
        oa += digit * a.stride[r];
        ob += digit * b.stride[r];
        i = q;
    }
}

__device__ __forceinline__ void offset3(const Dims& d, const Offs& a, const Offs& b, const Offs& c, i64 i, i64& oa,
                                        i64& ob, i64& oc) {
    oa = a.base;
    ob = b.base;
    oc = c.base;
    for (int r = d.rank - 1; r >= 0; --r) {
        i64 q = i / d.size[r];
        i64 digit = i - q * d.size[r];
        oa += digit * a.stride[r];
        ob += digit * b.stride[r];
        oc += digit * c.stride[r];
        i = q;
    }
}

// Typed maths: one overload per float type, so templates pick the right precision.
__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float m_erf(float x) { return erff(x); }
__device__ __forceinline__ double m_erf(double x) { return erf(x); }
__device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return fabs(x); }
__device__ __forceinline__ float m_pow(float x, float p) { return powf(x, p); }
__device__ __forceinline__ double m_pow(double x, double p) { return pow(x, p); }

// GELU (erf form) x·Φ(x) and its derivative Φ(x) + x·φ(x).
template <typename T> __device__ __forceinline__ T gelu(T x) {
    return x * T(0.5) * (T(1) + m_erf(x * T(0.70710678118654752440)));
}
template <typename T> __device__ __forceinline__ T gelu_grad(T x) {
    T cdf = T(0.5) * (T(1) + m_erf(x * T(0.70710678118654752440)));
    T pdf = m_exp(T(-0.5) * x * x) * T(0.39894228040143267794);
    return cdf + x * pdf;
}

// max/min that propagate NaN (as the CPU backend does); plain for integers.
template <typename T> __device__ __forceinline__ T nan_max(T a, T b) { return (a > b || a != a) ? a : b; }
template <typename T> __device__ __forceinline__ T nan_min(T a, T b) { return (a < b || a != a) ? a : b; }

// Reduction operators (codes mirror ReduceOp: 0 sum, 1 max, 2 min).
struct SumOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return nan_max(a, b); }
};
struct MinOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return nan_min(a, b); }
};
// Wrapping integer sum (two's complement, like Rust's wrapping_add).
__device__ __forceinline__ i64 wrap_add(i64 a, i64 b) { return (i64)((u64)a + (u64)b); }

template <typename T, typename Op> __device__ __forceinline__ T warp_reduce(T v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Reduce `v` over the whole block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `identity` fills the lanes of missing warps.
template <typename T, typename Op> __device__ __forceinline__ T block_reduce(T v, Op op, T identity) {
    __shared__ T partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_reduce(v, op);
    __syncthreads();  // `partial` may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = (lane < (int)(blockDim.x >> 5)) ? partial[lane] : identity;
    return warp_reduce(v, op);
}

template <typename T> __device__ __forceinline__ T block_sum(T v) { return block_reduce(v, SumOp(), T(0)); }

// Row statistics of a block-per-row kernel over x[0..d): the NaN-propagating max, and
// Σ exp(x − max). Every thread gets the results.
template <typename T> __device__ __forceinline__ T row_max(const T* x, i64 d) {
    T m = T(-INFINITY);
    for (i64 j = threadIdx.x; j < d; j += blockDim.x) m = nan_max(m, x[j]);
    return block_reduce(m, MaxOp(), T(-INFINITY));
}
template <typename T> __device__ __forceinline__ T row_sum_exp(const T* x, i64 d, T m) {
    T s = T(0);
    for (i64 j = threadIdx.x; j < d; j += blockDim.x) s += m_exp(x[j] - m);
    return block_sum(s);
}
