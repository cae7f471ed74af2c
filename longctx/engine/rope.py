"""Rotary position embeddings (NeoX / "rotate_half" form) with dynamic-NTK scaling.

One base per request: the engine computes the base once from the request's total length
(prompt + reserved new tokens, or the prompt length alone as TurboMind does) and holds it for
every prefill chunk and decode step, so cached keys and new queries always agree and chunked
prefill equals a one-shot forward.
"""
from __future__ import annotations

import torch

from longctx.engine.config import ModelConfig


def dynamic_ntk_base(theta: float, head_dim: int, max_position_embeddings: int, factor: float | None,
                     seq_len: int) -> float:
    """Dynamic-NTK RoPE base for a sequence of ``seq_len`` tokens.

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
    """The RoPE base ``cfg`` uses for a request of ``seq_len`` tokens."""
    factor = cfg.rope_scaling.factor if cfg.rope_scaling is not None else None
    return dynamic_ntk_base(cfg.rope_theta, cfg.head_dim, cfg.max_position_embeddings, factor, seq_len)


def inv_freq(head_dim: int, base: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Inverse frequencies, float32 ``[head_dim // 2]``: base ** (-2i / d)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).to(torch.float32) / head_dim
    return 1.0 / (float(base) ** exponents)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Cos/sin tables for absolute positions.

    Args:
        positions: int64 ``[T]`` absolute positions.
        head_dim: d.
        base: RoPE base for this request.
        dtype: dtype of the returned tables (angles are computed in float32).

    Returns:
        ``(cos, sin)``, each ``[T, head_dim]`` laid out as ``cat(freqs, freqs)``.
    """
    freqs = positions.to(torch.float32)[:, None] * inv_freq(head_dim, base, positions.device)[None, :]  # [T, d/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, d]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[..., d]`` -> ``cat(-x2, x1)`` where x1, x2 are the two halves of the last dim."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates queries or keys.

    Args:
        x: ``[B, H, T, d]``.
        cos, sin: ``[T, d]`` (broadcast over batch and heads), same dtype as ``x``.

    Returns:
        ``[B, H, T, d]``, same dtype as ``x``.
    """
    return x * cos + rotate_half(x) * sin
