"""Seams between separately tokenized prompt pieces, and re-encoding a decoded prompt (no torch).

A NIAH prompt is spliced from ids: template pieces, haystack slices and needles.  Where two
pieces meet (a *seam*) the spliced ids can differ from what the tokenizer makes of the same
text -- e.g. a haystack cut inside a paragraph break followed by ``"\\n\\n" + question`` gives
``Ċ Ċ Ċ`` where the tokenizer merges the newline run into ``ĊĊ Ċ``.  The contract the prompt
builder keeps: :func:`reencode` of the decoded prompt (control tokens shown) gives exactly the
ids the model saw.  :func:`seams_canonical` checks it cheaply, window by window around each
seam, so a cell of any length is verified in milliseconds (a 200K-token cell builds in ~10 ms).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

__all__ = ["haystack_seams_canonical", "ids_after", "ids_before", "reencode", "seams_canonical"]


def reencode(tokenizer, text: str) -> list[int]:
    """Ids of a decoded prompt: each control/special token's text (``<|im_start|>``, ``<s>``,
    ...) becomes its id and the text between them goes through ``tokenizer.encode`` (no BOS
    added) -- the way the chat template's pieces are encoded when a prompt is built.  Plain
    text that spells a control token is read as that token."""
    specials = sorted(tokenizer.special_tokens, key=len, reverse=True)
    if not specials:
        return list(tokenizer.encode(text)) if text else []
    out: list[int] = []
    pos = 0
    for m in re.finditer("|".join(re.escape(s) for s in specials), text):
        if m.start() > pos:
            out += tokenizer.encode(text[pos:m.start()])
        out.append(tokenizer.special_tokens[m.group(0)])
        pos = m.end()
    if pos < len(text):
        out += tokenizer.encode(text[pos:])
    return out


def ids_before(tokenizer, text: str, follower: str) -> list[int]:
    """Ids of ``text`` as they come out when ``follower`` follows it (e.g. a paragraph
    break before a word), falling back to ``encode(text)``."""
    if follower:
        both = tokenizer.encode(text + follower)
        tail = tokenizer.encode(follower)
        if tail and len(both) >= len(tail) and both[len(both) - len(tail):] == tail:
            return list(both[: len(both) - len(tail)])
    return list(tokenizer.encode(text))


def ids_after(tokenizer, context: str, text: str) -> list[int]:
    """Ids of ``text`` as they come out after ``context`` (e.g. a needle after a sentence end),
    falling back to ``encode(text)``."""
    c = list(tokenizer.encode(context))
    both = list(tokenizer.encode(context + text))
    if len(both) > len(c) and both[: len(c)] == c:
        return both[len(c):]
    return list(tokenizer.encode(text))


def seams_canonical(tokenizer, ids: np.ndarray, seams: Sequence[int], safe: np.ndarray,
                    run: tuple[int, int]) -> bool:
    """Whether every seam inside the text run re-encodes to the spliced ids.

    Args:
        tokenizer: the prompt's tokenizer.
        ids: the prompt ids.
        seams: indices ``q`` where a piece starts (the seam lies between ``ids[q-1]`` and
            ``ids[q]``).  Seams outside ``run`` (next to a control token, spliced by id) are
            canonical by construction and skipped.
        safe: ascending indices where the ids split exactly as the tokenizer splits the text on
            its own: sentence boundaries inside one haystack slice (a pre-token starts there).
        run: ``(start, end)`` of the text run between control tokens that holds the seams.

    Each seam is checked on the window between the nearest safe indices around it (windows
    that share a seam or touch merge): the window's text, decoded with the one token before
    it as context, must encode to the window's ids (at the run start: plain ``encode``, as
    :func:`reencode` does).  The NIAH tests check whole prompts with :func:`reencode`.
    """
    start, end = int(run[0]), int(run[1])
    qs = sorted({int(q) for q in seams if start <= int(q) <= end})
    if not qs:
        return True
    cut = np.setdiff1d(np.asarray(safe, dtype=np.int64), np.asarray(qs, dtype=np.int64))
    cut = np.union1d(cut[(cut > start) & (cut < end)], [start, end])
    windows: list[list[int]] = []
    for q in qs:
        i = int(np.searchsorted(cut, q, side="left"))  # cut[i-1] < q <= cut[i]
        a = start if q == start else int(cut[i - 1])
        z = end if q == end else int(cut[i] if cut[i] > q else cut[i + 1])
        if windows and a <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], z)
        else:
            windows.append([a, z])
    for a, z in windows:
        want = ids[a:z].tolist()
        if a == start:
            got = tokenizer.encode(tokenizer.decode(want, skip_special=False))
        else:
            ctx = tokenizer.decode(ids[a - 1:a].tolist(), skip_special=False)
            full = tokenizer.decode(ids[a - 1:z].tolist(), skip_special=False)
            if not full.startswith(ctx):
                return False
            got = ids_after(tokenizer, ctx, full[len(ctx):])
        if got != want:
            return False
    return True


def haystack_seams_canonical(tokenizer, hs, ids: np.ndarray, offset: int, start: int, H: int,
                             seams: list[int], moved: list[tuple[int, int]], run: tuple[int, int]) -> bool:
    """:func:`seams_canonical` for a NIAH prompt whose haystack is ``H`` tokens of ``hs``'s
    (repeated) stream from ``start`` on, beginning at prompt index ``offset``, with pieces of
    ``m`` tokens inserted at haystack positions ``b`` (``moved = [(b, m)]``, ascending ``b``).
    The joins between copies of a repeated corpus count as seams too; the safe indices are
    the two sentence boundaries nearest each haystack seam on either side."""
    at = [b for b, _ in moved]
    marks = [0, H, *at]
    joins: list[int] = []
    if start + H > len(hs.ids):
        for j in range(len(hs.ids), start + H, hs.period):
            joins += [j - start, j - start + len(hs.sep_ids)]
        marks += joins
    near: set[int] = set()
    for x in marks:
        lo = hi = start + x
        for _ in range(2):
            lo = hs.boundary_at_or_before(lo - 1)
            hi = hs.boundary_after(hi)
            near.update((lo - start, hi - start))
    at_arr = np.asarray(at, dtype=np.int64)
    ins = np.concatenate([[0], np.cumsum([m for _, m in moved])]).astype(np.int64)

    def to_prompt(x: np.ndarray) -> np.ndarray:  # pieces inserted at b <= x come before x
        return offset + x + ins[np.searchsorted(at_arr, x, side="right")]

    safe = to_prompt(np.asarray(sorted(v for v in near if 0 < v < H), dtype=np.int64))
    j = np.asarray([v for v in joins if v < H], dtype=np.int64)
    return seams_canonical(tokenizer, ids, list(seams) + to_prompt(j).tolist(), safe, run)
