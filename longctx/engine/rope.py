"""Rotary position embeddings (NeoX / "rotate_half" form) and the RoPE scaling methods.

A request's RoPE is fixed by two things: the model's scaling method (``cfg.rope_scaling``) and one
*base* per request. Fixed methods (``default``, ``linear``, ``yarn``, ``llama3``) keep the trained base
``rope_theta`` for every request and change the inverse frequencies once. ``dynamic`` (dynamic NTK) raises
the base with the request's total length; the engine computes it once per request (prompt + reserved new
tokens) and holds it for every prefill chunk and decode step, so cached keys and new queries always agree
and chunked prefill equals a one-shot forward.

Each method computes ``(inv_freq [d/2], attention_scaling)`` as transformers' ``ROPE_INIT_FUNCTIONS``
define them; ``attention_scaling`` multiplies the cos/sin tables (YaRN's attention temperature).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch

from longctx.engine.config import ModelConfig, RopeScaling

__all__ = ["dynamic_ntk_base", "base_for", "inv_freq", "rope_frequencies", "rope_cos_sin", "ROPE_METHODS"]


def dynamic_ntk_base(theta: float, head_dim: int, max_position_embeddings: int, factor: float | None,
                     seq_len: int) -> float:
    """Dynamic-NTK RoPE base for a sequence of ``seq_len`` tokens (bloc97/emozilla, "Dynamically Scaled RoPE
    further increases performance of long context LLaMA", 2023).

    base = theta * ((f * s / M) - (f - 1)) ** (d / (d - 2)) when s > M, else theta.

    Args:
        theta: the trained RoPE base.
        head_dim: d.
        max_position_embeddings: M.
        factor: f, or None for no scaling.
        seq_len: s.

    Returns:
        The base as a Python float.
    """
    if factor is None or seq_len <= max_position_embeddings:
        return float(theta)
    f, s, m, d = float(factor), float(seq_len), float(max_position_embeddings), float(head_dim)
    return float(theta) * ((f * s / m) - (f - 1.0)) ** (d / (d - 2.0))


def base_for(cfg: ModelConfig, seq_len: int) -> float:
    """The RoPE base ``cfg`` uses for a request of ``seq_len`` tokens (``rope_theta`` unless dynamic NTK)."""
    rs = cfg.rope_scaling
    factor = rs.factor if rs is not None and rs.type == "dynamic" else None
    return dynamic_ntk_base(cfg.rope_theta, cfg.head_dim, cfg.max_position_embeddings, factor, seq_len)


def inv_freq(head_dim: int, base: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Inverse frequencies, float32 ``[head_dim // 2]``: base ** (-2i / d)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).to(torch.float32) / head_dim
    return 1.0 / (float(base) ** exponents)


def _default(rs: RopeScaling | None, d: int, base: float, m: int) -> tuple[torch.Tensor, float]:
    """Plain RoPE (Su et al., "RoFormer", arXiv 2104.09864); also dynamic NTK, whose change is the base."""
    return inv_freq(d, base), 1.0


def _linear(rs: RopeScaling, d: int, base: float, m: int) -> tuple[torch.Tensor, float]:
    """Position interpolation (Chen et al., "Extending Context Window of Large Language Models via Positional
    Interpolation", arXiv 2306.15595): positions divided by the factor, i.e. every frequency divided by it."""
    return inv_freq(d, base) / rs.factor, 1.0


def _yarn(rs: RopeScaling, d: int, base: float, m: int) -> tuple[torch.Tensor, float]:
    """YaRN (Peng et al., "YaRN: Efficient Context Window Extension of Large Language Models", arXiv 2309.00071).

    High-frequency dimensions (more than ``beta_fast`` rotations over the original window) are kept,
    low-frequency ones (fewer than ``beta_slow``) are interpolated by the factor, a linear ramp blends
    between; cos/sin are scaled by the attention factor ``0.1 ln(f) + 1`` (or the mscale ratio).
    """
    orig = rs.original_max_position_embeddings or m
    factor = rs.factor
    attn = rs.attention_factor
    if attn is None:
        def mscale(scale: float, ms: float = 1.0) -> float:
            return 1.0 if scale <= 1 else 0.1 * ms * math.log(scale) + 1.0

        attn = mscale(factor, rs.mscale) / mscale(factor, rs.mscale_all_dim) if rs.mscale and rs.mscale_all_dim \
            else mscale(factor)
    beta_fast, beta_slow = rs.beta_fast or 32.0, rs.beta_slow or 1.0

    def correction_dim(rotations: float) -> float:  # the dimension index that turns `rotations` times over orig
        return (d * math.log(orig / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if rs.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, d - 1)
    if low == high:
        high += 0.001  # no zero-width ramp
    ramp = ((torch.arange(d // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)  # [d/2]
    extrapolation = 1.0 - ramp  # 1 keeps the trained frequency, 0 interpolates
    pos_freqs = base ** (torch.arange(0, d, 2, dtype=torch.float32) / d)  # [d/2]
    inv = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv, float(attn)


def _llama3(rs: RopeScaling, d: int, base: float, m: int) -> tuple[torch.Tensor, float]:
    """Llama 3.1 frequency-dependent scaling (Meta, "The Llama 3 Herd of Models", arXiv 2407.21783): wavelengths
    longer than ``orig / low_freq_factor`` are divided by the factor, shorter than ``orig / high_freq_factor``
    kept, and smoothly interpolated between."""
    orig = rs.original_max_position_embeddings or m
    low_f, high_f = rs.low_freq_factor, rs.high_freq_factor
    inv = inv_freq(d, base)  # [d/2]
    wavelen = 2 * math.pi / inv
    low_wavelen, high_wavelen = orig / low_f, orig / high_f
    scaled = torch.where(wavelen > low_wavelen, inv / rs.factor, inv)
    smooth = (orig / wavelen - low_f) / (high_f - low_f)
    smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled), 1.0


# method name -> fn(scaling, head_dim, base, max_position_embeddings) -> (inv_freq [d/2] float32, attention_scaling)
ROPE_METHODS: dict[str, Callable[..., tuple[torch.Tensor, float]]] = {
    "default": _default, "dynamic": _default, "linear": _linear, "yarn": _yarn, "llama3": _llama3,
}


@functools.lru_cache(maxsize=64)
def _frequencies(rs: RopeScaling | None, d: int, base: float, m: int) -> tuple[torch.Tensor, float]:
    fn = ROPE_METHODS["default" if rs is None else rs.type]
    return fn(rs, d, base, m)


def rope_frequencies(cfg: ModelConfig, base: float) -> tuple[torch.Tensor, float]:
    """``(inv_freq float32 [d/2] on the CPU, attention_scaling)`` for ``cfg``'s method at this request's base.

    Computed once per (method, base) and cached: a fixed method's tables are built once per model, a
    dynamic one's once per request length.
    """
    return _frequencies(cfg.rope_scaling, cfg.head_dim, float(base), cfg.max_position_embeddings)


def rope_cos_sin(positions: torch.Tensor, cfg: ModelConfig, base: float,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Cos/sin tables for absolute positions.

    Args:
        positions: int64 ``[T]`` absolute positions.
        cfg: the model configuration (head_dim and the scaling method).
        base: RoPE base for this request (:func:`base_for`).
        dtype: dtype of the returned tables (angles are computed in float32).

    Returns:
        ``(cos, sin)``, each ``[T, head_dim]`` laid out as ``cat(freqs, freqs)`` and multiplied by the
        method's attention scaling.
    """
    inv, scaling = rope_frequencies(cfg, base)
    freqs = positions.to(torch.float32)[:, None] * inv.to(positions.device)[None, :]  # [T, d/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, d]
    cos, sin = emb.cos(), emb.sin()
    if scaling != 1.0:
        cos, sin = cos * scaling, sin * scaling
    return cos.to(dtype), sin.to(dtype)
