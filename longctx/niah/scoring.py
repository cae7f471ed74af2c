"""Deterministic NIAH scoring: RULER's case-insensitive string containment (no torch).

Per cell the score lies in [0, 1]:

* ``string_match_all(pred, refs)`` = the fraction of the references contained in the
  prediction (every value must be returned for a full score);
* ``string_match_part(pred, refs)`` = 1 if any reference is contained, else 0;
* ``absent``: :func:`string_match_part` against the accepted "not in the text" phrasings
  (:data:`ABSENT_PHRASES`, the ``absent`` task's expected answers); 0 is a false positive.

Prediction and references are normalised the same way before comparing (:func:`normalize`):
Unicode NFKC (full-width digits, letters and punctuation become ASCII: ``１２３`` -> ``123``,
``：`` -> ``:``), ``str.casefold``, whitespace runs become one space, and spaces next to a
CJK character are dropped (``周 梓轩`` matches ``周梓轩``).  Matching is containment, never
whitespace word splitting, so it works for Chinese.  Wordy answers that contain the value
score fully; an empty prediction scores 0.  RULER reports the mean of these x 100.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable, Sequence

__all__ = ["ABSENT_PHRASES", "METRICS", "normalize", "string_match_all", "string_match_part", "score_cell"]

# Accepted phrasings of "the information is not in the text", per language (after normalize()).
ABSENT_PHRASES: dict[str, tuple[str, ...]] = {
    "en": (
        "not in the text", "not in the provided text", "not mentioned", "not provided", "not found",
        "not given", "not stated", "not specified", "not present", "not included", "not available",
        "no mention", "no information", "does not mention", "doesn't mention", "does not contain",
        "doesn't contain", "does not say", "doesn't say", "does not specify", "doesn't specify",
        "cannot find", "can't find", "could not find", "couldn't find", "there is no special magic",
        "no special magic number for", "unable to find",
    ),
    "zh": (
        "文中没有", "文中未", "文本中没有", "文本中未", "没有提到", "没有提及", "未提到", "未提及", "没有找到", "未找到",
        "找不到", "没有相关信息", "没有这个信息", "没有该信息", "无相关信息", "没有给出", "未给出", "没有说明",
        "未说明", "不在文中", "不在文本中", "并未出现", "没有出现",
    ),
}

_CJK = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_SPACE_NEAR_CJK = re.compile(rf"(?<=[{_CJK}]) | (?=[{_CJK}])")
_WS = re.compile(r"\s+")


def normalize(text: str | None) -> str:
    """NFKC, casefold, curly apostrophes straightened, one space per whitespace run, no spaces
    next to CJK characters."""
    t = unicodedata.normalize("NFKC", text or "").casefold().replace("\u2019", "'").replace("\u2018", "'")
    t = _WS.sub(" ", t).strip()
    return _SPACE_NEAR_CJK.sub("", t)


def _norm_refs(refs: Sequence[str] | str) -> list[str]:
    if isinstance(refs, str):
        refs = [refs]
    out = [normalize(str(r)) for r in refs]
    out = [r for r in out if r]
    if not out:
        raise ValueError("no expected answers to score against (all empty)")
    return out


def string_match_all(pred: str | None, refs: Sequence[str] | str) -> float:
    """Fraction of ``refs`` contained in ``pred`` (normalised, case-insensitive), in [0, 1]."""
    rs = _norm_refs(refs)
    p = normalize(pred)
    if not p:
        return 0.0
    return sum(1 for r in rs if r in p) / len(rs)


def string_match_part(pred: str | None, refs: Sequence[str] | str) -> float:
    """1.0 if any of ``refs`` is contained in ``pred`` (normalised, case-insensitive), else 0.0."""
    rs = _norm_refs(refs)
    p = normalize(pred)
    if not p:
        return 0.0
    return 1.0 if any(r in p for r in rs) else 0.0


METRICS: dict[str, Callable[[str | None, Sequence[str]], float]] = {
    "all": string_match_all,
    "part": string_match_part,
    "absent": string_match_part,
}


def score_cell(response: str | None, expected: Sequence[str] | str, metric: str = "all") -> float:
    """Score one cell's raw ``response`` against its ``expected`` answers with ``metric``
    (``"all"`` -> :func:`string_match_all`, ``"part"`` and ``"absent"`` ->
    :func:`string_match_part`)."""
    try:
        fn = METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; choose 'all', 'part' or 'absent'") from None
    return fn(response, expected)
