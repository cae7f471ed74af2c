"""The native backend: :class:`~longctx.engine.runtime.LongCtxModel` with prefix-shared prefill.

Prefix sharing. Requests whose prompts run with the same RoPE base (every prompt of at most
``max_position_embeddings`` tokens uses the trained base; with dynamic NTK each longer prompt
length has its own base) form a group that owns ONE KV cache, sized for the group's largest
``len(prompt) + max_new_tokens``. The group's requests run in lexicographic order of their
token ids. That order is a depth-first walk of the trie of all prompts: each request shares
the longest possible prefix with the one before it, and every distinct prefix is prefilled
exactly once. (For a NIAH depth sweep -- template + haystack, a needle spliced in at the
depth, question -- the shared part between two cells is everything before the earlier of
their two needles, and the walk does the work of running cells in descending needle
position: the deepest needle's prefix once, then only each cell's tail from its needle on.)

For each request: ``lcp`` = common prefix of the cached prompt and the new prompt, capped at
``len(prompt) - 1`` so that at least one token is prefilled (its logits start the answer);
``cache.truncate(lcp)``; prefill ``prompt[lcp:]``; greedy decode up to the budget, stopping at
the tokenizer's stop ids; then truncate the cache back to the prompt, so positions that held
generated tokens are never reused. Keys and values of a position depend only on the tokens up
to it and the base, so the answer equals a from-scratch run (up to float rounding of
different chunk boundaries; tests check the logits to 1e-4).
"""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np
import torch

from longctx.backends.base import (BaseBackend, GenRequest, GenResult, OnResult, OnStart, common_prefix_len,
                                   error_text, prefix_groups, prefix_schedule)
from longctx.engine.generation import token_loop
from longctx.errors import ContextLengthError

__all__ = ["NativeBackend"]


