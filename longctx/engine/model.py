"""The InternLM2 decoder (Llama-layout checkpoints run here too, converted at load time).

Module and parameter names equal the official InternLM2 checkpoint keys
(``model.tok_embeddings.weight``, ``model.layers.{i}.attention.wqkv.weight``, ...,
``output.weight``) so loading is a key-for-key copy.

``wqkv`` is packed per KV head: its output rows, viewed as ``[Hkv, G + 2, D]``, hold the G query
heads of that group, then its key head, then its value head.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from longctx.engine.attention import ATTENTION_BACKENDS
from longctx.engine.config import ModelConfig
from longctx.errors import ConfigError
from longctx.engine.kv_cache import KV_DTYPES, KVCache, QuantizedKVCache
from longctx.engine.rope import rope_cos_sin


def rope_packed(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates query or key slots of the packed qkv (NeoX / rotate_half form).

    Computes the NeoX form ``x * cos + rotate_half(x) * sin`` (``rotate_half(x) = cat(-x2, x1)``) with
    ``cos = cat(c, c)``, ``sin = cat(s, s)`` as ``[x1 c - x2 s, x2 c + x1 s]`` on the two halves, without
    building ``rotate_half(x)``.

    Args:
        x: ``[B, T, ..., D]`` (e.g. the ``[B, T, Hkv, G, D]`` query slots or the ``[B, T, Hkv, D]``
            key slot of the packed qkv; any strides).
        cos, sin: ``[T, D]`` tables from :func:`~longctx.engine.rope.rope_cos_sin` (dtype of ``x``).

    Returns:
        A new contiguous tensor shaped like ``x``.
    """
    half = x.shape[-1] // 2
    bshape = (x.shape[1],) + (1,) * (x.dim() - 3) + (half,)  # [T, 1, .., D/2]
    c = cos[:, :half].reshape(bshape)
    s = sin[:, :half].reshape(bshape)
    x1, x2 = x[..., :half], x[..., half:]
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    lo, hi = out[..., :half], out[..., half:]
    torch.mul(x1, c, out=lo)
    lo.sub_(x2 * s)
    torch.mul(x2, c, out=hi)
    hi.add_(x1 * s)
    return out


