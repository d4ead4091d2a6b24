#!/usr/bin/env python3
"""Injected-bug check of the CUDA simulator: plants one bug at a time in kernels/*.cu (a row
offset, a dropped index term, a missing barrier, an off-by-one bound, a swapped stride),
runs the CUDA conformance cases on the simulated device, and checks that each mutant fails.
The kernel files are restored after every mutant, also on Ctrl-C or an error.

    python3 scripts/sim-mutants.py [--only NAME]

Prints one line per mutant (caught by how many cases, or SURVIVED) and exits non-zero when
a mutant survives or a pattern no longer matches its kernel file. About a minute a mutant on
2 cores (the C++ kernels are rebuilt each time).
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "backends/cuda/kernels"

# (name, file, original text, mutated text)
MUTANTS = [
    ("layer_norm reads the previous row", "rows.cu",
     "const T* xr = x + r * d;\n        T s = T(0);", "const T* xr = x + (r > 0 ? r - 1 : 0) * d;\n        T s = T(0);"),
    ("index_select/index_add step outer rows by k, not n", "index.cu",
     "return (o * n + (i64)idx[j]) * inner + ii;", "return (o * k + (i64)idx[j]) * inner + ii;"),
    ("block_reduce without the barrier before reading partials", "common.cuh",
     "    if (lane == 0) partial[warp] = v;\n    __syncthreads();\n", "    if (lane == 0) partial[warp] = v;\n"),
    ("softmax writes one element past each row", "rows.cu",
     "for (i64 j = threadIdx.x; j < d; j += blockDim.x) yr[j] = m_exp(xr[j] - m) * inv;",
     "for (i64 j = threadIdx.x; j <= d; j += blockDim.x) yr[j] = m_exp(xr[j - (j == d)] - m) * inv;"),
    ("gemm loads B with its strides swapped", "matmul.cu",
     "b[bbase + gk * mb.rs + gc * mb.cs]", "b[bbase + gk * mb.cs + gc * mb.rs]"),
    ("reduce_cols skips the last partial row", "reduce.cu",
     "for (int y = 1; y < (int)blockDim.y; ++y) acc = op(acc, part[y][threadIdx.x]);",
     "for (int y = 1; y < (int)blockDim.y - 1; ++y) acc = op(acc, part[y][threadIdx.x]);"),
]


def run_suite():
    cmd = ["cargo", "test", "-q", "-p", "beit-conformance", "--features", "cuda-sim", "--test", "conformance",
           "--", "cuda", "--test-threads=2"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    out = p.stdout + p.stderr
    m = re.search(r"test result: \w+\. (\d+) passed; (\d+) failed", out)
    if not m:
        return None, out
    return (int(m.group(1)), int(m.group(2))), out


def main():
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    bad = 0
    for name, file, before, after in MUTANTS:
        if only and only not in name:
            continue
        path = KERNELS / file
        text = path.read_text()
        if text.count(before) != 1:
            print(f"STALE   {name}: the pattern is not in {file} exactly once")
            bad += 1
            continue
        try:
            path.write_text(text.replace(before, after))
            result, out = run_suite()
        finally:
            path.write_text(text)
        if result is None:
            why = re.search(r"cuda-sim: kernel [^\n]*", out) or re.search(r"error(\[E\d+\])?: [^\n]*", out)
            print(f"CAUGHT  {name}: the suite did not finish ({why.group(0)[:200] if why else 'no test result'})")
        elif result[1] > 0:
            first = re.search(r"---- (\S+) stdout ----\n(?:.*\n)*?.*panicked at [^\n]*\n([^\n]*)", out)
            why = f"; first: {first.group(1)}: {first.group(2)[:200]}" if first else ""
            print(f"CAUGHT  {name}: {result[1]} of {sum(result)} cases fail{why}")
        else:
            print(f"SURVIVED {name}: all {result[0]} cases pass")
            bad += 1
        sys.stdout.flush()
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
