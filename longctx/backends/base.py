"""The backend interface that experiment drivers (NIAH sweeps, long-document QA, serving) run on.

A backend turns prompts given as token ids into greedy answers and reports what each one cost.
Backends raise typed exceptions (:class:`~longctx.errors.ContextLengthError` for a request that
does not fit); :meth:`Backend.run` records them per request as ``"ExcType: message"``.
Drivers never touch the engine directly: they hand a list of :class:`GenRequest` to
:meth:`Backend.run` and get one :class:`GenResult` per request through a callback, in whatever
order the backend chooses (a backend with ``supports_prefix_sharing`` reorders requests so
that consecutive prompts share long prefixes). Failures of single requests are reported in
``GenResult.error``; they never stop the run.

This module has no torch import.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from longctx.engine.results import Generation

__all__ = ["GenRequest", "GenResult", "Backend", "BaseBackend", "OnResult", "OnStart", "error_text",
           "common_prefix_len", "prefix_groups", "prefix_schedule"]


@dataclass(eq=False)
class GenRequest:
    """One prompt to answer.

    Attributes:
        ids: the prompt, ``np.ndarray`` of int32 token ids (exactly what the model receives).
        max_new_tokens: answer budget; generation stops earlier at a stop id.
        tag: the caller's handle (e.g. the NIAH cell); backends pass it through untouched.
    """

    ids: np.ndarray
    max_new_tokens: int
    tag: Any = None

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int32)
        if self.ids.ndim != 1 or len(self.ids) == 0:
            raise ValueError("a request needs a non-empty 1-D array of token ids")
        if int(self.max_new_tokens) < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        self.max_new_tokens = int(self.max_new_tokens)


@dataclass
class GenResult(Generation):
    """What one request produced and cost (the fields of :class:`~longctx.engine.results.Generation`).

    Attributes:
        rope_base: the RoPE base the request used (None when the backend cannot tell).
        error: None, or a one-line description of what went wrong (``stop_reason`` ``"error"``).
        logits: optional float32 next-token logits after the prompt (only when a backend was
            asked to keep them; for tests).
    """

    rope_base: Optional[float] = None
    error: Optional[str] = None
    logits: Any = None


OnResult = Callable[[GenRequest, GenResult], None]
OnStart = Callable[[GenRequest, int], None]  # (request, tokens the backend plans to prefill for it)


def error_text(exc: BaseException) -> str:
    """``"ExcType: first line of the message"`` (one line, for results records)."""
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0]}" if msg else type(exc).__name__


def common_prefix_len(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two 1-D id arrays (vectorized)."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if len(diff) else n


def _sort_key(ids: np.ndarray) -> bytes:
    # Big-endian unsigned bytes compare (memcmp) exactly like the id sequences compare.
    return np.asarray(ids, dtype=np.int64).astype(">u4").tobytes()


def prefix_groups(requests: Sequence["GenRequest"], group_key: Callable[[int], Any]) -> list[tuple[Any, list["GenRequest"]]]:
    """Requests grouped for prefix sharing: one group per ``group_key(len(prompt))`` (a backend's RoPE
    base), each in lexicographic order of its ids (a depth-first walk of the prompt trie), groups in
    ascending order of their longest prompt. Torch-free, so a sweep can be planned before any model loads."""
    groups: dict[Any, list[GenRequest]] = {}
    for r in requests:
        groups.setdefault(group_key(len(r.ids)), []).append(r)
    ordered = [(key, sorted(reqs, key=lambda r: _sort_key(r.ids))) for key, reqs in groups.items()]
    ordered.sort(key=lambda g: (max(len(r.ids) for r in g[1]), g[0]))
    return ordered


def prefix_schedule(groups: Sequence[tuple[Any, Sequence["GenRequest"]]]) -> list[tuple["GenRequest", int]]:
    """``(request, prompt tokens to prefill)`` in run order: each request reuses its longest common
    prefix with the previous one of its group, keeping at least one token to prefill."""
    out = []
    for _, reqs in groups:
        prev = np.zeros(0, dtype=np.int32)
        for r in reqs:
            lcp = min(common_prefix_len(prev, r.ids), len(r.ids) - 1)
            out.append((r, len(r.ids) - lcp))
            prev = r.ids
    return out


@runtime_checkable
class Backend(Protocol):
    """What a driver needs from an inference backend.

    Attributes:
        name: short backend id (``"native"``, ...).
        tokenizer: the model's tokenizer (``encode``/``decode``/``chat_segments``/``stop_ids``...).
        max_context: the longest request (prompt + new tokens) the backend accepts.
        supports_prefix_sharing: whether :meth:`run` reuses the keys/values of shared prompt
            prefixes between requests.
    """

    name: str
    tokenizer: Any
    max_context: int
    supports_prefix_sharing: bool

    def model_info(self) -> dict[str, Any]:
        """Identity of what answers: ``model`` (path), ``model_name``, ``config_hash``,
        ``tokenizer`` (id), ``tokenizer_fingerprint``, ``rope_scaling`` (dict or None),
        ``dtype``, ``device``, ``backend``, ``max_context``."""
        ...

    def rope_base_for(self, total_len: int) -> float:
        """The RoPE base a prompt of ``total_len`` tokens is run with."""
        ...

    def generate(self, ids: Sequence[int] | np.ndarray, max_new_tokens: int) -> GenResult:
        """Answers one prompt from scratch (greedy)."""
        ...

    def schedule(self, requests: Sequence[GenRequest]) -> list[tuple[GenRequest, int]]:
        """The order :meth:`run` will use, with the prompt tokens it plans to prefill for each."""
        ...

    def run(self, requests: Sequence[GenRequest], *, on_result: OnResult,
            on_start: Optional[OnStart] = None) -> None:
        """Answers every request, calling ``on_start`` before and ``on_result`` after each one."""
        ...


class BaseBackend:
    """Default :meth:`schedule`/:meth:`run`: requests in the given order, each from scratch.

    Subclasses implement :meth:`generate` (and may override :meth:`run` to share work).
    """

    name = "base"
    tokenizer: Any = None
    max_context: int = 0
    supports_prefix_sharing = False

    def model_info(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def rope_base_for(self, total_len: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def generate(self, ids, max_new_tokens: int) -> GenResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def schedule(self, requests: Sequence[GenRequest]) -> list[tuple[GenRequest, int]]:
        return [(r, len(r.ids)) for r in requests]

    def run(self, requests: Sequence[GenRequest], *, on_result: OnResult,
            on_start: Optional[OnStart] = None) -> None:
        for req, planned in self.schedule(requests):
            if on_start is not None:
                on_start(req, planned)
            t0 = time.perf_counter()
            try:
                res = self.generate(req.ids, req.max_new_tokens)
            except Exception as e:  # noqa: BLE001 - one bad request must not stop the run
                res = GenResult(prompt_tokens=len(req.ids), stop_reason="error", error=error_text(e),
                                prefill_s=time.perf_counter() - t0)
            on_result(req, res)
