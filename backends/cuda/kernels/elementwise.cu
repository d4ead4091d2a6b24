// Elementwise kernels on strided views: fill, copy, cast, unary, binary, comparison,
// select and the GELU gradient. Outputs are contiguous; inputs go through Dims/Offs.
#include "common.cuh"

// ---- fill and copy, by element size (1, 4 or 8 bytes) ----
template <typename B> __device__ void fill(i64 n, B value, B* out) {
    GRID_LOOP(i, n) out[i] = value;
}
template <typename B> __device__ void copy(i64 n, Dims d, Offs os, Offs od, const B* src, B* dst) {
    GRID_LOOP(i, n) {
        i64 s, t;
        offset2(d, os, od, i, s, t);
        dst[t] = src[s];
    }
}
#define BITS(NAME, B)                                                                                       \
    extern "C" __global__ void fill_##NAME(i64 n, B value, B* out) { fill(n, value, out); }                \
    extern "C" __global__ void copy_##NAME(i64 n, Dims d, Offs os, Offs od, const B* src, B* dst) {       \
        copy(n, d, os, od, src, dst);                                                                       \
    }
BITS(b1, uint8_t)
BITS(b4, uint32_t)
BITS(b8, u64)

// ---- cast: Rust `as` semantics (floats to integers truncate and saturate, NaN to 0) ----
template <typename D> struct Limits;
template <> struct Limits<i64> {
    static __device__ double lo() { return -9223372036854775808.0; }
    static __device__ double hi() { return 9223372036854775807.0; }
};
template <> struct Limits<uint32_t> {
    static __device__ double lo() { return 0.0; }
    static __device__ double hi() { return 4294967295.0; }
};
template <> struct Limits<uint8_t> {
    static __device__ double lo() { return 0.0; }
    static __device__ double hi() { return 255.0; }
};
template <typename D, typename S> struct Convert {
    static __device__ __forceinline__ D run(S x) { return (D)x; }
};
template <typename D> struct FloatToInt {
    static __device__ __forceinline__ D run(double x) {
        if (x != x) return D(0);
        if (x <= Limits<D>::lo()) return (D)(i64)Limits<D>::lo();
        if (x >= Limits<D>::hi()) return sizeof(D) == 8 ? (D)9223372036854775807LL : (D)(u64)Limits<D>::hi();
        return (D)(i64)x;
    }
};
#define FLOAT_TO_INT(S, D) \
    template <> struct Convert<D, S> { \
        static __device__ __forceinline__ D run(S x) { return FloatToInt<D>::run((double)x); } \
    };
FLOAT_TO_INT(float, i64)
FLOAT_TO_INT(float, uint32_t)
FLOAT_TO_INT(float, uint8_t)
FLOAT_TO_INT(double, i64)
FLOAT_TO_INT(double, uint32_t)
FLOAT_TO_INT(double, uint8_t)

template <typename S, typename D> __device__ void cast(i64 n, Dims d, Offs os, const S* src, D* dst, int to_bool) {
    GRID_LOOP(i, n) {
        S x = src[offset1(d, os, i)];
        dst[i] = to_bool ? (D)(x != S(0)) : Convert<D, S>::run(x);
    }
}
#define CAST(SN, S, DN, D)                                                                                  \
    extern "C" __global__ void cast_##SN##_##DN(i64 n, Dims d, Offs os, const S* src, D* dst, int to_bool) { \
        cast<S, D>(n, d, os, src, dst, to_bool);                                                            \
    }
#define CAST_FROM(SN, S) \
    CAST(SN, S, f32, float) CAST(SN, S, f64, double) CAST(SN, S, i64, i64) CAST(SN, S, u32, uint32_t) CAST(SN, S, u8, uint8_t)
CAST_FROM(f32, float)
CAST_FROM(f64, double)
CAST_FROM(i64, i64)
CAST_FROM(u32, uint32_t)
CAST_FROM(u8, uint8_t)

