"""A per-request KV cache with explicit positions, in the model dtype or quantized (int8 / fp8).

One cache holds one sequence (batch 1). It is allocated once for the request's full length
(prompt + max new tokens), on the model device; ``length`` is the number of positions filled.
``truncate(n)`` keeps the first n positions, which is how needle sweeps share a common prefix
between cells.

Quantized caches (``kv_dtype`` ``int8`` or ``fp8``) store one scale per (position, KV head): the
absolute maximum over the head's D values maps to the format's largest value (127, or 448 for
float8 e4m3). A per-position scale makes a key's stored bits independent of how the prompt was
chunked, so chunked prefill still equals one shot. ``update`` returns the layer's keys/values
dequantized to the model dtype for the attention call: one layer's slice lives at a time, never a
full-precision copy of the whole cache.
"""
from __future__ import annotations

from longctx.errors import CacheFullError

import torch

#: ``--kv-dtype`` names -> (storage dtype, largest representable magnitude); "auto" = the model dtype.
KV_DTYPES: dict[str, tuple[torch.dtype | None, float]] = {
    "auto": (None, 0.0), "int8": (torch.int8, 127.0), "fp8": (torch.float8_e4m3fn, 448.0),
}


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

    def _check_end(self, end: int) -> None:
        if end > self.capacity:
            raise CacheFullError(f"KV cache holds {self.capacity} positions; writing up to {end}")

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Stores a chunk's keys/values ``[1, T, Hkv, D]`` at positions ``start .. start + T``."""
        end = start + k.shape[1]
        self._check_end(end)
        self.k[layer, start:end] = k[0]
        self.v[layer, start:end] = v[0]

    def read(self, layer: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of positions ``0 .. end`` as ``[1, end, Hkv, D]`` (views into the cache)."""
        return self.k[layer, :end].unsqueeze(0), self.v[layer, :end].unsqueeze(0)  # [1, end, Hkv, D]

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes a chunk's keys/values at ``start`` and returns everything up to its end.

        Args:
            layer: layer index.
            start: absolute position of the chunk's first token.
            k, v: ``[1, T, Hkv, D]``.

        Returns:
            ``(k_all, v_all)``, each ``[1, start + T, Hkv, D]``, as :meth:`read` gives them.
        """
        self.write(layer, start, k, v)
        return self.read(layer, start + k.shape[1])

    def advance(self, n: int) -> None:
        """Marks n more positions as filled (called once per forward, after all layers)."""
        self.length += n

    def truncate(self, n: int) -> None:
        """Keeps the first ``n`` positions (0 <= n <= length)."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot truncate a cache of length {self.length} to {n}")
        self.length = n


def quantize(x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [..., D]`` -> ``(codes [..., D] int8 / float8_e4m3fn, scale float32 [..., 1])`` with
    ``x ~= codes * scale``; the scale is absmax(x over D) / the format's largest value."""
    dtype, top = KV_DTYPES[kind]
    xf = x.float()
    scale = xf.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / top  # [..., 1]
    y = xf / scale
    codes = y.round_().clamp_(-top, top).to(dtype) if dtype == torch.int8 else y.clamp_(-top, top).to(dtype)
    return codes, scale


def dequantize(codes: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`quantize`: ``codes * scale`` in ``dtype``."""
    return (codes.float() * scale).to(dtype)


class QuantizedKVCache(KVCache):
    """A :class:`KVCache` whose keys and values are stored as int8 or float8 e4m3 codes plus per-(position,
    KV head) float32 scales: ``(D + 4) / (2 D)`` of a bf16 cache's bytes (0.52 at D = 128).

    Args:
        kind: ``"int8"`` or ``"fp8"``.
        compute_dtype: the dtype ``update`` returns (the model dtype).
        (others as :class:`KVCache`.)
    """

    def __init__(self, n_layers: int, n_kv_heads: int, head_dim: int, capacity: int, compute_dtype: torch.dtype,
                 device: torch.device | str, kind: str) -> None:
        if kind not in ("int8", "fp8"):
            raise ValueError(f"unknown quantized KV dtype {kind!r}: expected int8 or fp8")
        if capacity <= 0:
            raise ValueError(f"KV cache capacity must be positive, got {capacity}")
        storage = KV_DTYPES[kind][0]
        self.kind, self.compute_dtype = kind, compute_dtype
        self.capacity = capacity
        self.k = torch.empty(n_layers, capacity, n_kv_heads, head_dim, dtype=storage, device=device)
        self.v = torch.empty_like(self.k)
        self.k_scale = torch.empty(n_layers, capacity, n_kv_heads, 1, dtype=torch.float32, device=device)
        self.v_scale = torch.empty_like(self.k_scale)
        self.length = 0
        self.rope_base = None

    @property
    def nbytes(self) -> int:
        return (self.k.numel() * self.k.element_size() + self.k_scale.numel() * self.k_scale.element_size()) * 2

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Quantizes a chunk's keys/values ``[1, T, Hkv, D]`` and stores them at ``start``."""
        end = start + k.shape[1]
        self._check_end(end)
        self.k[layer, start:end], self.k_scale[layer, start:end] = quantize(k[0], self.kind)  # [T, Hkv, D], [T, Hkv, 1]
        self.v[layer, start:end], self.v_scale[layer, start:end] = quantize(v[0], self.kind)

    def read(self, layer: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of positions ``0 .. end``, ``[1, end, Hkv, D]``, dequantized to the model dtype
        (every position is seen through the same quantization whatever the chunking)."""
        k_all = dequantize(self.k[layer, :end], self.k_scale[layer, :end], self.compute_dtype)  # [end, Hkv, D]
        v_all = dequantize(self.v[layer, :end], self.v_scale[layer, :end], self.compute_dtype)  # [end, Hkv, D]
        return k_all.unsqueeze(0), v_all.unsqueeze(0)  # [1, end, Hkv, D]
