"""Memory estimates for a request (weights + KV cache + working memory of one prefill) and the prefill
planner that picks one shot, layer-wise or chunked (and the chunk size) from the free device memory."""
from __future__ import annotations

from dataclasses import dataclass

from longctx.engine.config import ModelConfig
from longctx.errors import ConfigError
from longctx.engine.kv_cache import KV_DTYPES

#: Bytes of the float32 scale a quantized cache stores per (position, KV head) (see engine.kv_cache).
_KV_SCALE_BYTES = 4
#: Fraction of the free memory a plan may use (allocator fragmentation and kernels' workspaces need the rest).
HEADROOM = 0.85
#: Chunk sizes the planner tries, largest first.
CHUNKS = (131072, 65536, 32768, 16384, 8192, 4096, 2048, 1024, 512)
#: Projection / MLP chunks a layer-wise plan tries (larger ones buy no matmul speed, only memory).
LAYERWISE_CHUNKS = (8192, 4096, 2048)
#: ``--prefill`` modes: ``auto`` (on CUDA without a chunk size: one shot, else layer-wise, else chunked,
#: whichever fits first; elsewhere chunked), ``chunked`` or ``layerwise`` (see engine.model).
PREFILL_MODES = ("auto", "chunked", "layerwise")


def check_prefill_mode(mode: str, name: str = "prefill mode") -> str:
    """Returns ``mode`` when it is one of :data:`PREFILL_MODES`, else raises :class:`ConfigError` calling it
    ``name`` (the CLI and the bench say ``--prefill``)."""
    if mode not in PREFILL_MODES:
        raise ConfigError(f"unknown {name} {mode!r}: expected one of {', '.join(PREFILL_MODES)}")
    return mode


def kv_cache_bytes(cfg: ModelConfig, context: int, *, dtype_bytes: int = 2, kv_dtype: str = "auto") -> int:
    """Bytes of a KV cache for ``context`` positions: model-dtype values, or 1-byte codes + float32 scales."""
    if kv_dtype == "auto":
        return cfg.kv_bytes_per_token(dtype_bytes) * context
    per_head = cfg.head_dim * KV_DTYPES[kv_dtype][0].itemsize + _KV_SCALE_BYTES
    return 2 * cfg.num_layers * cfg.num_kv_heads * per_head * context


