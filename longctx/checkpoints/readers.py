"""Reading tensors from weight files: safetensors (single / sharded), PyTorch ``.bin``, GGUF.

Tensors are yielded one at a time under the file's own names, so no full copy of the model ever
sits in host memory; GGUF tensors are dequantized to float32 with ``gguf`` and renamed to Llama
names. Every unreadable file raises :class:`~longctx.errors.WeightError` naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError, safe_open

from longctx.checkpoints.keys import GGUF_TO_LLAMA, convert_key
from longctx.engine.config import ModelConfig, from_hf_dict
from longctx.errors import ConfigError, WeightError


def weight_files(model_dir: Path) -> tuple[str, list[Path]]:
    """Finds the weight files of a checkpoint directory.

    Returns:
        ``(format, files)`` with format ``"safetensors"``, ``"bin"`` or ``"gguf"`` (the first
        ``*.gguf`` in name order: a directory is one checkpoint).

    Raises:
        WeightError: no weights, or an index naming a missing shard.
    """
    for index_name, fmt in (("model.safetensors.index.json", "safetensors"), ("pytorch_model.bin.index.json", "bin")):
        index = model_dir / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
                raise WeightError(f"corrupt index {index}: {e}") from None
            files = [model_dir / f for f in sorted(set(weight_map.values()))]
            for f in files:
                if not f.is_file():
                    raise WeightError(f"shard {f.name} named in {index_name} is missing from {model_dir}")
            return fmt, files
    single = sorted(model_dir.glob("*.safetensors"))
    if single:
        return "safetensors", single
    bins = sorted(model_dir.glob("pytorch_model*.bin"))
    if bins:
        return "bin", bins
    ggufs = sorted(model_dir.glob("*.gguf"))
    if ggufs:
        return "gguf", ggufs[:1]
    raise WeightError(f"no weights (*.safetensors, pytorch_model*.bin or *.gguf) in {model_dir}")


def iter_safetensors(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """Yields ``(name, tensor)`` from safetensors files (CPU)."""
    for f in files:
        try:
            with safe_open(str(f), framework="pt", device="cpu") as sf:
                for key in sf.keys():
                    yield key, sf.get_tensor(key)
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightError(f"cannot read weight file {f.name}: {e}") from None


def iter_bin(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """Yields ``(name, tensor)`` from PyTorch ``.bin`` files (``weights_only``, memory-mapped)."""
    for f in files:
        try:
            state = torch.load(str(f), map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # torch raises many types for corrupt files
            raise WeightError(f"cannot read weight file {f.name}: {str(e).splitlines()[0][:200]}") from None
        if not isinstance(state, dict):
            raise WeightError(f"weight file {f.name} does not hold a state dict")
        yield from state.items()
        del state


def open_gguf(path: Path) -> Any:
    """A ``gguf.GGUFReader`` on ``path``.

    Raises:
        WeightError: the file cannot be read as GGUF.
    """
    from gguf import GGUFReader  # optional at import time: the GPU machine has no gguf, and HF checkpoints need none

    try:
        return GGUFReader(str(path))
    except Exception as e:  # gguf raises many types for damaged files
        raise WeightError(f"cannot read GGUF file {path.name}: {e}") from None


def gguf_hf_config(reader: Any, path: Path, name: str | None = None) -> dict:
    """A Llama GGUF's metadata as an HF-style ``config.json`` dict (``_name`` holds the model name).

    Raises:
        ConfigError: an architecture other than ``llama``.
    """
    def field(key, default=None):
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch = field("general.architecture")
    if arch != "llama":
        raise ConfigError(f"unsupported GGUF architecture {arch!r}: only 'llama' is supported")
    names = {t.name for t in reader.tensors}
    return {
        "model_type": "llama",
        "hidden_size": int(field("llama.embedding_length")),
        "intermediate_size": int(field("llama.feed_forward_length")),
        "num_hidden_layers": int(field("llama.block_count")),
        "num_attention_heads": int(field("llama.attention.head_count")),
        "num_key_value_heads": int(field("llama.attention.head_count_kv")),
        "vocab_size": int(field("llama.vocab_size") or len(field("tokenizer.ggml.tokens"))),
        "max_position_embeddings": int(field("llama.context_length")),
        "rope_theta": float(field("llama.rope.freq_base", 10000.0)),
        "rms_norm_eps": float(field("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        "tie_word_embeddings": "output.weight" not in names,
        "torch_dtype": "float32",
        "rope_scaling": None,
        "_name": name or field("general.name") or path.stem,
    }


def gguf_model_config(path: Path, name: str | None = None) -> ModelConfig:
    """The configuration of a Llama GGUF file (its metadata read as a ``config.json``)."""
    raw = gguf_hf_config(open_gguf(path), path, name)
    return from_hf_dict(raw, name=raw["_name"])


def _gguf_reverse_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undoes llama.cpp's q/k row permutation (interleaved RoPE pairs -> rotate_half halves).

    Args:
        w: ``[n_head * D, hidden]`` as stored in GGUF.
    """
    rows, hidden = w.shape
    d = rows // n_head
    return w.reshape(n_head, d // 2, 2, hidden).transpose(1, 2).reshape(rows, hidden)  # [n_head*D, hidden]


def iter_gguf(reader: Any, cfg: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """Yields Llama-named float32 tensors from a GGUF reader (dequantized, q/k un-permuted)."""
    from gguf import dequantize  # see open_gguf

    for t in reader.tensors:
        key = convert_key(t.name, GGUF_TO_LLAMA)
        arr = dequantize(t.data, t.tensor_type)
        shape = tuple(int(x) for x in reversed(list(t.shape)))
        w = torch.from_numpy(arr.reshape(shape).astype("float32", copy=True))  # a writable copy
        if t.name.endswith("attn_q.weight"):
            w = _gguf_reverse_permute(w, cfg.num_heads)
        elif t.name.endswith("attn_k.weight"):
            w = _gguf_reverse_permute(w, cfg.num_kv_heads)
        yield key, w
