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


# RoPE scaling methods the engine computes (see longctx.engine.rope); "longrope" (per-dimension factor lists
# switched by request length) is not among them.
ROPE_TYPES = ("linear", "dynamic", "yarn", "llama3")
_ROPE_PARAMS = ("original_max_position_embeddings", "low_freq_factor", "high_freq_factor", "beta_fast", "beta_slow",
                "attention_factor", "mscale", "mscale_all_dim", "truncate")


@dataclass(frozen=True)
class RopeScaling:
    """A RoPE scaling method and its parameters (transformers' ``rope_scaling`` / ``rope_parameters`` fields).

    Attributes:
        type: ``linear`` (position interpolation), ``dynamic`` (dynamic NTK), ``yarn`` or ``llama3``.
        factor: the scaling factor f (> 1 extends the context to about f x the original window).
        original_max_position_embeddings: the trained window the method scales from (yarn, llama3;
            None = the config's ``max_position_embeddings``).
        low_freq_factor, high_freq_factor: llama3's wavelength bounds (defaults 1 and 4 as Llama 3.1).
        beta_fast, beta_slow: yarn's ramp bounds in rotations (defaults 32 and 1).
        attention_factor, mscale, mscale_all_dim: yarn's cos/sin scaling (None = 0.1 ln f + 1).
        truncate: yarn rounds its ramp bounds to whole dimensions (transformers' default).
    """

    type: str = "dynamic"
    factor: float = 2.0
    original_max_position_embeddings: int | None = None
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool = True

    def as_dict(self) -> dict[str, Any]:
        """``{"type", "factor"}`` plus every parameter that differs from its default (results record this)."""
        out: dict[str, Any] = {"type": self.type, "factor": self.factor}
        for f in dataclasses.fields(self)[2:]:
            v = getattr(self, f.name)
            if v != f.default:
                out[f.name] = v
        return out

    def __str__(self) -> str:
        return f"{self.type}:{self.factor:g}"


