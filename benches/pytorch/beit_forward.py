"""BEiT-Base/16 224 forward on the CPU: PyTorch (Hugging Face, fp32, eval, inference_mode) next to
`beit bench`, in the same run and on the same weights.

    cargo build --release -p beit-cli
    python benches/pytorch/beit_forward.py [--iters 10] [--batches 1 8] [--model DIR] [--threads N] [--dtype bf16]

Each batch size alternates --rounds times between `beit bench --iters N` and N PyTorch
forwards (ours, PyTorch, ours, ...); the medians are over all timed forwards of each side.

Without --model, a random BEiT-Base classifier is written by
`beit init --preset base --arch cls` into a temporary folder; Hugging Face loads the same
folder (and the script stops if any weight is missing or unused). Both sides get random
input of the model's size and 2 warm-up forwards per round.
Before timing, `beit forward` and PyTorch are run on one shared input and their largest
difference is printed (--no-check skips this).

With --dtype bf16, ours runs `--dtype bf16` (bf16 Linear weights, f32 activations and
accumulation) and PyTorch runs under `torch.autocast("cpu", dtype=torch.bfloat16)`; the
check then also prints each side's largest difference from PyTorch fp32.

Prints batch, PyTorch median ms, ours median ms, ours/PyTorch, and our peak RSS (VmHWM, the
whole `beit bench` process, weights included). Threads: PyTorch's default (or --threads),
ours rayon's default, all cores (or RAYON_NUM_THREADS = --threads). Needs torch,
transformers and safetensors; not run in CI.
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
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]


def beit(binary, *args, env=None):
    """Run the `beit` binary; its stderr is shown on failure."""
    cmd = [str(binary), *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return out.stdout


def load_hf(folder):
    """The Hugging Face model class named in config.json, loaded from `folder`, eval, fp32."""
    config = json.loads((folder / "config.json").read_text())
    name = (config.get("architectures") or ["BeitModel"])[0]
    model, info = getattr(transformers, name).from_pretrained(folder, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        sys.exit(f"Hugging Face did not load {folder} exactly (the weights would differ): {bad}")
    return model.eval().float(), config


def inputs(config, batch, seed=0):
    """Random pixels of the model's size and, for MIM models, a random ~40% mask."""
    g = torch.Generator().manual_seed(seed)
    size, channels = config.get("image_size", 224), config.get("num_channels", 3)
    x = {"pixel_values": torch.randn(batch, channels, size, size, generator=g)}
    if (config.get("architectures") or [""])[0] == "BeitForMaskedImageModeling":
        n = (size // config.get("patch_size", 16)) ** 2
        x["bool_masked_pos"] = torch.rand(batch, n, generator=g) < 0.4
    return x


def autocast(dtype):
    """PyTorch's bf16 autocast for --dtype bf16, else nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")


def torch_times_ms(model, x, iters, dtype):
    """Times of `iters` forwards after 2 warm-up ones, in ms."""
    times = []
    with torch.inference_mode(), autocast(dtype):
        for i in range(iters + 2):
            t = time.perf_counter()
            model(**x)
            if i >= 2:
                times.append((time.perf_counter() - t) * 1e3)
    return times


def check(binary, folder, model, config, tmp, env, dtype):
    """Largest |ours - PyTorch fp32| of each output on one shared batch-1 input (and, for
    bf16, |PyTorch autocast - PyTorch fp32|)."""
    x = inputs(config, 1, seed=1)
    src, dst = Path(tmp) / "check_in.safetensors", Path(tmp) / "check_out.safetensors"
    save_file({k: v.to(torch.uint8) if v.dtype == torch.bool else v for k, v in x.items()}, str(src))
    beit(binary, "forward", "--model", folder, "--input", src, "--output", dst, "--dtype", dtype, env=env)
    ours = load_file(str(dst))

    def outputs():
        base = getattr(model, "beit", model)  # the encoder gives last_hidden_state / pooler_output
        enc = base(**x)
        out = {"last_hidden_state": enc.last_hidden_state, "pooler_output": getattr(enc, "pooler_output", None)}
        out["logits"] = getattr(model(**x), "logits", None)
        return {k: v.float() for k, v in out.items() if v is not None}

    with torch.no_grad():
        ref = outputs()
        with autocast(dtype):
            theirs = outputs()
    diffs = {f"ours {k}": (ours[k] - v).abs().max().item() for k, v in ref.items() if k in ours}
    if dtype == "bf16":
        diffs.update({f"torch autocast {k}": (theirs[k] - v).abs().max().item() for k, v in ref.items()})
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=10, help="timed forwards per batch size (after 2 warm-up ones)")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of ours and PyTorch per batch size")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--model", type=Path, help="a model folder (default: a fresh `beit init --preset base --arch cls`)")
    ap.add_argument("--beit", type=Path, default=ROOT / "target" / "release" / "beit", help="the beit binary")
    ap.add_argument("--threads", type=int, help="threads for both sides (default: each library's own default)")
    ap.add_argument("--no-check", action="store_true", help="skip the output comparison")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="bf16: ours --dtype bf16, PyTorch bf16 autocast")
    args = ap.parse_args()
    if not args.beit.exists():
        sys.exit(f"{args.beit} not found: run `cargo build --release -p beit-cli` first (or pass --beit)")
    env = dict(os.environ)
    if args.threads:
        torch.set_num_threads(args.threads)
        env["RAYON_NUM_THREADS"] = str(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model
        if folder is None:
            folder = Path(tmp) / "beit-base"
            beit(args.beit, "init", "--preset", "base", "--arch", "cls", "--out", folder)
        model, config = load_hf(folder)
        arch = (config.get("architectures") or ["BeitModel"])[0]
        print(f"{arch} from {folder}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
              f"{config.get('image_size', 224)} px")
        print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers {transformers.__version__}, "
              f"ours: RAYON_NUM_THREADS={env.get('RAYON_NUM_THREADS', 'all cores')}")
        if not args.no_check:
            diffs = check(args.beit, folder, model, config, tmp, env, args.dtype)
            print("max |x - torch fp32| on one image: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
        print(f"{'batch':>5}  {'torch_ms':>9}  {'ours_ms':>9}  {'ours/torch':>10}  {'ours_peak_rss_mb':>16}")
        for b in args.batches:
            x = inputs(config, b)
            ours_t, torch_t, rss = [], [], None
            # Interleaved (ours, PyTorch, ours, ...), so that both see the same machine state.
            for _ in range(args.rounds):
                cmd = ["bench", "--model", folder, "--batch", b, "--iters", args.iters, "--dtype", args.dtype, "--json"]
                ours = json.loads(beit(args.beit, *cmd, env=env))
                ours_t += ours["times_ms"]
                rss = max(rss or 0, ours.get("peak_rss_mb", 0)) if "peak_rss_mb" in ours else rss
                torch_t += torch_times_ms(model, x, args.iters, args.dtype)
            t, o = statistics.median(torch_t), statistics.median(ours_t)
            rss = f"{rss:16.0f}" if rss is not None else f"{'n/a':>16}"
            print(f"{b:5d}  {t:9.1f}  {o:9.1f}  {o / t:10.2f}  {rss}", flush=True)


if __name__ == "__main__":
    main()
