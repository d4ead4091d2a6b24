// Buffer kernels on strided views: fill, strided copy and cast (the Memory family).
// Strided operands go through Dims/Offs.
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
