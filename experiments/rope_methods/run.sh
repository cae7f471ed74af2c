#!/usr/bin/env bash
# RoPE scaling methods side by side on the default model (SmolLM2-135M-Instruct, trained window 8,192 tokens):
# none / linear x4 / dynamic NTK x4 / YaRN x4 from 1K to 32K tokens, and x2 of dynamic and YaRN up to 16K;
# NIAH single + multikey, 5 trials per cell; then loss-vs-position curves on a held-out text (web_bible).
#
#   experiments/rope_methods/run.sh                              # resumable: finished cells are skipped
#   PARALLEL=2 TORCH_THREADS=1 experiments/rope_methods/run.sh   # two runs side by side, one thread each
#
# Jobs are one (length, setting, task) each, short lengths first for every setting, so a partial run
# already compares the methods on the lengths it reached. The jobs of one file are at least 3 apart in
# the queue, and a results file is locked while written, so a clash fails that job (rerun: it resumes)
# instead of mixing two writers. PARALLEL=2 with one torch thread each prefilled 1.4x and
# decoded 1.6x more tokens per second than one two-thread run on this 2-core machine.
# LONGCTX, PARALLEL, TORCH_THREADS, LOGS: see experiments/common.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source experiments/common.sh
export OUT=experiments/rope_methods/results
LENGTHS=${LENGTHS:-"1K 2K 4K 8K 16K 32K"}
mkdir -p "$OUT"

job() {  # job LENGTH SETTING TASK
  local L=$1 s=$2 task=$3 rope
  # setting name -> --rope-scaling value (none runs past the window with --max-context: positions extrapolated)
  case $s in none) rope=none ;; linear4) rope=linear:4 ;; dynamic4) rope=dynamic:4 ;; yarn4) rope=yarn:4 ;;
             dynamic2) rope=dynamic:2 ;; yarn2) rope=yarn:2 ;; esac
  echo "$(date -u +%FT%TZ) start $L $s $task"
  "$LONGCTX" needle --task "$task" --lengths "$L" --rope-scaling "$rope" --max-context 32768 \
      --depths 10,50,90 --trials 5 --haystack austen --answer-budget 48 --seed 0 --no-plot --no-report --yes \
      --out "$OUT/${task}_${s}.jsonl" > "$LOGS/${task}_${s}_${L}.log" 2>&1
  echo "$(date -u +%FT%TZ) done $L $s $task"
}
export -f job

# Dynamic NTK keeps the trained base while prompt + answer budget fit the 8,192-token window
# (rope.base_for), so its cells at 1K-8K equal "none" response for response (60 of 60 at 1K-2K). Those
# at 4K and 8K go to the end of the queue: a partial run reaches the lengths where the methods differ first.
queue() {
  local deferred=()
  for L in $LENGTHS; do
    for s in none linear4 dynamic4 yarn4 dynamic2 yarn2; do
      if [[ "$L" == 32K && ( "$s" == dynamic2 || "$s" == yarn2 ) ]]; then continue; fi  # x2 covers 16K
      for task in single multikey; do
        if [[ "$s" == dynamic* && ( "$L" == 4K || "$L" == 8K ) ]]; then deferred+=("$L $s $task"); continue; fi
        echo "$L $s $task"
      done
    done
  done
  for j in "${deferred[@]}"; do echo "$j"; done
}
queue | run_queue
[ -n "${NO_FIGURES:-}" ] && exit 0

# Loss vs position on a text the sweeps never used.
"$LONGCTX" ppl web_bible --max-len 32K --bucket 2K --out "$OUT/ppl_web_bible.jsonl" \
    --plot experiments/rope_methods/figures/ppl_web_bible.png \
    --rope-scaling none --rope-scaling linear:4 --rope-scaling dynamic:4 --rope-scaling yarn:4 --max-context 32768

# The README's tables (scores with Wilson intervals, paired McNemar comparisons) and the figures.
"$PYTHON" experiments/rope_methods/summarize.py
