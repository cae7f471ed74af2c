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
kernels); on CPU it never builds a mask larger than one chunk x keys. ``flash`` uses the
``flash_attn`` package (its causal mask is bottom-right aligned), CUDA only.
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


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """torch SDPA with a lower-right causal mask.

    On CUDA a chunk uses ``torch.nn.attention.bias.causal_lower_right`` so the flash /
    memory-efficient kernels run without a materialized mask; on CPU the chunk gets a boolean
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
