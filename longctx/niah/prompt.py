"""Exact-length NIAH prompts built from token ids (no torch, no decode->re-encode).

A cell of length L is a prompt of EXACTLY L token ids as the model receives them::

    [BOS if add_bos] + chat template up to the user content (system turn, user turn start)
    + instruction + "\\n\\n"
    + haystack[0:b1] + needle_1 + haystack[b1:b2] + needle_2 + ... + haystack[bk:H]
    + "\\n\\n" + question
    + user turn end + assistant generation prefix [+ answer prefix]

The haystack (``H`` tokens of the pre-tokenized corpus, repeated if the corpus is shorter)
fills exactly what the other parts leave.  With ``chat=False`` (base models) the template
is dropped (BOS kept) and the answer prefix, if any, follows the question after a space.

Every fixed text piece is encoded once with ``tokenizer.encode`` (no BOS); the chat
skeleton comes from ``tokenizer.chat_segments`` (control tokens by id).  The piece just
before the haystack is encoded as it tokenizes when the haystack text follows it, and the
pieces after the haystack and each needle as they tokenize after a sentence end ("...x."),
so for byte-level BPE the prompt equals ``tokenizer.chat_ids`` of the decoded text whenever
re-encoding is exact.

Depth: the needle for depth ``d`` goes to ``p = floor(d/100 * H)`` moved back to the
nearest sentence boundary ``b <= p`` (``d = 0`` -> 0, ``d = 100`` -> ``H``).  The recorded
(actual) depth is ``100 * b / H`` -- the needle start as a percentage of the haystack
tokens, counted in haystack-only coordinates (other needles excluded).  Needles sharing a
boundary keep the task's order.

``Cell.ids`` is an ``np.ndarray`` of ``int32`` (use ``cell.tolist()`` or
``torch.from_numpy(cell.ids)``); ``Cell.prompt_sha256`` is the SHA-256 hex of
``cell.ids.astype("<i4").tobytes()`` (little-endian int32 bytes).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from longctx.niah.haystack import TokenizedHaystack, _ids_before
from longctx.niah.tasks import Task, TaskInstance
from longctx.tokenizer import DEFAULT as DEFAULT_SYSTEM

__all__ = ["AUTO", "DEFAULT_SYSTEM", "Cell", "PromptBuilder", "prompt_sha256", "time_build"]


class _Auto:
    """Sentinel: "use the task's default" (instruction, answer prefix)."""

    def __repr__(self) -> str:
        return "AUTO"


AUTO: Any = _Auto()
_MARK = -1  # placeholder int for the haystack inside chat_segments
_AFTER_CONTEXT = "Done."  # what the post-haystack / needle pieces are encoded after


def prompt_sha256(ids: np.ndarray | Sequence[int]) -> str:
    """SHA-256 hex of the ids as little-endian int32 bytes."""
    return hashlib.sha256(np.asarray(ids, dtype="<i4").tobytes()).hexdigest()


@dataclass(eq=False)
class Cell:
    """One built prompt and everything a result record needs.

    Attributes:
        ids: the prompt, ``np.ndarray`` int32 of exactly ``length`` ids.
        length / target_length: actual and requested prompt tokens (always equal).
        target_depth / depth: requested depth and actual depth (percent) of the target needle.
        needles: ``[{key, value, token_start, token_end, depth, target_depth, role}]`` in prompt
            order; ``token_start``/``token_end`` are absolute indices in ``ids`` (end exclusive).
        expected: expected answers; ``metric``: ``"all"`` or ``"part"``.
        answer_budget: max new tokens for the answer.
        task / trial / seed: task id, trial index, the run's base seed; ``cell_seed``: the
            derived per-cell seed.
        haystack_repeated: whether the corpus had to be repeated.
        haystack_tokens: ``H``, haystack tokens in the prompt (needles excluded).
        prefix_tokens: tokens before the haystack (BOS, template, instruction).
        suffix_tokens: tokens after the haystack (question, end of turn, generation prefix,
            answer prefix); ``ids[prefix_tokens:length - suffix_tokens]`` is haystack + needles.
        first_needle_start: absolute index of the earliest needle (the prompt before it is
            template + haystack only, identical for cells built by one builder).
        prompt_sha256: see :func:`prompt_sha256`.
        question, answer_prefix: the texts used (answer_prefix None if none).
    """

    ids: np.ndarray
    length: int
    target_length: int
    target_depth: float
    depth: float
    needles: list[dict[str, Any]]
    expected: list[str]
    metric: str
    answer_budget: int
    task: str
    trial: int
    seed: int
    cell_seed: int
    haystack_repeated: bool
    haystack_tokens: int
    prefix_tokens: int
    suffix_tokens: int
    first_needle_start: int
    prompt_sha256: str
    question: str
    answer_prefix: str | None
    _tokenizer: Any = field(default=None, repr=False)
    _needle_ids: list[np.ndarray] = field(default_factory=list, repr=False)
    _needle_texts: list[str] = field(default_factory=list, repr=False)

    def tolist(self) -> list[int]:
        """The prompt ids as a Python list."""
        return self.ids.tolist()

    def prompt_text(self, skip_special: bool = False) -> str:
        """The prompt decoded to text (control tokens shown unless ``skip_special``)."""
        return self._tokenizer.decode(self.ids.tolist(), skip_special=skip_special)

    def record(self) -> dict[str, Any]:
        """The cell's fields for a results record (no ids)."""
        return {
            "task": self.task, "target_length": self.target_length, "length": self.length,
            "target_depth": self.target_depth, "depth": self.depth, "trial": self.trial,
            "seed": self.seed, "cell_seed": self.cell_seed, "needles": self.needles,
            "expected": self.expected, "metric": self.metric, "answer_budget": self.answer_budget,
            "haystack_repeated": self.haystack_repeated, "haystack_tokens": self.haystack_tokens,
            "prompt_sha256": self.prompt_sha256,
        }

    def verify(self, decode: bool = True) -> None:
        """Raises ``AssertionError`` unless the length is exact and every needle's ids occur
        exactly once in ``ids`` at its recorded span (and, with ``decode``, its text occurs
        exactly once in the decoded prompt)."""
        if len(self.ids) != self.target_length:
            raise AssertionError(f"prompt has {len(self.ids)} tokens, {self.target_length} wanted")
        for nd, nid in zip(self.needles, self._needle_ids):
            hits = find_subsequence(self.ids, nid)
            if hits.tolist() != [nd["token_start"]]:
                raise AssertionError(f"needle {nd['key']!r} ids found at {hits.tolist()}, "
                                     f"expected once at {nd['token_start']}")
        if decode:
            text = self.prompt_text(skip_special=True)
            for t in self._needle_texts:
                c = text.count(t)
                if c != 1:
                    raise AssertionError(f"needle text {t!r} occurs {c} times in the decoded prompt")


