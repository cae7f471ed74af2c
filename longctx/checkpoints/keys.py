"""Tensor-name tables between checkpoint layouts, as pure functions both ways (torchtune style).

The engine runs the official InternLM2 layout (one packed ``wqkv`` per layer). Hugging Face Llama
checkpoints are renamed with :data:`LLAMA_TO_INTERNLM2` and their q/k/v projections packed with
:func:`pack_wqkv`; GGUF (llama.cpp) names are first mapped to Llama names with
:data:`GGUF_TO_LLAMA`. :func:`llama_to_internlm2` and :func:`internlm2_to_llama` are inverses.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

import torch

from longctx.engine.config import ModelConfig
from longctx.errors import WeightError

# Llama (Hugging Face) name -> InternLM2 name; "{i}" is the layer index. q/k/v are packed separately.
LLAMA_TO_INTERNLM2 = {
    "model.embed_tokens.weight": "model.tok_embeddings.weight",
    "model.norm.weight": "model.norm.weight",
    "lm_head.weight": "output.weight",
    "model.layers.{i}.self_attn.o_proj.weight": "model.layers.{i}.attention.wo.weight",
    "model.layers.{i}.self_attn.o_proj.bias": "model.layers.{i}.attention.wo.bias",
    "model.layers.{i}.mlp.gate_proj.weight": "model.layers.{i}.feed_forward.w1.weight",
    "model.layers.{i}.mlp.up_proj.weight": "model.layers.{i}.feed_forward.w3.weight",
    "model.layers.{i}.mlp.down_proj.weight": "model.layers.{i}.feed_forward.w2.weight",
    "model.layers.{i}.input_layernorm.weight": "model.layers.{i}.attention_norm.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "model.layers.{i}.ffn_norm.weight",
}
INTERNLM2_TO_LLAMA = {v: k for k, v in LLAMA_TO_INTERNLM2.items()}
# The three Llama projections that are packed into one InternLM2 wqkv.
LLAMA_QKV = {"q_proj": 0, "k_proj": 1, "v_proj": 2}
# GGUF (llama.cpp) name -> Llama name.
GGUF_TO_LLAMA = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
}
# Keys that carry no weights and are dropped.
IGNORED = re.compile(r"(^|\.)rotary_emb\.inv_freq$")
_LAYER = re.compile(r"\.(\d+)\.")
_QKV = re.compile(r"model\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj)\.(weight|bias)")
_WQKV = re.compile(r"model\.layers\.(\d+)\.attention\.wqkv\.(weight|bias)")
_ATTN_BIAS = re.compile(r"model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)\.bias")

Tensors = Iterable[tuple[str, torch.Tensor]]


def _templated(key: str) -> tuple[str, str | None]:
    """'model.layers.7.x' -> ('model.layers.{i}.x', '7')."""
    m = _LAYER.search(key)
    if not m:
        return key, None
    return key[: m.start()] + ".{i}." + key[m.end():], m.group(1)


def convert_key(key: str, table: dict[str, str]) -> str:
    """Maps one checkpoint key through a key table.

    Raises:
        WeightError: the key is not in the table.
    """
    tmpl, layer = _templated(key)
    if tmpl not in table:
        raise WeightError(f"unexpected tensor {key!r} in checkpoint")
    out = table[tmpl]
    return out.replace("{i}", layer) if layer is not None else out


def pack_wqkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Packs Llama q/k/v projections (weights, or biases) into InternLM2's per-KV-head ``wqkv``.

    Args:
        q: ``[H * D, hidden]``; k, v: ``[Hkv * D, hidden]`` (biases: ``[H * D]``, ``[Hkv * D]``).

    Returns:
        ``[(H + 2 Hkv) * D, hidden]`` (biases: ``[(H + 2 Hkv) * D]``) with rows grouped ``[q x G, k, v]``
        per KV head.
    """
    if q.dim() == 1:  # biases: one column
        return pack_wqkv(q[:, None], k[:, None], v[:, None], cfg)[:, 0]  # [(H+2Hkv)*D]
    hkv, g, d = cfg.num_kv_heads, cfg.num_groups, cfg.head_dim
    hidden = q.shape[-1]
    qg = q.reshape(hkv, g, d, hidden)  # [Hkv, G, D, hidden]
    kg = k.reshape(hkv, 1, d, hidden)  # [Hkv, 1, D, hidden]
    vg = v.reshape(hkv, 1, d, hidden)  # [Hkv, 1, D, hidden]
    return torch.cat([qg, kg, vg], dim=1).reshape(hkv * (g + 2) * d, hidden)  # [(H+2Hkv)*D, hidden]


