#!/usr/bin/env bash
# Every task on the default model (SmolLM2-135M-Instruct), English (Austen) and Chinese (zh) haystacks:
# 1K, 2K, 4K, 8K model tokens x depths 25, 75 % x 5 trials per cell, answer budget 64 new tokens
# (cwe 128: ten numbered words), greedy, seed 0. One results file per (task, language).
#
#   experiments/task_suite/run.sh                          # resumable: finished cells are skipped
#   PARALLEL=2 TORCH_THREADS=1 experiments/task_suite/run.sh   # two runs side by side, one thread each
#
# Phase 1 runs 1K-4K for every (task, language), phase 2 adds 8K, so a partial run covers every task.
# Jobs go heaviest first (Chinese answers run to the budget more often). PARALLEL=2 with one torch
# thread each prefilled 1.4x and decoded 1.6x more tokens per second than one two-thread run here.
# LONGCTX, PARALLEL, TORCH_THREADS, LOGS: see experiments/common.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source experiments/common.sh
export OUT=experiments/task_suite/results
TASKS=${TASKS:-"multikey single reasoning trace vt cwe fwe latent absent"}
LANGS=${LANGS:-"zh en"}
mkdir -p "$OUT"

job() {  # job LANG TASK LENGTHS
  local lang=$1 task=$2 lengths=$3 hay budget=64
  case $lang in en) hay=austen ;; zh) hay=zh ;; esac
  if [ "$task" = cwe ]; then budget=128; fi
  echo "$(date -u +%FT%TZ) start $task $lang $lengths"
  "$LONGCTX" needle --task "$task" --haystack "$hay" --lengths "$lengths" --depths 25,75 --trials 5 --seed 0 \
      --answer-budget "$budget" --no-plot --no-report --yes --out "$OUT/${task}_${lang}.jsonl" \
      > "$LOGS/${task}_${lang}_${lengths//,/-}.log" 2>&1
  echo "$(date -u +%FT%TZ) done $task $lang $lengths"
}
export -f job

for lengths in 1K,2K,4K 8K; do
  for lang in $LANGS; do for task in $TASKS; do echo "$lang $task $lengths"; done; done
done | run_queue
