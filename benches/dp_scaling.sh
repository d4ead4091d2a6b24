#!/usr/bin/env bash
# Data-parallel scaling on this machine: BEiT MIM steps (dp_bench) with the same global
# batch alone (all cores, one rayon pool) and as N MPI ranks (cores / N threads each), plus
# one rank on 1/N of the batch with cores / N threads (the per-rank work of the N-rank run).
#   strong: alone / N ranks          (same batch, same cores; 1.0 = no data-parallel cost)
#   weak:   one rank's share / N ranks (same work per rank; 1.0 = perfect scaling)
# Needs Open MPI (apt-get install openmpi-bin libopenmpi-dev libclang-dev).
# Usage: benches/dp_scaling.sh [N] [dp_bench options, e.g. --preset base --batch 8]
set -euo pipefail
cd "$(dirname "$0")/.."
ranks="${1:-2}"; shift || true
cores="$(nproc)"
per_rank=$(( cores / ranks > 0 ? cores / ranks : 1 ))
cargo build --release -q -p beit-benches --features mpi --bin dp_bench
bin=target/release/dp_bench
batch=8; args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do [[ "${args[i]}" == --batch ]] && batch="${args[i+1]}"; done
alone=$(RAYON_NUM_THREADS=$cores "$bin" "$@")
group=$(RAYON_NUM_THREADS=$per_rank mpirun --allow-run-as-root --oversubscribe -np "$ranks" -x RAYON_NUM_THREADS "$bin" "$@")
share=$(RAYON_NUM_THREADS=$per_rank "$bin" "$@" --batch $(( batch / ranks )))
echo "$alone"; echo "$group"; echo "$share"
python3 - "$alone" "$group" "$share" <<'PY'
import json, sys
alone, group, share = (json.loads(a) for a in sys.argv[1:])
print(f"{group['world']} ranks x {group['threads']} threads vs 1 x {alone['threads']}: "
      f"step {group['step_s']:.3f} s vs {alone['step_s']:.3f} s, strong efficiency {alone['step_s'] / group['step_s']:.2f}, "
      f"weak efficiency {share['step_s'] / group['step_s']:.2f}; all-reduce {group['all_reduce_s']:.3f} s "
      f"({100 * group['all_reduce_s'] / group['step_s']:.1f}% of the step), of it exposed {group['exposed_s']:.3f} s "
      f"({100 * group['exposed_s'] / group['step_s']:.1f}%)")
PY
