"""What a prefill benchmark runs: the options, and the model *spec* each point builds.

A spec is a plain, JSON-serialisable dict (device, dtype, chunk, seed, the model configuration
and where its weights come from), so the fresh subprocess of an isolated point
(:mod:`longctx.bench.runner`) rebuilds exactly the same model. Two builders read it:
:func:`build_engine` (the engine, ``longctx``) and :func:`build_baseline` (a transformers
``LlamaForCausalLM`` of the same shape, ``attn_implementation="sdpa"``). The baseline never uses
dynamic-NTK RoPE: the RoPE base changes no shape and no kernel, so prefill time and memory do not
depend on it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

import torch

from longctx.engine.config import ConfigError, ModelConfig, parse_rope_scaling
from longctx.units import parse_size_list
from longctx.engine.runtime import load_model, random_model

IMPLS = ("longctx", "transformers")
BASELINES = ("transformers", "none")
DTYPE_NAMES = {"auto": "auto", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
               "fp32": "float32", "float32": "float32"}


@dataclass
class BenchOptions:
    """What to benchmark.

    Attributes:
        lengths: prompt lengths (tokens), run in increasing order.
        model: checkpoint directory (None with no preset: the embedded default model).
        preset: a named shape (``internlm2-chat-7b`` ...); needs ``random_weights``.
        random_weights: random weights of the preset's shape (no tokenizer; random ids either way).
        chunk: engine prefill chunk (None: the engine's default for the device).
        prefill: engine prefill mode: ``auto`` (chunked here, as ``chunk`` is always set) | ``chunked`` |
            ``layerwise`` (attention in one shot, projections and MLP in chunks of ``chunk``).
        baseline: ``transformers`` or ``none``.
        dtype: ``auto`` | ``bf16`` | ``fp16`` | ``fp32`` (auto: fp32 on CPU, the checkpoint's half type on CUDA).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        attn: engine attention backend (``auto`` | ``sdpa`` | ``flash`` | ``eager``).
        rope_scaling: e.g. ``dynamic:2`` (engine only; see the module docstring).
        repeats: timed prefills per point (median reported).
        rounds: with ``isolate``, the whole (length x implementation) sequence is run this many times,
            alternating implementations, and each point reports the median over rounds (every
            round is a fresh subprocess): robust against a machine whose load drifts.
        threads: torch intra-op threads for every point (default: torch's default). One thread gives
            comparisons that hold on a shared, loaded machine.
        time_budget: seconds; points whose predicted end passes it are skipped.
        isolate: one fresh subprocess per point (default: on CPU only, where peak RSS is process-wide).
        warmup: warm-up prompt length (default: 256 on CPU; chunk + 512 on CUDA so both kernel paths warm).
        seed: weights (random models) and token ids.
        probe_only_lengths: lengths (subset of ``lengths``) where the engine only checks that the memory
            fits (KV cache of L + one prefill chunk) instead of timing a full prefill.
        probe_when_over_budget: an engine point skipped for the time budget becomes a memory probe
            (status ``ok (memory probe)``) when that still fits the budget.
    """

    lengths: list[int]
    model: str | None = None
    preset: str | None = None
    random_weights: bool = False
    chunk: int | None = None
    prefill: str = "auto"
    baseline: str = "transformers"
    dtype: str = "auto"
    device: str = "auto"
    attn: str = "auto"
    rope_scaling: str | None = None
    repeats: int = 1
    rounds: int = 1
    threads: int | None = None
    time_budget: float | None = None
    isolate: bool | None = None
    warmup: int | None = None
    seed: int = 0
    probe_only_lengths: list[int] = field(default_factory=list)
    probe_when_over_budget: bool = False

    def validate(self) -> None:
        if not self.lengths:
            raise ConfigError("no lengths given")
        if any(int(n) < 1 for n in self.lengths):
            raise ConfigError("lengths must be positive")
        if self.preset is not None and self.model is not None:
            raise ConfigError("give --model or --preset, not both")
        if self.preset is not None and not self.random_weights:
            raise ConfigError("a preset has no weights: add --random-weights")
        if self.random_weights and self.preset is None:
            raise ConfigError("--random-weights needs --preset")
        if self.baseline not in BASELINES:
            raise ConfigError(f"unknown baseline {self.baseline!r}; choose from {', '.join(BASELINES)}")
        if self.dtype not in DTYPE_NAMES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose from bf16, fp16, fp32, auto")
        if self.repeats < 1:
            raise ConfigError("--repeats must be at least 1")
        if self.rounds < 1:
            raise ConfigError("--rounds must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("--threads must be at least 1")
        if self.chunk is not None and self.chunk < 1:
            raise ConfigError("--chunk must be positive")
        from longctx.engine.memory import check_prefill_mode

        check_prefill_mode(self.prefill, "--prefill")
        if self.time_budget is not None and self.time_budget <= 0:
            raise ConfigError("--time-budget must be positive")


def parse_lengths(text: str) -> list[int]:
    """``"8192,32768"`` -> ``[8192, 32768]``; sizes as in :mod:`longctx.units` (``"8K"`` = 8000,
    ``"8Ki"`` = 8192).

    Returns the lengths sorted, without duplicates.

    Raises:
        GridError: empty list, a non-integer or a length < 1.
    """
    return parse_size_list(text, "--lengths")


# ---------------------------------------------------------------------------------------------
# Model specs: what a point builds (picklable, so subprocesses can rebuild it)
# ---------------------------------------------------------------------------------------------

def resolve_spec(opts: BenchOptions) -> dict:
    """Resolves device, dtype and the model configuration into a plain dict."""
    from longctx.engine.runtime import resolve_device, resolve_dtype
    from longctx.engine.config import get_preset

    device = resolve_device(opts.device)
    if opts.preset is not None:
        cfg = get_preset(opts.preset)
        source, path = "preset", None
    else:
        from longctx.checkpoints.resolve import resolve

        ckpt = resolve(opts.model)
        source = "default" if ckpt.is_default else "path"
        path = str(ckpt.model_dir) if ckpt.is_default else str(opts.model)
        cfg = ckpt.config
    if opts.rope_scaling is not None:
        cfg = cfg.with_rope_scaling(opts.rope_scaling)
    dtype = resolve_dtype(DTYPE_NAMES[opts.dtype], device, cfg.torch_dtype)
    chunk = opts.chunk
    if chunk is None:
        from longctx.engine.runtime import default_chunk_size

        chunk = default_chunk_size(device)
    return {
        "source": source, "path": path, "preset": opts.preset, "device": str(device),
        "dtype": str(dtype).replace("torch.", ""), "attn": opts.attn, "rope_scaling": opts.rope_scaling,
        "chunk": int(chunk), "prefill": opts.prefill, "seed": int(opts.seed), "cfg": cfg.to_dict(), "threads": opts.threads,
        "max_context": max(max(opts.lengths), cfg.context_limit),
    }


def spec_config(spec: dict) -> ModelConfig:
    d = dict(spec["cfg"])
    d["rope_scaling"] = parse_rope_scaling(d.get("rope_scaling"))
    return ModelConfig(**d)


def torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def build_engine(spec: dict):
    """The engine model for a spec (a :class:`~longctx.engine.runtime.LongCtxModel`)."""
    dtype = torch_dtype(spec["dtype"])
    kwargs = dict(device=spec["device"], dtype=dtype, attn=spec["attn"], chunk_size=spec["chunk"],
                  max_context=spec["max_context"], prefill=spec.get("prefill", "auto"))
    if spec["source"] == "preset":
        return random_model(spec_config(spec), seed=spec["seed"], **kwargs)
    if spec["rope_scaling"] is not None:
        kwargs["rope_scaling"] = spec["rope_scaling"]
    return load_model(spec["path"] if spec["source"] == "path" else None, **kwargs)


def llama_config(cfg: ModelConfig):
    """A transformers ``LlamaConfig`` of the same shape (default RoPE, see the module docstring)."""
    from transformers import LlamaConfig  # transformers is optional: only the baseline needs it

    lc = LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim, max_position_embeddings=cfg.max_position_embeddings, rope_theta=cfg.rope_theta,
        rms_norm_eps=cfg.rms_norm_eps, tie_word_embeddings=cfg.tie_word_embeddings, attention_bias=cfg.bias,
        hidden_act="silu", use_cache=True,
    )
    lc._attn_implementation = "sdpa"
    return lc


def _set_sdpa(model) -> None:
    try:
        model.config._attn_implementation = "sdpa"
    except Exception:
        pass


def build_baseline(spec: dict):
    """A transformers ``LlamaForCausalLM`` for a spec.

    The default model and Llama-layout checkpoint directories load their weights
    (``from_pretrained``); presets and InternLM2-layout checkpoints get random weights of the
    same shape, created directly on the device in the target dtype (no float32 copy).
    """
    from transformers import LlamaForCausalLM  # transformers is optional: only the baseline needs it

    device = torch.device(spec["device"])
    dtype = torch_dtype(spec["dtype"])
    cfg = spec_config(spec)
    path = spec["path"]
    if spec["source"] in ("default", "path") and path and Path(path).is_dir() and cfg.source_layout == "llama":
        last: Exception | None = None
        for key in ("dtype", "torch_dtype"):  # transformers 5 names it dtype; 4.x torch_dtype
            try:
                model = LlamaForCausalLM.from_pretrained(path, attn_implementation="sdpa", **{key: dtype})
                break
            except TypeError as e:
                last = e
        else:
            raise last  # type: ignore[misc]
        model = model.to(device=device, dtype=dtype)
        _set_sdpa(model)
        return model.eval(), "checkpoint weights"
    lc = llama_config(cfg)
    old = torch.get_default_dtype()
    torch.manual_seed(spec["seed"])
    try:
        torch.set_default_dtype(dtype)
        with torch.device(device):
            model = LlamaForCausalLM(lc)
    finally:
        torch.set_default_dtype(old)
    _set_sdpa(model)  # parameters were created in `dtype` on `device`; RoPE's inv_freq stays float32
    return model.eval(), "random weights (same shape)"


def logits_kwarg(model) -> str:
    params = inspect.signature(model.forward).parameters
    return "logits_to_keep" if "logits_to_keep" in params else "num_logits_to_keep"

