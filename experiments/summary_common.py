"""What the experiments' summarize scripts share (torch-free): reading a results file that a run may still
be writing, and one table cell "mean (low–high)"."""
from __future__ import annotations

from pathlib import Path

from longctx.errors import ResultsError
from longctx.niah.results import load_results


def load_partial(path: Path) -> list[dict]:
    """The records of ``path``; none when it does not exist yet or holds no cell yet."""
    try:
        return load_results(path) if path.exists() else []
    except ResultsError:  # a run that has not written its first cell yet
        return []


def fmt_score(row: dict | None) -> str:
    """A ``summary_table`` row as "mean (low–high)" on 0-100, or "–" for none."""
    if row is None or row["mean"] is None:
        return "–"
    return f"{row['mean']:.0f} ({row['ci_low']:.0f}–{row['ci_high']:.0f})"
