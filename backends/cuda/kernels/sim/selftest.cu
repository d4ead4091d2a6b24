// Kernels for the simulator's own tests (src/sim.rs): right and wrong uses of barriers,
// shuffles and bounds. Built only with the `cuda-sim` feature, never for the GPU.
#include "../common.cuh"

// Even threads wait at a barrier the odd ones skip: a GPU hangs or misbehaves.
extern "C" __global__ void sync_in_branch(int* out) {
    if (threadIdx.x % 2 == 0) __syncthreads();
    out[threadIdx.x] = 1;
}

// Each lane gets the sum of its warp's thread indices (a butterfly of xor shuffles).
extern "C" __global__ void warp_sum(int* out) {
    int v = (int)threadIdx.x;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    out[threadIdx.x] = v;
}

// Writes out[0..n], one element past an n-element buffer.
extern "C" __global__ void write_one_past(i64 n, float* out) {
    for (i64 i = threadIdx.x; i <= n; i += blockDim.x) out[i] = 1.0f;
}

// Thread i publishes salt + i in shared memory and reads its neighbour's, with or without
// the barrier between the write and the read.
extern "C" __global__ void shared_handoff(int salt, int barrier, int* out) {
    __shared__ int s[256];
    s[threadIdx.x] = salt + (int)threadIdx.x;
    if (barrier) __syncthreads();
    out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}