class NativeBackend(BaseBackend):
    """Runs requests on a loaded :class:`~longctx.engine.runtime.LongCtxModel`.

    Args:
        model: the engine instance.
        prefix_sharing: reuse shared prompt prefixes between requests (see the module doc);
            False runs every request from scratch in the given order.
        keep_logits: keep each request's first next-token logits in ``GenResult.logits``
            (float32 CPU tensor; for tests).
    """

    name = "native"

    def __init__(self, model, *, prefix_sharing: bool = True, keep_logits: bool = False) -> None:
        self.model = model
        self.tokenizer = model.tokenizer
        self.max_context = int(model.max_context)
        self.prefix_sharing = bool(prefix_sharing)
        self.keep_logits = bool(keep_logits)
        self.stop_ids = set(int(s) for s in (model.tokenizer.stop_ids if model.tokenizer is not None else ()))

    @property
    def supports_prefix_sharing(self) -> bool:  # type: ignore[override]
        return self.prefix_sharing

    # -- identity ----------------------------------------------------------------------------
    def model_info(self) -> dict[str, Any]:
        m = self.model
        cfg = m.config
        tok = m.tokenizer
        return {
            "backend": self.name,
            "model": str(m.path),
            "model_name": cfg.name,
            "config_hash": cfg.fingerprint(),
            "tokenizer": getattr(tok, "name", None),
            "tokenizer_fingerprint": getattr(tok, "fingerprint", None),
            "rope_scaling": cfg.rope_scaling.as_dict() if cfg.rope_scaling is not None else None,
            "rope_theta": float(cfg.rope_theta),
            "max_position_embeddings": int(cfg.max_position_embeddings),
            "dtype": str(m.dtype).replace("torch.", ""),
            "device": str(m.device),
            "attn": m.attn,
            "max_context": self.max_context,
            "kv_dtype": m.net.kv_dtype,
            "prefill": m.prefill_mode,
        }

    def rope_base_for(self, total_len: int) -> float:
        return float(self.model.rope_base_for(int(total_len)))

    # -- one request ---------------------------------------------------------------------------
    def _answer(self, ids: np.ndarray, cache, start: int, base: float, budget: int) -> GenResult:
        """Prefills ``ids[start:]`` on a cache holding ``ids[:start]`` and decodes greedily.

        Leaves the cache holding exactly ``ids`` (generated positions dropped).
        """
        m = self.model
        res = GenResult(prompt_tokens=len(ids), prefilled_tokens=len(ids) - start, cached_tokens=start,
                        rope_base=base)
        tail = torch.from_numpy(np.ascontiguousarray(ids[start:], dtype=np.int64))  # [T]

        def prefill() -> torch.Tensor:
            logits = m.prefill(tail, cache, base)  # float32 [vocab]
            if self.keep_logits:
                res.logits = logits.detach().float().cpu().clone()
            return logits

        res.token_ids.extend(token_loop(prefill, lambda tok: m.decode_step(tok, cache, base), max_new_tokens=budget,
                                        stop_ids=self.stop_ids, stats=res, device=m.device))
        cache.truncate(len(ids))
        if self.tokenizer is not None:
            res.text = self.tokenizer.decode(res.token_ids)
        return res

    def _check(self, req: GenRequest) -> Optional[ContextLengthError]:
        """The error a request that does not fit would raise, else None."""
        if len(req.ids) + req.max_new_tokens > self.max_context:
            return ContextLengthError.for_request(len(req.ids), req.max_new_tokens, self.max_context)
        return None

    def generate(self, ids: Sequence[int] | np.ndarray, max_new_tokens: int) -> GenResult:
        """One prompt from scratch in its own cache."""
        req = GenRequest(np.asarray(ids, dtype=np.int32), max_new_tokens)
        err = self._check(req)
        if err is not None:
            raise err
        cache = self.model.new_cache(len(req.ids) + req.max_new_tokens)
        return self._answer(req.ids, cache, 0, self.rope_base_for(len(req.ids)), req.max_new_tokens)

    # -- many requests ---------------------------------------------------------------------------
    def _groups(self, requests: Sequence[GenRequest]) -> tuple[list[GenRequest], list[tuple[float, list[GenRequest]]]]:
        """(requests that do not fit, [(base, requests in run order)] in ascending prompt length)."""
        bad = [r for r in requests if self._check(r) is not None]
        return bad, prefix_groups([r for r in requests if self._check(r) is None], self.rope_base_for)

    def schedule(self, requests: Sequence[GenRequest]) -> list[tuple[GenRequest, int]]:
        """Run order with the prompt tokens each request will prefill."""
        if not self.prefix_sharing:
            return [(r, len(r.ids)) for r in requests]
        bad, groups = self._groups(requests)
        return [(r, 0) for r in bad] + prefix_schedule(groups)

    def run(self, requests: Sequence[GenRequest], *, on_result: OnResult,
            on_start: Optional[OnStart] = None) -> None:
        """Answers every request; with prefix sharing, one cache per RoPE-base group."""
        if not self.prefix_sharing:
            return super().run(requests, on_result=on_result, on_start=on_start)
        bad, groups = self._groups(requests)
        for r in bad:
            if on_start is not None:
                on_start(r, 0)
            on_result(r, GenResult(prompt_tokens=len(r.ids), stop_reason="error", error=error_text(self._check(r))))
        for base, reqs in groups:
            capacity = max(len(r.ids) + r.max_new_tokens for r in reqs)
            cache = None
            cached = np.zeros(0, dtype=np.int32)  # the prompt whose keys/values the cache holds
            try:
                for r in reqs:
                    lcp = min(common_prefix_len(cached, r.ids), len(r.ids) - 1)
                    if on_start is not None:
                        on_start(r, len(r.ids) - lcp)
                    t0 = time.perf_counter()
                    try:
                        if cache is None:
                            cache = self.model.new_cache(capacity)
                        cache.truncate(lcp)
                        res = self._answer(r.ids, cache, lcp, base, r.max_new_tokens)
                        cached = r.ids
                    except Exception as e:  # noqa: BLE001 - record it, keep going
                        res = GenResult(prompt_tokens=len(r.ids), prefilled_tokens=len(r.ids) - lcp,
                                        cached_tokens=lcp, rope_base=base, stop_reason="error",
                                        error=error_text(e), prefill_s=time.perf_counter() - t0)
                        cached = np.zeros(0, dtype=np.int32)  # the cache state is unknown: start over
                        if cache is not None:
                            cache.truncate(0)
                        if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
                            cache = None  # give the memory back; reallocated for the next request
                            if self.model.device.type == "cuda":
                                torch.cuda.empty_cache()
                    on_result(r, res)
            finally:
                del cache
                if self.model.device.type == "cuda":
                    torch.cuda.empty_cache()
