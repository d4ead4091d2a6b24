// Elementwise kernels on strided views: unary, binary, comparison, select and the GELU
// gradient. Outputs are contiguous; inputs go through Dims/Offs.
#include "common.cuh"

// ---- unary: one kernel per op and dtype, `unary_<op>_<dtype>(n, d, oa, a, out, p, q)`; p and q
// are the op's scalars (affine: x·p + q; powf: x^p), unused by the others. The host names the
// kernel, so an op without one is an error at launch, never another op's result.
template <typename Op, typename T> __device__ void unary(i64 n, Dims d, Offs oa, const T* a, T* out, T p, T q) {
    GRID_LOOP(i, n) out[i] = Op::f(a[offset1(d, oa, i)], p, q);
}
#define UNARY(NAME, EXPR)                                                                                   \
    struct Unary_##NAME {                                                                                   \
        template <typename T> static __device__ __forceinline__ T f(T x, T p, T q) {                       \
            (void)p;                                                                                        \
            (void)q;                                                                                        \
            return EXPR;                                                                                    \
        }                                                                                                   \
    };                                                                                                      \
    extern "C" __global__ void unary_##NAME##_f32(i64 n, Dims d, Offs oa, const float* a, float* out, float p, \
                                                  float q) {                                                \
        unary<Unary_##NAME>(n, d, oa, a, out, p, q);                                                        \
    }                                                                                                       \
    extern "C" __global__ void unary_##NAME##_f64(i64 n, Dims d, Offs oa, const double* a, double* out,   \
                                                  double p, double q) {                                     \
        unary<Unary_##NAME>(n, d, oa, a, out, p, q);                                                        \
    }
UNARY(neg, -x)
UNARY(exp, m_exp(x))
UNARY(log, m_log(x))
UNARY(sqrt, m_sqrt(x))
UNARY(tanh, m_tanh(x))
UNARY(erf, m_erf(x))
UNARY(abs, m_abs(x))
UNARY(relu, x > T(0) ? x : (x != x ? x : T(0)))
UNARY(sqr, x * x)
UNARY(recip, T(1) / x)
UNARY(sigmoid, T(1) / (T(1) + m_exp(-x)))
UNARY(gelu, gelu(x))
UNARY(affine, x * p + q)
UNARY(powf, m_pow(x, p))

// ---- binary: `binary_<op>_<dtype>(n, d, oa, ob, a, b, out)`. Integers wrap like Rust's wrapping
// ops; there is no integer division (the host never asks for one). ----
template <typename Op, typename T> __device__ void binary(i64 n, Dims d, Offs oa, Offs ob, const T* a, const T* b, T* out) {
    GRID_LOOP(i, n) {
        i64 x, y;
        offset2(d, oa, ob, i, x, y);
        out[i] = Op::f(a[x], b[y]);
    }
}
#define BINARY_OP(NAME, EXPR)                                                                               \
    struct Binary_##NAME {                                                                                  \
        template <typename T> static __device__ __forceinline__ T f(T a, T b) { return EXPR; }             \
    };
#define BINARY(NAME, SUFFIX, T)                                                                             \
    extern "C" __global__ void binary_##NAME##_##SUFFIX(i64 n, Dims d, Offs oa, Offs ob, const T* a,       \
                                                        const T* b, T* out) {                               \
        binary<Binary_##NAME>(n, d, oa, ob, a, b, out);                                                     \
    }
#define BINARY_FLOAT(NAME, EXPR) BINARY_OP(NAME, EXPR) BINARY(NAME, f32, float) BINARY(NAME, f64, double)
BINARY_FLOAT(add, a + b)
BINARY_FLOAT(sub, a - b)
BINARY_FLOAT(mul, a * b)
BINARY_FLOAT(div, a / b)
BINARY_FLOAT(maximum, nan_max(a, b))
BINARY_FLOAT(minimum, nan_min(a, b))
BINARY_OP(wadd, (i64)((u64)a + (u64)b))
BINARY_OP(wsub, (i64)((u64)a - (u64)b))
BINARY_OP(wmul, (i64)((u64)a * (u64)b))
BINARY_OP(imax, a > b ? a : b)
BINARY_OP(imin, a < b ? a : b)
#define BINARY_I64(NAME, OP)                                                                                \
    extern "C" __global__ void binary_##NAME##_i64(i64 n, Dims d, Offs oa, Offs ob, const i64* a,          \
                                                   const i64* b, i64* out) {                                \
        binary<Binary_##OP>(n, d, oa, ob, a, b, out);                                                       \
    }
BINARY_I64(add, wadd)
BINARY_I64(sub, wsub)
BINARY_I64(mul, wmul)
BINARY_I64(maximum, imax)
BINARY_I64(minimum, imin)
// ---- comparison to bool: `cmp_<op>_<dtype>(n, d, oa, ob, a, b, out)` ----
template <typename Op, typename T>
__device__ void cmp(i64 n, Dims d, Offs oa, Offs ob, const T* a, const T* b, uint8_t* out) {
    GRID_LOOP(i, n) {
        i64 x, y;
        offset2(d, oa, ob, i, x, y);
        out[i] = Op::f(a[x], b[y]);
    }
}
#define CMP_KERNEL(NAME, SUFFIX, T)                                                                         \
    extern "C" __global__ void cmp_##NAME##_##SUFFIX(i64 n, Dims d, Offs oa, Offs ob, const T* a,          \
                                                     const T* b, uint8_t* out) {                            \
        cmp<Cmp_##NAME>(n, d, oa, ob, a, b, out);                                                           \
    }
#define CMP(NAME, EXPR)                                                                                     \
    struct Cmp_##NAME {                                                                                     \
        template <typename T> static __device__ __forceinline__ uint8_t f(T a, T b) { return EXPR; }       \
    };                                                                                                      \
    CMP_KERNEL(NAME, f32, float)                                                                            \
    CMP_KERNEL(NAME, f64, double)                                                                           \
    CMP_KERNEL(NAME, i64, i64)                                                                              \
    CMP_KERNEL(NAME, u32, uint32_t)                                                                         \
    CMP_KERNEL(NAME, u8, uint8_t)
CMP(eq, a == b)
CMP(ne, a != b)
CMP(lt, a < b)
CMP(le, a <= b)
CMP(gt, a > b)
CMP(ge, a >= b)

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
