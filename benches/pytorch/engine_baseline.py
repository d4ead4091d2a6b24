"""PyTorch baseline for the engine benches, on the same machine (CPU, fp32).

Times the sgemm shapes of `cargo bench -p beit-benches --bench sgemm` (x @ w.T, as a
Linear layer) and the ViT-Base block of `--bench block` (batch 8, 197 tokens, forward
under no_grad and forward+backward). Needs torch; not run in CI.

    python benches/pytorch/engine_baseline.py [--threads N]
"""
import argparse
import time

import torch
import torch.nn.functional as F


def median_time(fn, warmup=3, iters=10):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def sgemm(m, k, n):
    x, w = torch.randn(m, k), torch.randn(n, k)
    t = median_time(lambda: x @ w.T, iters=20)
    return 2 * m * n * k / t / 1e9


class Block(torch.nn.Module):
    def __init__(self, d=768, h=12, f=3072):
        super().__init__()
        self.h = h
        self.norm1, self.norm2 = torch.nn.LayerNorm(d, eps=1e-6), torch.nn.LayerNorm(d, eps=1e-6)
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.fc1, self.fc2 = torch.nn.Linear(d, f), torch.nn.Linear(f, d)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q * (d // self.h) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for m, k, n in [(1576, 768, 2304), (1576, 768, 3072), (1576, 3072, 768), (197, 768, 2304), (197, 768, 3072), (197, 3072, 768)]:
        print(f"sgemm M={m} K={k} N={n}: {sgemm(m, k, n):.1f} GFLOP/s")
    block = Block()
    x = torch.randn(8, 197, 768, requires_grad=True)
    with torch.no_grad():
        fwd = median_time(lambda: block(x))
    fwd_bwd = median_time(lambda: block(x).sum().backward())
    print(f"block b8 forward: {fwd * 1e3:.1f} ms, forward+backward: {fwd_bwd * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