class RMSNorm(nn.Module):
    """RMSNorm computed in float32, cast back, then scaled by the weight (InternLM2's order)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)  # a fresh tensor
        if y.dtype == self.weight.dtype and not torch.is_grad_enabled():
            return y.mul_(self.weight)  # == weight * y, in place
        return self.weight * y


class Attention(nn.Module):
    """GQA attention with a packed per-KV-head ``wqkv``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, h, hkv = cfg.head_dim, cfg.num_heads, cfg.num_kv_heads
        self.wqkv = nn.Linear(cfg.hidden_size, (h + 2 * hkv) * d, bias=cfg.bias or cfg.qkv_bias)
        self.wo = nn.Linear(h * d, cfg.hidden_size, bias=cfg.bias)

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache, layer: int,
                start: int, last_only: bool = False) -> torch.Tensor:
        """Projects a chunk, writes its rotated keys and its values to the cache at ``start`` and returns
        its rotated queries ``[B, Tq, H, D]`` (Tq = 1 with ``last_only``: only the last position's query)."""
        b, t, _ = x.shape
        cfg = self.cfg
        g, d = cfg.num_groups, cfg.head_dim
        qkv = self.wqkv(x).view(b, t, cfg.num_kv_heads, g + 2, d)  # [B, T, Hkv, G+2, D]
        # RoPE straight from the packed slots into contiguous outputs (no transposes, no extra copies)
        k = rope_packed(qkv[:, :, :, g, :], cos, sin)  # [B, T, Hkv, D]
        cache.write(layer, start, k, qkv[:, :, :, g + 1, :])  # values: [B, T, Hkv, D]
        if last_only:
            qkv, cos, sin = qkv[:, -1:], cos[-1:], sin[-1:]
        return rope_packed(qkv[:, :, :, :g, :], cos, sin).view(b, qkv.shape[1], cfg.num_heads, d)  # [B, Tq, H, D]

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache, layer: int,
                start: int, attn_fn, last_only: bool = False) -> torch.Tensor:
        """Appends this chunk's keys/values to the cache and returns the attention output.

        With ``last_only`` the keys/values of every position are still cached but only the last
        position's query is attended (``[B, 1, hidden]`` is returned).
        """
        b = x.shape[0]
        q = self.project(x, cos, sin, cache, layer, start, last_only)  # [B, Tq, H, D]
        k_all, v_all = cache.read(layer, start + x.shape[1])  # [1, start+T, Hkv, D]
        out = attn_fn(q, k_all, v_all)  # [B, Tq, H, D]
        return self.wo(out.reshape(b, q.shape[1], self.cfg.num_heads * self.cfg.head_dim))  # [B, Tq, hidden]


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.w3 = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.w2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.w2(F.silu(self.w1(x)) * self.w3(x))
        a = self.w1(x)  # [.., intermediate]
        F.silu(a, inplace=True)
        return self.w2(a.mul_(self.w3(x)))  # same values, two fewer intermediate-sized buffers


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x, cos, sin, cache, layer, start, attn_fn, last_only: bool = False):
        """``last_only``: cache every position's keys/values but return only the last position
        (``[B, 1, hidden]``) -- the last layer of a prefill needs nothing else."""
        a = self.attention(self.attention_norm(x), cos, sin, cache, layer, start, attn_fn, last_only)
        if last_only:
            x = x[:, -1:]
        if torch.is_grad_enabled():
            x = x + a
            return x + self.feed_forward(self.ffn_norm(x))
        # Inference: the residual adds go into the fresh branch outputs (a + b == b + a bit for bit).
        x = a.add_(x)
        return self.feed_forward(self.ffn_norm(x)).add_(x)

    @torch.no_grad()
    def forward_layerwise(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache, layer: int,
                          start: int, attn_fn, chunk: int, last_only: bool = False) -> torch.Tensor:
        """This layer over a whole prompt ``x [1, T, hidden]``: projections, output projection and MLP in
        token chunks of ``chunk``, attention in one call over all T queries (the plain causal kernel when
        nothing is cached before ``start``). Updates ``x`` in place and returns it (``[1, 1, hidden]``:
        the last row, with ``last_only``). Same values as :meth:`forward` over the whole prompt."""
        t = x.shape[1]
        cfg = self.attention.cfg
        q = None if last_only else x.new_empty(1, t, cfg.num_heads, cfg.head_dim)  # [1, T, H, D]
        for s in range(0, t, chunk):
            e = min(s + chunk, t)
            qc = self.attention.project(self.attention_norm(x[:, s:e]), cos[s:e], sin[s:e], cache, layer, start + s,
                                        last_only=last_only)  # [1, e-s, H, D], or [1, 1, H, D]
            if q is not None:
                q[:, s:e] = qc
            elif e == t:
                q = qc  # last_only: the prompt's last query
        k_all, v_all = cache.read(layer, start + t)  # [1, start+T, Hkv, D]
        o = attn_fn(q, k_all, v_all)  # [1, Tq, H, D]
        tq = o.shape[1]
        del q, k_all, v_all
        o = o.reshape(1, tq, cfg.num_heads * cfg.head_dim)  # [1, Tq, H*D]
        if last_only:
            x = x[:, -1:]  # [1, 1, hidden]
        for s in range(0, tq, chunk):
            xs = x[:, s:s + chunk]  # [1, C, hidden], a view: the adds below update x
            xs.add_(self.attention.wo(o[:, s:s + chunk]))
            xs.add_(self.feed_forward(self.ffn_norm(xs)))
        return x


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Transformer(nn.Module):
    """InternLM2 decoder for one sequence at a time.

    Args:
        cfg: the model configuration.
        attn: attention backend name (a key of ``ATTENTION_BACKENDS``).
        kv_dtype: KV cache storage: ``auto`` (the model dtype), ``int8`` or ``fp8`` (see ``kv_cache``).
    """

    def __init__(self, cfg: ModelConfig, attn: str = "sdpa", kv_dtype: str = "auto") -> None:
        super().__init__()
        self.cfg = cfg
        self.kv_dtype = kv_dtype
        self.model = Backbone(cfg)
        self.output = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.output.weight = self.model.tok_embeddings.weight
        self.attn_name = attn

    @property
    def kv_dtype(self) -> str:
        """KV cache storage of new caches: ``auto`` (the model dtype), ``int8`` or ``fp8``."""
        return self._kv_dtype

    @kv_dtype.setter
    def kv_dtype(self, kind: str) -> None:
        if kind not in KV_DTYPES:
            raise ConfigError(f"unknown KV cache dtype {kind!r}: expected one of {', '.join(KV_DTYPES)}")
        self._kv_dtype = kind

    @property
    def attn_name(self) -> str:
        return self._attn_name

    @attn_name.setter
    def attn_name(self, name: str) -> None:
        if name not in ATTENTION_BACKENDS:
            raise ValueError(f"unknown attention backend {name!r}")
        self._attn_name = name
        self._attn_fn = ATTENTION_BACKENDS[name]

    def new_cache(self, capacity: int) -> KVCache:
        """Allocates a KV cache for ``capacity`` positions on the model's device, in the model's dtype or
        quantized as ``self.kv_dtype`` says."""
        p = self.model.norm.weight
        if self.kv_dtype != "auto":
            return QuantizedKVCache(self.cfg.num_layers, self.cfg.num_kv_heads, self.cfg.head_dim, capacity, p.dtype,
                                    p.device, self.kv_dtype)
        return KVCache(self.cfg.num_layers, self.cfg.num_kv_heads, self.cfg.head_dim, capacity, p.dtype, p.device)

    def embed(self, ids: torch.Tensor, start: int, rope_base: float):
        """``(h [1, T, hidden], cos, sin [T, D])`` for tokens ``ids [T]`` at positions ``start ..``."""
        positions = torch.arange(start, start + ids.shape[0], device=ids.device)  # [T]
        h = self.model.tok_embeddings(ids)[None]  # [1, T, hidden]
        cos, sin = rope_cos_sin(positions, self.cfg, rope_base, dtype=h.dtype)  # [T, D] each
        return h, cos, sin

    def forward(self, ids: torch.Tensor, cache: KVCache, rope_base: float, *, last_only: bool = True) -> torch.Tensor:
        """Runs one chunk of tokens at positions ``cache.length ..`` and appends its keys/values.

        Args:
            ids: int64 ``[T]`` token ids of this chunk.
            cache: the request's cache; its ``length`` is the chunk's start position.
            rope_base: the request's RoPE base (the same for every chunk of the request).
            last_only: compute logits for the last position only (prefill), else for all.

        Returns:
            Logits in the model dtype, ``[vocab]`` if ``last_only`` else ``[T, vocab]``.
        """
        start = cache.length
        h, cos, sin = self.embed(ids, start, rope_base)
        last = len(self.model.layers) - 1
        for i, layer in enumerate(self.model.layers):
            # The last layer's output feeds only the logits: with last_only, skip its other rows.
            h = layer(h, cos, sin, cache, i, start, self._attn_fn, last_only and i == last)
        cache.advance(ids.shape[0])
        h = h[0, -1] if last_only else h[0]  # [hidden] or [T, hidden]
        return self.output(self.model.norm(h))

    @torch.no_grad()
    def prefill_layerwise(self, ids: torch.Tensor, cache: KVCache, rope_base: float, *, chunk: int) -> torch.Tensor:
        """Layer-wise prefill: every layer runs over the whole prompt before the next starts.

        Attention sees all T queries in one call (one-shot kernel speed) while projections and the
        MLP run in token chunks of ``chunk``, so the working memory is three ``[T, hidden]``-sized
        buffers (residual stream, queries, attention output) plus one chunk's MLP activations,
        instead of a one-shot prefill's ``[T, intermediate]`` activations.

        Args:
            ids: int64 ``[T]`` token ids, at positions ``cache.length ..``.
            cache: the request's cache.
            rope_base: the request's RoPE base.
            chunk: tokens per projection / MLP step.

        Returns:
            Logits of the last position, ``[vocab]`` in the model dtype.
        """
        start = cache.length
        h, cos, sin = self.embed(ids, start, rope_base)
        last = len(self.model.layers) - 1
        for i, layer in enumerate(self.model.layers):
            h = layer.forward_layerwise(h, cos, sin, cache, i, start, self._attn_fn, chunk, last_only=i == last)
        cache.advance(ids.shape[0])
        return self.output(self.model.norm(h[0, -1]))  # [vocab]
