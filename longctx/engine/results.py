"""The result family of every generation path (torch-free).

:class:`GenerationStats` holds what any request costs; :class:`Generation` adds the generated
text and ids. The backends' :class:`~longctx.backends.base.GenResult` and QA's
:class:`~longctx.qa.session.Answer` extend :class:`Generation`, so one field means one thing
everywhere:

* ``prompt_tokens``: the whole prompt, ``cached_tokens`` of it reused from a KV cache and
  ``prefilled_tokens`` computed by this request;
* ``prefill_s``: the prefill; ``ttft_s``: start to first token; ``decode_s``: after the first token.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional


@dataclass
class GenerationStats:
    """What one request cost.

    Attributes:
        prompt_tokens: tokens of the whole prompt (cached prefix included).
        cached_tokens: prompt tokens whose keys/values were reused from a cache.
        prefilled_tokens: prompt tokens this request ran through the model.
        new_tokens: tokens generated (stop ids excluded).
        prefill_s: seconds of prefill.
        ttft_s: seconds from the request's start to the first generated token.
        decode_s: seconds spent generating after the first token.
        rope_base: the RoPE base the request used (None when a backend cannot tell).
        stop_reason: ``"stop"`` (a stop id), ``"length"`` (max_new_tokens), ``"error"``, ``"interrupted"``.
        peak_mem_bytes: peak device memory (CUDA) or peak process RSS (CPU).
    """

    prompt_tokens: int = 0
    cached_tokens: int = 0
    prefilled_tokens: int = 0
    new_tokens: int = 0
    prefill_s: float = 0.0
    ttft_s: float = 0.0
    decode_s: float = 0.0
    rope_base: Optional[float] = 0.0
    stop_reason: str = ""
    peak_mem_bytes: int = 0

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prefilled_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

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
        return (f"{self.prefilled_tokens} prompt tokens"
                + (f" (+{self.cached_tokens} cached)" if self.cached_tokens else "")
                + f" · prefill {self.prefill_s:.2f}s ({self.prefill_tokens_per_s:,.0f} tok/s)"
                f" · first token {self.ttft_s:.2f}s · {self.new_tokens} new tokens"
                f" ({self.decode_tokens_per_s:.1f} tok/s) · stop: {self.stop_reason}")


@dataclass
class Generation(GenerationStats):
    """A finished generation: the text, its token ids and what it cost.

    ``new_tokens`` defaults to ``len(token_ids)``.
    """

    text: str = ""
    token_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.new_tokens:
            self.new_tokens = len(self.token_ids)

    @property
    def stats(self) -> GenerationStats:
        """The cost fields (this object itself: a Generation is its stats plus the text)."""
        return self
