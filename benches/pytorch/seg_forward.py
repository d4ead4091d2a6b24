"""BEiT-Base/16 + UperNet (+ auxiliary FCN head) semantic-segmentation forward at 512x512 on
the CPU: PyTorch (Hugging Face BeitForSemanticSegmentation, fp32, eval, no_grad) next to
our `seg_forward` bench binary, on the same weights and with the same thread count.

    cargo build --release -p beit-benches --bin seg_forward
    python benches/pytorch/seg_forward.py [--iters 2] [--rounds 3] [--threads 2] [--model DIR] [--dtype bf16]

Without --model, `seg_forward --save` writes a random model (ADE20K layout: out_indices
[3, 5, 7, 11], 150 classes) into a temporary folder; Hugging Face loads that folder (the
script stops if any weight is missing, unused or misshapen). Each round runs
`seg_forward --model DIR --iters N` and N PyTorch forwards (inference_mode) on random input
of the model's size, 1 warm-up each; the medians are over all timed forwards of each side.
Prints both medians, ours/PyTorch, and the peak RSS of our process and of the Python one.
With --dtype bf16, ours runs with bf16 Linear and Conv2d weights (f32 activations and
accumulation) and PyTorch under `torch.autocast("cpu", dtype=torch.bfloat16)`.
Threads: torch.set_num_threads(--threads) and RAYON_NUM_THREADS=--threads for ours.
Needs torch, transformers and safetensors; not run in CI.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from common import peak_rss_mib

ROOT = Path(__file__).resolve().parents[2]


def ours(binary, threads, *args):
    """Run the Rust bench binary; returns its JSON summary."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [str(binary), *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def pytorch(folder):
    """Hugging Face's model on `folder` (loaded cleanly) and one input of its size."""
    model, info = transformers.BeitForSemanticSegmentation.from_pretrained(folder, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        sys.exit(f"Hugging Face did not load {folder} cleanly: {bad}")
    model.eval()
    size = json.loads((folder / "config.json").read_text())["image_size"]
    return model, torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))


def timed(model, x, iters, dtype):
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        for i in range(iters + 1):
            start = time.perf_counter()
            model(pixel_values=x)
            if i > 0:
                times.append((time.perf_counter() - start) * 1e3)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--binary", type=Path, default=ROOT / "target/release/seg_forward")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="bf16: ours --dtype bf16, PyTorch bf16 autocast")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model
        if folder is None:
            folder = Path(tmp) / "seg"
            ours(args.binary, args.threads, "--iters", 1, "--save", folder)
        model, x = pytorch(folder)
        mine, theirs, encoder, rss = [], [], [], 0.0
        for _ in range(args.rounds):
            line = ours(args.binary, args.threads, "--iters", args.iters, "--model", folder, "--dtype", args.dtype)
            mine += line["times_ms"]
            encoder.append(line["encoder_ms"])
            rss = max(rss, line["peak_rss_mib"])
            theirs += timed(model, x, args.iters, args.dtype)
        o, t = statistics.median(mine), statistics.median(theirs)
        print(f"segmentation forward 512 b1 {args.dtype}, {args.threads} threads, torch {torch.__version__}: PyTorch {t:.0f} ms, "
              f"ours {o:.0f} ms (encoder {statistics.median(encoder):.0f}), ours/PyTorch {o / t:.2f}; "
              f"peak RSS ours {rss:.0f} MiB, PyTorch process {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
