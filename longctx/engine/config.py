"""Model configuration: one dataclass for InternLM2-layout models, named presets, and
``config.json`` parsing for ``model_type`` ``internlm2`` and ``llama``.

Llama-layout checkpoints (q/k/v/o_proj, gate/up/down_proj) are described by the same
config and converted into the InternLM2 layout when their weights are loaded.
"""
from __future__ import annotations

from longctx.errors import ConfigError

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")


def parse_device(device: Any) -> str:
    """Checks a device string without torch: ``auto``, ``cpu``, ``mps``, ``cuda`` or ``cuda:N``.

    Raises:
        ConfigError: anything else (``tpu``, ``cuda:abc``, ``""``).
    """
    text = str(device).strip().lower()
    if not _DEVICE_RE.match(text):
        raise ConfigError(f"invalid device {str(device)!r}: expected auto, cpu, cuda or cuda:N")
    return text


def check_sampling(temperature: float, top_p: float) -> None:
    """Refuses a negative (or non-finite) temperature and a top-p outside (0, 1].

    Raises:
        ConfigError: with the offending value.
    """
    if not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"temperature must be >= 0 (got {temperature:g})")
    if not math.isfinite(top_p) or not 0 < top_p <= 1:
        raise ConfigError(f"top-p must be in (0, 1] (got {top_p:g})")


# Default context cap when dynamic NTK is on (it has no natural limit); --max-context overrides.
DYNAMIC_CONTEXT_CAP = 262144


@dataclass(frozen=True)
class RopeScaling:
    """RoPE scaling request.

    Attributes:
        type: only ``"dynamic"`` (dynamic NTK) is supported.
        factor: the scaling factor f (> 1 extends the context to f x max_position_embeddings).
    """

    type: str = "dynamic"
    factor: float = 2.0

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "factor": self.factor}

    def __str__(self) -> str:
        return f"{self.type}:{self.factor:g}"


def parse_rope_scaling(value: Any) -> RopeScaling | None:
    """Parses a rope-scaling request.

    Accepts ``None``, ``"none"``, ``"dynamic:2.0"``, ``{"type": "dynamic", "factor": 2.0}``
    (``"rope_type"`` is accepted as the key too) or a :class:`RopeScaling`.

    Raises:
        ConfigError: for anything else (unknown type, factor < 1).
    """
    if value is None or isinstance(value, RopeScaling):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none", "off", "null"):
            return None
        kind, _, factor = text.partition(":")
        try:
            value = {"type": kind, "factor": float(factor) if factor else 2.0}
        except ValueError:
            raise ConfigError(f"bad rope scaling {value!r}: expected 'dynamic:FACTOR', e.g. dynamic:2.0") from None
    if not isinstance(value, dict):
        raise ConfigError(f"bad rope scaling {value!r}: expected None, 'dynamic:F' or a dict")
    kind = value.get("type", value.get("rope_type"))
    if kind in (None, "default", "none") and "factor" not in value:
        return None
    if kind != "dynamic":
        raise ConfigError(f"unsupported rope scaling type {kind!r}: only 'dynamic' (dynamic NTK) is supported")
    try:
        factor = float(value.get("factor", 2.0))
    except (TypeError, ValueError):
        raise ConfigError(f"bad rope scaling factor {value.get('factor')!r}") from None
    if not factor >= 1.0:
        raise ConfigError(f"rope scaling factor must be >= 1, got {factor:g}")
    return RopeScaling("dynamic", factor)


