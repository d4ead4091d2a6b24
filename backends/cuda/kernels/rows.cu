// Fused row kernels over the last dim of contiguous inputs: softmax and LayerNorm, forward
// and backward. One block per row; float accumulation, max-subtracted exponentials.
#include "common.cuh"

template <typename T> __device__ void softmax(i64 rows, i64 d, const T* x, T* y) {
    ROW_LOOP(r, rows) {
        const T* xr = x + r * d;
        T* yr = y + r * d;
        const T m = row_max(xr, d);
        const T inv = T(1) / row_sum_exp(xr, d, m);
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) yr[j] = m_exp(xr[j] - m) * inv;
    }
}

template <typename T> __device__ void softmax_backward(i64 rows, i64 d, const T* y, const T* dy, T* dx) {
    ROW_LOOP(r, rows) {
        const i64 o = r * d;
        T dot = T(0);
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) dot += y[o + j] * dy[o + j];
        dot = block_sum(dot);
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) dx[o + j] = y[o + j] * (dy[o + j] - dot);
    }
}

// y = (x − μ)·rstd·w + b, with μ and rstd = 1/√(var + eps) saved per row. w, b may be null.
template <typename T>
__device__ void layer_norm(i64 rows, i64 d, const T* x, const T* w, const T* b, T eps, T* y, T* mean, T* rstd) {
    const T inv_d = T(1) / T(d);
    ROW_LOOP(r, rows) {
        const T* xr = x + r * d;
        T s = T(0);
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) s += xr[j];
        const T mu = block_sum(s) * inv_d;
        T v = T(0);
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) v += (xr[j] - mu) * (xr[j] - mu);
        const T rs = T(1) / m_sqrt(block_sum(v) * inv_d + eps);
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) {
            T h = (xr[j] - mu) * rs;
            if (w) h *= w[j];
            if (b) h += b[j];
            y[r * d + j] = h;
        }
        if (threadIdx.x == 0) {
            mean[r] = mu;
            rstd[r] = rs;
        }
    }
}

// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·w (or dy).
template <typename T>
__device__ void layer_norm_dx(i64 rows, i64 d, const T* x, const T* w, const T* mean, const T* rstd, const T* dy,
                              T* dx) {
    const T inv_d = T(1) / T(d);
    ROW_LOOP(r, rows) {
        const i64 o = r * d;
        const T mu = mean[r], rs = rstd[r];
        T s1 = T(0), s2 = T(0);
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) {
            const T g = w ? dy[o + j] * w[j] : dy[o + j];
            s1 += g * (x[o + j] - mu) * rs;
            s2 += g;
        }
        const T c1 = block_sum(s1) * inv_d;
        const T c2 = block_sum(s2) * inv_d;
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) {
            const T g = w ? dy[o + j] * w[j] : dy[o + j];
            dx[o + j] = rs * (g - c2 - (x[o + j] - mu) * rs * c1);
        }
    }
}

// dw = Σ_rows dy·x̂, db = Σ_rows dy, per feature, accumulated in double. Blocks of 32x8:
// x picks a feature (coalesced), y splits the rows.
template <typename T>
__device__ void layer_norm_dwdb(i64 rows, i64 d, const T* x, const T* mean, const T* rstd, const T* dy, T* dw, T* db) {
    __shared__ double pw[8][33], pb[8][33];
    for (i64 tile = blockIdx.x; tile * 32 < d; tile += gridDim.x) {
        const i64 j = tile * 32 + threadIdx.x;
        double sw = 0.0, sb = 0.0;
        if (j < d) {
            for (i64 r = threadIdx.y; r < rows; r += blockDim.y) {
                const double g = (double)dy[r * d + j];
                sw += g * (double)((x[r * d + j] - mean[r]) * rstd[r]);
                sb += g;
            }
        }
        pw[threadIdx.y][threadIdx.x] = sw;
        pb[threadIdx.y][threadIdx.x] = sb;
        __syncthreads();
        if (threadIdx.y == 0 && j < d) {
            for (int y = 1; y < (int)blockDim.y; ++y) {
                sw += pw[y][threadIdx.x];
                sb += pb[y][threadIdx.x];
            }
            dw[j] = (T)sw;
            db[j] = (T)sb;
        }
        __syncthreads();
    }
}

#define ROWS(NAME, T)                                                                                       \
    extern "C" __global__ void softmax_##NAME(i64 rows, i64 d, const T* x, T* y) { softmax(rows, d, x, y); } \
    extern "C" __global__ void softmax_backward_##NAME(i64 rows, i64 d, const T* y, const T* dy, T* dx) {   \
        softmax_backward(rows, d, y, dy, dx);                                                               \
    }                                                                                                       \
    extern "C" __global__ void layer_norm_##NAME(i64 rows, i64 d, const T* x, const T* w, const T* b, T eps, \
                                                 T* y, T* mean, T* rstd) {                                  \
        layer_norm(rows, d, x, w, b, eps, y, mean, rstd);                                                   \
    }                                                                                                       \
    extern "C" __global__ void layer_norm_dx_##NAME(i64 rows, i64 d, const T* x, const T* w, const T* mean,  \
                                                    const T* rstd, const T* dy, T* dx) {                    \
        layer_norm_dx(rows, d, x, w, mean, rstd, dy, dx);                                                   \
    }                                                                                                       \
    extern "C" __global__ void layer_norm_dwdb_##NAME(i64 rows, i64 d, const T* x, const T* mean,            \
                                                      const T* rstd, const T* dy, T* dw, T* db) {           \
        layer_norm_dwdb(rows, d, x, mean, rstd, dy, dw, db);                                                \
    }
ROWS(f32, float)
ROWS(f64, double)
