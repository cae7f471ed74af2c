#!/usr/bin/env bash
# The default NIAH sweep: `longctx needle` with no arguments (embedded SmolLM2-135M-Instruct).
# Equivalent explicit command (see config.json):
#   longctx needle --lengths 1K,2K,4K --depths 0,25,50,75,100 --task single --value-type number \
#       --haystack austen --trials 1 --seed 0 --out results/needle.jsonl --plot plots/needle.png
# Writes results/needle.jsonl (+ .config.json) and plots/needle.png/.svg (+ _by_length).
# Rerunning resumes (finished cells are skipped); delete results/needle.jsonl to start over.
set -euo pipefail
cd "$(dirname "$0")/../.."
LONGCTX=${LONGCTX:-longctx}
time $LONGCTX needle "$@"
