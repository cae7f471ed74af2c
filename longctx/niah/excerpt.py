"""The prompt text around each needle, as recorded in a results record's ``excerpt`` field (no torch).

A results record keeps no whole prompt (a 128K-token cell would make the JSONL huge); the
HTML report (``longctx report``) still wants to show what the model saw around the needle.
:func:`cell_excerpt` decodes a window of tokens around every needle of a built cell and cuts
it to ``chars`` characters either side of the needle::

    {"question": "What is the special magic number for ...?",
     "chars": 300,
     "windows": [{"text": "...end of a sentence. One of the special ... is: 1234567. Next ...",
                  "needle_start": 120, "needle_end": 178,     # the needle's characters in text
                  "clipped_start": true, "clipped_end": true}]}  # text continues before / after

``windows`` follows the order of the record's ``needles`` (prompt order).  Control tokens of the
chat template are shown as their text (``<|im_start|>``...), as in ``--dump-prompts``.
"""
from __future__ import annotations

from typing import Any, Optional

__all__ = ["EXCERPT_CHARS", "cell_excerpt"]

#: Characters kept on each side of a needle.
EXCERPT_CHARS = 300


def _window(decode, ids, start: int, end: int, chars: int) -> dict[str, Any]:
    """The decoded text around ``ids[start:end]`` with the needle's character span."""
    a = max(0, start - chars)  # a token is at least one character, so `chars` tokens suffice
    b = min(len(ids), end + chars)
    before = decode(ids[a:start])
    through = decode(ids[a:end])
    full = decode(ids[a:b])
    if through.startswith(before) and full.startswith(through):
        ns, ne = len(before), len(through)
    else:  # decoding is not prefix-stable here (a split multi-byte character): join the pieces
        needle, after = decode(ids[start:end]), decode(ids[end:b])
        full = before + needle + after
        ns, ne = len(before), len(before) + len(needle)
    while ns < ne and full[ns].isspace():  # " One of the ..." -> highlight from "One"
        ns += 1
    lo, hi = max(0, ns - chars), min(len(full), ne + chars)
    return {"text": full[lo:hi], "needle_start": ns - lo, "needle_end": ne - lo,
            "clipped_start": a > 0 or lo > 0, "clipped_end": b < len(ids) or hi < len(full)}


def cell_excerpt(cell, chars: int = EXCERPT_CHARS) -> Optional[dict[str, Any]]:
    """The question and the text around each needle of a built cell (see the module docstring).

    Args:
        cell: a :class:`longctx.niah.prompt.Cell` (its ``ids``, ``needles``, ``question`` and
            tokenizer are used).
        chars: characters kept on each side of a needle.

    Returns:
        The ``excerpt`` dict, or None for a cell without a tokenizer to decode with.
    """
    tok = getattr(cell, "_tokenizer", None)
    if tok is None:
        return None
    ids = cell.ids

    def decode(part) -> str:
        return tok.decode([int(i) for i in part], skip_special=False)

    windows = [_window(decode, ids, int(n["token_start"]), int(n["token_end"]), int(chars)) for n in cell.needles]
    return {"question": cell.question, "chars": int(chars), "windows": windows}
