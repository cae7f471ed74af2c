"""A per-request KV cache with explicit positions.

One cache holds one sequence (batch 1). It is allocated once for the request's full length
(prompt + max new tokens), in the model dtype, on the model device; ``length`` is the number
of positions filled. ``truncate(n)`` keeps the first n positions, which is how needle sweeps
share a common prefix between cells.
"""
from __future__ import annotations

from longctx.errors import CacheFullError

import torch


class KVCache:
    """Keys and values for every layer of one sequence.

    Storage per layer is ``[capacity, n_kv_heads, head_dim]`` (the [T, H, D] layout FlashAttention
    reads without copies).

    Args:
        n_layers: decoder layers.
        n_kv_heads: KV heads.
        head_dim: D.
        capacity: positions reserved.
        dtype: storage dtype (the model dtype).
        device: storage device.
    """

    def __init__(self, n_layers: int, n_kv_heads: int, head_dim: int, capacity: int,
                 dtype: torch.dtype, device: torch.device | str) -> None:
        if capacity <= 0:
            raise ValueError(f"KV cache capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.k = torch.empty(n_layers, capacity, n_kv_heads, head_dim, dtype=dtype, device=device)
        self.v = torch.empty_like(self.k)
        self.length = 0
        self.rope_base: float | None = None  # the one base this request uses, fixed at first write

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes a chunk's keys/values at ``start`` and returns everything up to its end.

        Args:
            layer: layer index.
            start: absolute position of the chunk's first token.
            k, v: ``[1, T, Hkv, D]``.

        Returns:
            ``(k_all, v_all)``, each ``[1, start + T, Hkv, D]`` views into the cache.
        """
        t = k.shape[1]
        end = start + t
        if end > self.capacity:
            raise CacheFullError(f"KV cache holds {self.capacity} positions; writing up to {end}")
        self.k[layer, start:end] = k[0]
        self.v[layer, start:end] = v[0]
        return self.k[layer, :end].unsqueeze(0), self.v[layer, :end].unsqueeze(0)  # [1, end, Hkv, D]

    def advance(self, n: int) -> None:
        """Marks n more positions as filled (called once per forward, after all layers)."""
        self.length += n

    def truncate(self, n: int) -> None:
        """Keeps the first ``n`` positions (0 <= n <= length)."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot truncate a cache of length {self.length} to {n}")
        self.length = n
