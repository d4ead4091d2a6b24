#!/usr/bin/env python3
"""The GPU check, on a machine with an NVIDIA GPU, the CUDA 13 runtime libraries (cuBLAS) and
PyTorch, but no Rust: runs the binaries that scripts/gpu-check-build.sh put in FOLDER and
prints one short table.

    python3 scripts/gpu-check-run.py [FOLDER=target/gpu-check] [--quick]

1. the conformance suite on cuda:0 (every `::cuda` case, the same cases CI runs on the
   simulated device; a skipped case counts as a failure);
2. the matmul cases again on the built-in GEMM kernel (BEIT_CUDA_NO_CUBLAS=1);
3. cross-device: CPU vs CUDA on the same random inputs within 1e-4 relative (TF32 off), and
   a small BEiT MIM model trained 3 steps on both (losses and weights equal within 1e-4);
4. NCCL: a one-member group on cuda:0 (sums, broadcasts, errors, and gradients through
   GradBuckets equal to a plain backward pass), with BEIT_NCCL set to the libnccl.so.2 found
   in python's site-packages (PyTorch's nvidia-nccl wheel) unless it is already set; then
   training in that group (pretraining, and segmentation with SyncBN) against the lone run;
5. the benchmark: BEiT-Base MIM training step and forward at batch 64, images/s, and sgemm
   TFLOP/s, ours (device_bench) next to PyTorch eager (benches/pytorch/device_bench.py) on
   the same GPU in this run, fp32 and TF32.
Each step has a time limit; the whole check fits in about 6 minutes. --quick: fewer bench
iterations. The exit status is non-zero when a check fails.

A failed test case is run again alone with BEIT_CUDA_DEBUG=1 (every launch printed and
synchronized), and the report shows, per failed case, its message (the worst element, its
index and both values, or the driver error naming the kernel) and the last kernels it
launched, so one device window is enough to start fixing.
"""
import glob
import json
import os
import re
import site
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cublas_dirs():
    """Folders holding libcublas.so.13/.12: pip's nvidia packages, then CUDA toolkits."""
    roots = list(site.getsitepackages()) + [site.getusersitepackages()]
    pats = [f"{r}/nvidia/**/libcublas.so.1[23]*" for r in roots]
    pats += ["/usr/local/cuda*/lib64/libcublas.so.1[23]*", "/usr/local/cuda*/targets/*/lib/libcublas.so.1[23]*"]
    found = []
    for p in pats:
        for f in sorted(glob.glob(p, recursive=True)):
            d = os.path.dirname(f)
            if d not in found:
                found.append(d)
    return found


def find_nccl():
    """libnccl.so.2 for the NCCL check: pip's nvidia packages (PyTorch's nvidia-nccl-cu12/cu13
    put it in site-packages/nvidia/nccl/lib), then CUDA toolkits and the system folders."""
    roots = list(site.getsitepackages()) + [site.getusersitepackages()]
    pats = [f"{r}/nvidia/**/libnccl.so.2" for r in roots] + [f"{r}/torch/lib/libnccl.so.2" for r in roots]
    pats += ["/usr/local/cuda*/lib64/libnccl.so.2", "/usr/lib/x86_64-linux-gnu/libnccl.so.2", "/usr/lib64/libnccl.so.2"]
    found = [f for p in pats for f in sorted(glob.glob(p, recursive=True))]
    return found[0] if found else None


def run(cmd, env, timeout):
    t = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        return p.returncode, p.stdout + p.stderr, time.time() - t
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + f"\n(timed out after {timeout} s)", time.time() - t
    except OSError as e:
        return 127, f"cannot run {cmd[0]}: {e}", time.time() - t


def test_summary(code, out):
    """'N passed, M failed' from libtest output; a SKIPPED line is a failure here."""
    m = re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", out)
    passed = sum(int(a) for a, _ in m)
    failed = sum(int(b) for _, b in m)
    skipped = out.count("SKIPPED")
    ok = code == 0 and skipped == 0 and passed > 0
    text = f"{passed} passed, {failed} failed" + (f", {skipped} SKIPPED (no GPU?)" if skipped else "")
    if code == 124:
        text += ", timed out"
    return ok, text


def bench_lines(out):
    rows = {}
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                j = json.loads(line)
            except json.JSONDecodeError:
                continue
            key = j["bench"] + (f" {j['shape']}" if "shape" in j else "")
            rows[key] = j
    return rows


