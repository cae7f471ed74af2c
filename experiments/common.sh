# Sourced by the experiment run scripts (after `cd` to the repository root): the longctx command, one
# torch thread per job when asked, a log folder, and run_queue, which runs `job ARGS...` for every line of
# its input, PARALLEL at a time (xargs -P; the scripts define and export `job`).
#   LONGCTX (default: longctx)  PARALLEL (default 1)  TORCH_THREADS (torch threads per job)  LOGS (a temp dir)
#   PYTHON (for the summarize scripts; default: the interpreter of LONGCTX's launcher, else python3)
set -euo pipefail
export LONGCTX=${LONGCTX:-longctx}
_launcher=$(command -v "$LONGCTX" || true)
_interp=$([ -n "$_launcher" ] && head -1 "$_launcher" | sed -n 's/^#!//p' || true)
export PYTHON=${PYTHON:-${_interp:-python3}}
export LOGS=${LOGS:-$(mktemp -d)}
PARALLEL=${PARALLEL:-1}
if [ -n "${TORCH_THREADS:-}" ]; then export OMP_NUM_THREADS=$TORCH_THREADS MKL_NUM_THREADS=$TORCH_THREADS; fi
mkdir -p "$LOGS"

run_queue() {
  xargs -P "$PARALLEL" -L 1 bash -c 'job "$@"' _
  echo "logs: $LOGS"
}
