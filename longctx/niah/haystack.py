"""Tokenized haystacks: a corpus tokenized once per tokenizer, cached on disk (no torch).

A :class:`TokenizedHaystack` holds

* ``ids``: the corpus as token ids (``np.int32``), tokenized in paragraph-aligned pieces
  (about ``PIECE_CHARS`` characters each; each piece after the first starts with its
  paragraph break, so the pieces join the way the whole text would tokenize for byte-level
  BPE), and
* ``boundaries``: sentence-boundary token offsets (``np.int64``, ascending, always including
  0 and ``len(ids)``).  A boundary is found in the TEXT: a run of ``.``, ``!`` or ``?``
  (optionally followed by closing quotes/brackets) followed by whitespace or the end of the
  text (common abbreviations such as "Mr." and single-letter initials excluded), or a run of
  ``。``, ``！``, ``？``, ``…`` (optionally closed by ``”’」』）``) followed by anything.  Its end character ``e`` is
  mapped to the first token that starts at or after ``e``; the boundary counts only if no
  earlier token extends past ``e`` (it falls exactly between two tokens).  So in
  ``"green. The sky"`` the boundary is the token ``" The"``: a needle spliced there reads
  ``"green. <needle> The sky"``.

The text is tokenized stripped of leading and trailing whitespace (``corpus_sha256`` is still
the sha256 of the text as given), so a prompt's haystack never starts or ends on the corpus's
own surrounding whitespace.  Longer-than-corpus requests repeat the corpus, joined by the
tokens of a paragraph break (``sep_ids``); positions and boundaries then refer to that
repeated stream, and the joins tokenize the way the joined text does.

Cache: ``cache_root()/haystacks/<corpus sha256>-<tokenizer fingerprint>-v<FORMAT>.npz``
with arrays ``ids`` (int32), ``boundaries`` (int64), ``sep_ids`` (int32) and ``meta`` (a
JSON string).  Files are written atomically; an unreadable file is rebuilt.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from longctx.data import BUILTIN_HAYSTACKS, corpus_sha256, load_haystack_text, read_haystack_path
from longctx.niah.seams import ids_before
from longctx.paths import cache_root

__all__ = [
    "FORMAT_VERSION",
    "PIECE_CHARS",
    "TokenizedHaystack",
    "clear_memory_cache",
    "find_sentence_ends",
    "get_haystack",
    "haystack_cache_dir",
    "split_pieces",
]

FORMAT_VERSION = 2  # 2: text stripped before tokenizing
PIECE_CHARS = 100_000

# Terminator run + optional closers, then whitespace / end (Latin) or anything (CJK).
_LATIN_END = re.compile(r"[.!?]+[\"'\u201d\u2019\u00bb)\]]*(?=\s|\Z)")
_CJK_END = re.compile(r"[\u3002\uff01\uff1f\u2026]+[\"'\u201d\u2019\u300d\u300f\uff09)\]]*")  # 。！？… + closers
_WORD_BEFORE = re.compile(r"([A-Za-z]+)$")
_ABBREV = frozenset(
    "Mr Mrs Ms Messrs Mme Mlle Dr St Jr Sr Col Capt Gen Lt Sgt Rev Hon Prof Esq Gov Sen Rep "
    "Fr Bros Co Inc Ltd vs etc viz cf al ie eg No Vol Ch".split()
)


def haystack_cache_dir() -> Path:
    """Where tokenized haystacks are cached: ``cache_root() / "haystacks"``."""
    return cache_root() / "haystacks"


def find_sentence_ends(text: str) -> list[int]:
    """Character offsets just after each sentence end (terminator + closing quotes)."""
    ends: list[int] = []
    for m in _LATIN_END.finditer(text):
        s = m.start()
        if m.group(0).startswith(".") and not m.group(0).startswith(".."):
            w = _WORD_BEFORE.search(text, max(0, s - 12), s)
            if w and (w.group(1) in _ABBREV or (len(w.group(1)) == 1 and w.group(1).isupper())):
                # "Mr. Darcy", "J. Smith": not a sentence end (unless the text ends there).
                if m.end() < len(text) and not text[m.end():m.end() + 2].startswith("\n"):
                    continue
        ends.append(m.end())
    for m in _CJK_END.finditer(text):
        ends.append(m.end())
    ends.sort()
    return ends


def split_pieces(text: str, piece_chars: int = PIECE_CHARS) -> list[tuple[int, int]]:
    """Char ranges ``[(start, end)]`` covering ``text``, about ``piece_chars`` long, split just
    before a paragraph break ("\\n\\n") when one exists (else before a newline, else a space,
    else anywhere), so that each later piece starts with the break's whitespace."""
    n = len(text)
    out: list[tuple[int, int]] = []
    start = 0
    while n - start > piece_chars:
        lo, hi = start + piece_chars // 2, start + piece_chars
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, lo, hi)
            if cut > start:
                # move to the beginning of the whitespace run so the break stays whole
                while cut > start and text[cut - 1] in " \n\t" and sep != " ":
                    cut -= 1
                break
        if cut <= start:
            cut = hi
        out.append((start, cut))
        start = cut
    out.append((start, n))
    return out


