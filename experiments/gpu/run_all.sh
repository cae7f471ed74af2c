#!/usr/bin/env bash
# The prepared GPU session (see experiments/gpu/run_all.py): environment, tests/test_cuda.py,
# attention-kernel probe, prefill benchmarks for the InternLM2-7B / -20B shapes (random weights), layer-wise
# prefill at 200K, layer probes at 1M tokens (7B-1M shape, fp8 KV) and 20B at 200K (fp8 / int8 KV), and last
# (when time is left, or alone: LONGCTX_GPU_STEPS=niah7b) a NIAH sweep on the 7B shape vs a naive transformers loop.
#
#   bash experiments/gpu/run_all.sh                         # on the GPU machine, from anywhere
#   LONGCTX_GPU_DRYRUN=1 bash experiments/gpu/run_all.sh    # same control flow on the CPU (tiny preset)
#
# Writes $OUT (default ./gpu-out): results.md, results.json, log.txt (+ per-step files).
# Total wall time is capped by LONGCTX_GPU_DEADLINE (default 540 s; 150 s in a dry run).
set -u
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
elif command -v python3 >/dev/null 2>&1; then
  PY=python3
else
  PY=python
fi
exec "$PY" experiments/gpu/run_all.py
