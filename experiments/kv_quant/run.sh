#!/usr/bin/env bash
# What a quantized KV cache does to retrieval (issue 15, item 5): the default model (SmolLM2-135M-Instruct)
# with its float32 cache vs int8 vs fp8 (e4m3), one scale per (position, KV head); tasks single, multikey
# and vt (RULER variable tracking; answer budget 64, the others 48); 1K-16K tokens x depths 10, 50, 90 %
# x 5 trials; dynamic NTK x2 at every length (equal to no scaling up to the 8K window); then heatmaps side
# by side and paired comparisons (longctx compare, float32 cache vs each quantized one).
#
#   experiments/kv_quant/run.sh                              # resumable: finished cells are skipped
#   PARALLEL=2 TORCH_THREADS=1 experiments/kv_quant/run.sh   # two runs side by side, one thread each
#
# Jobs are one (length, kv dtype, task) each, short lengths first. LONGCTX, PARALLEL, TORCH_THREADS,
# LOGS: see experiments/common.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source experiments/common.sh
export OUT=experiments/kv_quant/results
LENGTHS=${LENGTHS:-"1K 2K 4K 8K 16K"}
TASKS=${TASKS:-"single multikey vt"}
mkdir -p "$OUT" plots

# The float32-cache cells of single and multikey have exactly the settings of the RoPE experiment's dynamic x2
# cells (same task, grid, budget, haystack, seed, scaling): they are read from / written to that file.
results() {  # results TASK KV -> the results file
  if [ "$2" = auto ] && [ "$1" != vt ]; then echo "experiments/rope_methods/results/$1_dynamic2.jsonl"
  else echo "$OUT/$1_$2.jsonl"; fi
}
export -f results

job() {  # job LENGTH KV TASK
  local L=$1 kv=$2 task=$3 budget=48
  if [ "$task" = vt ]; then budget=64; fi  # up to five "VAR XXXXX" names
  echo "$(date -u +%FT%TZ) start $L $kv $task"
  "$LONGCTX" needle --task "$task" --lengths "$L" --kv-dtype "$kv" --rope-scaling dynamic:2 \
      --depths 10,50,90 --trials 5 --haystack austen --answer-budget "$budget" --seed 0 --no-plot --no-report --yes \
      --out "$(results "$task" "$kv")" > "$LOGS/${task}_${kv}_${L}.log" 2>&1
  echo "$(date -u +%FT%TZ) done $L $kv $task"
}
export -f job

for L in $LENGTHS; do
  for kv in auto int8 fp8; do for task in $TASKS; do echo "$L $kv $task"; done; done
done | run_queue

for task in $TASKS; do
  "$LONGCTX" plot "$(results "$task" auto)" "$OUT/${task}_int8.jsonl" "$OUT/${task}_fp8.jsonl" \
      -o "plots/kv_quant_${task}.png" --labels "float32 cache,int8 cache,fp8 (e4m3) cache" \
      --title "KV cache storage vs retrieval, task $task (SmolLM2-135M-Instruct, dynamic NTK x2, 5 trials per cell)"
  for kv in int8 fp8; do
    "$LONGCTX" compare "$(results "$task" auto)" "$OUT/${task}_${kv}.jsonl" | tee "$OUT/compare_${task}_${kv}.txt"
  done
done
