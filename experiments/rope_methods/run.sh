#!/usr/bin/env bash
# RoPE scaling methods side by side on the default model (SmolLM2-135M-Instruct, trained window 8,192 tokens):
# none / linear x4 / dynamic NTK x4 / YaRN x4 from 1K to 32K tokens (see queue for the cells not run), and
# x2 of dynamic and YaRN up to 16K;
# NIAH single + multikey, 5 trials per cell; loss-vs-position curves to 32K on a held-out text (web_bible);
# then summarize.py (README tables, paired comparisons, figures).
#
#   experiments/rope_methods/run.sh                              # resumable: finished cells are skipped
#   PARALLEL=2 TORCH_THREADS=1 experiments/rope_methods/run.sh   # two runs side by side, one thread each
#   experiments/rope_methods/run.sh --plan                       # print the jobs ("16K yarn4 single"), run none
#
# Jobs are one (length, setting, task) each, short lengths first for every setting, so a partial run
# already compares the methods on the lengths it reached. The jobs of one file are at least 3 apart in
# the queue, and a results file is locked while written, so a clash fails that job (rerun: it resumes)
# instead of mixing two writers. PARALLEL=2 with one torch thread each prefilled 1.4x and
# decoded 1.6x more tokens per second than one two-thread run on this 2-core machine.
# LONGCTX, PARALLEL, TORCH_THREADS, LOGS: see experiments/common.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
LENGTHS=${LENGTHS:-"1K 2K 4K 8K 16K 32K"}

rope_value() {  # setting name -> --rope-scaling value ("none" runs past the window: positions extrapolated)
  case $1 in none) echo none ;; linear4) echo linear:4 ;; dynamic4) echo dynamic:4 ;; yarn4) echo yarn:4 ;;
             dynamic2) echo dynamic:2 ;; yarn2) echo yarn:2 ;; esac
}
export -f rope_value

job() {  # job LENGTH SETTING TASK | job ppl SETTING
  local L=$1 s=$2 task=${3:-} rope
  rope=$(rope_value "$s")
  if [[ "$L" == ppl ]]; then  # one file per setting, written whole (tmp + mv): a finished one is skipped
    local f="$OUT/ppl_web_bible_${s}.jsonl"
    [ -s "$f" ] && return 0
    echo "$(date -u +%FT%TZ) start ppl $s"
    rm -f "$f.tmp"
    "$LONGCTX" ppl web_bible --max-len 32K --bucket 2K --rope-scaling "$rope" --max-context 32768 \
        --out "$f.tmp" > "$LOGS/ppl_${s}.log" 2>&1 && mv "$f.tmp" "$f"
    echo "$(date -u +%FT%TZ) done ppl $s"
    return 0
  fi
  echo "$(date -u +%FT%TZ) start $L $s $task"
  "$LONGCTX" needle --task "$task" --lengths "$L" --rope-scaling "$rope" --max-context 32768 \
      --depths 10,50,90 --trials 5 --haystack austen --answer-budget 48 --seed 0 --no-plot --no-report --yes \
      --out "$OUT/${task}_${s}.jsonl" > "$LOGS/${task}_${s}_${L}.log" 2>&1
  echo "$(date -u +%FT%TZ) done $L $s $task"
}
export -f job

# Dynamic NTK keeps the trained base while the prompt fits the 8,192-token window (the sweep's base is
# rope.base_for(prompt length)), so its cells at 1K-8K (at most 8,000 tokens) equal "none" response for
# response (240 of 240 at 1K, 2K, 4K and 8K). Its 4K and 8K cells go after 16K (8K) and to the end (4K):
# a partial run reaches the lengths where the methods differ first. At 16K the x2 settings cover the
# length exactly, so the single task runs first for every setting, dynamic x2 and x4 before YaRN x2 (the
# x2-vs-x4 question was first asked of dynamic NTK). Not run: linear x4 past 8K (0 of 120
# cells at 1K-8K, loss flat at 4.3-4.5 nats to 32K: more cells would only confirm it) and, at 32K, none
# (loss 8.3 nats at 24-32K, near the 10.8 of a uniform guess) and the x2 settings (the window they reach is
# 16K), and dynamic x4's multikey at 32K (at 16K all 30 of its answers, single and multikey, were empty:
# the first token is <|im_end|>; at 32K its base is 2.7x larger; its 32K single cells check that it stays
# silent; it did not: its 32K answers continue the haystack's prose). The perplexity curves (one 32K pass
# per setting) run before the 8K cells.
ppl_jobs() { for s in none linear4 dynamic4 yarn4; do echo "ppl $s"; done; }

queue() {
  local deferred8=() deferred4=() ppl_done=
  for L in $LENGTHS; do
    if [[ -z "$ppl_done" && ( "$L" == 8K || "$L" == 16K || "$L" == 32K ) ]]; then ppl_jobs; ppl_done=1; fi
    if [[ "$L" == 32K ]]; then for j in "${deferred8[@]}"; do echo "$j"; done; deferred8=(); fi
    for task in single multikey; do
      for s in none linear4 yarn4 dynamic4 dynamic2 yarn2; do
        [[ "$s" == linear4 && ( "$L" == 16K || "$L" == 32K ) ]] && continue
        [[ "$L" == 32K && ( "$s" == none || "$s" == dynamic2 || "$s" == yarn2 ) ]] && continue
        [[ "$L" == 32K && "$s" == dynamic4 && "$task" == multikey ]] && continue
        if [[ "$s" == dynamic* && "$L" == 4K ]]; then deferred4+=("$L $s $task"); continue; fi
        if [[ "$s" == dynamic* && "$L" == 8K ]]; then deferred8+=("$L $s $task"); continue; fi
        echo "$L $s $task"
      done
    done
  done
  if [[ -z "$ppl_done" ]]; then ppl_jobs; fi
  for j in "${deferred8[@]}" "${deferred4[@]}"; do echo "$j"; done
}
if [[ "${1:-}" == --plan ]]; then queue; exit 0; fi  # the jobs, one per line (summarize.py reads the plan)

source experiments/common.sh
export OUT=experiments/rope_methods/results
mkdir -p "$OUT"
queue | run_queue
[ -n "${NO_FIGURES:-}" ] && exit 0

# The README's tables (scores with Wilson intervals, paired McNemar comparisons) and the figures,
# the loss-vs-position chart of the ppl files included.
"$PYTHON" experiments/rope_methods/summarize.py --readme
