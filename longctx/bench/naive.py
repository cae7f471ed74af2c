"""The naive baseline of a NIAH sweep: every prompt prefilled from scratch by transformers, then greedy
decoding of a fixed number of tokens, one prompt after another -- what a harness calling
``model.generate`` per cell does. Timed against the engine's sweep on the same prompts (the prompts a
``longctx needle --dump-prompts DIR`` run wrote, re-encoded to the exact ids the engine saw).

Random weights of the engine model's shape (``bench.spec.llama_config``): for timing, not answers.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from longctx.bench.spec import llama_config
from longctx.engine.config import ModelConfig, get_preset


def random_weights_shape(preset: str, tokenizer) -> ModelConfig:
    """The shape ``needle --random-weights PRESET`` builds: the preset's, its vocabulary grown to the
    tokenizer's where it is smaller (only ``tiny``), so every token id has an embedding row."""
    cfg = get_preset(preset)
    return cfg if cfg.vocab_size >= tokenizer.vocab_size else dataclasses.replace(cfg, vocab_size=tokenizer.vocab_size)


def dumped_prompt_ids(folder: str | Path, tokenizer) -> list[tuple[str, list[int]]]:
    """``(file name, ids)`` of every ``*.txt`` prompt in ``folder`` (sorted by name), re-encoded with
    :func:`longctx.niah.seams.reencode` (control tokens by id: the ids the engine saw)."""
    from longctx.niah.seams import reencode

    return [(p.name, reencode(tokenizer, p.read_text(encoding="utf-8"))) for p in sorted(Path(folder).glob("*.txt"))]


def transformers_loop(cfg: ModelConfig, prompts: list[list[int]], new_tokens: int, *, device: str | torch.device,
                      dtype: torch.dtype, seed: int = 0, deadline: Optional[float] = None,
                      on_prompt: Optional[Callable[[int, int, float], None]] = None) -> dict:
    """Prefills each prompt from scratch with a random ``LlamaForCausalLM`` of ``cfg``'s shape and decodes
    ``new_tokens`` greedily (no stop token), one prompt at a time.

    Returns ``{"prompts", "prompt_tokens", "new_tokens", "seconds", "per_prompt_s"}`` over the prompts run:
    all, or those started before ``deadline`` (a ``time.perf_counter()`` value); ``on_prompt(i, length,
    seconds)`` is called after each prompt.
    """
    from transformers import LlamaForCausalLM  # transformers is optional: only the baseline needs it

    dev = torch.device(device)
    old = torch.get_default_dtype()
    torch.manual_seed(seed)
    try:
        torch.set_default_dtype(dtype)
        with dev:
            model = LlamaForCausalLM(llama_config(cfg)).eval()
    finally:
        torch.set_default_dtype(old)
    times = []
    for i, ids in enumerate(prompts):
        if deadline is not None and time.perf_counter() > deadline:
            break
        x = torch.tensor([ids], device=dev)  # [1, T]
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           do_sample=False, eos_token_id=None, pad_token_id=0)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
        if on_prompt is not None:
            on_prompt(i, len(ids), times[-1])
    return {"prompts": len(times), "prompt_tokens": sum(len(p) for p in prompts[:len(times)]), "new_tokens": new_tokens,
            "seconds": sum(times), "per_prompt_s": times}
