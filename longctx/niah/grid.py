"""NIAH sweep grids: context lengths, needle depths, cell enumeration and sharding (no torch).

Lengths (:func:`parse_lengths`)
    * a bare integer ``K`` (e.g. ``"8"``): K lengths from ``min_len`` to ``max_len``
      inclusive, ``linear`` (default) or ``geometric`` spacing, rounded to integers,
      deduplicated, ascending.  ``K = 1`` gives ``[max_len]``.
    * an explicit comma list (``"1000,2000,4K"``; a single length needs a suffix or a
      trailing comma: ``"16K"`` or ``"16000,"``).  Suffixes (case-insensitive):
      ``k`` = x1000, ``m`` = x1,000,000 (decimal, as the NIAH literature counts:
      "4K" = 4000, "200K" = 200000); ``ki`` = x1024, ``mi`` = x1048576 (binary: "4Ki" = 4096).
      Fractions are allowed when the product is whole ("1.5K" = 1500).  The list is
      sorted ascending and deduplicated; every value must be >= 1 and, when ``max_len``
      is given, <= ``max_len`` (``min_len`` only applies to counts; a count with no
      ``min_len`` starts at ``min(1000, max_len)``).

Depths (:func:`parse_depths`), in percent of the haystack:
    * a bare integer ``K``: ``linspace(0, 100, K)`` (``K = 1`` gives ``[50]``);
    * ``sigmoid:K`` (or ``sigmoid`` = ``sigmoid:11``): K depths denser near 0 and 100,
      ASCENDING, with 0 and 100 exactly included: ``x = linspace(0, 100, K)``,
      ``s(x) = 1 / (1 + exp(-0.1 (x - 50)))`` rescaled so ``s(0) -> 0`` and ``s(100) -> 100``.
      (gkamradt's tool uses ``100 * sigmoid(-0.1 (x - 50))``, which is descending and
      never reaches 0 or 100; we do not reproduce that.)
    * an explicit comma list (``"0,25,50,75,100"``; one depth: ``"50,"`` or ``"12.5"``).
    Depths are rounded to 2 decimals, deduplicated and sorted ascending.

Bad input raises ``ValueError`` with a one-line message.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "GridCell",
    "parse_size",
    "parse_lengths",
    "parse_depths",
    "make_grid",
    "shard",
    "MAX_COUNT",
]

MAX_COUNT = 1000  # a bare integer above this is refused (it is almost surely a length)

_SUFFIX = {"": 1, "k": 1000, "m": 1_000_000, "ki": 1024, "mi": 1024 * 1024}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ki|mi|k|m)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """One token count: ``"4000"``, ``"4k"`` (4000), ``"4Ki"`` (4096), ``"1.5K"`` (1500), ``"1M"``."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"invalid length {text!r}: expected an integer with optional K/M/Ki/Mi suffix")
    num, suf = m.group(1), (m.group(2) or "").lower()
    mult = _SUFFIX[suf]
    if "." in num:
        val = float(num) * mult
        if abs(val - round(val)) > 1e-6:
            raise ValueError(f"invalid length {text!r}: not a whole number of tokens")
        val = int(round(val))
    else:
        val = int(num) * mult
    if val < 1:
        raise ValueError(f"invalid length {text!r}: must be at least 1 token")
    return val


def _is_bare_int(spec: str) -> bool:
    return re.fullmatch(r"\s*[0-9]+\s*", spec) is not None


def parse_lengths(
    spec: str | int | Sequence[int] | None,
    min_len: int | None = None,
    max_len: int | None = None,
    *,
    scale: str = "linear",
) -> list[int]:
    """Context lengths (model tokens) for a sweep; see the module doc for the syntax.

    ``spec`` may also be an ``int`` (a count) or a sequence of ints (explicit lengths).
    ``spec=None`` means a count of 1 (``[max_len]``).
    """
    if scale not in ("linear", "geometric"):
        raise ValueError(f"unknown length scale {scale!r}; choose 'linear' or 'geometric'")
    if spec is None:
        spec = 1
    if isinstance(spec, (list, tuple)):
        values = [int(v) for v in spec]
        return _check_explicit(values, max_len)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return _count_lengths(int(spec), min_len, max_len, scale)
    s = str(spec).strip()
    if not s:
        raise ValueError("empty --lengths: give a count K or a comma list like 1000,2000,4K")
    if _is_bare_int(s):
        return _count_lengths(int(s), min_len, max_len, scale)
    parts = [p for p in s.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"invalid --lengths {spec!r}: no lengths given")
    return _check_explicit([parse_size(p) for p in parts], max_len)


