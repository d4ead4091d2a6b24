"""DALL-E dVAE encoder (openai's sizes) at 112x112 on the CPU: PyTorch (the package's
architecture written with torch.nn.functional, fp32, inference_mode) next to our
`dalle_forward` bench binary, on the same weights, interleaved.

    cargo build --release -p beit-benches --bin dalle_forward -p beit-cli
    python benches/pytorch/dalle_encoder.py [--batch 8] [--iters 3] [--rounds 3] [--threads 2]

`dalle_forward --save` writes a random encoder (the package's init) into a temporary
folder; PyTorch loads that folder's model.safetensors (every weight used, none missing).
Each round runs `dalle_forward --model DIR --iters N` and N
PyTorch forwards (1 warm-up each); the medians are over all timed forwards of each side.
Prints both medians, ours/PyTorch, our peak RSS (the whole process) and PyTorch's
(the Python process's VmHWM, torch included). Then `beit tokenize` and PyTorch in fp64 run
on the first image and the largest logit difference is printed. Threads: torch.set_num_threads(--threads),
RAYON_NUM_THREADS for ours. Needs torch and safetensors; not run in CI.
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
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from common import peak_rss_mib

ROOT = Path(__file__).resolve().parents[2]


def encoder(weights, config):
    """The encoder as a function of NCHW pixels, from the package's parameter names."""
    used = set()

    def conv(name, x):
        w, b = weights[f"{name}.w"], weights[f"{name}.b"]
        used.update([f"{name}.w", f"{name}.b"])
        return F.conv2d(x, w, b, padding=(w.shape[-1] - 1) // 2)

    groups, blocks = config["group_count"], config["n_blk_per_group"]
    gain = 1.0 / (groups * blocks) ** 2

    def forward(x):
        x = conv("blocks.input", x)
        for g in range(1, groups + 1):
            for i in range(1, blocks + 1):
                name = f"blocks.group_{g}.block_{i}"
                h = x
                for j in range(1, 5):
                    h = conv(f"{name}.res_path.conv_{j}", F.relu(h))
                ident = conv(f"{name}.id_path", x) if f"{name}.id_path.w" in weights else x
                x = ident + gain * h
            if g < groups:
                x = F.max_pool2d(x, 2)
        return conv("blocks.output.conv", F.relu(x))

    return forward, used


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=112)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bench, beit = ROOT / "target/release/dalle_forward", ROOT / "target/release/beit"
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))

    def run(*cmd):
        out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr}")
        return out.stdout.strip().splitlines()[-1]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "dalle"
        run(bench, "--save", folder, "--iters", 1, "--batch", 1)
        config = json.loads((folder / "config.json").read_text())
        weights = load_file(folder / "model.safetensors")
        forward, used = encoder(weights, config)

        x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1
        ours, theirs, rss = [], [], 0.0
        for _ in range(args.rounds):
            line = json.loads(run(bench, "--model", folder, "--iters", args.iters, "--batch", args.batch, "--size", args.size))
            ours += line["times_ms"]
            rss = max(rss, line["peak_rss_mib"])
            with torch.inference_mode():
                for i in range(args.iters + 1):
                    start = time.perf_counter()
                    forward(x)
                    if i > 0:
                        theirs.append((time.perf_counter() - start) * 1e3)
        torch_rss = peak_rss_mib()
        one = x[:1].contiguous()
        save_file({"pixels": one}, Path(tmp) / "pixels.safetensors")
        run(beit, "tokenize", "--tokenizer", folder, "--input", Path(tmp) / "pixels.safetensors", "--output", Path(tmp) / "out.safetensors")
        ours_logits = load_file(Path(tmp) / "out.safetensors")["logits"].double()
        with torch.inference_mode():
            ref = encoder({k: v.double() for k, v in weights.items()}, config)[0](one.double())
        unused = sorted(set(weights) - used)
        if unused:
            sys.exit(f"weights the encoder did not use: {unused}")
        diff = (ours_logits - ref).abs().max().item()
        print(f"check: ours vs PyTorch fp64 logits {list(ref.shape)}: max |diff| {diff:.2e} (max |logit| {ref.abs().max().item():.2f})")

        o, t = statistics.median(ours), statistics.median(theirs)
        print(f"dalle encoder b{args.batch} {args.size}px, {args.threads} threads, torch {torch.__version__}: "
              f"PyTorch {t:.0f} ms, ours {o:.0f} ms, ours/PyTorch {o / t:.2f}; "
              f"peak RSS ours {rss:.0f} MiB, PyTorch process {torch_rss:.0f} MiB")


if __name__ == "__main__":
    main()
