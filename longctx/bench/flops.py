"""FLOP count of a prefill (what "achieved TFLOP/s" divides by) and the KV-cache size of a point.

The parameter counts come from :class:`~longctx.engine.config.ModelConfig`
(``nonembedding_parameters``, ``kv_bytes_per_token``); this module only adds the prefill formula.
For a prompt of L tokens::

    N          = cfg.nonembedding_parameters()
               = n_layers * (hidden*(H + 2*Hkv)*D  +  H*D*hidden  +  3*hidden*intermediate)
                 (the weights every token multiplies: wqkv, wo, w1, w3, w2;
                  norm weights and biases are not counted)
    linear     = 2 * N * L  +  2 * hidden * vocab         (one logits row: prefill keeps the last only)
    attention  = 2 * 2 * (L**2 / 2) * H * D * n_layers     (QK^T and PV, 2 FLOPs per multiply-add,
               = 2 * L**2 * H * D * n_layers               half the L x L square because causal)
    total      = linear + attention

The embedding lookup, norms, RoPE, softmax and SwiGLU element-wise work are not counted. The
causal half is taken as L**2/2 (the exact pair count L(L+1)/2 differs by L/2).
"""
from __future__ import annotations

import torch

from longctx.engine.config import ModelConfig

FLOP_FORMULA = ("linear = 2*N*L + 2*hidden*vocab; attention = 2*2*(L^2/2)*H*D*layers; "
                "N = layers*(hidden*(H+2*Hkv)*D + H*D*hidden + 3*hidden*intermediate)")


def prefill_flops(cfg: ModelConfig, length: int) -> dict[str, int]:
    """FLOPs of a prefill of ``length`` tokens (formula in the module docstring).

    Returns:
        ``{"linear", "attention", "total"}`` (integers).
    """
    L = int(length)
    linear = 2 * cfg.nonembedding_parameters() * L + 2 * cfg.hidden_size * cfg.vocab_size
    attention = 2 * L * L * cfg.num_heads * cfg.head_dim * cfg.num_layers  # = 2 * 2 * (L^2 / 2) * H * D * layers
    return {"linear": linear, "attention": attention, "total": linear + attention}


def kv_cache_bytes(cfg: ModelConfig, length: int, dtype: torch.dtype) -> int:
    """2 x layers x KV heads x head_dim x length x element size (the engine's cache is exactly that)."""
    return cfg.kv_bytes_per_token(torch.empty((), dtype=dtype).element_size()) * int(length)
