"""What every module of the GPU session shares (``run_all.py`` and the step modules it runs): the paths,
the dry-run switch and the step log. Read from the environment ``run_all.py`` sets for each step.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("OUT") or "./gpu-out").resolve()
DRY = os.environ.get("LONGCTX_GPU_DRYRUN", "") not in ("", "0")  # CPU, tiny shapes: checks the script itself
GB = 1e9
GIB = 2 ** 30


def step_log(msg: str) -> None:
    """Inside a step subprocess: plain prints (the orchestrator captures and logs them)."""
    print(msg, flush=True)
