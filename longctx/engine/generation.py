"""Token selection and generation statistics."""
from __future__ import annotations

import resource
import sys
from dataclasses import asdict, dataclass, field

import torch


@dataclass
class GenerationStats:
    """What one request cost.

    Attributes:
        prompt_tokens: tokens prefilled by this request (0 extra for a cached prefix).
        new_tokens: tokens generated.
        prefill_s: seconds of prefill.
        ttft_s: seconds from the request's start to the first generated token.
        decode_s: seconds spent generating after the first token.
        rope_base: the RoPE base the request used.
        stop_reason: ``"stop"`` (a stop id), ``"length"`` (max_new_tokens) or ``"context"``.
        peak_mem_bytes: peak device memory (CUDA) or peak process RSS (CPU).
    """

    prompt_tokens: int = 0
    new_tokens: int = 0
    prefill_s: float = 0.0
    ttft_s: float = 0.0
    decode_s: float = 0.0
    rope_base: float = 0.0
    stop_reason: str = ""
    peak_mem_bytes: int = 0
    cached_tokens: int = 0

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        n = self.new_tokens - 1
        return n / self.decode_s if n > 0 and self.decode_s > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["prefill_tokens_per_s"] = self.prefill_tokens_per_s
        d["decode_tokens_per_s"] = self.decode_tokens_per_s
        return d

    def footer(self) -> str:
        """One human line: tokens, prefill speed, time to first token, decode speed."""
        return (f"{self.prompt_tokens} prompt tokens"
                + (f" (+{self.cached_tokens} cached)" if self.cached_tokens else "")
                + f" · prefill {self.prefill_s:.2f}s ({self.prefill_tokens_per_s:,.0f} tok/s)"
                f" · first token {self.ttft_s:.2f}s · {self.new_tokens} new tokens"
                f" ({self.decode_tokens_per_s:.1f} tok/s) · stop: {self.stop_reason}")


@dataclass
class Generation:
    """A finished generation: the text, its token ids and the stats."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    stats: GenerationStats = field(default_factory=GenerationStats)


def select_next(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> int:
    """Chooses the next token.

    Args:
        logits: float32 ``[vocab]``.
        temperature: 0 means greedy (argmax; the lowest id wins ties).
        top_p: nucleus mass kept when sampling (1.0 keeps all).
        generator: a seeded generator for reproducible sampling.

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


def peak_memory_bytes(device: torch.device) -> int:
    """Peak allocated CUDA memory, or the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)