def explain(binary, out, env, most=6):
    """Each failed case of a libtest run, rerun alone with BEIT_CUDA_DEBUG=1: its name, the
    first panic message line and the kernels launched just before it failed."""
    names = re.findall(r"^test (\S+) \.\.\. FAILED", out, re.M)
    found = []
    for name in names[:most]:
        e = dict(env, BEIT_CUDA_DEBUG="1")
        _, rerun, _ = run([binary, name, "--exact", "--nocapture", "--test-threads=1"], e, 60)
        launches = [line for line in rerun.splitlines() if line.startswith("cuda launch: ")]
        message = next((line for line in rerun.splitlines() if "panicked" in line or "Error" in line), "")
        after = rerun.splitlines()
        if message and message in after:
            i = after.index(message)
            message = " ".join(after[i:i + 2]).strip()
        found.append((name, message[:400], launches[-4:]))
    if len(names) > most:
        found.append((f"... and {len(names) - most} more failed cases", "", []))
    return found


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    folder = Path(args[0] if args else ROOT / "target/gpu-check").resolve()
    env = dict(os.environ)
    dirs = cublas_dirs()
    env["LD_LIBRARY_PATH"] = ":".join(dirs + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    if not env.get("BEIT_NCCL"):
        nccl = find_nccl()
        if nccl:
            env["BEIT_NCCL"] = nccl
    env.pop("BEIT_CUDA_TF32", None)
    env.pop("BEIT_CUDA_NO_CUBLAS", None)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True)
        gpu = smi.stdout.strip() or smi.stderr.strip()
    except OSError as e:
        gpu = f"nvidia-smi: {e}"
    print(f"GPU: {gpu}; commit {(folder / 'COMMIT').read_text().strip()[:12] if (folder / 'COMMIT').exists() else '?'}")
    print(f"cuBLAS folders: {dirs or 'none found (the built-in GEMM kernel runs)'}")
    print(f"NCCL: BEIT_NCCL={env.get('BEIT_NCCL') or 'unset, none found (the NCCL check tries libnccl.so.2 on the library path)'}")
    sys.stdout.flush()

    checks, logs, failures = [], [], []

    def check(name, cmd, timeout, extra_env=None):
        e = dict(env, **(extra_env or {}))
        code, out, secs = run(cmd, e, timeout)
        ok, text = test_summary(code, out)
        checks.append((name, ok, text, secs))
        if not ok:
            logs.append((name, out))
            failures.extend(explain(cmd[0], out, e))

    check("conformance on cuda:0", [str(folder / "conformance"), "::cuda", "--test-threads=8", "--nocapture"], 240)
    check("matmul on the built-in GEMM", [str(folder / "conformance"), "matmul::", "--test-threads=8", "--nocapture"], 60,
          {"BEIT_CUDA_NO_CUBLAS": "1"})
    check("cross-device (ops + BEiT train)", [str(folder / "cross_device"), "--test-threads=1", "--nocapture"], 120)
    check("NCCL, one member on cuda:0", [str(folder / "nccl"), "--test-threads=1", "--nocapture"], 90)
    check("NCCL group of one vs lone training", [str(folder / "beit_nccl"), "--test-threads=1", "--nocapture"], 90)

    iters = ["--iters", "3", "--warmup", "1"] if quick else ["--iters", "8", "--warmup", "2"]
    bench = {}
    for tf32 in (False, True):
        tag = "tf32" if tf32 else "fp32"
        e = dict(env, BEIT_CUDA_TF32="1" if tf32 else "0")
        code, out, _ = run([str(folder / "device_bench"), "--device", "cuda:0", *iters], e, 150)
        bench[("ours", tag)] = bench_lines(out)
        if code != 0:
            logs.append((f"device_bench {tag}", out))
        torch_cmd = [sys.executable, str(ROOT / "benches/pytorch/device_bench.py"), "--device", "cuda:0", *iters]
        code, out, _ = run(torch_cmd + (["--tf32"] if tf32 else []), env, 150)
        bench[("torch", tag)] = bench_lines(out)
        if code != 0:
            logs.append((f"pytorch device_bench {tag}", out))

    for name, out in logs:
        print(f"\n--- {name} (last lines) ---")
        print("\n".join(out.strip().splitlines()[-25:]))
    if failures:
        print("\n| failed case (rerun with BEIT_CUDA_DEBUG=1) | message | last kernels launched |\n|---|---|---|")
        for name, message, launches in failures:
            kernels = "; ".join(l.removeprefix("cuda launch: ") for l in launches) or "-"
            print(f"| {name} | {message.replace('|', '/')} | {kernels} |")
    print("\n| check | result | s |\n|---|---|---|")
    for name, ok, text, secs in checks:
        print(f"| {name} | {'PASS' if ok else 'FAIL'}: {text} | {secs:.0f} |")
    ours = bench[("ours", "fp32")]
    print(f"\nours: {ours.get('device', {}).get('backend', '?')}")
    print("\n| benchmark (batch 64) | ours fp32 | torch fp32 | ratio | ours TF32 | torch TF32 | ratio |\n|---|---|---|---|---|---|---|")
    keys = [k for k in list(ours) + list(bench[("torch", "fp32")]) if k != "device"]
    for key in dict.fromkeys(keys):
        unit = "tflops" if key.startswith("sgemm") else "images_per_s"
        cells = []
        for tag in ("fp32", "tf32"):
            a = bench[("ours", tag)].get(key, {}).get(unit)
            b = bench[("torch", tag)].get(key, {}).get(unit)
            ratio = f"{a / b:.2f}" if a and b else "-"
            cells += [f"{a}" if a is not None else "-", f"{b}" if b is not None else "-", ratio]
        label = f"{key} ({'TFLOP/s' if unit == 'tflops' else 'images/s'})"
        print(f"| {label} | " + " | ".join(cells) + " |")
    for tag in ("fp32", "tf32"):
        a = bench[("ours", tag)].get("train", {}).get("first_loss")
        b = bench[("torch", tag)].get("train", {}).get("first_loss")
        print(f"first MIM loss {tag}: ours {a}, torch {b} (random init, ln 8192 = 9.01)")
    sys.exit(0 if all(ok for _, ok, _, _ in checks) and not logs else 1)


if __name__ == "__main__":
    main()
