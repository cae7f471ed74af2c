"""Per-token negative log-likelihood of a long text, chunk by chunk through the engine's KV cache.

The classic long-context diagnostic beside NIAH: does the loss keep falling with position (the model uses
the context) or blow up past the trained window? Each chunk of C tokens is run once with its keys/values
appended to the cache; only that chunk's ``[C, vocab]`` logits ever exist (never ``[T, vocab]``), and the
loss is taken in float32 with ``cross_entropy`` before the next chunk runs.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from longctx.engine.generation import peak_memory_bytes
from longctx.errors import ContextLengthError

__all__ = ["PplResult", "token_nll", "bucket_means", "perplexity"]


@dataclass
class PplResult:
    """One perplexity run: per-bucket mean NLL and the run's settings (one JSONL record)."""

    model: str
    rope_scaling: dict | None
    rope_base: float
    tokens: int
    chunk_size: int
    bucket_size: int
    bucket_starts: list[int]
    bucket_nll: list[float]
    bucket_counts: list[int]
    mean_nll: float
    perplexity: float
    seconds: float
    peak_mem_bytes: int
    source: str = ""
    extra: dict = field(default_factory=dict)

    def as_record(self) -> dict:
        return asdict(self)


def token_nll(model, ids: Sequence[int], *, chunk_size: int = 1024, rope_base: float | None = None) -> torch.Tensor:
    """Negative log-likelihood of every token after the first, float32 ``[T - 1]``.

    Args:
        model: a loaded :class:`~longctx.engine.runtime.LongCtxModel`.
        ids: the token ids (T >= 2).
        chunk_size: tokens per forward; the live logits are ``[chunk_size, vocab]``.
        rope_base: the request's RoPE base (default: the model's base for T tokens, held for every chunk).

    Raises:
        ContextLengthError: T beyond the model's allowed context.
        ValueError: fewer than 2 tokens or a chunk size < 1.
    """
    t = len(ids)
    if t < 2:
        raise ValueError("perplexity needs at least 2 tokens")
    if chunk_size < 1:
        raise ValueError(f"chunk size must be at least 1, got {chunk_size}")
    if t > model.max_context:
        raise ContextLengthError(f"{t} tokens exceed the allowed context of {model.max_context} tokens")
    base = model.rope_base_for(t) if rope_base is None else rope_base
    x = torch.as_tensor(list(ids), dtype=torch.long, device=model.device)  # [T]
    cache = model.new_cache(t)
    out = torch.empty(t - 1, dtype=torch.float32)
    with torch.inference_mode():
        for s in range(0, t, chunk_size):
            e = min(t, s + chunk_size)
            logits = model.net(x[s:e], cache, base, last_only=False)  # [C, vocab], model dtype
            # position i predicts token i + 1; the chunk's last position predicts the next chunk's first
            n = min(e, t - 1) - s
            if n > 0:
                out[s:s + n] = F.cross_entropy(logits[:n].float(), x[s + 1:s + 1 + n], reduction="none").cpu()
            del logits
    return out


def bucket_means(nll: torch.Tensor, bucket_size: int) -> tuple[list[int], list[float], list[int]]:
    """Mean NLL per position bucket ``[k * size, (k + 1) * size)`` (positions of the predicted tokens, from 1)."""
    starts, means, counts = [], [], []
    for s in range(0, nll.shape[0], bucket_size):
        part = nll[s:s + bucket_size]
        starts.append(s + 1)
        means.append(float(part.mean()))
        counts.append(int(part.numel()))
    return starts, means, counts


def perplexity(model, ids: Sequence[int], *, chunk_size: int = 1024, bucket_size: int = 1024,
               source: str = "") -> PplResult:
    """Runs :func:`token_nll` and summarises it per position bucket, with time and peak memory."""
    if bucket_size < 1:
        raise ValueError(f"bucket size must be at least 1, got {bucket_size}")
    t0 = time.perf_counter()
    base = model.rope_base_for(len(ids))
    nll = token_nll(model, ids, chunk_size=chunk_size, rope_base=base)
    seconds = time.perf_counter() - t0
    starts, means, counts = bucket_means(nll, bucket_size)
    mean = float(nll.mean())
    rs = model.config.rope_scaling
    return PplResult(model=model.name, rope_scaling=rs.as_dict() if rs else None, rope_base=float(base),
                     tokens=len(ids), chunk_size=chunk_size, bucket_size=bucket_size, bucket_starts=starts,
                     bucket_nll=means, bucket_counts=counts, mean_nll=mean, perplexity=math.exp(mean),
                     seconds=round(seconds, 3), peak_mem_bytes=int(peak_memory_bytes(model.device)), source=source)
