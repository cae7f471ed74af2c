"""The public engine API: :func:`load_model` and :class:`LongCtxModel`.

One request = one KV cache sized for prompt + new tokens, one RoPE base fixed for the whole
request (dynamic NTK computed from the prompt length, as TurboMind does), a chunked prefill that
computes only the last position's logits, then token-by-token decode.
"""
from __future__ import annotations

from longctx.errors import ContextLengthError

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from longctx.checkpoints.build import empty_model, load_checkpoint
from longctx.checkpoints.resolve import resolve
from longctx.engine.attention import resolve_backend
from longctx.engine.config import ConfigError, ModelConfig, check_sampling, get_preset, parse_device
from longctx.engine.generation import token_loop
from longctx.engine.results import Generation, GenerationStats
from longctx.engine.kv_cache import KVCache
from longctx.engine.memory import check_prefill_mode, plan_prefill
from longctx.engine.model import Transformer
from longctx.engine.rope import base_for

ProgressFn = Callable[[int, int], None]  # (tokens done, tokens total)


DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if isinstance(device, torch.device):
        dev = device
    else:
        if parse_device(device) == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(parse_device(device))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available")
    return dev


def resolve_dtype(dtype: str | torch.dtype, device: torch.device, checkpoint_dtype: str = "bfloat16") -> torch.dtype:
    """``auto`` -> float32 on CPU; on CUDA the checkpoint's half type (bf16 unless it was saved fp16)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.float16 if checkpoint_dtype in ("float16", "fp16") else torch.bfloat16
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose from auto, float32, bfloat16, float16")
    return DTYPES[dtype]


def default_chunk_size(device: torch.device) -> int:
    """Prefill chunk: 8192 tokens on CUDA, 2048 on CPU (bounds activation memory)."""
    return 8192 if device.type == "cuda" else 2048


class LongCtxModel:
    """An engine instance: weights, tokenizer and request-level helpers.

    Attributes:
        net: the :class:`~longctx.engine.model.Transformer`.
        tokenizer: a :class:`~longctx.tokenizer.core.Tokenizer` (None for random-weight shapes).
        config: the :class:`~longctx.engine.config.ModelConfig` in effect (rope scaling included).
        device, dtype: where the weights live.
        chunk_size: prefill chunk length.
        prefill_mode: ``auto`` | ``chunked`` | ``layerwise`` (see :meth:`prefill_plan`).
        max_context: the longest request (prompt + new tokens) allowed.
        path: the checkpoint directory (or a description).
    """

    def __init__(self, net: Transformer, tokenizer, *, device: torch.device, dtype: torch.dtype,
                 chunk_size: int | None = None, max_context: int | None = None, path: str = "",
                 prefill: str = "auto") -> None:
        self.net = net
        self.tokenizer = tokenizer
        self.config: ModelConfig = net.cfg
        self.device = device
        self.dtype = dtype
        self.chunk_size = int(default_chunk_size(device) if chunk_size is None else chunk_size)
        # With no chunk size given, a CUDA prefill that fits in free memory runs in one shot: the
        # plain causal flash kernel (Tq == Tk) ran at 527 TFLOP/s on an H200 where lower-right
        # chunks ran at ~360 (docs/benchmarks.md); otherwise it is chunked to bound memory.
        self.one_shot_when_fits = chunk_size is None and device.type == "cuda"
        self.prefill_mode = check_prefill_mode(prefill)
        if self.chunk_size <= 0:
            raise ConfigError(f"chunk size must be positive, got {self.chunk_size}")
        if max_context is not None and int(max_context) <= 0:
            raise ConfigError(f"max context must be positive, got {max_context}")
        self.max_context = int(self.config.context_limit if max_context is None else max_context)
        self.path = path

    # -- small helpers -----------------------------------------------------------------------
    @property
    def attn(self) -> str:
        return self.net.attn_name

    @property
    def name(self) -> str:
        return self.config.name

    def synchronize(self) -> None:
        """Waits for the work queued on the device (CUDA); a no-op on the CPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def rope_base_for(self, total_len: int) -> float:
        """The one RoPE base a request of ``total_len`` tokens uses (dynamic NTK when above M)."""
        return base_for(self.config, total_len)

    def new_cache(self, capacity: int) -> KVCache:
        """A KV cache for ``capacity`` positions (model dtype, model device)."""
        return self.net.new_cache(capacity)

    def encode(self, prompt: str | Sequence[int]) -> list[int]:
        """Token ids for a prompt: text gets BOS (if the tokenizer adds one) + plain-text ids."""
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ConfigError("this model has no tokenizer; pass token ids")
            ids = self.tokenizer.encode(prompt)
            if self.tokenizer.add_bos and self.tokenizer.bos_id is not None:
                ids = [self.tokenizer.bos_id] + ids
            return ids
        return [int(t) for t in prompt]

    def check_length(self, prompt_len: int, max_new_tokens: int) -> None:
        """Raises :class:`ContextLengthError` when prompt + new tokens exceed ``max_context``."""
        if prompt_len <= 0:
            raise ContextLengthError("empty prompt")
        if prompt_len + max_new_tokens > self.max_context:
            raise ContextLengthError.for_request(prompt_len, max_new_tokens, self.max_context)

    def _ids_tensor(self, ids: Sequence[int]) -> torch.Tensor:
        return torch.tensor(list(ids), dtype=torch.long, device=self.device)  # [T]

    def prefill_plan(self, n_tokens: int, free_bytes: int | None = None) -> tuple[str, int]:
        """How a prefill of ``n_tokens`` runs when the caller gives no chunk size: ``(mode, chunk)``.

        ``chunked``: forwards of ``chunk`` tokens after the cached prefix (one shot when ``chunk >=
        n_tokens``). ``layerwise``: :meth:`Transformer.prefill_layerwise` with projections and MLP in
        chunks of ``chunk``. ``prefill_mode`` ``chunked`` / ``layerwise`` give that mode with
        ``self.chunk_size``. ``auto`` gives chunked, except on CUDA with no chunk size configured: there
        :func:`longctx.engine.memory.plan_prefill` decides with ``self.chunk_size`` as the only chunk: one shot
        when its estimated working memory takes at most 85% of the free device memory (measured after the
        weights and the KV cache are allocated), else layer-wise when that fits, else chunked.

        Args:
            n_tokens: tokens to prefill.
            free_bytes: free device memory (default: ``torch.cuda.mem_get_info``).
        """
        if self.prefill_mode == "layerwise":
            return "layerwise", self.chunk_size
        if self.prefill_mode == "chunked" or not self.one_shot_when_fits or n_tokens <= self.chunk_size:
            return "chunked", self.chunk_size
        if free_bytes is None:
            free_bytes = torch.cuda.mem_get_info(self.device)[0]
        plan = plan_prefill(self.config, n_tokens, free_bytes=free_bytes, dtype_bytes=torch.finfo(self.dtype).bits // 8,
                            kv_dtype=self.net.kv_dtype, attn=self.attn, weights_loaded=True, kv_allocated=True,
                            chunks=(self.chunk_size,))
        return ("chunked", n_tokens) if plan.mode == "one-shot" else (plan.mode, plan.chunk)

    # -- forward passes ----------------------------------------------------------------------
    @torch.inference_mode()
    def logits(self, input_ids: Sequence[int] | torch.Tensor, rope_base: float | None = None) -> torch.Tensor:
        """Logits for every position of a (short) input, one-shot over the whole sequence.

        Args:
            input_ids: ``[T]`` token ids.
            rope_base: override the base (default: the base for T tokens).

        Returns:
            float32 ``[T, vocab]`` on the CPU.
        """
        ids = input_ids.tolist() if isinstance(input_ids, torch.Tensor) else list(input_ids)
        n = len(ids)
        cache = self.new_cache(n)
        base = self.rope_base_for(n) if rope_base is None else rope_base
        return self.net(self._ids_tensor(ids), cache, base, last_only=False).float().cpu()

    @torch.inference_mode()
    def prefill(self, ids: Sequence[int] | torch.Tensor, cache: KVCache, rope_base: float, *,
                progress: ProgressFn | None = None, chunk_size: int | None = None) -> torch.Tensor:
        """Appends ``ids`` to ``cache`` in chunks; only the last position's logits are computed.

        Args:
            ids: ``[T]`` token ids (T >= 1) continuing the cached sequence.
            cache: the request's cache (its ``length`` is where ``ids`` start).
            rope_base: the request's base (must be the same for every call on one cache).
            progress: called as ``progress(done, total)`` after each chunk (once, at the end, layer-wise).
            chunk_size: this chunk instead of :meth:`prefill_plan`'s (chunked, or layer-wise when
                ``prefill_mode`` is ``layerwise``).

        Returns:
            float32 ``[vocab]`` logits of the last position.
        """
        if cache.rope_base is None:
            cache.rope_base = rope_base
        elif cache.rope_base != rope_base:
            raise ValueError(f"cache was filled with RoPE base {cache.rope_base:g}, not {rope_base:g}")
        t = torch.as_tensor(ids, dtype=torch.long).to(self.device)  # [T]
        n = t.shape[0]
        if n == 0:
            raise ValueError("prefill needs at least one token")
        if chunk_size:  # the caller's chunk: no memory planning (layer-wise only when asked for)
            mode, step = ("layerwise" if self.prefill_mode == "layerwise" else "chunked"), int(chunk_size)
        else:
            mode, step = self.prefill_plan(n)
        if mode == "layerwise":
            out = self.net.prefill_layerwise(t, cache, rope_base, chunk=step)
            if progress is not None:
                progress(n, n)
            return out.float()
        out = None
        for s in range(0, n, step):
            out = self.net(t[s:s + step], cache, rope_base, last_only=True)  # [vocab]
            if progress is not None:
                progress(min(s + step, n), n)
        return out.float()

    @torch.inference_mode()
    def decode_step(self, token: int | torch.Tensor, cache: KVCache, rope_base: float) -> torch.Tensor:
        """One decode step: appends ``token`` (an id or a ``[1]`` tensor) and returns float32 ``[vocab]`` logits."""
        t = torch.as_tensor(token, dtype=torch.long).reshape(1).to(self.device)  # [1]
        return self.net(t, cache, rope_base, last_only=True).float()

    # -- generation --------------------------------------------------------------------------
    def _stop_ids(self, stop_ids: Sequence[int] | None) -> set[int]:
        if stop_ids is not None:
            return {int(s) for s in stop_ids}
        return set(self.tokenizer.stop_ids) if self.tokenizer is not None else set()

    def generate_ids(self, prompt_ids: Sequence[int], *, max_new_tokens: int = 256, temperature: float = 0.0,
                     top_p: float = 1.0, seed: int | None = None, stop_ids: Sequence[int] | None = None,
                     rope_base: float | None = None, progress: ProgressFn | None = None,
                     cache: KVCache | None = None, stats: GenerationStats | None = None) -> Iterator[int]:
        """Yields generated token ids (stop ids are not yielded); fills ``stats`` as it goes.

        With ``cache`` given, ``prompt_ids`` continue the cached sequence (prefix reuse); the
        cache must have room for the prompt and the new tokens. Afterwards the cache holds the
        prompt and every generated token that was fed back (all but the last of a full budget).
        """
        check_sampling(temperature, top_p)
        stats = stats if stats is not None else GenerationStats()
        prompt_ids = list(prompt_ids)
        cached = cache.length if cache is not None else 0
        self.check_length(cached + len(prompt_ids), max_new_tokens)
        if cache is None:
            cache = self.new_cache(len(prompt_ids) + max_new_tokens)
        base = rope_base if rope_base is not None else (
            cache.rope_base if cache.rope_base is not None else self.rope_base_for(cached + len(prompt_ids)))
        gen = None
        if temperature > 0:
            gen = torch.Generator()
            gen.manual_seed(seed if seed is not None else torch.seed())
        stats.prompt_tokens, stats.cached_tokens, stats.prefilled_tokens = cached + len(prompt_ids), cached, len(prompt_ids)
        stats.rope_base = base
        try:
            yield from token_loop(lambda: self.prefill(prompt_ids, cache, base, progress=progress),
                                  lambda tok: self.decode_step(tok, cache, base),
                                  max_new_tokens=max_new_tokens, stop_ids=self._stop_ids(stop_ids), stats=stats,
                                  device=self.device, temperature=temperature, top_p=top_p, generator=gen)
        finally:
            if stats.stop_reason == "stop":  # a stop id queued into the cache (CUDA) is dropped again
                cache.truncate(min(cache.length, cached + len(prompt_ids) + stats.new_tokens))

    def stream(self, prompt: str | Sequence[int], **kwargs: Any) -> "TextStream":
        """Streams text pieces as they are generated; the stream's ``.stats`` fill as it runs.

        Args:
            prompt: text (BOS added if the tokenizer adds one; no chat template) or token ids.
            **kwargs: as :meth:`generate_ids`.
        """
        return TextStream(self, self.encode(prompt), kwargs)

    def generate(self, prompt: str | Sequence[int], **kwargs: Any) -> Generation:
        """Generates to completion; returns text, token ids and stats."""
        return self.stream(prompt, **kwargs).finish()

    def chat_ids(self, messages: list[dict], system: Any = ...) -> list[int]:
        """Prompt ids for a conversation under the model's chat template (ends with the assistant prefix)."""
        if self.tokenizer is None:
            raise ConfigError("this model has no tokenizer")
        if system is ...:
            return self.tokenizer.chat_ids(messages)
        return self.tokenizer.chat_ids(messages, system=system)

    def chat(self, messages: list[dict] | str, *, system: Any = ..., stream: bool = False, **kwargs: Any):
        """Answers the last user message of a conversation (greedy unless ``temperature`` > 0).

        Args:
            messages: ``[{"role": "user"|"assistant", "content": str}, ...]`` or one user string.
            system: system prompt; default = the model's default; None = no system turn.
            stream: return a :class:`TextStream` instead of a :class:`Generation`.
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        s = TextStream(self, self.chat_ids(messages, system=system), kwargs)
        return s if stream else s.finish()


class TextStream:
    """Iterator of text pieces for one request; ``token_ids`` and ``stats`` fill as it runs."""

    def __init__(self, model: LongCtxModel, prompt_ids: list[int], kwargs: dict) -> None:
        self.model = model
        self.prompt_ids = prompt_ids
        self.stats = Generation()  # filled as the stream runs; its text is set by finish()
        self.token_ids: list[int] = self.stats.token_ids
        self._ids = model.generate_ids(prompt_ids, stats=self.stats, **kwargs)
        self._decoder = model.tokenizer.stream_decoder() if model.tokenizer is not None else None

    def __iter__(self) -> Iterator[str]:
        for tok in self._ids:
            self.token_ids.append(tok)
            if self._decoder is not None:
                piece = self._decoder.push(tok)
                if piece:
                    yield piece
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                yield tail

    @property
    def text(self) -> str:
        return self.model.tokenizer.decode(self.token_ids) if self.model.tokenizer else ""

    def finish(self) -> Generation:
        """Runs the stream to the end and returns the :class:`Generation` (text, ids, stats)."""
        self.stats.text = "".join(self)
        return self.stats


def random_model(cfg: ModelConfig | str, *, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto",
                 attn: str = "auto", seed: int = 0, chunk_size: int | None = None,
                 max_context: int | None = None, kv_dtype: str = "auto", prefill: str = "auto") -> LongCtxModel:
    """A model of a given shape with random weights (benchmarks; no tokenizer).

    Args:
        cfg: a :class:`ModelConfig` or a preset name (``internlm2-chat-7b`` ...).
        kv_dtype: KV cache storage (``auto``, ``int8``, ``fp8``), as :func:`load_model`.
        prefill: ``auto`` | ``chunked`` | ``layerwise``, as :func:`load_model`.
    """
    if isinstance(cfg, str):
        cfg = get_preset(cfg)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev, cfg.torch_dtype)
    net = empty_model(cfg, device=dev, dtype=dt, attn=resolve_backend(attn, dev))  # no float32 copy
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    net.eval()
    net.kv_dtype = kv_dtype
    return LongCtxModel(net, None, device=dev, dtype=dt, chunk_size=chunk_size, max_context=max_context,
                        path=f"random:{cfg.name}", prefill=prefill)


def load_model(path: str | Path | None = None, *, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto",
               rope_scaling: Any = ..., attn: str = "auto", max_context: int | None = None,
               chunk_size: int | None = None, model_class: type[LongCtxModel] | None = None,
               kv_dtype: str = "auto", prefill: str = "auto") -> LongCtxModel:
    """Loads a model.

    Args:
        path: a checkpoint directory (config.json + safetensors / .bin / GGUF, tokenizer files),
            a ``.gguf`` file, or None for the embedded default model (SmolLM2-135M-Instruct); see
            :func:`longctx.checkpoints.resolve.resolve`.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        dtype: ``auto`` | ``float32`` | ``bfloat16`` | ``float16``.
        rope_scaling: None (off), ``{"type": "dynamic", "factor": F}`` / ``"dynamic:F"``; left out,
            the checkpoint's own setting is used.
        attn: ``auto`` | ``sdpa`` | ``eager`` | ``flash``.
        max_context: the longest request allowed (default: M, or M x factor with scaling).
        chunk_size: prefill chunk length (default by device).
        model_class: the class to build (a subclass of :class:`LongCtxModel`, e.g. the one
            :func:`longctx.load_model` returns, which adds document QA).
        kv_dtype: KV cache storage: ``auto`` (the model dtype), ``int8`` or ``fp8`` (e4m3), each with a
            float32 scale per position and KV head (:mod:`longctx.engine.kv_cache`).
        prefill: ``auto`` | ``chunked`` | ``layerwise`` (each layer over the whole prompt: attention in one
            shot, projections and MLP in chunks); see :meth:`LongCtxModel.prefill_plan`.

    Raises:
        ConfigError, WeightError (both ValueError): bad paths, configs or weights.
    """
    dev = resolve_device(device)
    spec = resolve(path)
    _ = spec.weights  # missing weights are reported before a bad config (as before)
    dt = resolve_dtype(dtype, dev, spec.config.torch_dtype)
    net = load_checkpoint(spec, device=dev, dtype=dt, attn=resolve_backend(attn, dev), rope_scaling=rope_scaling)
    net.kv_dtype = kv_dtype
    cls = model_class or LongCtxModel
    return cls(net, spec.load_tokenizer(), device=dev, dtype=dt, chunk_size=chunk_size, max_context=max_context,
               path=spec.display, prefill=prefill)