def estimate_memory(cfg: ModelConfig, context: int, *, dtype_bytes: int = 2, chunk: int = 8192,
                    attn: str = "sdpa", kv_dtype: str = "auto", mode: str = "chunked") -> dict[str, int]:
    """Estimates the bytes a request of ``context`` tokens needs.

    Working memory is the largest live set while one chunk runs: the residual stream and its
    normed copy, the packed qkv, the SwiGLU activations (w1 x, w3 x and their product) and the
    final logits row. Flash / memory-efficient attention needs O(chunk) extra; the eager backend
    adds a float32 ``[heads, chunk, context]`` score matrix; a quantized cache adds one layer's keys
    and values dequantized to the model dtype. A layer-wise prefill (``mode="layerwise"``) adds
    three whole-prompt buffers -- residual stream, queries, attention output -- to one chunk's
    activations, and its attention sees all ``context`` queries at once.

    Args:
        cfg: model shape.
        context: prompt + new tokens.
        dtype_bytes: 2 for bf16/fp16, 4 for float32.
        chunk: prefill chunk length.
        attn: backend name (``eager`` adds the score matrix).
        kv_dtype: ``auto`` (model dtype), ``int8`` or ``fp8``.
        mode: ``chunked`` (one shot is ``chunk >= context``) or ``layerwise``.

    Returns:
        ``{"weights", "kv_cache", "working", "total"}`` in bytes.
    """
    weights = cfg.num_parameters() * dtype_bytes
    kv = kv_cache_bytes(cfg, context, dtype_bytes=dtype_bytes, kv_dtype=kv_dtype)
    c = min(chunk, context)
    qkv = (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim
    working = c * dtype_bytes * (3 * cfg.hidden_size + qkv + 3 * cfg.intermediate_size) + cfg.vocab_size * 4
    if mode == "layerwise":
        working += context * dtype_bytes * (cfg.hidden_size + 2 * cfg.num_heads * cfg.head_dim)
    elif mode != "chunked":
        raise ValueError(f"unknown prefill mode {mode!r}: expected chunked or layerwise")
    if attn == "eager":
        working += 4 * cfg.num_heads * (context if mode == "layerwise" else c) * context * 2
    if kv_dtype != "auto":
        working += 2 * context * cfg.num_kv_heads * cfg.head_dim * dtype_bytes
    return {"weights": weights, "kv_cache": kv, "working": working, "total": weights + kv + working}


@dataclass(frozen=True)
class PrefillPlan:
    """How a prefill of ``context`` tokens runs within ``free`` bytes.

    Attributes:
        mode: ``"one-shot"`` (the whole prompt in one forward: the plain causal kernel, fastest on GPUs),
            ``"layerwise"`` (each layer over the whole prompt: attention in one shot, projections and MLP
            in chunks of ``chunk``) or ``"chunked"`` (chunks of ``chunk`` tokens after the cached prefix:
            least working memory).
        chunk: tokens per forward (``context`` for one shot; per projection / MLP step for layer-wise).
        weights, kv_cache, working: bytes, as :func:`estimate_memory`.
        free: the free memory planned against.
        fits: False when even the smallest chunk does not fit (the plan is then the smallest chunk).
    """

    mode: str
    chunk: int
    weights: int
    kv_cache: int
    working: int
    free: int
    fits: bool

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.working


def plan_prefill(cfg: ModelConfig, context: int, *, free_bytes: int, dtype_bytes: int = 2, kv_dtype: str = "auto",
                 attn: str = "sdpa", weights_loaded: bool = False, kv_allocated: bool = False,
                 headroom: float = HEADROOM, layerwise: bool = True, chunks: tuple[int, ...] | None = None) -> PrefillPlan:
    """Picks one shot when it fits ``headroom`` x the free memory, else layer-wise with the largest chunk of
    :data:`LAYERWISE_CHUNKS` that fits, else the largest chunk of :data:`CHUNKS` that fits, for a request of
    ``context`` tokens. Layer-wise comes before chunked because it runs the same kernels as one shot
    (the plain causal attention kernel over every query, full-size matmuls).

    Args:
        cfg: model shape.
        context: tokens of the request (the KV cache holds them all).
        free_bytes: free device memory.
        dtype_bytes: model dtype size.
        kv_dtype: KV cache storage (``auto``, ``int8``, ``fp8``).
        attn: attention backend (``eager`` needs a score matrix per chunk).
        weights_loaded: ``free_bytes`` was measured with the weights already on the device (so they are not
            charged again).
        kv_allocated: ``free_bytes`` was measured with the request's KV cache allocated (not charged again).
        layerwise: consider layer-wise plans.
        chunks: the chunk sizes to try, largest first, for both layer-wise and chunked plans (default:
            :data:`LAYERWISE_CHUNKS` and :data:`CHUNKS`); the last one is the plan when nothing fits.
    """
    def est(chunk: int, mode: str = "chunked") -> dict[str, int]:
        return estimate_memory(cfg, context, dtype_bytes=dtype_bytes, chunk=chunk, attn=attn, kv_dtype=kv_dtype,
                               mode=mode)

    budget = headroom * free_bytes
    fixed = est(context)
    charged = (0 if kv_allocated else fixed["kv_cache"]) + (0 if weights_loaded else fixed["weights"])
    candidates = [("one-shot", context)]
    if layerwise:
        candidates += [("layerwise", c) for c in (chunks or LAYERWISE_CHUNKS) if c < context]
    candidates += [("chunked", c) for c in (chunks or CHUNKS) if c < context]
    for mode, chunk in candidates:
        e = est(chunk, "chunked" if mode == "one-shot" else mode)
        if charged + e["working"] <= budget:
            return PrefillPlan(mode, chunk, e["weights"], e["kv_cache"], e["working"], int(free_bytes), True)
    c = min((chunks or CHUNKS)[-1], context)
    e = est(c)
    return PrefillPlan("chunked" if c < context else "one-shot", c, e["weights"], e["kv_cache"], e["working"],
                       int(free_bytes), False)