@dataclass(eq=False)
class TokenizedHaystack:
    """A corpus as token ids plus sentence-boundary token offsets.

    Attributes:
        name: the built-in name or the path it came from.
        ids: ``np.int32`` token ids of the corpus (read-only).
        boundaries: ``np.int64`` sentence-boundary token offsets in ``[0, len(ids)]``,
            ascending, including 0 and ``len(ids)``.
        sep_ids: ``np.int32`` ids joining repeated copies (a paragraph break).
        corpus_sha256: sha256 of the corpus text (UTF-8).
        tokenizer_fingerprint: ``Tokenizer.fingerprint`` of the tokenizer used.
        meta: extra facts (chars, tokenize seconds, cache file, ...).
    """

    name: str
    ids: np.ndarray
    boundaries: np.ndarray
    sep_ids: np.ndarray
    corpus_sha256: str
    tokenizer_fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = np.ascontiguousarray(self.ids, dtype=np.int32)
        self.boundaries = np.ascontiguousarray(self.boundaries, dtype=np.int64)
        self.sep_ids = np.ascontiguousarray(self.sep_ids, dtype=np.int32)
        for a in (self.ids, self.boundaries, self.sep_ids):
            a.flags.writeable = False
        if len(self.ids) == 0:
            raise ValueError(f"haystack {self.name} is empty (no tokens)")
        n = len(self.ids)
        b = set(int(x) for x in self.boundaries) | {0, n}
        # boundaries of one repetition unit (ids + sep): the corpus's plus the start of sep
        self._unit_b: list[int] = sorted(b)
        self._unit_arr = np.asarray(self._unit_b, dtype=np.int64)
        self._period = n + len(self.sep_ids)
        self._tiled: np.ndarray | None = None

    # -- sizes -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_tokens(self) -> int:
        """Tokens in one copy of the corpus."""
        return len(self.ids)

    @property
    def period(self) -> int:
        """Tokens per repetition unit (corpus + ``sep_ids``)."""
        return self._period

    # -- slicing -------------------------------------------------------------------------------
    def take(self, n_tokens: int, repeat_ok: bool = True) -> tuple[np.ndarray, bool]:
        """The first ``n_tokens`` ids of the (repeated) corpus, as ``(ids, repeated)``.

        ``ids`` is an ``np.int32`` array (a read-only view when no repetition is needed);
        ``repeated`` is True when the corpus had to be repeated (copies joined by
        ``sep_ids``).  With ``repeat_ok=False`` a request longer than the corpus raises
        ``ValueError``.
        """
        n_tokens = int(n_tokens)
        if n_tokens < 0:
            raise ValueError(f"cannot take {n_tokens} haystack tokens")
        n = len(self.ids)
        if n_tokens <= n:
            return self.ids[:n_tokens], False
        if not repeat_ok:
            raise ValueError(
                f"haystack {self.name} has {n} tokens, {n_tokens} needed (repetition not allowed)"
            )
        if self._tiled is None or len(self._tiled) < n_tokens:
            reps = -(-n_tokens // self._period)
            unit = np.concatenate([self.ids, self.sep_ids])
            tiled = np.tile(unit, reps)
            tiled.flags.writeable = False
            self._tiled = tiled
        return self._tiled[:n_tokens], True

    def boundary_at_or_before(self, pos: int) -> int:
        """The largest sentence boundary ``<= pos`` in the (repeated) token stream.

        The start of a repeated copy (after ``sep_ids``) is not a boundary; the start of the
        separator (the end of the previous copy) is."""
        pos = int(pos)
        if pos <= 0:
            return 0
        k, r = divmod(pos, self._period)
        j = bisect.bisect_right(self._unit_b, r) - 1
        if j == 0 and k > 0:  # inside the first sentence of a repeated copy
            return (k - 1) * self._period + len(self.ids)
        return k * self._period + self._unit_b[j]

    def boundary_after(self, pos: int) -> int:
        """The smallest sentence boundary ``> pos`` in the (repeated) token stream."""
        pos = int(pos)
        if pos < 0:
            return 0
        k, r = divmod(pos, self._period)
        j = bisect.bisect_right(self._unit_b, r)
        if j < len(self._unit_b):
            return k * self._period + self._unit_b[j]
        return (k + 1) * self._period + self._unit_b[1]

    def boundaries_upto(self, n_tokens: int) -> np.ndarray:
        """All boundaries in ``[0, n_tokens]`` of the (repeated) stream (``np.int64``)."""
        unit = self._unit_arr
        reps = int(n_tokens) // self._period + 1
        later = (unit[1:][None, :] + self._period * np.arange(1, reps + 1, dtype=np.int64)[:, None]).ravel()
        allb = np.concatenate([unit, later])  # ascending, no duplicates by construction
        return allb[: int(np.searchsorted(allb, int(n_tokens), side="right"))]

    def paragraph_starts(self, decode, limit: int) -> list[int]:
        """The first ``limit`` corpus positions that start a paragraph: the tokens before are
        whitespace holding a newline (after a sentence end), the token itself starts with
        non-whitespace.  ``decode`` is the tokenizer's ``decode`` (ids -> text)."""
        n, out = len(self.ids), []
        for b in self.boundaries[1:-1].tolist() if limit > 0 else ():
            j = b
            while j < n and decode([int(self.ids[j])]).isspace():
                j += 1
            if b < j < n and "\n" in decode(self.ids[b:j].tolist()) and not decode([int(self.ids[j])])[:1].isspace():
                out.append(j)
                if len(out) == limit:
                    break
        return out

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_text(
        cls,
        text: str,
        tokenizer,
        *,
        name: str = "<text>",
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
        piece_chars: int = PIECE_CHARS,
    ) -> "TokenizedHaystack":
        """Tokenizes ``text`` (or loads the cached result) for ``tokenizer``.

        Raises ``ValueError`` if the text is empty or tokenizes to nothing.
        """
        if not text or not text.strip():
            raise ValueError(f"haystack {name} is empty")
        sha = corpus_sha256(text)
        fp = str(getattr(tokenizer, "fingerprint", "") or "")
        key = (sha, fp)
        hit = _MEMO.get(key)
        if hit is not None:
            return hit
        path = None
        if cache and fp:
            d = Path(cache_dir) if cache_dir is not None else haystack_cache_dir()
            path = d / f"{sha[:24]}-{fp[:24]}-v{FORMAT_VERSION}.npz"
            loaded = _load_npz(path, name, sha, fp)
            if loaded is not None:
                _MEMO[key] = loaded
                return loaded
        t0 = time.perf_counter()
        body = text.strip()
        ids, bounds = _tokenize(body, tokenizer, piece_chars)
        sep = ids_before(tokenizer, "\n\n", body[:16])
        elapsed = time.perf_counter() - t0
        meta = {
            "name": name,
            "chars": len(text),
            "tokens": len(ids),
            "sentences": len(bounds),
            "tokenizer": str(getattr(tokenizer, "name", "")),
            "tokenize_s": round(elapsed, 3),
            "format": FORMAT_VERSION,
        }
        hs = cls(name=name, ids=ids, boundaries=bounds, sep_ids=np.asarray(sep, dtype=np.int32),
                 corpus_sha256=sha, tokenizer_fingerprint=fp, meta=meta)
        if path is not None:
            try:
                _save_npz(path, hs)
                hs.meta["cache_file"] = str(path)
            except OSError:
                pass  # a read-only cache is not fatal
        _MEMO[key] = hs
        return hs


_MEMO: dict[tuple[str, str], TokenizedHaystack] = {}


def clear_memory_cache() -> None:
    """Forgets the haystacks kept in memory (the disk cache stays)."""
    _MEMO.clear()


def _tokenize(text: str, tokenizer, piece_chars: int) -> tuple[np.ndarray, np.ndarray]:
    id_parts: list[np.ndarray] = []
    start_parts: list[np.ndarray] = []
    end_parts: list[np.ndarray] = []
    ranges = split_pieces(text, piece_chars)
    workers = min(4, os.cpu_count() or 1, len(ranges))
    if workers > 1:  # the Rust backend releases the GIL for part of the work
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as ex:
            results = list(ex.map(lambda r: tokenizer.encode_with_offsets(text[r[0]:r[1]]), ranges))
    else:
        results = [tokenizer.encode_with_offsets(text[a:b]) for a, b in ranges]
    for (a, _b), (ids, offs) in zip(ranges, results):
        if not ids:
            continue
        o = np.asarray(offs, dtype=np.int64).reshape(-1, 2) + a
        id_parts.append(np.asarray(ids, dtype=np.int32))
        start_parts.append(o[:, 0])
        end_parts.append(o[:, 1])
    if not id_parts:
        raise ValueError("haystack text tokenizes to no tokens")
    ids = np.concatenate(id_parts)
    starts = np.concatenate(start_parts)
    ends = np.maximum.accumulate(np.concatenate(end_parts))
    starts = np.maximum.accumulate(starts)  # guard against odd per-byte spans
    e = np.asarray(find_sentence_ends(text), dtype=np.int64)
    n = len(ids)
    idx = np.searchsorted(starts, e, side="left")  # first token starting at/after e
    ok = np.ones(len(e), dtype=bool)
    inner = idx > 0
    ok[inner] = ends[idx[inner] - 1] <= e[inner]
    bounds = np.unique(np.concatenate([[0, n], idx[ok]])).astype(np.int64)
    return ids, bounds


def _save_npz(path: Path, hs: TokenizedHaystack) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(hs.meta, corpus_sha256=hs.corpus_sha256, tokenizer_fingerprint=hs.tokenizer_fingerprint)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, ids=hs.ids, boundaries=hs.boundaries, sep_ids=hs.sep_ids,
                 meta=np.array(json.dumps(meta)))
    os.replace(tmp, path)