// ---- unary (codes mirror unary_code in elementwise.rs) ----
template <typename T> __device__ __forceinline__ T unary_op(int op, T x, T p, T q) {
    switch (op) {
        case 0: return -x;
        case 1: return m_exp(x);
        case 2: return m_log(x);
        case 3: return m_sqrt(x);
        case 4: return m_tanh(x);
        case 5: return m_erf(x);
        case 6: return m_abs(x);
        case 7: return x > T(0) ? x : (x != x ? x : T(0));
        case 8: return x * x;
        case 9: return T(1) / x;
        case 10: return T(1) / (T(1) + m_exp(-x));
        case 11: return gelu(x);
        case 12: return x * p + q;
        default: return m_pow(x, p);
    }
}
template <typename T> __device__ void unary(i64 n, Dims d, Offs oa, const T* a, T* out, int op, T p, T q) {
    GRID_LOOP(i, n) out[i] = unary_op(op, a[offset1(d, oa, i)], p, q);
}
extern "C" __global__ void unary_f32(i64 n, Dims d, Offs oa, const float* a, float* out, int op, float p, float q) {
    unary(n, d, oa, a, out, op, p, q);
}
extern "C" __global__ void unary_f64(i64 n, Dims d, Offs oa, const double* a, double* out, int op, double p,
                                     double q) {
    unary(n, d, oa, a, out, op, p, q);
}

// ---- binary (codes mirror binary_code: add, sub, mul, div, maximum, minimum) ----
template <typename T> __device__ __forceinline__ T binary_op(int op, T a, T b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        case 3: return a / b;
        case 4: return nan_max(a, b);
        default: return nan_min(a, b);
    }
}
// Integers wrap like Rust's wrapping ops; the host never asks for an integer division.
template <> __device__ __forceinline__ i64 binary_op<i64>(int op, i64 a, i64 b) {
    switch (op) {
        case 0: return (i64)((u64)a + (u64)b);
        case 1: return (i64)((u64)a - (u64)b);
        case 2: return (i64)((u64)a * (u64)b);
        case 4: return a > b ? a : b;
        case 5: return a < b ? a : b;
        default: return 0;
    }
}
template <typename T> __device__ void binary(i64 n, Dims d, Offs oa, Offs ob, const T* a, const T* b, T* out, int op) {
    GRID_LOOP(i, n) {
        i64 x, y;
        offset2(d, oa, ob, i, x, y);
        out[i] = binary_op(op, a[x], b[y]);
    }
}
#define BINARY(NAME, T)                                                                                     \
    extern "C" __global__ void binary_##NAME(i64 n, Dims d, Offs oa, Offs ob, const T* a, const T* b, T* out, \
                                             int op) {                                                      \
        binary(n, d, oa, ob, a, b, out, op);                                                                \
    }
BINARY(f32, float)
BINARY(f64, double)
BINARY(i64, i64)

// ---- comparison to bool (codes mirror cmp_code: eq, ne, lt, le, gt, ge) ----
template <typename T> __device__ __forceinline__ uint8_t cmp_op(int op, T a, T b) {
    switch (op) {
        case 0: return a == b;
        case 1: return a != b;
        case 2: return a < b;
        case 3: return a <= b;
        case 4: return a > b;
        default: return a >= b;
    }
}
#define CMP(NAME, T)                                                                                        \
    extern "C" __global__ void cmp_##NAME(i64 n, Dims d, Offs oa, Offs ob, const T* a, const T* b,         \
                                          uint8_t* out, int op) {                                           \
        GRID_LOOP(i, n) {                                                                                   \
            i64 x, y;                                                                                       \
            offset2(d, oa, ob, i, x, y);                                                                    \
            out[i] = cmp_op(op, a[x], b[y]);                                                                \
        }                                                                                                   \
    }
CMP(f32, float)
CMP(f64, double)
CMP(i64, i64)
CMP(u32, uint32_t)
CMP(u8, uint8_t)

// ---- where: cond ? a : b, by element size ----
#define WHERE(NAME, B)                                                                                      \
    extern "C" __global__ void where_##NAME(i64 n, Dims d, Offs oc, Offs oa, Offs ob, const uint8_t* c,    \
                                            const B* a, const B* b, B* out) {                               \
        GRID_LOOP(i, n) {                                                                                   \
            i64 x, y, z;                                                                                    \
            offset3(d, oc, oa, ob, i, x, y, z);                                                             \
            out[i] = c[x] ? a[y] : b[z];                                                                    \
        }                                                                                                   \
    }
WHERE(b1, uint8_t)
WHERE(b4, uint32_t)
WHERE(b8, u64)

// ---- dy · GELU'(x) ----
#define GELU_BACKWARD(NAME, T)                                                                              \
    extern "C" __global__ void gelu_backward_##NAME(i64 n, Dims d, Offs ox, Offs og, const T* x, const T* g, \
                                                    T* out) {                                               \
        GRID_LOOP(i, n) {                                                                                   \
            i64 a, b;                                                                                       \
            offset2(d, ox, og, i, a, b);                                                                    \
            out[i] = g[b] * gelu_grad(x[a]);                                                                \
        }                                                                                                   \
    }
GELU_BACKWARD(f32, float)
GELU_BACKWARD(f64, double)
