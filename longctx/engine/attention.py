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
``torch.nn.functional.scaled_dot_product_attention`` (on CUDA its cuDNN / flash / memory-efficient
kernels); a chunk that follows a cached prefix is split into two mask-free kernel calls
(chunk x prefix, unmasked; chunk x itself, causal) merged with their log-sum-exp, so no mask is
ever built -- on CPU always, on CUDA (Hopper and newer, half precision) with cuDNN attention for
the prefix part (see :func:`cuda_chunk_mode`). ``flash`` uses the ``flash_attn`` package (its
causal mask is bottom-right aligned), CUDA only.
"""
from __future__ import annotations

import importlib.util
import math
import os
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
        ``[B, H, Tq, D]`` in ``o1``'s dtype: ``o2 + w (o1 - o2)`` with ``w = exp(lse1) / (exp(lse1) +
        exp(lse2)) = sigmoid(lse1 - lse2)`` -- exactly softmax over the union of the key sets --
        computed in float32 in one buffer (``lse1 = -inf``, an empty first set, gives ``o2``).
        ``o1`` may be overwritten.
    """
    w = torch.sigmoid(lse1.float() - lse2.float()).unsqueeze(-1)  # [B, H, Tq, 1]
    out = o1.float()  # o1 itself when already float32 (a fresh kernel output)
    return out.sub_(o2).mul_(w).add_(o2).to(o1.dtype)


def _cpu_flash_grouped(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask-free attention of every query to every key on the CPU flash kernel:
    ``(out [B, H, Tq, D], lse float32 [B, H, Tq])``.

    With no mask the G query heads of a KV head can go in as one longer query ``[B, Hkv, G*Tq, D]``:
    the kernel reads each K/V block once per group (row results are unchanged).
    """
    b, h, tq, d = qh.shape
    hkv = kh.shape[1]
    qg = qh.reshape(b, hkv, (h // hkv) * tq, d)  # [B, Hkv, G*Tq, D]: head kv*G + g -> rows g*Tq... of KV head kv
    out, lse = _cpu_flash_lse(qg, kh, vh, False)
    return out.reshape(b, h, tq, d), lse.reshape(b, h, tq)  # [B, H, Tq, D], [B, H, Tq]


def _cpu_chunk_attention(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
    """Lower-right causal attention for a chunk after a cached prefix (CPU, 1 < Tq < Tk).

    Two mask-free calls of the CPU flash kernel: the chunk against the prefix (every query sees
    every prefix key; query heads grouped per KV head) and the chunk against itself (plain causal),
    merged by log-sum-exp. No ``[Tq, Tk]`` mask is built and the causal kernel skips the masked half
    of the diagonal block.
    """
    p = kh.shape[2] - qh.shape[2]
    o1, lse1 = _cpu_flash_grouped(qh, kh[:, :, :p], vh[:, :, :p])  # chunk x prefix
    o2, lse2 = _cpu_flash_lse(qh, kh[:, :, p:], vh[:, :, p:], True)  # chunk x itself
    return merge_attention(o1, lse1, o2, lse2)  # [B, H, Tq, D]


def _cpu_decode_attention(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> torch.Tensor | None:
    """One query token against the cache on the CPU: ``[B, H, 1, D]`` out, or None where the CPU flash
    kernel is unavailable.

    The token sees every key, so it is :func:`_cpu_flash_grouped` (the G query heads of a KV head as G
    queries of one head). A whole decode step of the default model at 32K cached keys took half the
    time of SDPA's own dispatch on the strided cache view (docs/benchmarks.md).
    """
    try:
        return _cpu_flash_grouped(qh, kh, vh)[0]  # [B, H, 1, D]
    except (AttributeError, RuntimeError, NotImplementedError):  # old torch without the CPU flash op
        return None


# ---------------------------------------------------------------------------------------------
# CUDA chunk after a prefix: cuDNN (prefix, unmasked) + flash (diagonal, causal), merged by LSE
# ---------------------------------------------------------------------------------------------
#
# On an H200 (torch 2.11, cuDNN 9.x) the lower-right causal flash kernel that
# ``causal_lower_right`` dispatches to ran a chunk of 8192 queries against 200K keys at ~350
# TFLOP/s while the cuDNN kernel SDPA picks for plain causal / unmasked calls ran at ~500+: the
# split keeps every call in the fast kernels. It is used when the device is sm90+ and the dtype is
# half precision, after a one-time self-check against the ``causal_lower_right`` path on a small
# problem (any error or mismatch disables it for the process, with a warning).
# ``LONGCTX_CUDA_CHUNK_ATTN`` = ``lower_right`` (default: never split) | ``auto`` (split on sm90+
# after the self-check) | ``split`` (skip the capability gate) | ``flex`` (FlexAttention with an offset
# causal block mask, compiled with dynamic shapes; also self-checked once).
# The split is opt-in because it was written after this session's GPU time was spent: it has
# passed CPU review only, not a run on a GPU. ``lower_right`` is the path measured on the H200
# (docs/benchmarks.md).

_SPLIT_OK: dict[tuple, bool] = {}
_CHUNK_MODES = ("lower_right", "auto", "split", "flex")


def cuda_chunk_mode() -> str:
    """``lower_right`` (default) | ``auto`` | ``split`` | ``flex`` from ``LONGCTX_CUDA_CHUNK_ATTN``."""
    mode = os.environ.get("LONGCTX_CUDA_CHUNK_ATTN", "lower_right").strip().lower() or "lower_right"
    return mode if mode in _CHUNK_MODES else "lower_right"


def _cudnn_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked cuDNN attention on [B, H, T*, D] (same head counts): ``(out, lse float32 [B, H, Tq])``."""
    res = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, False, False)
    out, lse = res[0], res[1]
    return out, lse.reshape(q.shape[0], q.shape[1], q.shape[2]).float()


