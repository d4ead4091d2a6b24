// Gather / scatter-add along one dim of a contiguous tensor seen as [outer, n, inner], index
// checks, and top-k over the last dim.
#include "common.cuh"

// Lowest position whose index is not below `limit`, into *bad (preset to n).
template <typename I> __device__ void first_bad_index(i64 n, const I* idx, i64 limit, i64* bad) {
    GRID_LOOP(p, n) {
        const i64 i = (i64)idx[p];
        if (i < 0 || i >= limit) atomicMin((long long*)bad, (long long)p);
    }
}
extern "C" __global__ void first_bad_index_i64(i64 n, const i64* idx, i64 limit, i64* bad) {
    first_bad_index(n, idx, limit, bad);
}
extern "C" __global__ void first_bad_index_u32(i64 n, const uint32_t* idx, i64 limit, i64* bad) {
    first_bad_index(n, idx, limit, bad);
}

// For element e of a [outer, k, inner] tensor: its offset in the [outer, n, inner] tensor
// that index vector `idx` picks along the middle dim.
template <typename I> __device__ __forceinline__ i64 picked(i64 e, i64 n, i64 k, i64 inner, const I* idx) {
    const i64 ii = e % inner, j = (e / inner) % k, o = e / (inner * k);
    return (o * n + (i64)idx[j]) * inner + ii;
}

// out[o, j, e] = src[o, idx[j], e]; `total` = outer·k·inner.
template <typename B, typename I>
__device__ void index_select(i64 total, i64 n, i64 k, i64 inner, const B* src, const I* idx, B* out) {
    GRID_LOOP(e, total) out[e] = src[picked(e, n, k, inner, idx)];
}
#define SELECT(BN, B, IN, I)                                                                                \
    extern "C" __global__ void index_select_##BN##_##IN(i64 total, i64 n, i64 k, i64 inner, const B* src,    \
                                                        const I* idx, B* out) {                             \
        index_select(total, n, k, inner, src, idx, out);                                                    \
    }
SELECT(b1, uint8_t, i64, i64)
SELECT(b4, uint32_t, i64, i64)
SELECT(b8, u64, i64, i64)
SELECT(b1, uint8_t, u32, uint32_t)
SELECT(b4, uint32_t, u32, uint32_t)
SELECT(b8, u64, u32, uint32_t)

// out[o, idx[j], e] += src[o, j, e] (out already holds a copy of dst); repeats accumulate
// through atomics. `total` = outer·k·inner.
__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(i64* p, i64 v) { atomicAdd((u64*)p, (u64)v); }
template <typename T, typename I>
__device__ void index_add(i64 total, i64 n, i64 k, i64 inner, const T* src, const I* idx, T* out) {
    GRID_LOOP(e, total) atomic_add(out + picked(e, n, k, inner, idx), src[e]);
}
#define ADD(TN, T, IN, I)                                                                                   \
    extern "C" __global__ void index_add_##TN##_##IN(i64 total, i64 n, i64 k, i64 inner, const T* src,       \
                                                     const I* idx, T* out) {                                \
        index_add(total, n, k, inner, src, idx, out);                                                       \
    }
ADD(f32, float, i64, i64)
ADD(f64, double, i64, i64)
ADD(i64, i64, i64, i64)
ADD(f32, float, u32, uint32_t)
ADD(f64, double, u32, uint32_t)
ADD(i64, i64, u32, uint32_t)

// The order of top-k: larger values first, NaN largest, ties by lower index.
template <typename T> __device__ __forceinline__ bool before(T va, i64 ia, T vb, i64 ib) {
    const bool na = va != va, nb = vb != vb;
    if (na != nb) return na;
    if (!na && va != vb) return va > vb;
    return ia < ib;
}
template <typename T> struct Pick {
    T v;
    i64 i;
};
// Of two candidates (i < 0: none), the one that comes first.
template <typename T> __device__ __forceinline__ Pick<T> first(Pick<T> a, Pick<T> b) {
    if (a.i < 0) return b;
    if (b.i < 0) return a;
    return before(a.v, a.i, b.v, b.i) ? a : b;
}

// One block per row; k rounds, each picking the first element after the previous pick.
template <typename T> __device__ void topk(i64 rows, i64 d, i64 k, const T* x, T* vals, i64* idx) {
    __shared__ T sv[32];
    __shared__ i64 si[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    ROW_LOOP(r, rows) {
        const T* xr = x + r * d;
        Pick<T> prev = {T(0), -1};
        for (i64 round = 0; round < k; ++round) {
            Pick<T> best = {T(0), -1};
            for (i64 j = threadIdx.x; j < d; j += blockDim.x) {
                const T v = xr[j];
                if (prev.i >= 0 && !before(prev.v, prev.i, v, j)) continue;
                best = first(best, Pick<T>{v, j});
            }
            for (int o = 16; o > 0; o >>= 1) {
                Pick<T> other = {__shfl_xor_sync(0xffffffffu, best.v, o), __shfl_xor_sync(0xffffffffu, best.i, o)};
                best = first(best, other);
            }
            __syncthreads();
            if (lane == 0) {
                sv[warp] = best.v;
                si[warp] = best.i;
            }
            __syncthreads();
            best = lane < (int)(blockDim.x >> 5) ? Pick<T>{sv[lane], si[lane]} : Pick<T>{T(0), -1};
            for (int o = 16; o > 0; o >>= 1) {
                Pick<T> other = {__shfl_xor_sync(0xffffffffu, best.v, o), __shfl_xor_sync(0xffffffffu, best.i, o)};
                best = first(best, other);
            }
            if (threadIdx.x == 0) {
                vals[r * k + round] = best.v;
                idx[r * k + round] = best.i;
            }
            prev = best;
        }
    }
}
extern "C" __global__ void topk_f32(i64 rows, i64 d, i64 k, const float* x, float* vals, i64* idx) {
    topk(rows, d, k, x, vals, idx);
}
extern "C" __global__ void topk_f64(i64 rows, i64 d, i64 k, const double* x, double* vals, i64* idx) {
    topk(rows, d, k, x, vals, idx);
}