@dataclass
class ModelConfig:
    """Shapes and hyper-parameters of an InternLM2-layout decoder.

    Attributes:
        hidden_size: model width.
        intermediate_size: SwiGLU width.
        num_layers: decoder layers.
        num_heads: query heads.
        num_kv_heads: key/value heads (GQA groups = num_heads // num_kv_heads).
        vocab_size: embedding rows.
        max_position_embeddings: trained context M.
        rope_theta: RoPE base.
        rms_norm_eps: RMSNorm epsilon.
        rope_scaling: dynamic NTK request or None.
        tie_word_embeddings: output projection shares the embedding matrix.
        bias: qkv/o projections carry biases (InternLM2 ``bias`` flag).
        source_layout: ``"internlm2"`` or ``"llama"`` (checkpoint naming).
        torch_dtype: dtype the checkpoint was saved in (``"bfloat16"`` ...).
        name: a human name for the model.
    """

    hidden_size: int = 4096
    intermediate_size: int = 14336
    num_layers: int = 32
    num_heads: int = 32
    num_kv_heads: int = 8
    vocab_size: int = 92544
    max_position_embeddings: int = 32768
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-5
    rope_scaling: RopeScaling | None = None
    tie_word_embeddings: bool = False
    bias: bool = False
    source_layout: str = "internlm2"
    torch_dtype: str = "bfloat16"
    head_dim_override: int | None = None
    name: str = "internlm2"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "vocab_size",
                     "max_position_embeddings"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer (got {v!r})")
        if self.head_dim_override is not None and self.head_dim_override <= 0:
            raise ConfigError(f"head_dim must be a positive integer (got {self.head_dim_override!r})")
        if not math.isfinite(self.rope_theta) or self.rope_theta <= 0:
            raise ConfigError(f"rope_theta must be positive (got {self.rope_theta!r})")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_attention_heads ({self.num_heads}) must be a multiple of num_key_value_heads ({self.num_kv_heads})"
            )
        if self.head_dim_override is None and self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim must be even for RoPE, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.hidden_size // self.num_heads

    @property
    def num_groups(self) -> int:
        """G = query heads per KV head."""
        return self.num_heads // self.num_kv_heads

    @property
    def context_limit(self) -> int:
        """Default longest request: M without scaling; with dynamic NTK, which extrapolates past M
        (InternLM2 reaches 200K this way), max(M x factor, 262144). ``max_context`` overrides it."""
        if self.rope_scaling is None:
            return self.max_position_embeddings
        return max(int(self.max_position_embeddings * self.rope_scaling.factor), DYNAMIC_CONTEXT_CAP)

    def num_parameters(self) -> int:
        """Parameter count (embeddings and output counted separately unless tied)."""
        d, h = self.hidden_size, self.head_dim
        qkv = d * (self.num_heads + 2 * self.num_kv_heads) * h
        attn = qkv + self.num_heads * h * d
        mlp = 3 * d * self.intermediate_size
        layer = attn + mlp + 2 * d
        emb = self.vocab_size * d
        return self.num_layers * layer + emb * (1 if self.tie_word_embeddings else 2) + d

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """KV-cache bytes one token costs over all layers."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["rope_scaling"] = self.rope_scaling.as_dict() if self.rope_scaling else None
        return out

    def fingerprint(self) -> str:
        """Short sha256 of the shape-defining fields (for results files)."""
        d = self.to_dict()
        d.pop("name", None)
        d.pop("extra", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def with_rope_scaling(self, rope_scaling: Any) -> "ModelConfig":
        """A copy with ``rope_scaling`` replaced (user request overrides the file)."""
        return dataclasses.replace(self, rope_scaling=parse_rope_scaling(rope_scaling))


PRESETS: dict[str, ModelConfig] = {
    # From the official config.json of internlm/internlm2-chat-7b (current release: no rope scaling).
    "internlm2-chat-7b": ModelConfig(
        hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32, num_kv_heads=8,
        vocab_size=92544, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-5,
        rope_scaling=None, torch_dtype="bfloat16", name="internlm2-chat-7b",
    ),
    # From the official config.json of internlm/internlm2-chat-20b.
    "internlm2-chat-20b": ModelConfig(
        hidden_size=6144, intermediate_size=16384, num_layers=48, num_heads=48, num_kv_heads=8,
        vocab_size=92544, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-5,
        rope_scaling=RopeScaling("dynamic", 3.0), torch_dtype="float16", name="internlm2-chat-20b",
    ),
    # A tiny shape for tests.
    "tiny": ModelConfig(
        hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2,
        vocab_size=512, max_position_embeddings=256, rope_theta=10000.0, rms_norm_eps=1e-5,
        torch_dtype="float32", name="tiny",
    ),
}


def get_preset(name: str) -> ModelConfig:
    """Returns a copy of a named preset.

    Raises:
        ConfigError: unknown name (lists the known ones).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return dataclasses.replace(PRESETS[name])


def from_hf_dict(cfg: dict[str, Any], name: str = "model") -> ModelConfig:
    """Builds a :class:`ModelConfig` from a Hugging Face ``config.json`` dict.

    Supports ``model_type`` ``internlm2`` and ``llama`` (plus close Llama relatives with the
    same tensor layout: ``mistral`` without sliding windows, ``qwen2`` is not supported).

    Raises:
        ConfigError: unsupported ``model_type`` or missing fields.
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"config.json must hold a JSON object, not a {type(cfg).__name__}")
    model_type = cfg.get("model_type")
    if model_type not in ("internlm2", "llama"):
        raise ConfigError(f"unsupported model_type {model_type!r}: longctx runs 'internlm2' and 'llama' checkpoints")
    try:
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        if heads <= 0:
            raise ConfigError(f"num_attention_heads must be a positive integer (got {heads})")
        kwargs = dict(
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_layers=int(cfg["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            vocab_size=int(cfg["vocab_size"]),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
            rope_theta=float(cfg.get("rope_theta", 10000.0)),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_scaling=parse_rope_scaling(cfg.get("rope_scaling")),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            bias=bool(cfg.get("bias", False)) if model_type == "internlm2" else bool(cfg.get("attention_bias", False)),
            source_layout=model_type,
            torch_dtype=str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32"),
            head_dim_override=int(cfg["head_dim"]) if cfg.get("head_dim") and int(cfg["head_dim"]) != hidden // heads else None,
            name=name,
        )
    except KeyError as e:
        raise ConfigError(f"config.json lacks required field {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.json has a field that is not a number: {e}") from None
    if model_type == "llama" and cfg.get("mlp_bias"):
        raise ConfigError("llama checkpoints with mlp_bias are not supported")
    return ModelConfig(**kwargs)


def load_config(model_dir: str | Path) -> ModelConfig:
    """Reads ``config.json`` from a checkpoint directory.

    Raises:
        ConfigError: missing directory / file, bad JSON, unsupported model type.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"model directory not found: {model_dir}")
    path = model_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"no config.json in {model_dir}")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    return from_hf_dict(cfg, name=model_dir.name)