def _flash_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's flash kernel on [B, H*, T*, D] (native GQA): ``(out, lse float32 [B, H, Tq])``."""
    res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False)
    out, lse = res[0], res[1]
    return out, lse[..., : q.shape[2]].float()


def _cuda_split_chunk(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
    """Lower-right causal chunk attention on CUDA as (chunk x prefix) + (chunk x itself).

    The prefix part folds the G query heads of each KV head into one longer query
    (``[B, Hkv, G*Tq, D]``, a plain multi-head shape) and runs cuDNN attention unmasked; the
    diagonal block runs torch's flash kernel with ``is_causal`` (Tq == Tk, native GQA). Both
    return their log-sum-exp, merged by :func:`merge_attention`. No K/V is expanded and no mask
    is built.
    """
    b, h, tq, d = qh.shape
    hkv, tk = kh.shape[1], kh.shape[2]
    p = tk - tq
    qg = qh.reshape(b, hkv, (h // hkv) * tq, d)  # [B, Hkv, G*Tq, D] (a copy of the chunk's queries)
    o1, lse1 = _cudnn_lse(qg, kh[:, :, :p], vh[:, :, :p])
    o1, lse1 = o1.reshape(b, h, tq, d), lse1.reshape(b, h, tq)
    o2, lse2 = _flash_lse(qh, kh[:, :, p:], vh[:, :, p:], True)
    return merge_attention(o1, lse1, o2, lse2)  # [B, H, Tq, D]


def _cuda_lower_right(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
    """``causal_lower_right`` through SDPA (flash / memory-efficient), expanding KV heads only if needed."""
    from torch.nn.attention.bias import causal_lower_right

    tq, tk = qh.shape[2], kh.shape[2]
    bias = causal_lower_right(tq, tk)
    if qh.shape[1] != kh.shape[1]:
        try:  # flash (lower-right) with native GQA on newer torch
            return F.scaled_dot_product_attention(qh, kh, vh, attn_mask=bias, enable_gqa=True)
        except (TypeError, RuntimeError, NotImplementedError):
            g = qh.shape[1] // kh.shape[1]
            kh = kh.repeat_interleave(g, dim=1)  # [B, H, Tk, D]
            vh = vh.repeat_interleave(g, dim=1)  # [B, H, Tk, D]
    return F.scaled_dot_product_attention(qh, kh, vh, attn_mask=bias)


_FLEX = None


def flex_chunk_attention(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
    """Lower-right causal chunk attention with FlexAttention: block mask ``q_idx + offset >= kv_idx``.

    ``offset = Tk - Tq`` is a tensor the mask closes over, and ``flex_attention`` is compiled once with
    dynamic shapes, so a new chunk or prefix length does not force a new kernel per call. Native GQA;
    fully masked blocks are skipped by the block mask.

    Args:
        qh: ``[B, H, Tq, D]``; kh, vh: ``[B, Hkv, Tk, D]`` with Tk >= Tq.

    Returns:
        ``[B, H, Tq, D]``.
    """
    global _FLEX
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # torch >= 2.5 only

    if _FLEX is None:
        _FLEX = torch.compile(flex_attention, dynamic=True)
    tq, tk = qh.shape[2], kh.shape[2]
    offset = torch.tensor(tk - tq, device=qh.device)

    def offset_causal(b, h, q_idx, kv_idx):
        return q_idx + offset >= kv_idx

    mask = create_block_mask(offset_causal, None, None, tq, tk, device=qh.device)
    return _FLEX(qh, kh, vh, block_mask=mask, enable_gqa=qh.shape[1] != kh.shape[1])


def _split_usable(qh: torch.Tensor, kh: torch.Tensor) -> bool:
    """Whether the cuDNN split runs here: mode, capability and dtype gates, then a cached self-check."""
    mode = cuda_chunk_mode()
    if mode == "lower_right" or qh.dtype not in (torch.float16, torch.bfloat16):
        return False
    d = qh.shape[-1]
    if d % 8 or d > 128 or qh.shape[1] % kh.shape[1]:
        return False
    dev = qh.device
    if mode == "auto" and torch.cuda.get_device_capability(dev)[0] < 9:
        return False
    key = (mode, dev.index, qh.dtype, qh.shape[1], kh.shape[1], d)
    ok = _SPLIT_OK.get(key)
    if ok is None:
        ok = _split_self_check(qh.shape[1], kh.shape[1], d, qh.dtype, dev, _chunk_path(mode))
        _SPLIT_OK[key] = ok
    return ok


def _chunk_path(mode: str):
    """The chunk-after-prefix implementation a mode names (``flex`` or the cuDNN split)."""
    return flex_chunk_attention if mode == "flex" else _cuda_split_chunk


def _split_self_check(h: int, hkv: int, d: int, dtype: torch.dtype, dev: torch.device, path=None) -> bool:
    """Runs ``path`` (default: the cuDNN split) and the lower-right path on a small random chunk; True when
    they agree."""
    path = path or _cuda_split_chunk
    import warnings

    try:
        g = torch.Generator(device=dev).manual_seed(0)
        tq, tk = 192, 704
        q = torch.randn(1, h, tq, d, device=dev, dtype=dtype, generator=g)
        k = torch.randn(1, hkv, tk, d, device=dev, dtype=dtype, generator=g)
        v = torch.randn(1, hkv, tk, d, device=dev, dtype=dtype, generator=g)
        got = path(q, k, v).float()
        want = _cuda_lower_right(q, k, v).float()
        err = float((got - want).norm() / want.norm())
        if err <= 1e-2:
            return True
        warnings.warn(f"longctx: chunk attention {path.__name__} disagrees with causal_lower_right (rel err "
                      f"{err:.2e}); using causal_lower_right")
    except Exception as e:  # noqa: BLE001 - any failure means: do not use the split
        warnings.warn(f"longctx: chunk attention {path.__name__} unavailable ({e.__class__.__name__}: "
                      f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); using causal_lower_right")
    return False


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """torch SDPA with a lower-right causal mask.

    One query token (decode) on CPU goes to the CPU flash kernel with the query heads grouped per
    KV head (:func:`_cpu_decode_attention`); elsewhere to SDPA without a mask.
    A chunk after a cached prefix (1 < Tq < Tk): on CUDA it uses ``torch.nn.attention.bias.causal_lower_right``
    unless ``LONGCTX_CUDA_CHUNK_ATTN=auto|split`` opts into the (not yet GPU-verified) split into
    chunk x prefix (cuDNN, unmasked) and chunk x chunk (flash, causal) merged by log-sum-exp
    (:func:`_cuda_split_chunk`); ``causal_lower_right`` runs
    (flash / memory-efficient kernels, no materialized mask); on CPU it is split the same way with
    the CPU flash kernel (:func:`_cpu_chunk_attention`), falling back to a boolean ``[Tq, Tk]``
    mask (one chunk x keys, never larger) where that kernel is unavailable.
    """
    tq, tk = q.shape[1], k.shape[1]
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H*, T*, D]
    if tq == 1:
        out = _cpu_decode_attention(qh, kh, vh) if q.device.type == "cpu" else None
        if out is None:
            out = _sdpa_gqa(qh, kh, vh)
    elif tq == tk:
        out = _sdpa_gqa(qh, kh, vh, is_causal=True)
    elif q.is_cuda:
        out = _chunk_path(cuda_chunk_mode())(qh, kh, vh) if _split_usable(qh, kh) else _cuda_lower_right(qh, kh, vh)
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
