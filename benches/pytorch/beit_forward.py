"""BEiT-Base/16 224 forward on the CPU, PyTorch (fp32, eval, no_grad) next to `beit bench`,
on the same weights: a folder written by `beit init --preset base --arch model`.

    cargo build --release -p beit-cli
    python benches/pytorch/beit_forward.py [--iters 10] [--batches 1 8]

Prints batch, PyTorch median ms, ours median ms, the ratio, and our peak RSS. Needs torch and
transformers; not run in CI.
"""
import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from transformers import BeitModel

ROOT = Path(__file__).resolve().parents[2]
BEIT = ROOT / "target" / "release" / "beit"


def torch_median_ms(model, batch, iters):
    x = torch.randn(batch, 3, 224, 224)
    times = []
    with torch.no_grad():
        for i in range(iters + 2):
            t = time.perf_counter()
            model(x)
            if i >= 2:
                times.append((time.perf_counter() - t) * 1e3)
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "beit-base"
        subprocess.run([BEIT, "init", "--preset", "base", "--arch", "model", "--out", folder], check=True)
        model = BeitModel.from_pretrained(folder).eval()
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        print("batch  torch_ms  ours_ms  ratio  ours_peak_rss_mb")
        for b in args.batches:
            t = torch_median_ms(model, b, args.iters)
            cmd = [BEIT, "bench", "--model", folder, "--batch", str(b), "--iters", str(args.iters), "--json"]
            ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            print(f"{b:5d}  {t:8.1f}  {ours['median_ms']:7.1f}  {ours['median_ms'] / t:5.2f}  {ours['peak_rss_mb']:.0f}")


if __name__ == "__main__":
    main()
