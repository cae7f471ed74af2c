"""Prefill time and peak memory at contexts too long to prefill whole within a GPU session.

A layer-wise prefill (``longctx.engine.model.DecoderLayer.forward_layerwise``) runs every layer over the
whole prompt before the next, and every layer has the same shape and work. So timing the first ``k``
layers and multiplying by the layer count gives the whole prefill's time (the embedding lookup and the
last position's logits are negligible next to one layer), and the peak memory reached in the first layer
is the whole prefill's: the KV cache is allocated for all T positions up front and every layer allocates
the same buffers. Used by ``run_all.py``'s ``probe1m`` and ``probe20b`` steps.
"""
from __future__ import annotations

import statistics
import time

import torch

from longctx.bench.measure import module_bytes
from longctx.engine.attention import ATTENTION_BACKENDS
from longctx.engine.config import ModelConfig, get_preset
from longctx.engine.runtime import random_model

#: InternLM2.5-7B-Chat-1M has InternLM2-7B's shape (32 layers, hidden 4096, 32 query / 8 KV heads of 128,
#: intermediate 14336, vocab 92544); LMDeploy serves it with dynamic NTK factor 2.5 and a 1,048,576-token
#: session (OpenCompass ``configs/models/hf_internlm/lmdeploy_internlm2_5_7b_chat_1m.py``). The RoPE base
#: changes no shape and no kernel, so prefill time and memory do not depend on it.
CHAT_1M_SCALING = "dynamic:2.5"


def probe(cfg: ModelConfig | str, length: int, *, kv_dtype: str, layers: int = 2, chunk: int = 8192,
          rope_scaling: str | None = None, device: str = "cuda", dtype: str = "bfloat16", seed: int = 0) -> dict:
    """Times ``layers`` layers of a layer-wise prefill of ``length`` random tokens and extrapolates.

    Returns a dict: ``per_layer_s`` (median over the timed layers after the first, or the first when only
    one), ``layer_s`` (all timed layers), ``est_prefill_s`` (``per_layer_s`` x the model's layers),
    ``peak_bytes`` (CUDA peak allocated; None on CPU), ``kv_bytes``, ``weights_bytes`` and the settings.
    """
    if isinstance(cfg, str):
        cfg = get_preset(cfg)
    if rope_scaling is not None:
        cfg = cfg.with_rope_scaling(rope_scaling)
    dev = torch.device(device)
    m = random_model(cfg, device=dev, dtype=dtype, seed=seed, chunk_size=chunk, max_context=length,
                     kv_dtype=kv_dtype, prefill="layerwise")
    net = m.net
    attn_fn = ATTENTION_BACKENDS[net.attn_name]
    weights = module_bytes(net)
    gen = torch.Generator(device=dev).manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (length,), device=dev, generator=gen)  # [T]

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    cache = m.new_cache(length)
    base = m.rope_base_for(length)
    times = []
    with torch.inference_mode():
        h, cos, sin = net.embed(ids, 0, base)  # [1, T, hidden], [T, D] x 2
        for i in range(min(layers, cfg.num_layers)):
            sync()
            t0 = time.perf_counter()
            h = net.model.layers[i].forward_layerwise(h, cos, sin, cache, i, 0, attn_fn, chunk)
            sync()
            times.append(time.perf_counter() - t0)
    per_layer = statistics.median(times[1:]) if len(times) > 1 else times[0]
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    return {"model": cfg.name, "length": length, "kv_dtype": kv_dtype, "chunk": chunk, "dtype": dtype,
            "rope_scaling": rope_scaling, "layers_timed": len(times), "num_layers": cfg.num_layers,
            "layer_s": [round(t, 4) for t in times], "per_layer_s": per_layer,
            "est_prefill_s": per_layer * cfg.num_layers, "peak_bytes": peak, "kv_bytes": cache.nbytes,
            "weights_bytes": weights}