def _check_explicit(values: list[int], max_len: int | None) -> list[int]:
    if not values:
        raise ValueError("invalid --lengths: no lengths given")
    for v in values:
        if v < 1:
            raise ValueError(f"invalid length {v}: must be at least 1 token")
        if max_len is not None and v > max_len:
            raise ValueError(f"length {v} exceeds --max-len {max_len}")
    return sorted(set(values))


def _count_lengths(k: int, min_len: int | None, max_len: int | None, scale: str) -> list[int]:
    if k < 1:
        raise ValueError(f"the number of lengths must be at least 1 (got {k})")
    if k > MAX_COUNT:
        raise ValueError(
            f"a count of {k} lengths is too many (max {MAX_COUNT}); for one explicit length "
            f"write '{k},' or use a K suffix"
        )
    if max_len is None:
        raise ValueError("a count of lengths needs --max-len")
    if max_len < 1:
        raise ValueError(f"--max-len must be at least 1 (got {max_len})")
    if min_len is None:
        min_len = max_len if k == 1 else min(1000, max_len)
    if min_len < 1:
        raise ValueError(f"--min-len must be at least 1 (got {min_len})")
    if min_len > max_len:
        raise ValueError(f"--min-len {min_len} is greater than --max-len {max_len}")
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


def parse_depths(spec: str | int | Sequence[float] | None) -> list[float]:
    """Needle depths in percent; see the module doc for the syntax."""
    if spec is None:
        spec = 11
    if isinstance(spec, (list, tuple)):
        vals = [float(v) for v in spec]
        return _check_depths(vals)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return _count_depths(int(spec))
    s = str(spec).strip()
    if not s:
        raise ValueError("empty --depths: give a count K, sigmoid:K or a comma list like 0,50,100")
    low = s.lower()
    if low.startswith("sigmoid"):
        rest = low[len("sigmoid"):]
        if rest == "":
            k = 11
        elif rest.startswith(":") and _is_bare_int(rest[1:]):
            k = int(rest[1:])
        else:
            raise ValueError(f"invalid --depths {spec!r}: expected sigmoid:K with an integer K")
        if k < 1:
            raise ValueError(f"the number of depths must be at least 1 (got {k})")
        if k > MAX_COUNT:
            raise ValueError(f"a count of {k} depths is too many (max {MAX_COUNT})")
        return _finish_depths(_sigmoid_depths(k))
    if _is_bare_int(s):
        return _count_depths(int(s))
    parts = [p.strip() for p in s.split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise ValueError(f"invalid --depths {spec!r}: no depths given")
    vals = []
    for p in parts:
        t = p[:-1] if p.endswith("%") else p
        if not _NUM_RE.match(t):
            raise ValueError(f"invalid depth {p!r} in --depths: not a number")
        vals.append(float(t))
    return _check_depths(vals)


def _count_depths(k: int) -> list[float]:
    if k < 1:
        raise ValueError(f"the number of depths must be at least 1 (got {k})")
    if k > MAX_COUNT:
        raise ValueError(f"a count of {k} depths is too many (max {MAX_COUNT})")
    if k == 1:
        return [50.0]
    return _finish_depths(np.linspace(0.0, 100.0, k))


def _check_depths(vals: list[float]) -> list[float]:
    if not vals:
        raise ValueError("invalid --depths: no depths given")
    for v in vals:
        if not math.isfinite(v) or v < 0 or v > 100:
            raise ValueError(f"depth {v:g} is outside [0, 100]")
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
        raise ValueError(f"--trials must be at least 1 (got {trials})")
    if not lengths:
        raise ValueError("no lengths in the grid")
    if not depths:
        raise ValueError("no depths in the grid")
    ls = sorted({int(v) for v in lengths})
    ds = sorted({float(v) for v in depths})
    return [GridCell(L, d, t) for L in ls for d in ds for t in range(trials)]


def shard(cells: Sequence[GridCell], index: int, count: int) -> list[GridCell]:
    """Shard ``index`` of ``count``: cells sorted canonically, every ``count``-th from ``index``
    (round-robin, so each shard gets a similar mix of lengths).  Shards are disjoint and
    together cover all cells; the result does not depend on the input order."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1 (got {count})")
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside [0, {count - 1}]")
    ordered = sorted(set(cells))
    return ordered[index::count]
