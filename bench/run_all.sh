#!/usr/bin/env bash
# Every benchmark at full size, in the order BENCHMARKS.md presents them, then the tables.
# Usage: bench/run_all.sh [extra arguments for every script, e.g. --out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
mkdir -p bench/results
lscpu > bench/results/lscpu.txt
for script in model_cost quantization graph_variants op_profile layout batching vad_cost vad_quality endpoint_labels memory upload_memory end_to_end live_capacity; do
    echo "== bench.$script (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    "$py" -m "bench.$script" "$@"
done
"$py" -m bench.tables
