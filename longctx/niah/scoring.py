"""Deterministic NIAH scoring: RULER's case-insensitive string containment (no torch).

Per cell the score lies in [0, 1]:

* ``string_match_all(pred, refs)`` = the fraction of the references contained in the
  prediction (every value must be returned for a full score);
* ``string_match_part(pred, refs)`` = 1 if any reference is contained, else 0.

Prediction and references are stripped of surrounding whitespace and compared
case-insensitively (``str.casefold``).  Wordy answers that contain the value score fully;
an empty prediction scores 0.  RULER reports the mean of these x 100 over samples.
"""

from __future__ import annotations

from typing import Callable, Sequence

__all__ = ["METRICS", "string_match_all", "string_match_part", "score_cell"]


def _norm_refs(refs: Sequence[str] | str) -> list[str]:
    if isinstance(refs, str):
        refs = [refs]
    out = [str(r).strip().casefold() for r in refs]
    out = [r for r in out if r]
    if not out:
        raise ValueError("no expected answers to score against (all empty)")
    return out


def string_match_all(pred: str | None, refs: Sequence[str] | str) -> float:
    """Fraction of ``refs`` contained in ``pred`` (case-insensitive), in [0, 1]."""
    rs = _norm_refs(refs)
    p = (pred or "").strip().casefold()
    if not p:
        return 0.0
    return sum(1 for r in rs if r in p) / len(rs)


def string_match_part(pred: str | None, refs: Sequence[str] | str) -> float:
    """1.0 if any of ``refs`` is contained in ``pred`` (case-insensitive), else 0.0."""
    rs = _norm_refs(refs)
    p = (pred or "").strip().casefold()
    if not p:
        return 0.0
    return 1.0 if any(r in p for r in rs) else 0.0


METRICS: dict[str, Callable[[str | None, Sequence[str]], float]] = {
    "all": string_match_all,
    "part": string_match_part,
}


def score_cell(response: str | None, expected: Sequence[str] | str, metric: str = "all") -> float:
    """Score one cell's raw ``response`` against its ``expected`` answers with ``metric``
    (``"all"`` -> :func:`string_match_all`, ``"part"`` -> :func:`string_match_part`)."""
    try:
        fn = METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; choose 'all' or 'part'") from None
    return fn(response, expected)