def find_subsequence(ids: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """Start indices where ``sub`` occurs in ``ids`` (vectorized)."""
    ids = np.asarray(ids)
    sub = np.asarray(sub, dtype=ids.dtype)
    m, n = len(sub), len(ids)
    if m == 0 or m > n:
        return np.zeros(0, dtype=np.int64)
    cand = np.flatnonzero(ids[: n - m + 1] == sub[0])
    for j in range(1, m):
        if len(cand) == 0:
            break
        cand = cand[ids[cand + j] == sub[j]]
    return cand.astype(np.int64)


@dataclass
class _Plan:
    inst: TaskInstance
    pre: np.ndarray
    post: np.ndarray
    needle_ids: list[np.ndarray]   # " needle" as it tokenizes after a sentence end
    needle_core: list[np.ndarray]  # "needle" at the start of a paragraph
    fixed: int                     # tokens besides the haystack (needles at depth 0 in paragraph form)
    answer_prefix: str | None
    at0: frozenset                 # needles known to sit at haystack position 0 (depth 0)


class PromptBuilder:
    """Builds exact-length NIAH cells for one (tokenizer, haystack, task) combination.

    Args:
        tokenizer: a :class:`longctx.tokenizer.core.Tokenizer` (anything with ``encode``,
            ``decode``, ``chat_segments``, ``add_bos``, ``bos_id``).
        haystack: a :class:`~longctx.niah.haystack.TokenizedHaystack` built with the same
            tokenizer.
        task: a :class:`~longctx.niah.tasks.Task`.
        chat: apply the chat template (False for base models: BOS + plain text).
        system: system prompt for the chat template: ``DEFAULT_SYSTEM`` (the tokenizer's
            default), None (no system turn) or a string.
        answer_prefix: ``AUTO`` (none with ``chat``, the task's prefix without), None (none)
            or a string put right after the generation prefix.
        instruction: ``AUTO`` (the task's), None / "" (none) or a string.
        max_context: the model's allowed context; ``length + answer_budget`` must fit.
        repeat_ok: allow repeating the corpus (else a too-long cell raises ``ValueError``).
        seed: default base seed for :meth:`build`.
    """

    def __init__(self, tokenizer, haystack: TokenizedHaystack, task: Task, *, chat: bool = True,
                 system: Any = DEFAULT_SYSTEM, answer_prefix: Any = AUTO, instruction: Any = AUTO,
                 max_context: int | None = None, repeat_ok: bool = True, seed: int = 0) -> None:
        fp = getattr(tokenizer, "fingerprint", None)
        if fp and haystack.tokenizer_fingerprint and fp != haystack.tokenizer_fingerprint:
            raise ValueError("the haystack was tokenized with a different tokenizer")
        self.tokenizer = tokenizer
        self.haystack = haystack
        self.task = task
        self.chat = bool(chat)
        self.system = system
        self.answer_prefix = answer_prefix
        self.instruction = instruction
        self.max_context = None if max_context is None else int(max_context)
        self.repeat_ok = repeat_ok
        self.seed = int(seed)
        self._enc_cache: dict[tuple[str, str], np.ndarray] = {}
        head = tokenizer.decode(haystack.ids[:8].tolist())
        self._hay_follower = head.lstrip("\n")[:12] or head[:12]

    # -- encoding helpers ----------------------------------------------------------------------
    def _enc(self, text: str, mode: str = "plain") -> np.ndarray:
        key = (mode, text)
        hit = self._enc_cache.get(key)
        if hit is not None:
            return hit
        tok = self.tokenizer
        if mode == "before_hay":
            ids = _ids_before(tok, text, self._hay_follower)
        elif mode == "after":
            ids = _ids_after(tok, _AFTER_CONTEXT, text)
        else:
            ids = list(tok.encode(text))
        arr = np.asarray(ids, dtype=np.int32)
        arr.flags.writeable = False
        if len(self._enc_cache) > 4096:
            self._enc_cache.clear()
        self._enc_cache[key] = arr
        return arr

    def _segments(self, inst: TaskInstance) -> tuple[list, list, str | None]:
        """Segments before and after the haystack (str = text to encode, int = id)."""
        instr = inst.instruction if self.instruction is AUTO else (self.instruction or "")
        if self.answer_prefix is AUTO:
            prefix = None if self.chat else (inst.answer_prefix or None)
        else:
            prefix = self.answer_prefix or None
        head = f"{instr}\n\n" if instr else ""
        tail = f"\n\n{inst.question}"
        tok = self.tokenizer
        if self.chat:
            segs = list(tok.chat_segments([{"role": "user", "content": [head, _MARK, tail]}],
                                          system=self.system))
            i = segs.index(_MARK)
            pre, post = segs[:i], segs[i + 1:]
            if prefix:
                if post and isinstance(post[-1], str):
                    sep = "" if (not post[-1] or post[-1][-1].isspace()) else " "
                    post[-1] = post[-1] + sep + prefix
                else:
                    post.append(prefix)
        else:
            pre = [tok.bos_id] if (getattr(tok, "add_bos", False) and tok.bos_id is not None) else []
            if head:
                pre.append(head)
            post = [tail + (" " + prefix if prefix else "")]
        return pre, post, prefix

    def _encode_side(self, segs: list, side: str) -> np.ndarray:
        parts: list[np.ndarray] = []
        for j, s in enumerate(segs):
            if isinstance(s, str):
                if side == "pre" and j == len(segs) - 1:
                    parts.append(self._enc(s, "before_hay"))
                elif side == "post" and j == 0:
                    parts.append(self._enc(s, "after"))
                else:
                    parts.append(self._enc(s, "plain"))
            else:
                parts.append(np.asarray([int(s)], dtype=np.int32))
        return np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, dtype=np.int32)

    def plan(self, length: int, depth: float, trial: int = 0, seed: int | None = None) -> _Plan:
        """The fixed (non-haystack) parts of a cell, validated against ``length`` and
        ``max_context``; raises ``ValueError`` with a one-line message if they do not fit."""
        seed = self.seed if seed is None else int(seed)
        length = int(length)
        depth = float(depth)
        if not 0.0 <= depth <= 100.0:
            raise ValueError(f"depth {depth:g} is outside [0, 100]")
        if length < 1:
            raise ValueError(f"length {length} must be at least 1 token")
        p = self._parts(length, depth, int(trial), seed)
        fixed, needle_ids, budget = p.fixed, p.needle_ids, p.inst.answer_budget
        if self.max_context is not None and length + budget > self.max_context:
            raise ValueError(
                f"length {length} + answer budget {budget} = {length + budget} tokens exceeds the "
                f"model's context of {self.max_context} tokens"
            )
        if fixed + 1 > length:
            what = "needles" if len(needle_ids) > 1 else "needle"
            raise ValueError(
                f"length {length} is too small: template + instruction + {what} + question take "
                f"{fixed} tokens (at least {fixed + 1} needed)"
            )
        return p

    def _parts(self, length: int, depth: float, trial: int, seed: int) -> _Plan:
        inst = self.task.instance(seed=seed, length=length, depth=depth, trial=trial)
        pre_s, post_s, prefix = self._segments(inst)
        pre = self._encode_side(pre_s, "pre")
        post = self._encode_side(post_s, "post")
        needle_ids = [self._enc(" " + n.text, "after") for n in inst.needles]
        core = [self._enc(n.text, "plain") for n in inst.needles]
        at0 = frozenset(k for k, n in enumerate(inst.needles) if (depth if n.depth is None else n.depth) <= 0)
        fixed = len(pre) + len(post) + sum(self._needle_len(needle_ids, core, k, at0) for k in range(len(core)))
        return _Plan(inst, pre, post, needle_ids, core, fixed, prefix, at0)

    def _needle_len(self, std, core, k, at0) -> int:
        return len(core[k]) + len(self.haystack.sep_ids) if k in at0 else len(std[k])

    def validate(self, lengths: Iterable[int], depths: Iterable[float], trials: int = 1,
                 seed: int | None = None) -> None:
        """Checks every (length, depth, trial) cell fits (see :meth:`plan`) before any compute.
        Raises the first ``ValueError``; the smallest lengths are checked first."""
        ds = sorted(float(d) for d in depths)
        for L in sorted(int(x) for x in lengths):
            for d in ds:
                for t in range(int(trials)):
                    self.plan(L, d, t, seed)

    def min_length(self, depth: float = 50.0, trial: int = 0, seed: int | None = None,
                   length: int = 1_000_000) -> int:
        """Smallest length a cell at (depth, trial) can have: its fixed tokens + 1 haystack
        token (values are drawn as for a cell of ``length``; uuids tokenize to varying sizes)."""
        seed = self.seed if seed is None else int(seed)
        return self._parts(int(length), float(depth), int(trial), seed).fixed + 1

    # -- building -------------------------------------------------------------------------------
    def build(self, length: int, depth: float, trial: int = 0, seed: int | None = None) -> Cell:
        """The cell of ``length`` tokens with the target needle at ``depth`` percent."""
        seed_v = self.seed if seed is None else int(seed)
        plan = self.plan(length, depth, trial, seed_v)
        inst = plan.inst
        length = int(length)
        depth = float(depth)
        hs = self.haystack
        # A needle at haystack position 0 becomes its own paragraph ("needle\n\n" before the
        # corpus text); elsewhere it is " needle" after a sentence end.  Positions depend on H
        # and H on the needle forms: iterate to a fixed point (H only shrinks, so it settles).
        base = len(plan.pre) + len(plan.post)

        def place(at0: frozenset) -> tuple[int, list[tuple[int, int, float]]]:
            H = length - base - sum(self._needle_len(plan.needle_ids, plan.needle_core, k, at0)
                                    for k in range(len(inst.needles)))
            if H < 1:
                raise ValueError(
                    f"length {length} is too small: template + instruction + needles + question take "
                    f"{length - H} tokens (at least {length - H + 1} needed)"
                )
            out = []
            for k, n in enumerate(inst.needles):
                d = depth if n.depth is None else float(n.depth)
                if d >= 100.0:
                    b = H
                    # the haystack may end just after a paragraph break: go before the break
                    lb = hs.boundary_at_or_before(H)
                    ns = len(hs.sep_ids)
                    if 0 < H - lb <= ns:
                        tail, _ = hs.take(H)
                        if np.array_equal(tail[lb:H], hs.sep_ids[: H - lb]):
                            b = lb
                else:
                    p = int(d * H // 100) if d > 0 else 0
                    b = min(hs.boundary_at_or_before(p), H)
                out.append((b, k, d))
            return H, out

        at0 = plan.at0
        for _ in range(len(inst.needles) + 2):
            H, places = place(at0)
            new0 = frozenset(k for b, k, _ in places if b == 0)
            if new0 == at0:
                break
            at0 = new0
        else:  # did not settle (cannot happen when the paragraph form is the longer one)
            at0 = frozenset()
            H, places = place(at0)
        places.sort()
        hay, repeated = hs.take(H, repeat_ok=self.repeat_ok)

        pieces = [plan.pre]
        prev = 0
        pos = len(plan.pre)
        info: list[dict[str, Any]] = [None] * len(places)  # type: ignore[list-item]
        used_ids: list[np.ndarray] = [None] * len(places)  # type: ignore[list-item]
        for b, k, d in places:
            pieces.append(hay[prev:b])
            pos += b - prev
            if k in at0:  # b == 0: the needle as its own first paragraph
                nid = plan.needle_core[k]
                pieces += [nid, hs.sep_ids]
                extra = len(hs.sep_ids)
            else:
                nid = plan.needle_ids[k]
                pieces.append(nid)
                extra = 0
            used_ids[k] = nid
            n = inst.needles[k]
            info[k] = {"key": n.key, "value": n.value, "token_start": pos, "token_end": pos + len(nid),
                       "depth": round(100.0 * b / H, 4), "target_depth": d, "role": n.role}
            pos += len(nid) + extra
            prev = b
        pieces.append(hay[prev:H])
        pieces.append(plan.post)
        ids = np.concatenate(pieces).astype(np.int32, copy=False)
        if len(ids) != length:  # pragma: no cover - construction guarantees it
            raise AssertionError(f"built {len(ids)} tokens for a {length}-token cell")
        needles_sorted = sorted(range(len(info)), key=lambda k: info[k]["token_start"])
        order_ids = [used_ids[k] for k in needles_sorted]
        order_texts = [inst.needles[k].text for k in needles_sorted]
        return Cell(
            ids=ids, length=len(ids), target_length=length, target_depth=depth, depth=info[0]["depth"],
            needles=[info[k] for k in needles_sorted], expected=list(inst.expected), metric=inst.metric,
            answer_budget=inst.answer_budget, task=inst.task, trial=int(trial), seed=seed_v,
            cell_seed=inst.cell_seed, haystack_repeated=bool(repeated), haystack_tokens=int(H),
            prefix_tokens=len(plan.pre), suffix_tokens=len(plan.post),
            first_needle_start=min(x["token_start"] for x in info),
            prompt_sha256=prompt_sha256(ids), question=inst.question, answer_prefix=plan.answer_prefix,
            _tokenizer=self.tokenizer, _needle_ids=order_ids, _needle_texts=order_texts,
        )


def _ids_after(tokenizer, context: str, text: str) -> list[int]:
    """Ids of ``text`` as they come out after ``context`` (e.g. a needle after a sentence end),
    falling back to ``encode(text)``."""
    c = list(tokenizer.encode(context))
    both = list(tokenizer.encode(context + text))
    if len(both) > len(c) and both[: len(c)] == c:
        return both[len(c):]
    return list(tokenizer.encode(text))


def time_build(builder: PromptBuilder, length: int, repeats: int = 20, depth: float = 50.0,
               seed: int | None = None) -> dict[str, float]:
    """Times ``builder.build(length, depth, trial)`` over ``repeats`` trials (after one
    warm-up build).  Returns ``{"length", "repeats", "median_ms", "min_ms", "max_ms"}``."""
    builder.build(length, depth, 0, seed)
    times = []
    for t in range(int(repeats)):
        t0 = time.perf_counter()
        builder.build(length, depth, t + 1, seed)
        times.append((time.perf_counter() - t0) * 1000.0)
    return {"length": int(length), "repeats": int(repeats), "median_ms": statistics.median(times),
            "min_ms": min(times), "max_ms": max(times)}
