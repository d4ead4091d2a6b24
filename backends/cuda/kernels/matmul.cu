// The backend's own batched GEMM, used when cuBLAS cannot be loaded: C[b] = A[b]·B[b] for
// strided A [m, k] and B [k, n] (any strides, so transposes are free), contiguous C [m, n].
// 64x64 output tiles, 16-deep k slices staged in shared memory, 4x4 outputs per thread.
#include "common.cuh"

#define TM 64
#define TN 64
#define TK 16

// One strided matrix operand: element (r, c) of batch b is at base_b + r·rs + c·cs, where
// base_b walks the batch dims (`bd`, `bo`).
struct Mat {
    Offs bo;
    i64 rs, cs;
};

template <typename T>
__device__ void gemm(i64 batches, Dims bd, i64 m, i64 n, i64 k, Mat ma, const T* a, Mat mb, const T* b, T* c) {
    __shared__ T as[TK][TM + 1];
    __shared__ T bs[TK][TN + 1];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;  // 256 threads
    const i64 row0 = (i64)blockIdx.y * TM, col0 = (i64)blockIdx.x * TN;
    for (i64 batch = blockIdx.z; batch < batches; batch += gridDim.z) {
        const i64 abase = offset1(bd, ma.bo, batch), bbase = offset1(bd, mb.bo, batch);
        T acc[4][4];
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) acc[i][j] = T(0);
        for (i64 k0 = 0; k0 < k; k0 += TK) {
            for (int e = threadIdx.x; e < TM * TK; e += blockDim.x) {
                const int r = e / TK, kk = e % TK;
                const i64 gr = row0 + r, gk = k0 + kk;
                as[kk][r] = (gr < m && gk < k) ? a[abase + gr * ma.rs + gk * ma.cs] : T(0);
            }
            for (int e = threadIdx.x; e < TK * TN; e += blockDim.x) {
                const int kk = e / TN, cc = e % TN;
                const i64 gk = k0 + kk, gc = col0 + cc;
                bs[kk][cc] = (gk < k && gc < n) ? b[bbase + gk * mb.rs + gc * mb.cs] : T(0);
            }
            __syncthreads();
            for (int kk = 0; kk < TK; ++kk) {
                T ar[4], br[4];
                for (int i = 0; i < 4; ++i) ar[i] = as[kk][ty + 16 * i];
                for (int j = 0; j < 4; ++j) br[j] = bs[kk][tx + 16 * j];
                for (int i = 0; i < 4; ++i)
                    for (int j = 0; j < 4; ++j) acc[i][j] += ar[i] * br[j];
            }
            __syncthreads();
        }
        for (int i = 0; i < 4; ++i) {
            const i64 r = row0 + ty + 16 * i;
            if (r >= m) continue;
            for (int j = 0; j < 4; ++j) {
                const i64 col = col0 + tx + 16 * j;
                if (col < n) c[(batch * m + r) * n + col] = acc[i][j];
            }
        }
    }
}

extern "C" __global__ void gemm_f32(i64 batches, Dims bd, i64 m, i64 n, i64 k, Mat ma, const float* a, Mat mb,
                                    const float* b, float* c) {
    gemm(batches, bd, m, n, k, ma, a, mb, b, c);
}
extern "C" __global__ void gemm_f64(i64 batches, Dims bd, i64 m, i64 n, i64 k, Mat ma, const double* a, Mat mb,
                                    const double* b, double* c) {
    gemm(batches, bd, m, n, k, ma, a, mb, b, c);
}