def _load_npz(path: Path, name: str, sha: str, fp: str) -> TokenizedHaystack | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("corpus_sha256") != sha or meta.get("tokenizer_fingerprint") != fp:
                return None
            ids, bounds, sep = z["ids"], z["boundaries"], z["sep_ids"]
    except Exception:  # noqa: BLE001 -- a torn or foreign file: rebuild it
        return None
    meta["name"] = name
    meta["cache_file"] = str(path)
    meta["from_cache"] = True
    return TokenizedHaystack(name=name, ids=ids, boundaries=bounds, sep_ids=sep, corpus_sha256=sha,
                             tokenizer_fingerprint=fp, meta=meta)


def get_haystack(name_or_path: str | os.PathLike, tokenizer, *, cache: bool = True,
                 cache_dir: str | os.PathLike | None = None) -> TokenizedHaystack:
    """A built-in haystack (``austen``, ``web_bible``, ``noise``) or a file / directory of
    ``.txt`` files, tokenized with ``tokenizer`` (once; cached on disk and in memory).

    Raises ``ValueError`` (one line) for an unknown name, a missing path or an empty text.
    """
    key = str(name_or_path)
    if key in BUILTIN_HAYSTACKS:
        text = load_haystack_text(key)
    else:
        p = Path(key).expanduser()
        if not p.exists() and os.sep not in key and "/" not in key and "." not in key:
            raise ValueError(
                f"unknown haystack {key!r}: not a built-in ({', '.join(BUILTIN_HAYSTACKS)}) "
                "nor an existing path"
            )
        text = read_haystack_path(p)
    return TokenizedHaystack.from_text(text, tokenizer, name=key, cache=cache, cache_dir=cache_dir)
