"""Attention backends: plain functions in a registry.

Every backend takes the same arguments and returns the same thing:

    fn(q, k, v) -> out
        q:   [B, Tq, H, D]     queries of the current chunk (already rotated)
        k,v: [B, Tk, Hkv, D]   all keys/values so far, the current chunk's last (Tk >= Tq)
        out: [B, Tq, H, D]

The causal mask is aligned to the **lower-right corner**: query i of the chunk sits at absolute
position ``Tk - Tq + i`` and sees keys ``0 .. Tk - Tq + i``. With Tq == Tk this is the usual
causal mask; with Tq == 1 (decode) nothing is masked; for a chunk of a chunked prefill it lets
every query see the whole cached prefix. GQA: query head h reads KV head ``h // (H // Hkv)``.

``eager`` is the float32 reference the others are tested against. ``sdpa`` uses
``torch.nn.functional.scaled_dot_product_attention`` (on CUDA its flash / memory-efficient
kernels); on CPU a chunk that follows a cached prefix is split into two mask-free kernel calls
(chunk x prefix, unmasked; chunk x itself, causal) merged with their log-sum-exp, so no mask is
ever built. ``flash`` uses the ``flash_attn`` package (its causal mask is bottom-right aligned),
CUDA only.
"""
from __future__ import annotations

import importlib.util
import math
from typing import Callable

import torch
import torch.nn.functional as F

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def lower_right_causal_mask(tq: int, tk: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean ``[Tq, Tk]`` mask, True where query i may attend key j (j <= Tk - Tq + i)."""
    q_pos = torch.arange(tk - tq, tk, device=device)[:, None]  # [Tq, 1]
    k_pos = torch.arange(tk, device=device)[None, :]  # [1, Tk]
    return k_pos <= q_pos


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Reference attention in float32 (explicit softmax, lower-right causal mask)."""
    b, tq, h, d = q.shape
    tk, hkv = k.shape[1], k.shape[2]
    g = h // hkv
    qf = q.float().transpose(1, 2)  # [B, H, Tq, D]
    kf = k.float().transpose(1, 2).repeat_interleave(g, dim=1)  # [B, H, Tk, D]
    vf = v.float().transpose(1, 2).repeat_interleave(g, dim=1)  # [B, H, Tk, D]
    scores = qf @ kf.transpose(-1, -2) / math.sqrt(d)  # [B, H, Tq, Tk]
    if tq > 1:
        mask = lower_right_causal_mask(tq, tk, q.device)
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = probs @ vf  # [B, H, Tq, D]
    return out.transpose(1, 2).to(q.dtype)  # [B, Tq, H, D]


def _sdpa_gqa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
    """SDPA on [B, H, T, D] tensors with GQA; expands KV heads when enable_gqa is unavailable."""
    if q.shape[1] != k.shape[1]:
        try:
            return F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kwargs)
        except (TypeError, RuntimeError):
            g = q.shape[1] // k.shape[1]
            k = k.repeat_interleave(g, dim=1)  # [B, H, Tk, D]
            v = v.repeat_interleave(g, dim=1)  # [B, H, Tk, D]
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


