#!/usr/bin/env bash
# RoPE scaling methods side by side on the default model (SmolLM2-135M-Instruct, trained window 8,192 tokens):
# none / linear x4 / dynamic NTK x4 / YaRN x4 from 1K to 32K tokens, and x2 of dynamic and YaRN up to 16K;
# NIAH single + multikey, 5 trials per cell; then loss-vs-position curves on a held-out text (web_bible).
#
#   experiments/rope_methods/run.sh            # from anywhere; resumable (finished cells are skipped)
#
# The loop runs short lengths first for every setting, so a partial run already compares the methods on
# the lengths it reached. LONGCTX: the command (default: longctx); TORCH_THREADS pins torch's threads.
set -euo pipefail
cd "$(dirname "$0")/../.."
LONGCTX=${LONGCTX:-longctx}
OUT=experiments/rope_methods/results
if [ -n "${TORCH_THREADS:-}" ]; then export OMP_NUM_THREADS=$TORCH_THREADS MKL_NUM_THREADS=$TORCH_THREADS; fi

COMMON=(--depths 10,50,90 --trials 5 --haystack austen --answer-budget 48 --seed 0 --no-plot --no-report --yes)
# setting name -> --rope-scaling value (none runs past the window with --max-context: positions extrapolated)
declare -A ROPE=([none]=none [linear4]=linear:4 [dynamic4]=dynamic:4 [yarn4]=yarn:4 [dynamic2]=dynamic:2 [yarn2]=yarn:2)
for L in 1K 2K 4K 8K 16K 32K; do
  for s in none linear4 dynamic4 yarn4 dynamic2 yarn2; do
    if [[ "$L" == 32K && ( "$s" == dynamic2 || "$s" == yarn2 ) ]]; then continue; fi  # x2 covers 16K
    for task in single multikey; do
      $LONGCTX needle --task "$task" --lengths "$L" --rope-scaling "${ROPE[$s]}" --max-context 32768 "${COMMON[@]}" \
          --out "$OUT/${task}_${s}.jsonl"
    done
  done
done

# Loss vs position on a text the sweeps never used.
$LONGCTX ppl web_bible --max-len 32K --bucket 2K --out "$OUT/ppl_web_bible.jsonl" --plot plots/rope_methods_ppl.png \
    --rope-scaling none --rope-scaling linear:4 --rope-scaling dynamic:4 --rope-scaling yarn:4 --max-context 32768

for task in single multikey; do
  $LONGCTX plot "$OUT/${task}_none.jsonl" "$OUT/${task}_linear4.jsonl" "$OUT/${task}_dynamic4.jsonl" \
      "$OUT/${task}_yarn4.jsonl" -o "plots/rope_methods_${task}.png" --group-by rope_scaling \
      --title "RoPE methods past the 8K window, task $task (SmolLM2-135M-Instruct, 5 trials per cell)"
done
