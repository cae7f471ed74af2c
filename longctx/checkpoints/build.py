"""Building a :class:`~longctx.engine.model.Transformer` from a resolved checkpoint.

The model is created on the meta device, cast to the target dtype there (free), then allocated
and filled tensor by tensor: the target dtype is the only copy ever made. Unknown keys, missing
and mis-shaped tensors raise :class:`~longctx.errors.WeightError` naming the tensor.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterable

import torch

from longctx.checkpoints.keys import to_internlm2
from longctx.checkpoints.readers import iter_bin, iter_gguf, iter_safetensors, open_gguf
from longctx.checkpoints.resolve import CheckpointSpec
from longctx.engine.config import ModelConfig
from longctx.engine.model import Transformer
from longctx.errors import WeightError


@contextlib.contextmanager
def skip_param_init():
    """Skips nn.Linear / nn.Embedding random init while modules are built on the meta device.

    Every parameter is overwritten afterwards; skipping the init also avoids torch importing its
    compiler stack for meta-tensor ``normal_`` (several seconds per process).
    """
    saved = torch.nn.Linear.reset_parameters, torch.nn.Embedding.reset_parameters
    torch.nn.Linear.reset_parameters = lambda self: None
    torch.nn.Embedding.reset_parameters = lambda self: None
    try:
        yield
    finally:
        torch.nn.Linear.reset_parameters, torch.nn.Embedding.reset_parameters = saved


def empty_model(cfg: ModelConfig, *, device: torch.device, dtype: torch.dtype, attn: str = "sdpa") -> Transformer:
    """An uninitialized model allocated directly in ``dtype`` on ``device`` (embeddings tied if so configured)."""
    with torch.device("meta"), skip_param_init():
        model = Transformer(cfg, attn=attn)
    # Cast on the meta device (free), then allocate: the target dtype is the only copy ever made
    # (allocating float32 first and casting would need 2x a bf16 checkpoint's size at the peak).
    model = model.to(dtype=dtype).to_empty(device=device)
    if cfg.tie_word_embeddings:
        model.output.weight = model.model.tok_embeddings.weight
    return model


def build_model(cfg: ModelConfig, items: Iterable[tuple[str, torch.Tensor]], *, device: torch.device,
                dtype: torch.dtype, attn: str = "sdpa") -> Transformer:
    """Creates the model on ``device``/``dtype`` and fills it from InternLM2-named tensors.

    Raises:
        WeightError: unexpected, missing or mis-shaped tensors (naming the tensor).
    """
    model = empty_model(cfg, device=device, dtype=dtype, attn=attn)
    params = dict(model.named_parameters(remove_duplicate=False))
    expected = set(params)
    if cfg.tie_word_embeddings:
        expected.discard("output.weight")
    seen: set[str] = set()
    with torch.no_grad():
        for key, w in items:
            if key == "output.weight" and cfg.tie_word_embeddings:
                continue  # some tied checkpoints still store the copy
            if key not in params:
                raise WeightError(f"unexpected tensor {key!r} in checkpoint")
            p = params[key]
            if tuple(w.shape) != tuple(p.shape):
                raise WeightError(f"tensor {key!r} has shape {tuple(w.shape)}, expected {tuple(p.shape)}")
            p.copy_(w.to(device=device, dtype=dtype))
            seen.add(key)
    missing = sorted(expected - seen)
    if missing:
        raise WeightError(f"missing tensor {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    model.eval()
    return model


def load_checkpoint(spec: CheckpointSpec, *, device: torch.device, dtype: torch.dtype, attn: str = "sdpa",
                    rope_scaling: Any = ...) -> Transformer:
    """Loads a resolved checkpoint's weights into a :class:`Transformer`.

    Args:
        spec: from :func:`longctx.checkpoints.resolve.resolve`.
        device, dtype: where and in what dtype the weights live.
        attn: attention backend name.
        rope_scaling: a user-given rope scaling that overrides the file's (``...`` keeps the file's).
    """
    fmt, files = spec.weights
    cfg = spec.config
    if fmt == "gguf":
        items = iter_gguf(open_gguf(files[0]), cfg)
    elif fmt == "safetensors":
        items = iter_safetensors(list(files))
    else:
        items = iter_bin(list(files))
    if rope_scaling is not ...:
        cfg = cfg.with_rope_scaling(rope_scaling)
    return build_model(cfg, to_internlm2(items, cfg), device=device, dtype=dtype, attn=attn)
