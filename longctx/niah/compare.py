"""Pairing two runs' results cell by cell for ``longctx compare`` (the tests of significance live in niah.stats)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from longctx.errors import ResultsError
from longctx.niah.results import record_key
from longctx.niah.stats import valid_score

__all__ = ["Pairing", "pair_scores"]


@dataclass
class Pairing:
    """Two runs' scores paired on (task, target_length, target_depth, trial, seed).

    ``pairs`` maps that key to (score A, score B), both scored; ``only_a`` / ``only_b`` count cells
    present in one file only; ``unscored`` counts common cells where either side has no score.
    """

    pairs: dict[tuple, tuple[float, float]]
    only_a: int
    only_b: int
    unscored: int


def _by_pair_key(records: Iterable[dict], name: str) -> dict[tuple, dict]:
    out: dict[tuple, dict] = {}
    for rec in records:
        key = (*record_key(rec), str(rec.get("seed")))
        if key in out:
            raise ResultsError(f"{name} holds more than one run's result for cell {key[:4]}; "
                               f"compare one run per file")
        out[key] = rec
    return out


def pair_scores(a: Iterable[dict], b: Iterable[dict], names: tuple[str, str] = ("A", "B")) -> Pairing:
    """Pairs two runs' records cell by cell (see :class:`Pairing`)."""
    ka, kb = _by_pair_key(a, names[0]), _by_pair_key(b, names[1])
    pairs, unscored = {}, 0
    for key in sorted(ka.keys() & kb.keys()):
        sa, sb = valid_score(ka[key]), valid_score(kb[key])
        if sa is None or sb is None:
            unscored += 1
        else:
            pairs[key] = (sa, sb)
    return Pairing(pairs, len(ka.keys() - kb.keys()), len(kb.keys() - ka.keys()), unscored)
