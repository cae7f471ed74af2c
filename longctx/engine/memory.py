"""Memory estimates for a request: weights + KV cache + working memory of one prefill chunk."""
from __future__ import annotations

from longctx.engine.config import ModelConfig


def estimate_memory(cfg: ModelConfig, context: int, *, dtype_bytes: int = 2, chunk: int = 8192,
                    attn: str = "sdpa") -> dict[str, int]:
    """Estimates the bytes a request of ``context`` tokens needs.

    Working memory is the largest live set while one chunk runs: the residual stream and its
    normed copy, the packed qkv, the SwiGLU activations (w1 x, w3 x and their product) and the
    final logits row. Flash / memory-efficient attention needs O(chunk) extra; the eager backend
    adds a float32 ``[heads, chunk, context]`` score matrix.

    Args:
        cfg: model shape.
        context: prompt + new tokens.
        dtype_bytes: 2 for bf16/fp16, 4 for float32.
        chunk: prefill chunk length.
        attn: backend name (``eager`` adds the score matrix).

    Returns:
        ``{"weights", "kv_cache", "working", "total"}`` in bytes.
    """
    weights = cfg.num_parameters() * dtype_bytes
    kv = cfg.kv_bytes_per_token(dtype_bytes) * context
    c = min(chunk, context)
    qkv = (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim
    working = c * dtype_bytes * (3 * cfg.hidden_size + qkv + 3 * cfg.intermediate_size) + cfg.vocab_size * 4
    if attn == "eager":
        working += 4 * cfg.num_heads * c * context * 2
    return {"weights": weights, "kv_cache": kv, "working": working, "total": weights + kv + working}
