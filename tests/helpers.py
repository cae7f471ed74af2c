"""Test helpers: tiny random checkpoints written in the official InternLM2 layout."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def tiny_llama(heads: int = 4, kv_heads: int = 2, *, layers: int = 2, hidden: int = 64, vocab: int = 300,
               max_pos: int = 64, theta: float = 10000.0, rope_scaling: dict | None = None, seed: int = 0):
    """A random transformers ``LlamaForCausalLM`` (the independent reference) in float32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    kwargs = dict(hidden_size=hidden, intermediate_size=2 * hidden + 32, num_hidden_layers=layers,
                  num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                  max_position_embeddings=max_pos, rms_norm_eps=1e-5, tie_word_embeddings=False)
    if rope_scaling is None:
        cfg = LlamaConfig(rope_theta=theta, **kwargs)
    else:
        cfg = LlamaConfig(rope_theta=theta, rope_scaling=dict(rope_scaling, rope_theta=theta), **kwargs)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norm weights so RMSNorm scaling is exercised
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return model


def internlm2_state_dict(ref) -> dict[str, torch.Tensor]:
    """Converts a Llama reference's weights into the official InternLM2 tensor names and packing."""
    cfg = ref.config
    h, hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    d = cfg.hidden_size // h
    g = h // hkv
    sd = ref.state_dict()
    out = {"model.tok_embeddings.weight": sd["model.embed_tokens.weight"], "model.norm.weight": sd["model.norm.weight"],
           "output.weight": sd["lm_head.weight"]}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        q = sd[p + "self_attn.q_proj.weight"].reshape(hkv, g, d, -1)  # [Hkv, G, D, hidden]
        k = sd[p + "self_attn.k_proj.weight"].reshape(hkv, 1, d, -1)  # [Hkv, 1, D, hidden]
        v = sd[p + "self_attn.v_proj.weight"].reshape(hkv, 1, d, -1)  # [Hkv, 1, D, hidden]
        out[p + "attention.wqkv.weight"] = torch.cat([q, k, v], 1).reshape(-1, cfg.hidden_size)
        out[p + "attention.wo.weight"] = sd[p + "self_attn.o_proj.weight"]
        out[p + "feed_forward.w1.weight"] = sd[p + "mlp.gate_proj.weight"]
        out[p + "feed_forward.w3.weight"] = sd[p + "mlp.up_proj.weight"]
        out[p + "feed_forward.w2.weight"] = sd[p + "mlp.down_proj.weight"]
        out[p + "attention_norm.weight"] = sd[p + "input_layernorm.weight"]
        out[p + "ffn_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
    return {k: v.contiguous().clone() for k, v in out.items()}


def internlm2_config(ref, rope_scaling: dict | None = None) -> dict:
    """An InternLM2 ``config.json`` dict (field names of the official release) for a Llama reference."""
    c = ref.config
    return {
        "architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2", "bias": False,
        "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads, "vocab_size": c.vocab_size,
        "max_position_embeddings": c.max_position_embeddings, "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": float(getattr(c, "rope_theta", None) or c.rope_parameters["rope_theta"]),
        "rope_scaling": rope_scaling, "tie_word_embeddings": False, "torch_dtype": "float32",
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "hidden_act": "silu",
    }


def write_internlm2_checkpoint(ref, out: Path, fmt: str = "safetensors", shards: int = 2,
                               rope_scaling: dict | None = None) -> Path:
    """Writes a sharded InternLM2-layout checkpoint (safetensors or .bin) with its index and config."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    sd = internlm2_state_dict(ref)
    keys = list(sd)
    per = -(-len(keys) // shards)
    weight_map = {}
    for s in range(shards):
        part = {k: sd[k] for k in keys[s * per:(s + 1) * per]}
        if fmt == "safetensors":
            name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            save_file(part, str(out / name), metadata={"format": "pt"})
        else:
            name = f"pytorch_model-{s + 1:05d}-of-{shards:05d}.bin"
            torch.save(part, out / name)
        weight_map.update({k: name for k in part})
    index = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
    (out / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (out / "config.json").write_text(json.dumps(internlm2_config(ref, rope_scaling)))
    return out


# --------------------------------------------------------------------------- QA documents
FACT = "Captain Harold Whitby lives in the city of Lisbon."
QUESTION = "In which city does Captain Harold Whitby live?"


def haystack_with_fact(chars: int, fact: str = FACT) -> str:
    """The first ``chars`` characters of Austen with ``fact`` as its own paragraph in the middle
    (at the last paragraph break before the middle, else at the middle itself)."""
    from longctx.data import load_haystack_text

    text = load_haystack_text("austen")[:chars]
    cut = text.rfind("\n\n", 0, chars // 2)
    cut = cut if cut > 0 else chars // 2
    return text[:cut] + "\n\n" + fact + "\n\n" + text[cut:]
