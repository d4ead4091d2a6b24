// The fused AdamW update in place (PyTorch semantics, decoupled weight decay), each gradient
// multiplied by `grad_scale` first (a norm clip's factor). The host computes the step
// constants in f64 and rounds them to T, as the CPU backend does.
#include "common.cuh"

template <typename T> struct AdamW {
    T decay, b1, b2, one_b1, one_b2, step_size, bc2_sqrt, eps, grad_scale;
};

template <typename T> __device__ void adamw(i64 n, AdamW<T> h, T* p, const T* g, T* m, T* v) {
    GRID_LOOP(i, n) {
        const T gi = g[i] * h.grad_scale;
        const T mi = h.b1 * m[i] + h.one_b1 * gi;
        const T vi = h.b2 * v[i] + h.one_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * h.decay - h.step_size * mi / (m_sqrt(vi) / h.bc2_sqrt + h.eps);
    }
}
extern "C" __global__ void adamw_f32(i64 n, AdamW<float> h, float* p, const float* g, float* m, float* v) {
    adamw(n, h, p, g, m, v);
}
extern "C" __global__ void adamw_f64(i64 n, AdamW<double> h, double* p, const double* g, double* m, double* v) {
    adamw(n, h, p, g, m, v);
}