def parse_rope_scaling(value: Any) -> RopeScaling | None:
    """Parses a rope-scaling request.

    Accepts ``None``, ``"none"``, ``"METHOD:FACTOR"`` (``"linear:4"``, ``"dynamic:2"``, ``"yarn:4"``,
    ``"llama3:8"``), a dict in transformers' spelling (``{"type"|"rope_type": ..., "factor": ...,
    other parameters}``, also transformers 5's ``rope_parameters`` with ``rope_type: "default"``) or a
    :class:`RopeScaling`.

    Raises:
        ConfigError: for anything else (unknown method, factor < 1, unknown parameter).
    """
    if value is None or isinstance(value, RopeScaling):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none", "off", "null", "default"):
            return None
        kind, _, factor = text.partition(":")
        try:
            value = {"type": kind, "factor": float(factor) if factor else 2.0}
        except ValueError:
            raise ConfigError(f"bad rope scaling {value!r}: expected METHOD:FACTOR, e.g. dynamic:2 or yarn:4") from None
    if not isinstance(value, dict):
        raise ConfigError(f"bad rope scaling {value!r}: expected None, 'METHOD:FACTOR' or a dict")
    kind = value.get("type", value.get("rope_type"))
    if kind in (None, "default", "none") and "factor" not in value:
        return None
    if kind not in ROPE_TYPES:
        raise ConfigError(f"unsupported rope scaling method {kind!r}: supported are none, {', '.join(ROPE_TYPES)}")
    try:
        factor = float(value.get("factor", 2.0))
    except (TypeError, ValueError):
        raise ConfigError(f"bad rope scaling factor {value.get('factor')!r}") from None
    if not factor >= 1.0:
        raise ConfigError(f"rope scaling factor must be >= 1, got {factor:g}")
    params: dict[str, Any] = {}
    for key in _ROPE_PARAMS:
        if value.get(key) is None:
            continue
        try:
            v = value[key]
            params[key] = bool(v) if key == "truncate" else int(v) if key.startswith("original") else float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"bad rope scaling parameter {key}={value[key]!r}") from None
    if kind == "llama3" and not params.get("high_freq_factor", 4.0) > params.get("low_freq_factor", 1.0):
        raise ConfigError("llama3 rope scaling needs high_freq_factor > low_freq_factor")
    return RopeScaling(kind, factor, **params)


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
        qkv_bias: only the q/k/v projections carry biases (Qwen2).
        source_layout: ``"internlm2"``, ``"llama"`` or ``"qwen2"`` (checkpoint naming).
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
    qkv_bias: bool = False
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
        """Default longest request. Without scaling: M. Dynamic NTK extrapolates past M (InternLM2 reaches
        200K this way): max(M x factor, 262144). A fixed method (linear, yarn, llama3) covers its original
        window x factor: max(M, original x factor). ``max_context`` overrides it."""
        rs = self.rope_scaling
        if rs is None:
            return self.max_position_embeddings
        if rs.type == "dynamic":
            return max(int(self.max_position_embeddings * rs.factor), DYNAMIC_CONTEXT_CAP)
        orig = rs.original_max_position_embeddings or self.max_position_embeddings
        return max(self.max_position_embeddings, int(orig * rs.factor))

    def nonembedding_parameters(self) -> int:
        """N: the weights every token multiplies (wqkv, wo, w1, w3, w2 of every layer; no norms, no embeddings)."""
        d, h = self.hidden_size, self.head_dim
        qkv = d * (self.num_heads + 2 * self.num_kv_heads) * h
        attn = qkv + self.num_heads * h * d
        mlp = 3 * d * self.intermediate_size
        return self.num_layers * (attn + mlp)

    def num_parameters(self) -> int:
        """Parameter count (embeddings and output counted separately unless tied)."""
        d = self.hidden_size
        norms = self.num_layers * 2 * d + d
        emb = self.vocab_size * d
        return self.nonembedding_parameters() + norms + emb * (1 if self.tie_word_embeddings else 2)

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """KV-cache bytes one token costs over all layers."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["rope_scaling"] = self.rope_scaling.as_dict() if self.rope_scaling else None
        if not self.qkv_bias:
            del out["qkv_bias"]  # a field added later appears only when set, so earlier results keep their hash
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

    Supports ``model_type`` ``internlm2``, ``llama`` (Llama 2/3.x) and ``qwen2`` (Qwen2/2.5: biases on
    q/k/v, no sliding window). RoPE settings are read in both spellings: ``rope_theta`` + ``rope_scaling``
    (transformers 4) and ``rope_parameters`` (transformers 5, which holds ``rope_theta`` too).

    Raises:
        ConfigError: unsupported ``model_type`` or RoPE method, missing fields.
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"config.json must hold a JSON object, not a {type(cfg).__name__}")
    model_type = cfg.get("model_type")
    if model_type not in ("internlm2", "llama", "qwen2"):
        raise ConfigError(f"unsupported model_type {model_type!r}: longctx runs 'internlm2', 'llama' and 'qwen2' "
                          "checkpoints")
    if model_type == "qwen2" and cfg.get("use_sliding_window"):
        raise ConfigError("qwen2 checkpoints with use_sliding_window are not supported")
    rope_params = cfg.get("rope_parameters") if isinstance(cfg.get("rope_parameters"), dict) else {}
    rope_scaling = cfg.get("rope_scaling") if cfg.get("rope_scaling") is not None else (rope_params or None)
    theta = cfg.get("rope_theta") if cfg.get("rope_theta") is not None else rope_params.get("rope_theta", 10000.0)
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
            rope_theta=float(theta),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_scaling=parse_rope_scaling(rope_scaling),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            bias=bool(cfg.get("bias", False)) if model_type == "internlm2" else bool(cfg.get("attention_bias", False)),
            qkv_bias=model_type == "qwen2",
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
