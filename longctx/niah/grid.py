"""NIAH sweep grids: context lengths, needle depths, cell enumeration and sharding (no torch).

Sizes follow :mod:`longctx.units`: ``K`` = 1000, ``M`` = 1,000,000, ``Ki`` = 1024, ``Mi`` = 1048576
("4K" = 4000, "4Ki" = 4096, "1.5K" = 1500). A bare number is always ONE value; a count of values
is spelled ``N@FROM..TO``.

Lengths (:func:`parse_lengths`)
    * one length or a comma list: ``"16K"``, ``"16000"``, ``"1000,2000,4K"`` (sorted ascending,
      deduplicated; every value >= 1 and, when ``max_len`` is given, <= ``max_len``);
    * ``N@FROM..TO``: N lengths from FROM to TO inclusive (``"10@1K..200K"``), ``linear``
      (default) or ``geometric`` spacing, rounded, deduplicated, ascending; ``N = 1`` gives [TO];
    * ``spec=None`` with ``count``: ``count`` lengths from ``min_len`` (default
      ``min(1000, max_len)``) to ``max_len`` (the CLI's ``--num-lengths N --max-len TO``).

Depths (:func:`parse_depths`), in percent of the haystack, each in [0, 100]:
    * one depth or a comma list: ``"50"``, ``"12.5"``, ``"0,25,50,75,100"`` (a ``%`` suffix is allowed);
    * ``N@FROM..TO``: N evenly spaced depths (``"11@0..100"``; ``N = 1`` gives the midpoint);
    * ``sigmoid:K`` (or ``sigmoid`` = ``sigmoid:11``): K depths denser near 0 and 100,
      ASCENDING, with 0 and 100 exactly included: ``x = linspace(0, 100, K)``,
      ``s(x) = 1 / (1 + exp(-0.1 (x - 50)))`` rescaled so ``s(0) -> 0`` and ``s(100) -> 100``.
      (gkamradt's tool uses ``100 * sigmoid(-0.1 (x - 50))``, which is descending and
      never reaches 0 or 100; we do not reproduce that.)
    Depths are rounded to 2 decimals, deduplicated and sorted ascending.

Bad input raises :class:`~longctx.errors.GridError` (a ``ValueError``) with a one-line message.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from longctx.errors import GridError
from longctx.units import is_range, parse_range, parse_size, parse_size_list

__all__ = [
    "GridCell",
    "parse_size",
    "parse_lengths",
    "parse_depths",
    "make_grid",
    "shard",
    "MAX_COUNT",
]

MAX_COUNT = 1000  # a count above this is refused (almost surely a typo)


def parse_lengths(
    spec: str | int | Sequence[int] | None,
    min_len: int | None = None,
    max_len: int | None = None,
    *,
    scale: str = "linear",
    count: int | None = None,
) -> list[int]:
    """Context lengths (model tokens) for a sweep; see the module doc for the syntax.

    ``spec`` may also be an ``int`` (one length) or a sequence of ints (explicit lengths).
    ``spec=None`` means ``count`` lengths (default 1: ``[max_len]``) from ``min_len`` to ``max_len``.
    """
    if scale not in ("linear", "geometric"):
        raise GridError(f"unknown length scale {scale!r}; choose 'linear' or 'geometric'")
    if spec is None:
        return _count_lengths(1 if count is None else int(count), min_len, max_len, scale)
    if count is not None:
        raise GridError("give either --lengths or --num-lengths, not both")
    if isinstance(spec, (list, tuple)):
        return _check_explicit([int(v) for v in spec], max_len)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return _check_explicit([int(spec)], max_len)
    s = str(spec).strip()
    if not s:
        raise GridError("empty --lengths: give a length (16K), a list (1K,2K,4K) or a range (10@1K..200K)")
    if is_range(s):
        n, lo, hi = parse_range(s, "--lengths")
        lo_v, hi_v = parse_size(lo, "length"), parse_size(hi, "length")
        if max_len is not None and hi_v > max_len:
            raise GridError(f"length {hi_v} exceeds --max-len {max_len}")
        return _count_lengths(n, lo_v, hi_v, scale)
    return _check_explicit(parse_size_list(s, "--lengths"), max_len)


def _check_explicit(values: list[int], max_len: int | None) -> list[int]:
    if not values:
        raise GridError("invalid --lengths: no lengths given")
    for v in values:
        if v < 1:
            raise GridError(f"invalid length {v}: must be at least 1 token")
        if max_len is not None and v > max_len:
            raise GridError(f"length {v} exceeds --max-len {max_len}")
    return sorted(set(values))


def _count_lengths(k: int, min_len: int | None, max_len: int | None, scale: str) -> list[int]:
    if k < 1:
        raise GridError(f"the number of lengths must be at least 1 (got {k})")
    if k > MAX_COUNT:
        raise GridError(f"a count of {k} lengths is too many (max {MAX_COUNT})")
    if max_len is None:
        raise GridError("a count of lengths needs --max-len")
    if max_len < 1:
        raise GridError(f"--max-len must be at least 1 (got {max_len})")
    if min_len is None:
        min_len = max_len if k == 1 else min(1000, max_len)
    if min_len < 1:
        raise GridError(f"--min-len must be at least 1 (got {min_len})")
    if min_len > max_len:
        raise GridError(f"--min-len {min_len} is greater than --max-len {max_len}")
    if k == 1:
        return [int(max_len)]
    if scale == "geometric":
        raw = np.geomspace(min_len, max_len, k)
    else:
        raw = np.linspace(min_len, max_len, k)
    vals = [int(round(float(v))) for v in raw]
    vals[0], vals[-1] = int(min_len), int(max_len)  # exact ends despite float error
    return sorted(set(vals))


_NUM_RE = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")


def _sigmoid_depths(k: int) -> list[float]:
    if k == 1:
        return [50.0]
    x = np.linspace(0.0, 100.0, k)
    s = 1.0 / (1.0 + np.exp(-0.1 * (x - 50.0)))
    lo, hi = s[0], s[-1]
    d = (s - lo) / (hi - lo) * 100.0
    d[0], d[-1] = 0.0, 100.0
    return [float(v) for v in d]


def _finish_depths(vals: Iterable[float]) -> list[float]:
    out = sorted({round(float(v), 2) + 0.0 for v in vals})
    return out


def parse_depths(spec: str | float | Sequence[float] | None) -> list[float]:
    """Needle depths in percent; see the module doc for the syntax (``None`` = ``11@0..100``)."""
    if spec is None:
        return _count_depths(11, 0.0, 100.0)
    if isinstance(spec, (list, tuple)):
        return _check_depths([float(v) for v in spec])
    if isinstance(spec, (int, float, np.integer, np.floating)) and not isinstance(spec, bool):
        return _check_depths([float(spec)])
    s = str(spec).strip()
    if not s:
        raise GridError("empty --depths: give a depth (50), a list (0,50,100), a range (11@0..100) or sigmoid:K")
    low = s.lower()
    if low.startswith("sigmoid"):
        rest = low[len("sigmoid"):]
        if rest == "":
            k = 11
        elif rest.startswith(":") and re.fullmatch(r"\s*[0-9]+\s*", rest[1:]):
            k = int(rest[1:])
        else:
            raise GridError(f"invalid --depths {spec!r}: expected sigmoid:K with an integer K")
        _check_count(k)
        return _finish_depths(_sigmoid_depths(k))
    if is_range(s):
        n, lo, hi = parse_range(s, "--depths")
        lo_v, hi_v = _depth_value(lo), _depth_value(hi)
        _check_depths([lo_v, hi_v])
        if lo_v > hi_v:
            raise GridError(f"invalid --depths {spec!r}: FROM is greater than TO")
        return _count_depths(n, lo_v, hi_v)
    parts = [p.strip() for p in s.split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise GridError(f"invalid --depths {spec!r}: no depths given")
    return _check_depths([_depth_value(p) for p in parts])


def _depth_value(p: str) -> float:
    t = p[:-1] if p.endswith("%") else p
    if not _NUM_RE.match(t):
        raise GridError(f"invalid depth {p!r} in --depths: not a number")
    return float(t)


def _check_count(k: int) -> None:
    if k < 1:
        raise GridError(f"the number of depths must be at least 1 (got {k})")
    if k > MAX_COUNT:
        raise GridError(f"a count of {k} depths is too many (max {MAX_COUNT})")


def _count_depths(k: int, lo: float, hi: float) -> list[float]:
    _check_count(k)
    if k == 1:
        return _finish_depths([(lo + hi) / 2.0])
    return _finish_depths(np.linspace(lo, hi, k))


def _check_depths(vals: list[float]) -> list[float]:
    if not vals:
        raise GridError("invalid --depths: no depths given")
    for v in vals:
        if not math.isfinite(v) or v < 0 or v > 100:
            raise GridError(f"depth {v:g} is outside [0, 100]")
    return _finish_depths(vals)


@dataclass(frozen=True, order=True)
class GridCell:
    """One sweep cell: target length (tokens), target depth (percent), trial index."""

    length: int
    depth: float
    trial: int


def make_grid(lengths: Sequence[int], depths: Sequence[float], trials: int = 1) -> list[GridCell]:
    """All cells in canonical order: length ascending, then depth ascending, then trial."""
    if trials < 1:
        raise GridError(f"--trials must be at least 1 (got {trials})")
    if not lengths:
        raise GridError("no lengths in the grid")
    if not depths:
        raise GridError("no depths in the grid")
    ls = sorted({int(v) for v in lengths})
    ds = sorted({float(v) for v in depths})
    return [GridCell(L, d, t) for L in ls for d in ds for t in range(trials)]


def shard(cells: Sequence[GridCell], index: int, count: int) -> list[GridCell]:
    """Shard ``index`` of ``count``: cells sorted canonically, every ``count``-th from ``index``
    (round-robin, so each shard gets a similar mix of lengths).  Shards are disjoint and
    together cover all cells; the result does not depend on the input order."""
    if count < 1:
        raise GridError(f"shard count must be at least 1 (got {count})")
    if not 0 <= index < count:
        raise GridError(f"shard index {index} is outside [0, {count - 1}]")
    ordered = sorted(set(cells))
    return ordered[index::count]
