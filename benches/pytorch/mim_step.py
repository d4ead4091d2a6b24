"""PyTorch's side of `cargo bench -p beit-benches --bench pipeline` (beit_base_mim_step):
one MIM training step of BEiT-Base/16 224 (forward, loss on ~75 masked patches per image,
backward, AdamW) at batch 8 on the CPU, fp32. Needs torch + transformers; not run in CI.

    python benches/pytorch/mim_step.py [--iters 5]
"""
import argparse
import time

import torch
from transformers import BeitConfig, BeitForMaskedImageModeling


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    config = BeitConfig(use_mask_token=True, use_shared_relative_position_bias=True, drop_path_rate=0.1)
    model = BeitForMaskedImageModeling(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch, 3, 224, 224)
    mask = torch.zeros(args.batch, 196, dtype=torch.bool)
    mask[:, torch.randperm(196)[:75]] = True
    labels = torch.randint(0, 8192, (int(mask.sum()),))
    times = []
    for i in range(args.iters + 1):
        t = time.perf_counter()
        loss = model(x, bool_masked_pos=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 1:
            times.append(time.perf_counter() - t)
    times.sort()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: "
          f"MIM step batch {args.batch}: median {times[len(times) // 2]:.2f} s")


if __name__ == "__main__":
    main()
