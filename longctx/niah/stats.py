"""Statistics of NIAH scores: Wilson intervals, cells, summary tables, paired tests (no torch).

Scores are the records' ``score`` in [0, 1] (0/1 for single-answer tasks, the fraction of
references found for multi-reference tasks); everything reported is on a 0-100 scale.

* **Interval.** A mean score over ``n`` scored trials gets the 95% Wilson score interval of a
  proportion with ``successes = sum of scores`` (fractional successes for fractional scores).
  For 0/1 scores this is the textbook Wilson interval. For fractional scores it errs wide: a
  score in [0, 1] with mean p has variance at most p(1 - p), the binomial variance the interval
  assumes. Per length, the mean is the average of the depth cells' means (as in the heatmap's
  "avg" row) and the interval uses all of the length's scored trials; with the same number of
  trials per cell that is exactly the Wilson interval of the pooled trials (which again errs
  wide: depths with different accuracies only lower the variance of the pooled mean).
* **Paired test.** Two runs are paired cell by cell on (task, target_length, target_depth,
  trial, seed). When every paired score is 0 or 1: the exact McNemar test (two-sided binomial
  test on the discordant pairs). Otherwise: a paired bootstrap of the mean difference
  (null-centred, seeded, so the p-value is reproducible). Per-length p-values are not
  corrected for multiple comparisons.

Everything here is written out because scipy/statsmodels are not dependencies and the
Wilson interval with fractional successes is not what they offer; each formula is a few lines.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np

__all__ = ["Z95", "DEPTH_TOLERANCE", "valid_score", "wilson_interval", "mean_interval", "CellStats",
           "cell_stats", "ScoreGrid", "score_grid", "score_matrix", "format_tokens", "summary_table", "summary_lines", "summarize",
           "mcnemar_exact", "paired_bootstrap", "PairedRow", "paired_rows"]

#: The two-sided 95% normal quantile.
Z95 = 1.959963984540054
#: Cells whose needle sits more than this many percentage points from the requested depth are
#: flagged (short contexts snap the needle to a sentence end far from the requested depth).
DEPTH_TOLERANCE = 5.0


def valid_score(rec: dict) -> Optional[float]:
    """The record's score in [0, 1], or None when it does not count (``error`` set or no score)."""
    if rec.get("error"):
        return None
    s = rec.get("score")
    return None if s is None else float(s)


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (both bounds in [0, 1]).

    ``successes`` may be fractional (a sum of scores in [0, 1]).

    Raises:
        ValueError: ``n < 1`` or ``successes`` outside [0, n].
    """
    if n < 1:
        raise ValueError(f"a Wilson interval needs n >= 1 (got {n})")
    if not 0.0 <= successes <= n:
        raise ValueError(f"successes {successes} outside [0, {n}]")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(mean: Optional[float], n: int) -> tuple[Optional[float], Optional[float]]:
    """The 95% Wilson interval (0-100) of a mean score ``mean`` (0-100) over ``n`` trials; Nones if none."""
    if mean is None or n < 1:
        return None, None
    lo, hi = wilson_interval(min(1.0, max(0.0, mean / 100.0)) * n, n)
    return 100.0 * lo, 100.0 * hi


@dataclass
class CellStats:
    """One (target_length, target_depth) cell: ``n`` scored trials, mean and interval on 0-100.

    ``records`` counts every record of the cell, ``errors`` those with ``error`` set;
    ``actual_depth`` is the mean recorded needle depth (``depth`` field, None if absent) and
    ``depth_offset`` the largest |depth - target_depth| over the cell's records.
    """

    target_length: int
    target_depth: float
    n: int = 0
    mean: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    records: int = 0
    errors: int = 0
    actual_depth: Optional[float] = None
    depth_offset: Optional[float] = None


def cell_stats(records: Iterable[dict]) -> list[CellStats]:
    """Per (target_length, target_depth) statistics, sorted by length then depth."""
    cells: dict[tuple[int, float], CellStats] = {}
    scores: dict[tuple[int, float], list[float]] = {}
    depths: dict[tuple[int, float], list[float]] = {}
    for r in records:
        key = (int(r["target_length"]), float(r["target_depth"]))
        c = cells.setdefault(key, CellStats(*key))
        c.records += 1
        c.errors += 1 if r.get("error") else 0
        s = valid_score(r)
        if s is not None:
            scores.setdefault(key, []).append(s)
        if r.get("depth") is not None:
            depths.setdefault(key, []).append(float(r["depth"]))
    for key, c in cells.items():
        c.n = len(scores.get(key, ()))
        if c.n:
            c.mean = 100.0 * sum(scores[key]) / c.n
            c.ci_low, c.ci_high = mean_interval(c.mean, c.n)
        if key in depths:
            c.actual_depth = sum(depths[key]) / len(depths[key])
            c.depth_offset = max(abs(d - c.target_depth) for d in depths[key])
    return [cells[k] for k in sorted(cells)]


@dataclass
class ScoreGrid:
    """Cell statistics as (depth row, length column) arrays; NaN / 0 where a cell has no score."""

    lengths: list[int]
    depths: list[float]
    mean: np.ndarray
    n: np.ndarray
    depth_offset: np.ndarray


def score_grid(records: Iterable[dict], *, lengths: Iterable[int] = (), depths: Iterable[float] = ()) -> ScoreGrid:
    """Rows ascending depth, columns ascending length; every depth and length present gets one, and so
    does every one in ``lengths`` / ``depths`` (columns and rows without a record: NaN, n = 0), so that
    grids of different runs can share one layout."""
    cells = cell_stats(records)
    lengths = sorted({c.target_length for c in cells} | {int(n) for n in lengths})
    depths = sorted({c.target_depth for c in cells} | {float(d) for d in depths})
    shape = (len(depths), len(lengths))
    grid = ScoreGrid(lengths, depths, np.full(shape, np.nan), np.zeros(shape, dtype=np.int64), np.full(shape, np.nan))
    li = {v: j for j, v in enumerate(lengths)}
    di = {v: i for i, v in enumerate(depths)}
    for c in cells:
        i, j = di[c.target_depth], li[c.target_length]
        grid.n[i, j] = c.n
        if c.mean is not None:
            grid.mean[i, j] = c.mean
        if c.depth_offset is not None:
            grid.depth_offset[i, j] = c.depth_offset
    return grid


def score_matrix(records: Iterable[dict]) -> tuple[list[int], list[float], np.ndarray]:
    """Mean score x 100 per (target_depth row, target_length column); NaN for a cell without a score.

    Records with ``error`` set or ``score`` null are left out.
    """
    g = score_grid(records)
    return g.lengths, g.depths, g.mean


# --------------------------------------------------------------------------- summary
def format_tokens(n: int | float) -> str:
    """Compact token count: 1000 -> "1K", 8192 -> "8K", 128000 and 131072 -> "128K", 1500 -> "1.5K"."""
    n = int(n)
    if n < 1000:
        return str(n)
    for unit, (binary, decimal) in (("M", (1 << 20, 1_000_000)), ("K", (1 << 10, 1000))):
        if n >= decimal:
            if n % decimal == 0:
                return f"{n // decimal}{unit}"
            if n % binary == 0:
                return f"{n // binary}{unit}"
            val = n / decimal
            return f"{val:.1f}".rstrip("0").rstrip(".") + unit if val < 100 else f"{val:.0f}{unit}"
    return str(n)  # pragma: no cover


def summary_table(records: Iterable[dict]) -> list[dict]:
    """One row per target length plus a final ``"all"`` row (scores on 0-100).

    Each row: ``target_length`` (int, or ``"all"``), ``label`` ("8K"), ``mean`` (the mean over the
    length's depth cells that have a score, as in the heatmap's average row; None if none),
    ``ci_low`` / ``ci_high`` (95% Wilson interval of that mean over ``n``, see the module
    docstring), ``n`` (scored trials), ``records``, ``valid`` (= ``n``, the older
    name), ``errors`` (error set), ``cells`` (depth cells with a score) and ``missing_cells``. The
    ``"all"`` row's mean is the mean over all cells with a score (the figure's overall score).
    """
    records = list(records)
    grid = score_grid(records)

    def row(length, label, recs, means, ns) -> dict:
        finite = means[np.isfinite(means)]
        mean = float(finite.mean()) if finite.size else None
        n = int(ns.sum())
        lo, hi = mean_interval(mean, n)
        return {"target_length": length, "label": label, "mean": mean, "ci_low": lo, "ci_high": hi, "n": n,
                "records": len(recs), "valid": sum(1 for r in recs if valid_score(r) is not None),
                "errors": sum(1 for r in recs if r.get("error")), "cells": int(finite.size),
                "missing_cells": int(means.size - finite.size)}

    rows = [row(length, format_tokens(length), [r for r in records if int(r["target_length"]) == length],
                grid.mean[:, j], grid.n[:, j]) for j, length in enumerate(grid.lengths)]
    rows.append(row("all", "all", records, grid.mean.ravel(), grid.n.ravel()))
    return rows


def _rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return [_rounded(v) for v in obj] if isinstance(obj, list) else obj


def summarize(records: Iterable[dict]) -> dict:
    """The statistics of ``<results>.summary.json``: ``lengths`` and ``overall`` rows of
    :func:`summary_table`, and ``cells``: per (target_length, target_depth) ``n``, ``mean``,
    ``ci_low``, ``ci_high``, ``records``, ``errors``, ``actual_depth`` (mean recorded needle
    depth) and ``depth_offset`` (largest |depth - target_depth|), all scores on 0-100."""
    records = list(records)
    rows = summary_table(records) if records else []
    return _rounded({
        "scale": "mean score x 100",
        "interval": "95% Wilson score interval, successes = sum of scores in [0, 1]",
        "lengths": rows[:-1],
        "overall": rows[-1] if rows else None,
        "cells": [asdict(c) for c in cell_stats(records)],
    })


def summary_lines(rows: list[dict]) -> list[str]:
    """The rows of :func:`summary_table` as a plain-text table (the terminal summary), header first."""
    def fmt(v: Optional[float]) -> str:
        return "n/a" if v is None else f"{v:.1f}"

    lines = [f"{'length':>8}  {'score':>6}  {'95% CI':>11}  {'n':>5}  {'records':>7}  {'errors':>6}  "
             f"{'missing cells':>13}"]
    for r in rows:
        ci = "" if r["ci_low"] is None else f"{r['ci_low']:.1f}-{r['ci_high']:.1f}"
        lines.append(f"{r['label']:>8}  {fmt(r['mean']):>6}  {ci:>11}  {r['n']:>5}  {r['records']:>7}  "
                     f"{r['errors']:>6}  {r['missing_cells']:>13}")
    return lines


# --------------------------------------------------------------------------- paired tests
def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs.

    Under the null each discordant pair goes either way with probability 1/2:
    ``p = min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``; 1 without discordant pairs.
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be non-negative")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2 ** n)


def paired_bootstrap(diffs: Sequence[float], *, n_boot: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired-bootstrap p-value for a mean difference of zero.

    The differences are centred on zero (the null), resampled with replacement ``n_boot`` times
    with ``numpy.random.default_rng(seed)``, and ``p = (1 + #{|mean*| >= |mean|}) / (n_boot + 1)``.
    """
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        raise ValueError("no paired differences")
    observed = abs(float(d.mean()))
    if observed == 0.0:
        return 1.0
    centred = d - d.mean()
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < n_boot:  # chunks keep memory at about 8 MB whatever the number of pairs
        k = min(n_boot - done, max(1, 1_000_000 // d.size))
        means = centred[rng.integers(0, d.size, size=(k, d.size))].mean(axis=1)
        hits += int(np.count_nonzero(np.abs(means) >= observed - 1e-12))
        done += k
    return (1 + hits) / (n_boot + 1)


@dataclass
class PairedRow:
    """One row of a paired comparison (``target_length`` an int, or ``"all"``); means on 0-100.

    ``test`` is ``"mcnemar"`` (then ``discordant`` = (A right / B wrong, A wrong / B right)) or
    ``"bootstrap"``; ``diff`` = mean B - mean A.
    """

    target_length: int | str
    pairs: int
    mean_a: float
    mean_b: float
    diff: float
    p_value: float
    test: str
    discordant: Optional[tuple[int, int]] = None


def _paired_row(length, pairs: list[tuple[float, float]], n_boot: int, seed: int) -> PairedRow:
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    mean_a, mean_b = 100.0 * float(a.mean()), 100.0 * float(b.mean())
    if all(x in (0.0, 1.0) for x in np.concatenate([a, b])):
        wins_a = int(np.count_nonzero((a == 1.0) & (b == 0.0)))
        wins_b = int(np.count_nonzero((a == 0.0) & (b == 1.0)))
        return PairedRow(length, len(pairs), mean_a, mean_b, mean_b - mean_a, mcnemar_exact(wins_a, wins_b),
                         "mcnemar", (wins_a, wins_b))
    p = paired_bootstrap(b - a, n_boot=n_boot, seed=seed)
    return PairedRow(length, len(pairs), mean_a, mean_b, mean_b - mean_a, p, "bootstrap")


def paired_rows(pairs: dict[tuple, tuple[float, float]], *, n_boot: int = 10_000,
                seed: int = 0) -> list[PairedRow]:
    """Per-length rows and a final ``"all"`` row from ``{cell key: (score A, score B)}``.

    The key's second item is the target length (as in :func:`longctx.niah.compare.pair_scores`).
    """
    if not pairs:
        raise ValueError("no paired scores")
    by_length: dict[int, list[tuple[float, float]]] = {}
    for key in sorted(pairs):
        by_length.setdefault(int(key[1]), []).append(pairs[key])
    rows = [_paired_row(length, items, n_boot, seed) for length, items in sorted(by_length.items())]
    rows.append(_paired_row("all", [pairs[k] for k in sorted(pairs)], n_boot, seed))
    return rows
