// Sum / max / min / sum of squares over a set of dims. The host splits the input view into
// kept dims (`kd`/`ko`, one output each, row-major) and reduced dims (`rd`/`ro`, `count`
// elements per output). Each element is lifted (as it is, or squared) in the accumulator's
// type, then combined. Float sums accumulate in double, integer sums and squares wrap.
#include "common.cuh"

template <typename T> struct Acc { typedef T type; };
template <> struct Acc<float> { typedef double type; };

struct WrapSumOp {
    __device__ __forceinline__ i64 operator()(i64 a, i64 b) const { return wrap_add(a, b); }
};

// The operation codes (`ReduceOp` in reduce.rs).
enum { OP_SUM = 0, OP_MAX = 1, OP_MIN = 2, OP_SUM_SQUARES = 3 };

struct Plain {
    template <typename A> __device__ __forceinline__ A operator()(A x) const { return x; }
};
struct Square {
    __device__ __forceinline__ double operator()(double x) const { return x * x; }
    __device__ __forceinline__ i64 operator()(i64 x) const { return (i64)((unsigned long long)x * (unsigned long long)x); }
};

template <typename T, typename A> __device__ __forceinline__ A identity(int op) {
    if (op == OP_SUM || op == OP_SUM_SQUARES) return A(0);
    return op == OP_MAX ? (A)(-INFINITY) : (A)INFINITY;
}
template <> __device__ __forceinline__ i64 identity<i64, i64>(int op) {
    if (op == OP_SUM || op == OP_SUM_SQUARES) return 0;
    return op == OP_MAX ? (i64)0x8000000000000000ULL : (i64)0x7fffffffffffffffLL;
}

// One block per output: the threads split the reduced elements (for reductions whose
// elements are close together, or few outputs).
template <typename T, typename A, typename Op, typename Lift>
__device__ void reduce_rows(i64 outputs, i64 count, Dims kd, Offs ko, Dims rd, Offs ro, const T* src, T* out, Op op,
                            Lift lift, A init) {
    ROW_LOOP(o, outputs) {
        const i64 base = offset1(kd, ko, o);
        A acc = init;
        for (i64 r = threadIdx.x; r < count; r += blockDim.x) acc = op(acc, lift((A)src[base + offset1(rd, ro, r)]));
        acc = block_reduce(acc, op, init);
        if (threadIdx.x == 0) out[o] = (T)acc;
    }
}

// Blocks of 32x8 threads: x picks one of 32 neighbouring outputs (coalesced reads when the
// reduced dims are outer), y splits the reduced elements, then a shared-memory tree.
template <typename T, typename A, typename Op, typename Lift>
__device__ void reduce_cols(i64 outputs, i64 count, Dims kd, Offs ko, Dims rd, Offs ro, const T* src, T* out, Op op,
                            Lift lift, A init) {
    __shared__ A part[8][33];
    for (i64 tile = blockIdx.x; tile * 32 < outputs; tile += gridDim.x) {
        const i64 o = tile * 32 + threadIdx.x;
        A acc = init;
        if (o < outputs) {
            const i64 base = offset1(kd, ko, o);
            for (i64 r = threadIdx.y; r < count; r += blockDim.y) acc = op(acc, lift((A)src[base + offset1(rd, ro, r)]));
        }
        part[threadIdx.y][threadIdx.x] = acc;
        __syncthreads();
        if (threadIdx.y == 0 && o < outputs) {
            for (int y = 1; y < (int)blockDim.y; ++y) acc = op(acc, part[y][threadIdx.x]);
            out[o] = (T)acc;
        }
        __syncthreads();
    }
}

#define REDUCE(NAME, KIND, T, SUM)                                                                          \
    extern "C" __global__ void reduce_##KIND##_##NAME(i64 outputs, i64 count, Dims kd, Offs ko, Dims rd,     \
                                                      Offs ro, const T* src, T* out, int op) {              \
        typedef Acc<T>::type A;                                                                             \
        const A init = identity<T, A>(op);                                                                  \
        if (op == OP_SUM) reduce_##KIND<T, A>(outputs, count, kd, ko, rd, ro, src, out, SUM(), Plain(), init);  \
        else if (op == OP_SUM_SQUARES)                                                                      \
            reduce_##KIND<T, A>(outputs, count, kd, ko, rd, ro, src, out, SUM(), Square(), init);           \
        else if (op == OP_MAX)                                                                              \
            reduce_##KIND<T, A>(outputs, count, kd, ko, rd, ro, src, out, MaxOp(), Plain(), init);          \
        else reduce_##KIND<T, A>(outputs, count, kd, ko, rd, ro, src, out, MinOp(), Plain(), init);         \
    }
REDUCE(f32, rows, float, SumOp)
REDUCE(f64, rows, double, SumOp)
REDUCE(i64, rows, i64, WrapSumOp)
REDUCE(f32, cols, float, SumOp)
REDUCE(f64, cols, double, SumOp)
REDUCE(i64, cols, i64, WrapSumOp)
