#!/usr/bin/env bash
# Build everything the GPU check runs, on this machine (no GPU needed), into one folder that
# travels to the GPU machine (default target/gpu-check, well under 64 MiB: release builds,
# stripped):
#   conformance    the conformance suite (cuda variant of every case)
#   cross_device   CPU vs CUDA on the same inputs, and a small BEiT trained on both
#   nccl           the NCCL group (backends/cuda/tests/nccl.rs), one member on cuda:0
#   beit_nccl      training in that group against the lone run (beit/tests/nccl.rs)
#   device_bench   BEiT-Base MIM train/forward images/s and sgemm TFLOP/s (--device)
#   beit           the CLI, built with --features cuda
# Then, on the GPU machine: python3 scripts/gpu-check-run.py target/gpu-check
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/target/gpu-check}"
cd "$root"
# shellcheck source=scripts/cuda-env.sh
source scripts/cuda-env.sh
target="${CARGO_TARGET_DIR:-$root/target}"

# Test binaries: cargo prints their paths as JSON "executable" fields.
tests_json="$(cargo test --release --features cuda -p beit-conformance --test conformance --test cross_device \
    --no-run --message-format=json)"
tests_json+=$'\n'"$(cargo test --release --features cuda -p beit-backend-cuda --test nccl --no-run --message-format=json)"
beit_json="$(cargo test --release --features cuda -p beit --test nccl --no-run --message-format=json)"
cargo build --release -p beit-cli --features cuda
cargo build --release -p beit-benches --features cuda --bin device_bench

rm -rf "$out"
mkdir -p "$out"
for t in conformance cross_device nccl; do
    exe="$(printf '%s\n' "$tests_json" | grep -o "\"executable\":\"[^\"]*/deps/${t}-[0-9a-f]*\"" | tail -n 1 | cut -d'"' -f4)"
    [ -n "$exe" ] || { echo "gpu-check-build: no test binary for $t" >&2; exit 1; }
    cp "$exe" "$out/$t"
done
exe="$(printf '%s\n' "$beit_json" | grep -o "\"executable\":\"[^\"]*/deps/nccl-[0-9a-f]*\"" | tail -n 1 | cut -d'"' -f4)"
[ -n "$exe" ] || { echo "gpu-check-build: no test binary for beit's nccl" >&2; exit 1; }
cp "$exe" "$out/beit_nccl"
cp "$target/release/beit" "$target/release/device_bench" "$out/"
strip "$out"/*
git -C "$root" rev-parse HEAD > "$out/COMMIT" 2>/dev/null || true
du -sh "$out"
ls -l "$out"
