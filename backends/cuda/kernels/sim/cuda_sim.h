// cuda-sim: the CUDA builtins our kernels use, for compiling kernels/*.cu with a host C++
// compiler. Every thread of a block runs as a fiber on one OS thread (runtime.cpp), so
// `__syncthreads` and warp shuffles really wait for the other threads, `__shared__` is one
// copy per block, and blocks run in parallel on a few OS threads (atomics are real atomics).
// Only what kernels/*.cu use is here; anything else fails to compile, as it should.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <utility>

// The build script's name scan (-DBEIT_SIM_SCAN, preprocessor only) finds the kernels by
// this marker; in the real compile `__global__` is nothing.
#ifdef BEIT_SIM_SCAN
#define __global__ __beit_sim_kernel__
#else
#define __global__
#endif
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
// One copy per OS thread; an OS thread runs one block at a time, all of its threads.
#define __shared__ static __thread

struct dim3 {
    unsigned x, y, z;
};
// Set by the runtime: this fiber's thread, its block, and the launch's shape.
extern __thread dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace beit_sim {
// Block barrier of the calling fiber's block.
void syncthreads();
// A warp exchange of the calling lane (runtime.cpp): every lane of the warp publishes `v`,
// waits for the other 31, and gets the value of lane `src` (as computed by `kind`).
enum Shuffle { XOR = 0, DOWN = 1, IDX = 2 };
uint64_t shuffle(Shuffle kind, unsigned mask, uint64_t v, int arg, int width);

template <typename T> inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T> inline T from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof(T));
    return v;
}
}  // namespace beit_sim

inline void __syncthreads() { beit_sim::syncthreads(); }

template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return beit_sim::from_bits<T>(beit_sim::shuffle(beit_sim::XOR, mask, beit_sim::to_bits(v), lane_mask, width));
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return beit_sim::from_bits<T>(beit_sim::shuffle(beit_sim::DOWN, mask, beit_sim::to_bits(v), (int)delta, width));
}
template <typename T> inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    return beit_sim::from_bits<T>(beit_sim::shuffle(beit_sim::IDX, mask, beit_sim::to_bits(v), src_lane, width));
}

// Atomics between blocks (which run on different OS threads). Float adds are CAS loops, as
// on GPUs without native float atomics.
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
template <typename F, typename B> inline F atomic_float_add(F* p, F v) {
    B* bits = reinterpret_cast<B*>(p);
    B old = __atomic_load_n(bits, __ATOMIC_RELAXED);
    for (;;) {
        F cur;
        memcpy(&cur, &old, sizeof(F));
        const F next = cur + v;
        B want;
        memcpy(&want, &next, sizeof(F));
        if (__atomic_compare_exchange_n(bits, &old, want, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return cur;
    }
}
inline float atomicAdd(float* p, float v) { return atomic_float_add<float, uint32_t>(p, v); }
inline double atomicAdd(double* p, double v) { return atomic_float_add<double, uint64_t>(p, v); }
inline long long atomicMin(long long* p, long long v) {
    long long old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v < old && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}

// The tables the build script generates: per kernel file (module), every kernel's name, a
// thunk that calls it with CUDA-style arguments (an array of pointers to each value), and
// its parameter sizes; and the list of modules (`beit_sim_modules`).
namespace beit_sim {
typedef void (*Thunk)(void* const* args);
struct Entry {
    const char* name;
    Thunk thunk;
    unsigned params;
    const unsigned short* sizes;
};
struct Module {
    const char* name;
    const Entry* kernels;
    const unsigned* count;
};
template <auto F> struct Kernel;
template <typename... A, void (*F)(A...)> struct Kernel<F> {
    template <std::size_t... I> static void call(void* const* args, std::index_sequence<I...>) {
        F(*static_cast<A*>(args[I])...);
    }
    static void thunk(void* const* args) { call(args, std::index_sequence_for<A...>{}); }
    static constexpr unsigned short sizes[sizeof...(A) + 1] = {(unsigned short)sizeof(A)..., 0};
    static constexpr unsigned params = sizeof...(A);
};
}  // namespace beit_sim
#define BEIT_SIM_ENTRY(NS, NAME) \
    { #NAME, &beit_sim::Kernel<&NS::NAME>::thunk, beit_sim::Kernel<&NS::NAME>::params, beit_sim::Kernel<&NS::NAME>::sizes }
