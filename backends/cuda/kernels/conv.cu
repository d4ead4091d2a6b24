// im2col and its adjoint col2im for 2-D convolutions (NCHW input, patch order c·kh·kw).
#include "common.cuh"

struct Conv {
    i64 batch, channels, height, width, kh, kw, sh, sw, ph, pw, oh, ow;
};

// cols[b, oy·ow + ox, (c·kh + i)·kw + j] = x[b, c, oy·sh + i − ph, ox·sw + j − pw] (0 outside).
template <typename T> __device__ void im2col(Conv g, const T* x, T* cols) {
    const i64 pl = g.channels * g.kh * g.kw;
    const i64 total = g.batch * g.oh * g.ow * pl;
    GRID_LOOP(e, total) {
        const i64 p = e % pl, pos = (e / pl) % (g.oh * g.ow), b = e / (pl * g.oh * g.ow);
        const i64 j = p % g.kw, i = (p / g.kw) % g.kh, c = p / (g.kw * g.kh);
        const i64 iy = (pos / g.ow) * g.sh + i - g.ph, ix = (pos % g.ow) * g.sw + j - g.pw;
        cols[e] = (iy >= 0 && iy < g.height && ix >= 0 && ix < g.width)
                      ? x[((b * g.channels + c) * g.height + iy) * g.width + ix]
                      : T(0);
    }
}

// x[b, c, y, x] = Σ over the taps (oy, i), (ox, j) that read it: one thread per input
// element, so the sums are deterministic.
template <typename T> __device__ void col2im(Conv g, const T* cols, T* x) {
    const i64 pl = g.channels * g.kh * g.kw;
    const i64 total = g.batch * g.channels * g.height * g.width;
    GRID_LOOP(e, total) {
        const i64 xx = e % g.width, yy = (e / g.width) % g.height;
        const i64 c = (e / (g.width * g.height)) % g.channels, b = e / (g.width * g.height * g.channels);
        T s = T(0);
        for (i64 i = 0; i < g.kh; ++i) {
            const i64 ty = yy + g.ph - i;
            if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.oh) continue;
            const i64 oy = ty / g.sh;
            for (i64 j = 0; j < g.kw; ++j) {
                const i64 tx = xx + g.pw - j;
                if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.ow) continue;
                const i64 ox = tx / g.sw;
                s += cols[((b * g.oh + oy) * g.ow + ox) * pl + (c * g.kh + i) * g.kw + j];
            }
        }
        x[e] = s;
    }
}

extern "C" __global__ void im2col_f32(Conv g, const float* x, float* cols) { im2col(g, x, cols); }
extern "C" __global__ void im2col_f64(Conv g, const double* x, double* cols) { im2col(g, x, cols); }
extern "C" __global__ void col2im_f32(Conv g, const float* cols, float* x) { col2im(g, cols, x); }
extern "C" __global__ void col2im_f64(Conv g, const double* cols, double* x) { col2im(g, cols, x); }
