// Cross-entropy with label smoothing ε and an ignored target (PyTorch semantics: the target
// distribution is (1−ε)·onehot + ε/C), and its gradient. The host first checks the targets
// with `first_bad_target`; logits are contiguous [rows, c].
#include "common.cuh"

// Lowest row whose target is neither `ignore` nor in 0..c, into *bad (preset to rows).
extern "C" __global__ void first_bad_target(i64 rows, i64 c, const i64* targets, i64 ignore, i64* bad) {
    GRID_LOOP(r, rows) {
        const i64 t = targets[r];
        if (t != ignore && (t < 0 || t >= c)) atomicMin((long long*)bad, (long long)r);
    }
}

// Per-row loss lse − (1−ε)·x_t − ε·mean(x), 0 for ignored rows.
template <typename T>
__device__ void row_loss(i64 rows, i64 c, const T* logits, const i64* targets, i64 ignore, double eps, double* loss) {
    ROW_LOOP(r, rows) {
        const i64 t = targets[r];
        if (t == ignore) {
            if (threadIdx.x == 0) loss[r] = 0.0;
            continue;
        }
        const T* x = logits + r * c;
        const T m = row_max(x, c);
        const T se = row_sum_exp(x, c, m);
        T sx = T(0);
        for (i64 j = threadIdx.x; j < c; j += blockDim.x) sx += x[j];
        sx = block_sum(sx);
        if (threadIdx.x == 0) {
            const double lse = (double)m + log((double)se);
            loss[r] = lse - (1.0 - eps) * (double)x[t] - eps * (double)sx / (double)c;
        }
    }
}

// One block: stats[0] = Σ loss (when `loss` is given), stats[1] = rows with a target; then
// *out = stats[0] / stats[1] (NaN when no row counts) when `out` is given.
template <typename T>
__device__ void loss_total(i64 rows, const double* loss, const i64* targets, i64 ignore, double* stats, T* out) {
    double s = 0.0, n = 0.0;
    for (i64 r = threadIdx.x; r < rows; r += blockDim.x) {
        if (targets[r] != ignore) {
            n += 1.0;
            if (loss) s += loss[r];
        }
    }
    s = block_sum(s);
    n = block_sum(n);
    if (threadIdx.x == 0) {
        stats[0] = s;
        stats[1] = n;
        if (out) out[0] = (T)(s / n);
    }
}

// g = dloss/count · (softmax(x) − ε/C − (1−ε)·onehot(t)); zero rows where ignored.
template <typename T>
__device__ void ce_grad(i64 rows, i64 c, const T* logits, const i64* targets, i64 ignore, double eps, const T* dloss,
                        const double* stats, T* g) {
    const T scale = (T)((double)dloss[0] / stats[1]);
    const T hit = (T)(1.0 - eps), off = (T)(eps / (double)c);
    ROW_LOOP(r, rows) {
        const i64 t = targets[r];
        const T* x = logits + r * c;
        T* gr = g + r * c;
        if (t == ignore) {
            for (i64 j = threadIdx.x; j < c; j += blockDim.x) gr[j] = T(0);
            continue;
        }
        const T m = row_max(x, c);
        const T inv = T(1) / row_sum_exp(x, c, m);
        for (i64 j = threadIdx.x; j < c; j += blockDim.x) {
            T v = (m_exp(x[j] - m) * inv - off) * scale;
            if (j == t) v -= hit * scale;
            gr[j] = v;
        }
    }
}

#define LOSS(NAME, T)                                                                                       \
    extern "C" __global__ void ce_row_loss_##NAME(i64 rows, i64 c, const T* logits, const i64* targets,      \
                                                  i64 ignore, double eps, double* loss) {                   \
        row_loss(rows, c, logits, targets, ignore, eps, loss);                                              \
    }                                                                                                       \
    extern "C" __global__ void ce_total_##NAME(i64 rows, const double* loss, const i64* targets, i64 ignore,  \
                                               double* stats, T* out) {                                     \
        loss_total(rows, loss, targets, ignore, stats, out);                                                \
    }                                                                                                       \
    extern "C" __global__ void ce_grad_##NAME(i64 rows, i64 c, const T* logits, const i64* targets,          \
                                              i64 ignore, double eps, const T* dloss, const double* stats,   \
                                              T* g) {                                                       \
        ce_grad(rows, c, logits, targets, ignore, eps, dloss, stats, g);                                    \
    }
LOSS(f32, float)
LOSS(f64, double)
