"""The one token loop (prefill -> decode -> stop) and token selection.

Every generation path runs :func:`token_loop`: :meth:`LongCtxModel.generate_ids` (and through it
``generate``, ``stream``, ``chat``, QA and the server), the native backend and the transformers
backend. Callers supply the model-specific parts as two callables: ``prefill()`` returning the
float32 ``[vocab]`` logits after the prompt, and ``step(token)`` feeding one token (a ``[1]`` long
tensor on the device) and returning the next logits.

Device syncs (gpt-fast style): on CUDA the greedy token stays on the device and the next decode
step is queued *before* the host reads the token (a non-blocking copy plus an event), so the GPU
never idles while Python checks for a stop id. If that token was a stop id the step was one too
many: the loop reports it through ``stats.new_tokens`` and callers that keep the cache truncate it
back (cache positions are only ever prompt + fed answer tokens). On the CPU there is no queue and
no speculative step.
"""
from __future__ import annotations

import resource
import sys
import time
from typing import Callable, Collection, Iterator

import torch

from longctx.engine.results import Generation, GenerationStats

__all__ = ["Generation", "GenerationStats", "token_loop", "select_next", "peak_memory_bytes"]


def _next_token(logits: torch.Tensor, temperature: float, top_p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """The next token as a ``[1]`` long tensor on the logits' device (no host sync when greedy)."""
    if temperature <= 0.0:
        return torch.argmax(logits).reshape(1)  # [1]
    tok = select_next(logits, temperature, top_p, generator)
    return torch.tensor([tok], dtype=torch.long, device=logits.device)  # [1]


def select_next(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> int:
    """Chooses the next token.

    Args:
        logits: float32 ``[vocab]``.
        temperature: 0 means greedy (argmax; the lowest id wins ties).
        top_p: nucleus mass kept when sampling (1.0 keeps all).
        generator: a seeded CPU generator for reproducible sampling.

    Returns:
        The token id.
    """
    if temperature <= 0.0:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        cum = torch.cumsum(sorted_p, dim=-1)
        keep = cum - sorted_p < top_p  # always keeps the most likely token
        sorted_p = torch.where(keep, sorted_p, torch.zeros_like(sorted_p))
        choice = torch.multinomial(sorted_p.cpu(), 1, generator=generator)
        return int(order.cpu()[choice].item())
    return int(torch.multinomial(probs.cpu(), 1, generator=generator).item())


def token_loop(prefill: Callable[[], torch.Tensor], step: Callable[[torch.Tensor], torch.Tensor], *,
               max_new_tokens: int, stop_ids: Collection[int], stats: GenerationStats, device: torch.device,
               temperature: float = 0.0, top_p: float = 1.0, generator: torch.Generator | None = None,
               t0: float | None = None) -> Iterator[int]:
    """Prefills, then yields generated token ids until a stop id or ``max_new_tokens``.

    Stop ids are not yielded. Every yielded token except the last one of a full budget is fed to
    ``step``; on CUDA a stop id may be fed too (see the module doc). Fills ``stats.prefill_s``,
    ``ttft_s``, ``decode_s``, ``new_tokens``, ``stop_reason`` and ``peak_mem_bytes`` (also when the
    consumer stops early).

    Args:
        prefill: runs the prompt; returns float32 ``[vocab]`` logits of its last position.
        step: feeds one ``[1]`` token tensor; returns float32 ``[vocab]`` next-token logits.
        max_new_tokens: the answer budget (>= 1).
        stop_ids: ids that end the answer.
        stats: filled as the loop runs.
        device: where the model runs (CUDA enables the queued next step).
        temperature, top_p, generator: sampling (temperature 0 = greedy).
        t0: the request's start (default: now), for ``ttft_s``.
    """
    cuda = device.type == "cuda"
    stops = frozenset(int(s) for s in stop_ids)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter() if t0 is None else t0
    t_start = time.perf_counter()
    t_first = None
    try:
        logits = prefill()
        if cuda:
            torch.cuda.synchronize(device)
        stats.prefill_s = time.perf_counter() - t_start
        stats.stop_reason = "length"
        for i in range(max_new_tokens):
            tok_t = _next_token(logits, temperature, top_p, generator)  # [1] on the device
            more = i + 1 < max_new_tokens
            queued = cuda and more
            if queued:  # queue the next step before reading the token on the host
                host = torch.empty(1, dtype=torch.long, pin_memory=True)
                host.copy_(tok_t, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record()
                logits = step(tok_t)
                ready.synchronize()
                tok = int(host[0])
            else:
                tok = int(tok_t.item())
            if t_first is None:
                t_first = time.perf_counter()
                stats.ttft_s = t_first - t0
            if tok in stops:
                stats.stop_reason = "stop"
                break
            stats.new_tokens += 1
            stats.decode_s = time.perf_counter() - t_first
            yield tok
            if more and not queued:
                logits = step(tok_t)
    finally:
        if cuda:
            torch.cuda.synchronize(device)
        stats.decode_s = time.perf_counter() - (t_first or t_start)
        stats.peak_mem_bytes = peak_memory_bytes(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak allocated CUDA memory, or the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)
