"""Exact-length NIAH prompts spliced from token ids (no torch; checked to re-encode exactly).

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
pieces after the haystack and each needle as they tokenize after a sentence end ("...x.").

Re-encodable: :func:`~longctx.niah.seams.reencode` of the decoded prompt (control tokens
shown, as ``--dump-prompts`` writes it) gives exactly ``Cell.ids``.  Splicing can break
that at a seam -- a haystack cut inside a paragraph break followed by ``"\\n\\n" + question``
(``Ċ Ċ Ċ`` where the tokenizer makes ``ĊĊ Ċ``), a cut inside a multi-byte character, a
needle before punctuation that merges with its final period -- so every cell's seams are
checked (:func:`~longctx.niah.seams.haystack_seams_canonical`, a few sentences around each
seam).  No token budget can absorb such a seam (a newline run costs 1-2 tokens whatever its
length), so the fallback moves the window instead: the haystack is then taken from the
corpus's next paragraph start (``Cell.haystack_start``; same length, same needle rule),
tried in order, the first canonical one kept -- deterministic, and rare (1-2 cells in
100 on the built-in corpora; such a cell does not share the sweep's common prefix).

Depth: the needle for depth ``d`` goes to ``p = floor(d/100 * H)`` (``d = 100`` -> ``H``)
moved back to the nearest sentence boundary ``b <= p``: the needle always follows a
complete sentence, at every depth.  ``d = 0`` (or a boundary at 0) puts it before the first
sentence, as its own paragraph.  At ``d = 100`` the needle follows the last sentence that
ends inside the ``H`` haystack tokens, and the rest of the cut-off sentence follows the
needle -- as at every other depth the haystack is exactly ``H`` corpus tokens, so the prompt
keeps exactly ``L`` tokens without padding and no sentence is cut before a needle.  The
recorded (actual) depth is ``100 * b / H`` -- the needle start as a percentage of the
haystack tokens, counted in haystack-only coordinates (other needles excluded); short cells
can snap far (recorded).  Needles sharing a boundary keep the task's order.

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

from longctx.niah.haystack import TokenizedHaystack
from longctx.niah.seams import haystack_seams_canonical, ids_after, ids_before, reencode
from longctx.niah.tasks import Task, TaskInstance
from longctx.tokenizer import DEFAULT as DEFAULT_SYSTEM

__all__ = ["AUTO", "DEFAULT_SYSTEM", "MAX_STARTS", "Cell", "PromptBuilder", "prompt_sha256", "reencode", "time_build"]


class _Auto:
    """Sentinel: "use the task's default" (instruction, answer prefix)."""

    def __repr__(self) -> str:
        return "AUTO"


AUTO: Any = _Auto()
_MARK = -1  # placeholder int for the haystack inside chat_segments
_AFTER_CONTEXT = "Done."  # what the post-haystack / needle pieces are encoded after
MAX_STARTS = 64  # paragraph starts tried when a seam is not canonical at the corpus start


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
        haystack_start: the corpus token the haystack starts at (0, or a paragraph start when
            the corpus start gives a seam that does not re-encode; see :meth:`PromptBuilder.build`).
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
    haystack_start: int
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
            "haystack_start": self.haystack_start,
            "prompt_sha256": self.prompt_sha256,
        }

    def verify(self, decode: bool = True) -> None:
        """Raises ``AssertionError`` unless the length is exact and every needle's ids occur
        exactly once in ``ids`` at its recorded span (and, with ``decode``, its text occurs
        exactly once in the decoded prompt and the decoded prompt re-encodes to ``ids``, see
        :func:`~longctx.niah.seams.reencode`)."""
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
            again = reencode(self._tokenizer, self.prompt_text())
            if again != self.tolist():
                i = next((j for j, (x, y) in enumerate(zip(again, self.tolist())) if x != y), min(len(again), self.length))
                raise AssertionError(f"the decoded prompt re-encodes differently from token {i} on")


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
    run: tuple[int, int]           # text run holding the haystack: (first index, ids after its end)


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
        self._start_list: list[int] | None = None

    # -- encoding helpers ----------------------------------------------------------------------
    def _enc(self, text: str, mode: str = "plain") -> np.ndarray:
        key = (mode, text)
        hit = self._enc_cache.get(key)
        if hit is not None:
            return hit
        tok = self.tokenizer
        if mode == "before_hay":
            ids = ids_before(tok, text, self._hay_follower)
        elif mode == "after":
            ids = ids_after(tok, _AFTER_CONTEXT, text)
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
        # the run starts where the last text piece before the haystack starts; it ends
        # (counted from the prompt end) where the first text piece after it ends
        head = len(self._enc(pre_s[-1], "before_hay")) if pre_s and isinstance(pre_s[-1], str) else 0
        tail = len(post) - (len(self._enc(post_s[0], "after")) if post_s and isinstance(post_s[0], str) else 0)
        return _Plan(inst, pre, post, needle_ids, core, fixed, prefix, at0, (len(pre) - head, tail))

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
        """The cell of ``length`` tokens with the target needle at ``depth`` percent.

        The haystack is the corpus from its start; when a seam would not re-encode to the
        spliced ids (see :mod:`longctx.niah.seams`), the next paragraph start of the corpus is
        tried (``Cell.haystack_start``), up to ``MAX_STARTS`` of them, else ``ValueError``."""
        seed_v = self.seed if seed is None else int(seed)
        plan = self.plan(length, depth, trial, seed_v)
        for start in self._starts():
            cell = self._assemble(plan, int(length), float(depth), int(trial), seed_v, start)
            if cell is not None:
                return cell
        raise ValueError(f"cannot build a re-encodable {int(length)}-token prompt at depth {float(depth):g} "
                         f"(trial {int(trial)}) from haystack {self.haystack.name} within its first "
                         f"{MAX_STARTS} paragraph starts")

    def _starts(self):
        """Token 0, then the corpus's paragraph starts (at most ``MAX_STARTS``), found lazily
        (most cells never need them) and remembered."""
        yield 0
        if self._start_list is None:
            self._start_list = self.haystack.paragraph_starts(self.tokenizer.decode, MAX_STARTS)
        yield from self._start_list

    def _assemble(self, plan: _Plan, length: int, depth: float, trial: int, seed: int, start: int) -> Cell | None:
        """The cell with the haystack taken from corpus position ``start`` on, or None when a
        seam is not canonical (or ``start > 0`` would need a repetition that is not allowed)."""
        inst = plan.inst
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
                p = H if d >= 100.0 else (int(d * H // 100) if d > 0 else 0)
                # the last sentence end at or before p, at every depth (100 included)
                b = max(hs.boundary_at_or_before(start + p) - start, 0)
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
        if start and start + H > len(hs.ids) and not self.repeat_ok:
            return None
        hay, repeated = hs.take(start + H, repeat_ok=self.repeat_ok)
        hay = hay[start:]

        pieces = [plan.pre]
        prev = 0
        pos = len(plan.pre)
        seams = [pos, length - len(plan.post)]
        moved: list[tuple[int, int]] = []  # (haystack position, tokens inserted there)
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
            seams += [pos, pos + len(nid), pos + len(nid) + extra]
            moved.append((b, len(nid) + extra))
            pos += len(nid) + extra
            prev = b
        pieces.append(hay[prev:H])
        pieces.append(plan.post)
        ids = np.concatenate(pieces).astype(np.int32, copy=False)
        if len(ids) != length:  # pragma: no cover - construction guarantees it
            raise AssertionError(f"built {len(ids)} tokens for a {length}-token cell")
        run = (plan.run[0], length - plan.run[1])
        if not haystack_seams_canonical(self.tokenizer, hs, ids, len(plan.pre), start, H, seams, moved, run):
            return None
        needles_sorted = sorted(range(len(info)), key=lambda k: info[k]["token_start"])
        order_ids = [used_ids[k] for k in needles_sorted]
        order_texts = [inst.needles[k].text for k in needles_sorted]
        return Cell(
            ids=ids, length=len(ids), target_length=length, target_depth=depth, depth=info[0]["depth"],
            needles=[info[k] for k in needles_sorted], expected=list(inst.expected), metric=inst.metric,
            answer_budget=inst.answer_budget, task=inst.task, trial=trial, seed=seed,
            cell_seed=inst.cell_seed, haystack_repeated=bool(repeated), haystack_tokens=int(H),
            haystack_start=int(start), prefix_tokens=len(plan.pre), suffix_tokens=len(plan.post),
            first_needle_start=min(x["token_start"] for x in info),
            prompt_sha256=prompt_sha256(ids), question=inst.question, answer_prefix=plan.answer_prefix,
            _tokenizer=self.tokenizer, _needle_ids=order_ids, _needle_texts=order_texts,
        )


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
