"""BEiT-Base/16 + UperNet (+ auxiliary FCN head) semantic-segmentation forward at 512x512 on
the CPU: PyTorch (Hugging Face BeitForSemanticSegmentation, fp32, eval, no_grad) next to
our `seg_forward` bench binary, on the same weights and with the same thread count.

    cargo build --release -p beit-benches --bin seg_forward
    python benches/pytorch/seg_forward.py [--iters 3] [--threads 2] [--model DIR]

Without --model, `seg_forward --save` writes a random model (ADE20K layout: out_indices
[3, 5, 7, 11], 150 classes) into a temporary folder and times ours; Hugging Face then loads
that folder (the script stops if any weight is missing, unused or misshapen) and is timed
on random input of the model's size: 1 warm-up, then the median of --iters forwards.
Threads: torch.set_num_threads(--threads) and RAYON_NUM_THREADS=--threads for ours.
Needs torch, transformers and safetensors; not run in CI.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parents[2]


def ours(binary, folder, iters, threads, save):
    """Run the Rust bench binary; returns its summary line."""
    flag = "--save" if save else "--model"
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [str(binary), "--iters", str(iters), flag, str(folder)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return out.stdout.strip().splitlines()[-1]


def pytorch(folder, iters):
    model, info = transformers.BeitForSemanticSegmentation.from_pretrained(folder, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        sys.exit(f"Hugging Face did not load {folder} cleanly: {bad}")
    model.eval()
    size = json.loads((folder / "config.json").read_text())["image_size"]
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    times = []
    with torch.no_grad():
        for i in range(iters + 1):
            start = time.perf_counter()
            model(pixel_values=x)
            if i > 0:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--binary", type=Path, default=ROOT / "target/release/seg_forward")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model or Path(tmp) / "seg"
        line = ours(args.binary, folder, args.iters, args.threads, save=args.model is None)
        print(f"ours:    {line}")
        median, times = pytorch(folder, args.iters)
        print(f"pytorch: torch {torch.__version__}, {args.threads} threads: median {median:.0f} ms over {len(times)} "
              f"(min {min(times):.0f}, max {max(times):.0f})")
        m = re.search(r"median (\d+) ms", line)
        if m:
            print(f"ours / pytorch = {float(m.group(1)) / median:.2f}")


if __name__ == "__main__":
    main()