def unpack_wqkv(wqkv: torch.Tensor, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack_wqkv`: returns Llama ``(q, k, v)`` projection weights (or biases)."""
    if wqkv.dim() == 1:  # biases
        return tuple(x[:, 0] for x in unpack_wqkv(wqkv[:, None], cfg))  # type: ignore[return-value]
    hkv, g, d = cfg.num_kv_heads, cfg.num_groups, cfg.head_dim
    hidden = wqkv.shape[-1]
    w = wqkv.reshape(hkv, g + 2, d, hidden)  # [Hkv, G+2, D, hidden]
    q = w[:, :g].reshape(hkv * g * d, hidden)  # [H*D, hidden]
    k = w[:, g].reshape(hkv * d, hidden)  # [Hkv*D, hidden]
    v = w[:, g + 1].reshape(hkv * d, hidden)  # [Hkv*D, hidden]
    return q, k, v


def llama_to_internlm2(items: Tensors, cfg: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """Renames Llama-named tensors (Llama, Qwen2) into InternLM2 names, packing each layer's q/k/v weights (and
    biases, for Qwen2 and Llama with ``attention_bias``) into ``wqkv``.

    Raises:
        WeightError: an unknown key, attention biases, a mis-shaped or missing q/k/v projection.
    """
    pending: dict[tuple[str, str], list] = {}
    for key, w in items:
        if IGNORED.search(key):
            continue
        m = _QKV.fullmatch(key)
        if m:
            layer, proj, kind = m.groups()
            if kind == "bias" and not (cfg.qkv_bias or cfg.bias):
                raise WeightError(f"tensor {key!r}: attention biases in {cfg.source_layout} checkpoints without "
                                  "attention_bias are not supported")
            slot = pending.setdefault((layer, kind), [None, None, None])
            slot[LLAMA_QKV[proj]] = w
            if all(x is not None for x in slot):
                q, k, v = pending.pop((layer, kind))
                expect_q = (cfg.num_heads * cfg.head_dim, cfg.hidden_size)[: 2 if kind == "weight" else 1]
                expect_kv = (cfg.num_kv_heads * cfg.head_dim, cfg.hidden_size)[: 2 if kind == "weight" else 1]
                for name, x, want in (("q_proj", q, expect_q), ("k_proj", k, expect_kv), ("v_proj", v, expect_kv)):
                    if tuple(x.shape) != want:
                        raise WeightError(f"tensor model.layers.{layer}.self_attn.{name}.{kind} has shape "
                                          f"{tuple(x.shape)}, expected {want}")
                yield f"model.layers.{layer}.attention.wqkv.{kind}", pack_wqkv(q, k, v, cfg)
            continue
        if _ATTN_BIAS.fullmatch(key) and not cfg.bias:
            raise WeightError(f"tensor {key!r}: attention biases in {cfg.source_layout} checkpoints without "
                              "attention_bias are not supported")
        yield convert_key(key, LLAMA_TO_INTERNLM2), w
    for (layer, kind), slot in pending.items():
        missing = [n for n, i in LLAMA_QKV.items() if slot[i] is None]
        raise WeightError(f"missing tensor model.layers.{layer}.self_attn.{missing[0]}.{kind}")


def internlm2_to_llama(items: Tensors, cfg: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """Inverse of :func:`llama_to_internlm2`: InternLM2 names back to Llama names, ``wqkv`` unpacked."""
    for key, w in items:
        m = _WQKV.fullmatch(key)
        if m:
            for name, x in zip(LLAMA_QKV, unpack_wqkv(w, cfg)):
                yield f"model.layers.{m.group(1)}.self_attn.{name}.{m.group(2)}", x
        else:
            yield convert_key(key, INTERNLM2_TO_LLAMA), w


def to_internlm2(items: Tensors, cfg: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """A checkpoint's tensors in InternLM2 names, whatever its ``cfg.source_layout``."""
    if cfg.source_layout == "internlm2":
        return ((k, w) for k, w in items if not IGNORED.search(k))
    return llama_to_internlm2(items, cfg)