def _cpu_flash_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's CPU flash kernel on [B, H*, T*, D] tensors: ``(out [B, H, Tq, D], lse float32 [B, H, Tq])``.

    ``lse`` is the natural-log log-sum-exp of each query's scaled scores; ``causal`` is the
    upper-left mask (only used here with Tq == Tk). GQA is native in torch >= 2.5; older
    versions get expanded KV heads.
    """
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if q.shape[1] != k.shape[1]:
        try:
            return op(q, k, v, 0.0, causal)
        except RuntimeError:
            g = q.shape[1] // k.shape[1]
            k = k.repeat_interleave(g, dim=1)  # [B, H, Tk, D]
            v = v.repeat_interleave(g, dim=1)  # [B, H, Tk, D]
    return op(q, k, v, 0.0, causal)


def merge_attention(o1: torch.Tensor, lse1: torch.Tensor, o2: torch.Tensor, lse2: torch.Tensor) -> torch.Tensor:
    """Combines attention over two disjoint key sets from their outputs and log-sum-exps.

    Args:
        o1, o2: ``[B, H, Tq, D]`` softmax-weighted values over each key set.
        lse1, lse2: float32 ``[B, H, Tq]`` log-sum-exp of the scaled scores over each key set.

    Returns:
        ``[B, H, Tq, D]`` in ``o1``'s dtype: ``w o1 + (1 - w) o2`` with ``w = exp(lse1) / (exp(lse1) +
        exp(lse2)) = sigmoid(lse1 - lse2)`` -- exactly softmax over the union of the key sets --
        computed in float32 (``lse1 = -inf``, an empty first set, gives ``o2``).
    """
    w = torch.sigmoid(lse1.float() - lse2.float()).unsqueeze(-1)  # [B, H, Tq, 1]
    return torch.lerp(o2.float(), o1.float(), w).to(o1.dtype)


def _cpu_chunk_attention(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
    """Lower-right causal attention for a chunk after a cached prefix (CPU, 1 < Tq < Tk).

    Two mask-free calls of the CPU flash kernel: the chunk against the prefix (every query sees
    every prefix key) and the chunk against itself (plain causal), merged by log-sum-exp.
    No ``[Tq, Tk]`` mask is built and the causal kernel skips the masked half of the diagonal block.
    """
    b, h, tq, d = qh.shape
    hkv, tk = kh.shape[1], kh.shape[2]
    p = tk - tq
    # Chunk x prefix has no mask, so the G query heads of a KV head can go in as one longer query
    # ([B, Hkv, G*Tq, D]): the kernel reads each K/V block once per group (row results are unchanged).
    qg = qh.reshape(b, hkv, (h // hkv) * tq, d)
    o1, lse1 = _cpu_flash_lse(qg, kh[:, :, :p], vh[:, :, :p], False)  # chunk x prefix
    o1, lse1 = o1.reshape(b, h, tq, d), lse1.reshape(b, h, tq)
    o2, lse2 = _cpu_flash_lse(qh, kh[:, :, p:], vh[:, :, p:], True)  # chunk x itself
    return merge_attention(o1, lse1, o2, lse2)  # [B, H, Tq, D]


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """torch SDPA with a lower-right causal mask.

    On CUDA a chunk uses ``torch.nn.attention.bias.causal_lower_right`` so the flash /
    memory-efficient kernels run without a materialized mask; on CPU the chunk is split into
    chunk x prefix (unmasked) and chunk x chunk (causal), merged by log-sum-exp
    (:func:`_cpu_chunk_attention`); if that kernel is unavailable it falls back to a boolean
    ``[Tq, Tk]`` mask (one chunk x keys, never larger).
    """
    tq, tk = q.shape[1], k.shape[1]
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H*, T*, D]
    if tq == 1:
        out = _sdpa_gqa(qh, kh, vh)
    elif tq == tk:
        out = _sdpa_gqa(qh, kh, vh, is_causal=True)
    elif q.is_cuda:
        from torch.nn.attention.bias import causal_lower_right

        bias = causal_lower_right(tq, tk)
        out = None
        if qh.shape[1] != kh.shape[1]:
            try:  # memory-efficient kernel with a lower-right bias and native GQA (newer torch)
                out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=bias, enable_gqa=True)
            except (TypeError, RuntimeError, NotImplementedError):
                g = qh.shape[1] // kh.shape[1]
                kh = kh.repeat_interleave(g, dim=1)  # [B, H, Tk, D]
                vh = vh.repeat_interleave(g, dim=1)  # [B, H, Tk, D]
        if out is None:
            out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=bias)
    else:
        out = None
        if q.device.type == "cpu":
            try:
                out = _cpu_chunk_attention(qh, kh, vh)
            except (AttributeError, RuntimeError, NotImplementedError):  # old torch without the CPU flash op
                out = None
        if out is None:
            mask = lower_right_causal_mask(tq, tk, q.device)  # [Tq, Tk]
            out = _sdpa_gqa(qh, kh, vh, attn_mask=mask)
    return out.transpose(1, 2)  # [B, Tq, H, D]


def flash_available() -> bool:
    """True when the ``flash_attn`` package is importable and CUDA is present."""
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """FlashAttention-2 (``flash_attn.flash_attn_func``), bottom-right causal, native GQA."""
    if not q.is_cuda:
        raise RuntimeError("the flash backend needs CUDA tensors")
    from flash_attn import flash_attn_func  # imported lazily: optional dependency

    return flash_attn_func(q, k, v, causal=q.shape[1] > 1)  # [B, Tq, H, D]


ATTENTION_BACKENDS: dict[str, AttentionFn] = {
    "eager": eager_attention,
    "sdpa": sdpa_attention,
    "flash": flash_attention,
}


def resolve_backend(name: str, device: torch.device) -> str:
    """Picks a backend name for ``device``.

    ``auto`` -> ``flash`` on CUDA when flash_attn is importable, else ``sdpa``.

    Raises:
        ValueError: unknown name, or ``flash`` requested where it cannot run.
    """
    if name == "auto":
        return "flash" if device.type == "cuda" and flash_available() else "sdpa"
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose from auto, {', '.join(ATTENTION_BACKENDS)}")
    if name == "flash" and not (device.type == "cuda" and flash_available()):
        raise ValueError("attention backend 'flash' needs a CUDA device and the flash_attn package")
    return name
