#!/usr/bin/env bash
# Benchmark: the grid Model Analyzer 1.58's brute search measured on `classifier` (instance
# count 1 and 2, max_batch_size 8 and 16, concurrency 1, 2, 4, plus the repository's own
# config: 5 configs), as one `perf sweep`: the grid once, then the configs raced at their
# best levels. Run three times to see whether the recommendation holds. Model Analyzer took
# 172 s and 189 s for it on this machine kind (shared/TRITON-ON-CPU.md).
#
#     bash bench/ma_grid.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bench-ma-grid}
rm -rf "$out"
for run in 1 2 3; do
  start=$(date +%s.%N)
  .venv/bin/perf sweep --model classifier \
    --param instance_count --values 1 2 \
    --param max_batch_size --values 8 16 \
    --param preferred_batch_size --values '[]' \
    --concurrency 1 2 4 --measurement-interval 500 \
    --out "$out/run$run" | tail -n 14
  end=$(date +%s.%N)
  printf 'run %s wall time: %.1f s\n' "$run" "$(echo "$end - $start" | bc)"
done
