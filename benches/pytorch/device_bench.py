"""PyTorch eager's side of `device_bench` (benches/src/bin/device_bench.rs), on any device:
sgemm TFLOP/s at BEiT-Base Linear shapes, BEiT-Base MIM forward and training step images/s
(Hugging Face BeitForMaskedImageModeling, shared relative position bias, drop path 0.1,
AdamW), fp32, TF32 only with --tf32 (matmuls and convolutions). Prints the same JSON lines
as `device_bench`. Needs torch + transformers; not run in CI.

    python benches/pytorch/device_bench.py --device cuda:0 [--batch 64] [--iters 10] [--tf32]
"""
import argparse
import json
import statistics
import time

import torch
from transformers import BeitConfig, BeitForMaskedImageModeling


def timed(device, warmup, iters, f):
    """Median seconds of `iters` calls of f after `warmup` untimed ones, synchronised."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        f()
    sync()
    times = []
    for _ in range(max(iters, 1)):
        t = time.perf_counter()
        f()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def setup(device, batch):
    torch.manual_seed(0)
    config = BeitConfig(use_mask_token=True, use_shared_relative_position_bias=True, drop_path_rate=0.1)
    model = BeitForMaskedImageModeling(config).to(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
    mask = torch.zeros(batch, 196, dtype=torch.bool)
    for b in range(batch):
        mask[b, torch.randperm(196)[:75]] = True
    mask = mask.to(device)
    labels = torch.randint(0, 8192, (int(mask.sum()),), device=device)
    return model, x, mask, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--only", default="sgemm,forward,train")
    ap.add_argument("--tf32", action="store_true")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    device = torch.device(a.device)
    print(json.dumps({"bench": "device", "device": a.device, "backend": f"torch {torch.__version__} eager, TF32 {'on' if a.tf32 else 'off'}"}))
    for what in a.only.split(","):
        if what == "sgemm":
            tokens = a.batch * 197
            for m, k, n in [(tokens, 768, 2304), (tokens, 768, 3072), (tokens, 3072, 768), (4096, 4096, 4096)]:
                x, w = torch.randn(m, k, device=device), torch.randn(n, k, device=device)
                s = timed(device, a.warmup, a.iters, lambda: x @ w.t())
                print(json.dumps({"bench": "sgemm", "shape": f"{m}x{k}x{n}", "ms": round(s * 1e3, 3),
                                  "tflops": round(2 * m * n * k / s / 1e12, 2)}))
        elif what == "forward":
            model, x, mask, _ = setup(device, a.batch)
            model.eval()
            with torch.no_grad():
                s = timed(device, a.warmup, a.iters, lambda: model(x, bool_masked_pos=mask))
            print(json.dumps({"bench": "forward", "batch": a.batch, "ms": round(s * 1e3, 1),
                              "images_per_s": round(a.batch / s, 1)}))
        elif what == "train":
            model, x, mask, labels = setup(device, a.batch)
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            first = []

            def step():
                loss = model(x, bool_masked_pos=mask, labels=labels).loss
                if not first:
                    first.append(loss.item())
                opt.zero_grad()
                loss.backward()
                opt.step()

            s = timed(device, a.warmup, a.iters, step)
            print(json.dumps({"bench": "train", "batch": a.batch, "ms": round(s * 1e3, 1),
                              "images_per_s": round(a.batch / s, 1), "first_loss": first[0]}))
        else:
            raise SystemExit(f"unknown benchmark {what!r}")


if __name__ == "__main__":
    main()
