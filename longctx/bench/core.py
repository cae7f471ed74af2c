"""Prefill benchmark driver: the engine against a Hugging Face ``LlamaForCausalLM`` of the same shape.

Used by ``longctx bench prefill`` (``longctx/cli/bench_cmd.py``) and by the GPU script
(``experiments/gpu/run_all.py``); nothing here parses command lines.

For every requested prompt length L and implementation (``longctx``, the engine; ``transformers``,
the baseline) one *point* is measured:

* a warm-up prefill at a small length (kernels, allocator, thread pools);
* ``repeats`` timed prefills of L random token ids (median reported). The engine runs
  ``model.prefill(ids, cache, base)`` over a fresh KV cache of exactly L positions; the baseline runs
  one forward with ``use_cache=True`` (it builds its own ``DynamicCache``) and
  ``logits_to_keep=1`` (``num_logits_to_keep`` on transformers < 4.50), ``attn_implementation="sdpa"``.
  CUDA is synchronized before and after each timed call;
* peak memory. CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (weights
  are already allocated, so the peak is weights + KV cache + working memory). CPU: peak RSS is
  process-wide, so each point runs in a fresh ``spawn`` subprocess (``isolate``); the kernel's
  peak-RSS counter is reset (``/proc/self/clear_refs`` = 5) after the warm-up and read back
  (``VmHWM``) after the timed runs. ``runtime_bytes`` is the RSS before the model was built
  (interpreter, torch, transformers); ``net_peak_bytes = peak - runtime`` is what the comparison uses
  on CPU;
* a breakdown: ``weights`` (parameter bytes), ``kv_cache`` (2 x layers x KV heads x head_dim x L x
  dtype bytes -- the engine's cache is exactly that; the baseline's DynamicCache holds the same),
  ``rest = peak - weights - kv_cache`` (activations, allocator slack and, on CPU, the runtime).

FLOP count (what "achieved TFLOP/s" divides by), for a prompt of L tokens::

    N          = n_layers * (hidden*(H + 2*Hkv)*D  +  H*D*hidden  +  3*hidden*intermediate)
                 (the non-embedding weights every token multiplies: wqkv, wo, w1, w3, w2;
                  norm weights and biases are not counted)
    linear     = 2 * N * L  +  2 * hidden * vocab         (one logits row: prefill keeps the last only)
    attention  = 2 * 2 * (L**2 / 2) * H * D * n_layers     (QK^T and PV, 2 FLOPs per multiply-add,
               = 2 * L**2 * H * D * n_layers               half the L x L square because causal)
    total      = linear + attention

The embedding lookup, norms, RoPE, softmax and SwiGLU element-wise work are not counted. The
causal half is taken as L**2/2 (the exact pair count L(L+1)/2 differs by L/2). Percent of peak
divides achieved TFLOP/s by a matmul peak measured in the same run: the best of several
``torch.mm`` of two square matrices (8192 on CUDA, 2048 on CPU) in the run's dtype.

The baseline never uses dynamic-NTK RoPE: the RoPE base changes no shape and no kernel, so
prefill time and memory do not depend on it.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from longctx.engine.config import ConfigError, ModelConfig
from longctx.units import parse_size_list

IMPLS = ("longctx", "transformers")
BASELINES = ("transformers", "none")
DTYPE_NAMES = {"auto": "auto", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
               "fp32": "float32", "float32": "float32"}
SKIP_BUDGET = "skipped (time budget)"

LogFn = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# Options, parsing, FLOPs
# ---------------------------------------------------------------------------------------------

@dataclass
class BenchOptions:
    """What to benchmark.

    Attributes:
        lengths: prompt lengths (tokens), run in increasing order.
        model: checkpoint directory (None with no preset: the embedded default model).
        preset: a named shape (``internlm2-chat-7b`` ...); needs ``random_weights``.
        random_weights: random weights of the preset's shape (no tokenizer; random ids either way).
        chunk: engine prefill chunk (None: the engine's default for the device).
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


def nonembedding_params(cfg: ModelConfig) -> int:
    """N: weights every token multiplies (wqkv, wo, w1, w3, w2 of every layer)."""
    h, d = cfg.hidden_size, cfg.head_dim
    per_layer = h * (cfg.num_heads + 2 * cfg.num_kv_heads) * d + cfg.num_heads * d * h + 3 * h * cfg.intermediate_size
    return cfg.num_layers * per_layer


def prefill_flops(cfg: ModelConfig, length: int) -> dict[str, int]:
    """FLOPs of a prefill of ``length`` tokens (formula in the module docstring).

    Returns:
        ``{"linear", "attention", "total"}`` (integers).
    """
    L = int(length)
    linear = 2 * nonembedding_params(cfg) * L + 2 * cfg.hidden_size * cfg.vocab_size
    attention = 2 * L * L * cfg.num_heads * cfg.head_dim * cfg.num_layers  # = 2 * 2 * (L^2 / 2) * H * D * layers
    return {"linear": linear, "attention": attention, "total": linear + attention}


def kv_cache_bytes(cfg: ModelConfig, length: int, dtype: torch.dtype) -> int:
    """2 x layers x KV heads x head_dim x length x element size."""
    return 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * int(length) * torch.empty((), dtype=dtype).element_size()


# ---------------------------------------------------------------------------------------------
# Device helpers
# ---------------------------------------------------------------------------------------------

def _oom_types() -> tuple[type, ...]:
    types: list[type] = []
    for obj in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)):
        if isinstance(obj, type) and obj not in types:
            types.append(obj)
    return tuple(types) or (MemoryError,)


def is_oom(exc: BaseException) -> bool:
    """CUDA OOM, or a CPU allocation failure."""
    if isinstance(exc, _oom_types()) or isinstance(exc, MemoryError):
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in msg.lower() or "can't allocate memory" in msg.lower()
                                              or "DefaultCPUAllocator" in msg)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device | None = None) -> None:
    gc.collect()
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        torch.cuda.empty_cache()


def _rss_bytes(field_name: str = "VmRSS") -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_memory(device: torch.device) -> str:
    """Resets the peak counter; returns the method name used by :func:`read_peak_memory`."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda.max_memory_allocated"
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM"
    except OSError:
        return "ru_maxrss"


def read_peak_memory(device: torch.device, method: str) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if method == "VmHWM":
        v = _rss_bytes("VmHWM")
        if v is not None:
            return v
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers (shared storages counted once)."""
    seen: set[int] = set()
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        key = t.data_ptr()
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int | None = None, iters: int | None = None) -> dict:
    """Measures a matmul peak: the best time of ``iters`` ``torch.mm`` of two n x n matrices.

    n defaults to 8192 on CUDA and 2048 on CPU; on CPU a size whose single product takes more than
    about a quarter second stops the growth (CPU half-precision matmuls can be very slow), so the
    measurement stays short.

    Returns:
        ``{"n", "dtype", "seconds", "tflops"}``.
    """
    iters = iters or (10 if device.type == "cuda" else 3)
    if n is not None:
        sizes = [n]
    elif device.type == "cuda":
        sizes = [8192]
    else:
        sizes = [256, 512, 1024, 2048]
    gen = torch.Generator(device="cpu").manual_seed(1)
    result = None
    with torch.inference_mode():
        for size in sizes:
            a = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
            b = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
            t0 = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            first = time.perf_counter() - t0
            best = first
            slow = device.type != "cuda" and first > 0.25
            for _ in range(1 if slow else iters):
                t0 = time.perf_counter()
                torch.mm(a, b)
                _sync(device)
                best = min(best, time.perf_counter() - t0)
            del a, b
            result = {"n": size, "dtype": str(dtype).replace("torch.", ""), "seconds": best,
                      "tflops": 2 * size ** 3 / best / 1e12}
            if slow:
                break
    free_memory(device)
    return result  # type: ignore[return-value]


def machine_info(device: torch.device) -> dict:
    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cpu_model": _cpu_model(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except Exception:  # transformers is optional
        info["transformers"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_bytes=int(props.total_memory), cuda=torch.version.cuda)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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
        if opts.model is None:
            from longctx.checkpoints.loading import default_model_dir

            path = str(default_model_dir())
            source = "default"
        else:
            path = str(opts.model)
            source = "path"
            if not Path(path).exists():
                raise ConfigError(f"model path not found: {path}")
        from longctx.checkpoints.loading import config_for_path

        cfg = config_for_path(path)
        if source == "default":
            cfg.name = "SmolLM2-135M-Instruct"
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
        "chunk": int(chunk), "seed": int(opts.seed), "cfg": cfg.to_dict(), "threads": opts.threads,
        "max_context": max(max(opts.lengths), cfg.context_limit),
    }


def spec_config(spec: dict) -> ModelConfig:
    d = dict(spec["cfg"])
    from longctx.engine.config import parse_rope_scaling

    d["rope_scaling"] = parse_rope_scaling(d.get("rope_scaling"))
    return ModelConfig(**d)


def _torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def build_engine(spec: dict):
    """The engine model for a spec (a :class:`~longctx.engine.runtime.LongCtxModel`)."""
    from longctx.engine.runtime import load_model, random_model

    dtype = _torch_dtype(spec["dtype"])
    kwargs = dict(device=spec["device"], dtype=dtype, attn=spec["attn"], chunk_size=spec["chunk"],
                  max_context=spec["max_context"])
    if spec["source"] == "preset":
        return random_model(spec_config(spec), seed=spec["seed"], **kwargs)
    if spec["rope_scaling"] is not None:
        kwargs["rope_scaling"] = spec["rope_scaling"]
    return load_model(spec["path"] if spec["source"] == "path" else None, **kwargs)


def llama_config(cfg: ModelConfig):
    """A transformers ``LlamaConfig`` of the same shape (default RoPE, see the module docstring)."""
    from transformers import LlamaConfig

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
    from transformers import LlamaForCausalLM

    device = torch.device(spec["device"])
    dtype = _torch_dtype(spec["dtype"])
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


def _logits_kw(model) -> str:
    import inspect

    params = inspect.signature(model.forward).parameters
    return "logits_to_keep" if "logits_to_keep" in params else "num_logits_to_keep"


# ---------------------------------------------------------------------------------------------
# Measuring one point
# ---------------------------------------------------------------------------------------------

def _random_ids(vocab: int, length: int, seed: int) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, vocab, (length,), generator=gen)


def _engine_point(m, spec: dict, length: int, repeats: int, warmup: int, probe_only: bool) -> dict:
    device = m.device
    cfg = m.config
    ids = _random_ids(cfg.vocab_size, length, spec["seed"] + length).to(device)  # [L]
    wl = max(1, min(length, warmup))
    c = m.new_cache(wl)
    m.prefill(ids[:wl], c, m.rope_base_for(wl))
    _sync(device)
    del c
    free_memory(device)
    method = reset_peak_memory(device)
    base = m.rope_base_for(length)
    times, cpu_times = [], []
    kv = 0
    for _ in range(1 if probe_only else repeats):
        cache = m.new_cache(length)
        kv = cache.nbytes
        _sync(device)
        c0, t0 = time.process_time(), time.perf_counter()
        if probe_only:  # the KV cache of L plus one chunk: the memory peak of the full prefill
            m.prefill(ids[: min(length, m.chunk_size)], cache, base)
        else:
            m.prefill(ids, cache, base)
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        del cache
    peak = read_peak_memory(device, method)
    free_memory(device)
    return {"times": times, "cpu_times": cpu_times, "peak": peak, "kv": kv, "weights": module_bytes(m.net), "mem_method": method,
            "rope_base": base, "chunk": m.chunk_size, "attn": m.attn, "chunk_path": _chunk_path(m)}


def _chunk_path(m) -> str:
    """Which kernel path a chunk after a prefix took (``sdpa`` backend)."""
    if m.attn != "sdpa":
        return m.attn
    if m.device.type != "cuda":
        return "cpu split (flash_for_cpu + LSE merge)"
    import longctx.engine.attention as A

    used = [v for v in A._SPLIT_OK.values()]
    if used and all(used):
        return "cuda split (cuDNN prefix + flash diagonal)"
    return "causal_lower_right"


def _baseline_point(model, spec: dict, length: int, repeats: int, warmup: int) -> dict:
    device = torch.device(spec["device"])
    cfg = spec_config(spec)
    kw = _logits_kw(model)
    ids = _random_ids(cfg.vocab_size, length, spec["seed"] + length).to(device)[None]  # [1, L]
    wl = max(1, min(length, warmup))
    with torch.inference_mode():
        out = model(input_ids=ids[:, :wl], use_cache=True, **{kw: 1})
        _sync(device)
        del out
        free_memory(device)
        method = reset_peak_memory(device)
        times, cpu_times = [], []
        for _ in range(repeats):
            _sync(device)
            c0, t0 = time.process_time(), time.perf_counter()
            out = model(input_ids=ids, use_cache=True, **{kw: 1})
            _sync(device)
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
            del out
    peak = read_peak_memory(device, method)
    free_memory(device)
    dtype = _torch_dtype(spec["dtype"])
    return {"times": times, "cpu_times": cpu_times, "peak": peak, "kv": kv_cache_bytes(cfg, length, dtype),
            "weights": module_bytes(model),
            "mem_method": method, "rope_base": cfg.rope_theta, "chunk": None, "attn": "sdpa"}


def _finish_point(impl: str, length: int, raw: dict, spec: dict, peak_tflops: float | None, runtime: int | None,
                  probe_only: bool = False) -> dict:
    cfg = spec_config(spec)
    fl = prefill_flops(cfg, length)
    sec = statistics.median(raw["times"])
    rec: dict[str, Any] = {
        "impl": impl, "length": length, "status": "ok (memory probe)" if probe_only else "ok",
        "seconds": None if probe_only else sec, "seconds_all": raw["times"],
        "cpu_seconds": statistics.median(raw["cpu_times"]) if raw.get("cpu_times") and not probe_only else None,
        "tokens_per_s": None if probe_only else length / sec, "flops": fl["total"], "flops_linear": fl["linear"],
        "flops_attention": fl["attention"], "tflops": None if probe_only else fl["total"] / sec / 1e12,
        "pct_peak": None, "peak_mem_bytes": raw["peak"], "mem_method": raw["mem_method"],
        "weights_bytes": raw["weights"], "kv_cache_bytes": raw["kv"],
        "rest_bytes": raw["peak"] - raw["weights"] - raw["kv"], "runtime_bytes": runtime,
        "net_peak_bytes": raw["peak"] - runtime if runtime is not None else raw["peak"],
        "chunk": raw["chunk"], "attn": raw["attn"], "chunk_path": raw.get("chunk_path"), "rope_base": raw["rope_base"],
        "load_s": raw.get("load_s"),
    }
    if probe_only:
        rec["probe_seconds"] = sec
    if peak_tflops and rec["tflops"] is not None:
        rec["pct_peak"] = 100.0 * rec["tflops"] / peak_tflops
    return rec


def _status_record(impl: str, length: int, status: str, spec: dict, **extra) -> dict:
    cfg = spec_config(spec)
    fl = prefill_flops(cfg, length)
    rec = {"impl": impl, "length": length, "status": status, "seconds": None, "tokens_per_s": None,
           "flops": fl["total"], "flops_linear": fl["linear"], "flops_attention": fl["attention"], "tflops": None,
           "pct_peak": None, "peak_mem_bytes": None, "weights_bytes": None, "kv_cache_bytes": None,
           "rest_bytes": None, "runtime_bytes": None, "net_peak_bytes": None}
    rec.update(extra)
    return rec


def _error_text(exc: BaseException) -> str:
    if is_oom(exc):
        return "OOM"
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"error: {exc.__class__.__name__}: {msg}"[:300]


def _child_main(args: dict) -> dict:
    """Subprocess body: builds the model, measures one point, returns the record."""
    impl, spec, length = args["impl"], args["spec"], args["length"]
    try:
        if spec.get("threads"):
            torch.set_num_threads(int(spec["threads"]))
        if impl == "transformers":
            import transformers  # noqa: F401  (imported before the runtime RSS is read)
        runtime = _rss_bytes("VmRSS")
        t0 = time.perf_counter()
        model = build_engine(spec) if impl == "longctx" else build_baseline(spec)[0]
        load_s = time.perf_counter() - t0
        if impl == "longctx":
            raw = _engine_point(model, spec, length, args["repeats"], args["warmup"], args["probe_only"])
        else:
            raw = _baseline_point(model, spec, length, args["repeats"], args["warmup"])
        raw["load_s"] = load_s
        return _finish_point(impl, length, raw, spec, args["peak_tflops"], runtime, args["probe_only"])
    except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
        return _status_record(impl, length, _error_text(e), spec)


def _child_entry(arg_path: str, out_path: str) -> None:
    """``python -m longctx.bench.core --child ARGS.json OUT.json``: one isolated point."""
    args = json.loads(Path(arg_path).read_text())
    rec = _child_main(args)
    Path(out_path).write_text(json.dumps(rec, default=str))


def _run_isolated(impl: str, spec: dict, length: int, repeats: int, warmup: int, peak_tflops, probe_only: bool,
                  timeout: float | None) -> dict:
    """Runs one point in a fresh Python process (``python -m longctx.bench.core --child``)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="longctx-bench-") as tmp:
        arg_path, out_path = Path(tmp) / "args.json", Path(tmp) / "out.json"
        arg_path.write_text(json.dumps({"impl": impl, "spec": spec, "length": length, "repeats": repeats,
                                        "warmup": warmup, "peak_tflops": peak_tflops, "probe_only": probe_only}))
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "longctx.bench.core", "--child", str(arg_path), str(out_path)]
        try:
            proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  timeout=max(1.0, timeout) if timeout is not None else None)
        except subprocess.TimeoutExpired:
            return _status_record(impl, length, SKIP_BUDGET + ", stopped", spec)
        if out_path.is_file():
            try:
                return json.loads(out_path.read_text())
            except json.JSONDecodeError:
                pass
        if proc.returncode in (-9, 137):
            return _status_record(impl, length, "OOM (killed)", spec)
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        return _status_record(impl, length, f"error: subprocess exited with code {proc.returncode}: {tail[0][:200]}", spec)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

class _Estimator:
    """Predicts a point's seconds from the FLOP rate of earlier points."""

    def __init__(self) -> None:
        self.rate: dict[str, float] = {}
        self.overhead: dict[str, float] = {}

    def update(self, impl: str, rec: dict, wall: float) -> None:
        if rec.get("seconds"):
            self.rate[impl] = rec["flops"] / rec["seconds"]
            n = len(rec.get("seconds_all") or [rec["seconds"]])
            self.overhead[impl] = max(0.0, wall - rec["seconds"] * n)

    def predict(self, impl: str, flops: int, repeats: int, isolated: bool, warm_flops: int = 0) -> float | None:
        rate = self.rate.get(impl) or (min(self.rate.values()) if self.rate else None)
        if rate is None:
            return None
        over = self.overhead.get(impl, 0.0) if isolated else 0.0
        return (1.15 * flops * repeats + warm_flops) / rate + over  # 15 % slack


def run_prefill_bench(opts: BenchOptions, log: LogFn | None = None,
                      on_point: Callable[[dict], None] | None = None) -> dict:
    """Runs the benchmark and returns the report (see :func:`report_to_markdown` for the fields).

    Args:
        opts: what to run.
        log: progress lines (default: stderr).
        on_point: called with the partial report after every point (to save it incrementally).
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    opts.validate()
    t_start = time.perf_counter()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    spec = resolve_spec(opts)
    device = torch.device(spec["device"])
    dtype = _torch_dtype(spec["dtype"])
    cfg = spec_config(spec)
    isolate = opts.isolate if opts.isolate is not None else device.type == "cpu"
    warmup = opts.warmup if opts.warmup is not None else (256 if device.type == "cpu" else spec["chunk"] + 512)
    lengths = sorted(set(int(n) for n in opts.lengths))
    impls = ["longctx"] + (["transformers"] if opts.baseline == "transformers" else [])
    if "transformers" in impls:
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise ConfigError("--baseline transformers needs the transformers package") from None
    report: dict[str, Any] = {
        "version": 1, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "options": {**dataclasses.asdict(opts), "lengths": lengths, "isolate": isolate, "warmup": warmup},
        "model": {"name": cfg.name, "source": spec["source"], "path": spec["path"], "preset": spec["preset"],
                  "parameters": cfg.num_parameters(), "nonembedding_parameters": nonembedding_params(cfg),
                  "layers": cfg.num_layers, "hidden": cfg.hidden_size, "intermediate": cfg.intermediate_size,
                  "heads": cfg.num_heads, "kv_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
                  "vocab": cfg.vocab_size, "rope_scaling": str(cfg.rope_scaling) if cfg.rope_scaling else None,
                  "max_position_embeddings": cfg.max_position_embeddings},
        "device": str(device), "dtype": spec["dtype"], "chunk": spec["chunk"],
        "flop_formula": "linear = 2*N*L + 2*hidden*vocab; attention = 2*2*(L^2/2)*H*D*layers; "
                        "N = layers*(hidden*(H+2*Hkv)*D + H*D*hidden + 3*hidden*intermediate)",
        "results": [], "comparison": [], "baseline": None, "baseline_max_length": None,
        "matmul_peak": None, "elapsed_s": None,
    }
    try:
        report["matmul_peak"] = matmul_peak(device, dtype)
        log(f"matmul peak: {report['matmul_peak']['tflops']:.2f} TFLOP/s "
            f"({report['matmul_peak']['n']}^3 {report['matmul_peak']['dtype']} on {device})")
    except Exception as e:  # noqa: BLE001
        log(f"matmul peak failed: {_error_text(e)}")
    peak_tflops = report["matmul_peak"]["tflops"] if report["matmul_peak"] else None
    est = _Estimator()
    stopped: dict[str, str] = {}  # impl -> why the longer lengths are skipped

    def elapsed() -> float:
        return time.perf_counter() - t_start

    rounds_seen: dict[tuple[str, int], list[dict]] = {}

    def emit(rec: dict, merge: bool = False) -> None:
        if merge:  # one more round of a point: the point's record becomes the merge of its rounds
            key = (rec["impl"], rec["length"])
            rounds_seen.setdefault(key, []).append(rec)
            report.setdefault("rounds_raw", []).append(rec)
            merged = {k: merge_rounds(v, peak_tflops) for k, v in rounds_seen.items()}
            order = {impl: i for i, impl in enumerate(IMPLS)}
            report["results"] = [merged[k] for k in sorted(merged, key=lambda k: (order.get(k[0], 9), k[1]))]
        else:
            report["results"].append(rec)
        report["comparison"] = compare(report["results"])
        ok = [r["length"] for r in report["results"] if r["impl"] == "transformers" and r["status"] == "ok"]
        report["baseline_max_length"] = max(ok) if ok else None
        report["elapsed_s"] = elapsed()
        line = f"{rec['impl']:>12} L={rec['length']:>7}: {rec['status']}"
        if rec.get("seconds"):
            line += (f"  {rec['seconds']:.3f} s  {rec['tokens_per_s']:,.0f} tok/s  {rec['tflops']:.3g} TFLOP/s"
                     + (f" ({rec['pct_peak']:.0f}% of mm peak)" if rec.get("pct_peak") else ""))
        if rec.get("peak_mem_bytes"):
            line += f"  peak {rec['peak_mem_bytes'] / 2**30:.2f} GiB"
        log(line)
        if on_point is not None:
            on_point(report)

    def budget_ok(impl: str, length: int, probe_only: bool) -> tuple[bool, float | None]:
        if opts.time_budget is None:
            return True, None
        remaining = opts.time_budget - elapsed()
        if remaining <= 0:
            return False, remaining
        if probe_only:
            fl = prefill_flops(cfg, min(length, spec["chunk"]))["total"]
        else:
            fl = prefill_flops(cfg, length)["total"]
        warm_flops = prefill_flops(cfg, min(length, warmup))["total"]
        pred = est.predict(impl, fl, 1 if probe_only else opts.repeats, isolate, warm_flops)
        return (pred is None or pred <= remaining), remaining

    def run_point(impl: str, length: int, model=None) -> dict:
        probe_only = impl == "longctx" and length in opts.probe_only_lengths
        if impl in stopped:
            return _status_record(impl, length, stopped[impl], spec)
        ok, remaining = budget_ok(impl, length, probe_only)
        if not ok and impl == "longctx" and not probe_only and opts.probe_when_over_budget:
            probe_only = True
            ok, remaining = budget_ok(impl, length, probe_only)
        if not ok:
            return _status_record(impl, length, SKIP_BUDGET, spec)
        t0 = time.perf_counter()
        if isolate:
            rec = _run_isolated(impl, spec, length, opts.repeats, warmup, peak_tflops, probe_only,
                                timeout=remaining if opts.time_budget is not None else None)
        else:
            try:
                if impl == "longctx":
                    raw = _engine_point(model, spec, length, opts.repeats, warmup, probe_only)
                else:
                    raw = _baseline_point(model, spec, length, opts.repeats, warmup)
                rec = _finish_point(impl, length, raw, spec, peak_tflops, None, probe_only)
            except Exception as e:  # noqa: BLE001 - recorded, the run goes on
                rec = _status_record(impl, length, _error_text(e), spec)
            free_memory(device)
        est.update(impl, rec, time.perf_counter() - t0)
        if rec["status"].startswith("OOM"):
            stopped[impl] = f"skipped (OOM at {length})"
        return rec

    if isolate:
        # Interleave implementations per length (and rounds): both see the same machine load.
        for rnd in range(opts.rounds):
            for length in lengths:
                for impl in impls:
                    rec = run_point(impl, length)
                    rec["round"] = rnd
                    emit(rec, merge=True)
    else:
        for impl in impls:
            model = None
            pending = [n for n in lengths]
            if opts.time_budget is not None and elapsed() >= opts.time_budget:
                for n in pending:
                    emit(_status_record(impl, n, SKIP_BUDGET, spec))
                continue
            try:
                t0 = time.perf_counter()
                free_memory(device)
                model = build_engine(spec) if impl == "longctx" else build_baseline(spec)[0]
                log(f"{impl}: model ready in {time.perf_counter() - t0:.1f} s")
            except Exception as e:  # noqa: BLE001
                status = _error_text(e)
                for n in pending:
                    emit(_status_record(impl, n, "OOM (loading)" if status == "OOM" else status, spec))
                model = None
                free_memory(device)
                continue
            for n in pending:
                emit(run_point(impl, n, model))
            del model
            free_memory(device)
    if opts.baseline == "transformers":
        report["baseline"] = "transformers LlamaForCausalLM (sdpa, use_cache=True, logits_to_keep=1)"
    report["elapsed_s"] = elapsed()
    return report


def merge_rounds(recs: list[dict], peak_tflops: float | None) -> dict:
    """One point's record from its rounds: median seconds, the largest peak memory."""
    ok = [r for r in recs if r["status"] == "ok" and r.get("seconds")]
    if not ok:
        return dict(recs[-1], rounds=len(recs))
    secs = sorted(r["seconds"] for r in ok)
    med = statistics.median(secs)
    base = min(ok, key=lambda r: abs(r["seconds"] - med))
    out = dict(base)
    worst = max(ok, key=lambda r: r.get("peak_mem_bytes") or 0)
    for k in ("peak_mem_bytes", "rest_bytes", "runtime_bytes", "net_peak_bytes"):
        out[k] = worst.get(k)
    cpus = [r["cpu_seconds"] for r in ok if r.get("cpu_seconds")]
    out["cpu_seconds"] = statistics.median(cpus) if cpus else None
    out.update(seconds=med, seconds_all=[s for r in ok for s in (r.get("seconds_all") or [r["seconds"]])],
               seconds_rounds=[r["seconds"] for r in ok], tokens_per_s=out["length"] / med,
               tflops=out["flops"] / med / 1e12, rounds=len(recs))
    out.pop("round", None)
    out["pct_peak"] = 100.0 * out["tflops"] / peak_tflops if peak_tflops else None
    if len(ok) < len(recs):
        out["status_rounds"] = [r["status"] for r in recs]
    return out


def compare(results: list[dict]) -> list[dict]:
    """Engine / baseline ratios per length (tokens/s and peak memory)."""
    by = {(r["impl"], r["length"]): r for r in results}
    out = []
    for (impl, n), e in sorted(by.items(), key=lambda kv: kv[0][1]):
        if impl != "longctx":
            continue
        b = by.get(("transformers", n))
        if b is None:
            continue
        row: dict[str, Any] = {"length": n, "engine_tokens_per_s": e.get("tokens_per_s"),
                               "baseline_tokens_per_s": b.get("tokens_per_s"), "speed_ratio": None,
                               "engine_mem_bytes": e.get("net_peak_bytes"), "baseline_mem_bytes": b.get("net_peak_bytes"),
                               "mem_ratio": None, "baseline_status": b["status"]}
        if e.get("tokens_per_s") and b.get("tokens_per_s"):
            row["speed_ratio"] = e["tokens_per_s"] / b["tokens_per_s"]
        row["cpu_time_ratio"] = (b["cpu_seconds"] / e["cpu_seconds"]
                                 if e.get("cpu_seconds") and b.get("cpu_seconds") else None)
        if e.get("net_peak_bytes") and b.get("net_peak_bytes"):
            row["mem_ratio"] = e["net_peak_bytes"] / b["net_peak_bytes"]
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

def _gib(n) -> str:
    return "" if n is None else f"{n / 2**30:.2f}"


def _fmt(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


RESULT_COLUMNS = ["impl", "L", "status", "s", "tok/s", "TFLOP/s", "% peak", "peak GiB", "weights GiB", "KV GiB",
                  "rest GiB"]


def result_rows(report: dict) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        rows.append([r["impl"], str(r["length"]), r["status"], _fmt(r.get("seconds"), ".3f"),
                     _fmt(r.get("tokens_per_s"), ",.0f"), _fmt(r.get("tflops"), ".3g"), _fmt(r.get("pct_peak"), ".0f"),
                     _gib(r.get("peak_mem_bytes")), _gib(r.get("weights_bytes")), _gib(r.get("kv_cache_bytes")),
                     _gib(r.get("rest_bytes"))])
    return rows


COMPARE_COLUMNS = ["L", "engine tok/s", "transformers tok/s", "speed ratio", "engine mem GiB", "transformers mem GiB",
                   "mem ratio"]


def _cpu_report(report: dict) -> bool:
    return str(report.get("device", "")).startswith("cpu")


def compare_columns(report: dict) -> list[str]:
    """The comparison columns; CPU reports add the ratio of process CPU time (robust to a loaded machine
    when points run single-threaded)."""
    cols = list(COMPARE_COLUMNS)
    if _cpu_report(report):
        cols.insert(4, "CPU-time ratio")
    return cols


def compare_rows(report: dict) -> list[list[str]]:
    rows = []
    for c in report["comparison"]:
        row = [str(c["length"]), _fmt(c["engine_tokens_per_s"], ",.0f"),
               _fmt(c["baseline_tokens_per_s"], ",.0f") or c["baseline_status"],
               _fmt(c["speed_ratio"], ".2f") + ("x" if c["speed_ratio"] else ""),
               _gib(c["engine_mem_bytes"]), _gib(c["baseline_mem_bytes"]),
               _fmt(c["mem_ratio"], ".2f") + ("x" if c["mem_ratio"] else "")]
        if _cpu_report(report):
            r = c.get("cpu_time_ratio")
            row.insert(4, _fmt(r, ".2f") + ("x" if r else ""))
        rows.append(row)
    return rows


def text_table(columns: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    left = [c in ("impl", "status") for c in columns]
    line = lambda cells: "  ".join(c.ljust(w) if lj else c.rjust(w) for c, w, lj in zip(cells, widths, left))  # noqa: E731
    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(out)


def header_lines(report: dict) -> list[str]:
    m, mach = report["model"], report["machine"]
    dev = mach.get("gpu") or f"{mach.get('cpu_model')} ({mach.get('cpu_count')} CPUs, {mach.get('torch_threads')} threads)"
    lines = [
        f"model: {m['name']} ({m['source']}; {m['parameters'] / 1e9:.3g} B params, {m['layers']} layers, "
        f"{m['heads']}/{m['kv_heads']} heads x {m['head_dim']}, rope scaling {m['rope_scaling'] or 'none'})",
        f"device: {report['device']} -- {dev}; dtype {report['dtype']}; engine chunk {report['chunk']}",
        f"torch {mach.get('torch')}, transformers {mach.get('transformers')}",
    ]
    mp = report.get("matmul_peak")
    if mp:
        lines.append(f"matmul peak (same run): {mp['tflops']:.3g} TFLOP/s ({mp['n']}^3 {mp['dtype']} torch.mm)")
    if report.get("baseline"):
        lines.append(f"baseline: {report['baseline']}; longest length it ran: {report.get('baseline_max_length')}")
    if report["options"].get("isolate"):
        lines.append("memory: peak RSS of a fresh subprocess per point during the timed prefill; ratios use "
                     "peak minus the RSS before the model was built")
    elif report["device"].startswith("cuda"):
        lines.append("memory: torch.cuda.max_memory_allocated (weights + KV cache + working)")
    return lines


def report_to_text(report: dict) -> str:
    parts = ["\n".join(header_lines(report)), "", text_table(RESULT_COLUMNS, result_rows(report))]
    if report["comparison"]:
        parts += ["", "engine / transformers:", text_table(compare_columns(report), compare_rows(report))]
    return "\n".join(parts)


def report_to_markdown(report: dict, title: str = "Prefill benchmark") -> str:
    parts = [f"## {title}", "", f"Run {report['created']}, {report.get('elapsed_s') or 0:.0f} s.", ""]
    parts += [f"- {line}" for line in header_lines(report)]
    parts += ["", markdown_table(RESULT_COLUMNS, result_rows(report))]
    if report["comparison"]:
        parts += ["", "Engine / transformers:", "", markdown_table(compare_columns(report), compare_rows(report))]
    parts += ["", f"FLOPs: {report['flop_formula']}.", ""]
    return "\n".join(parts)


def write_json(report: dict, path: str | Path) -> None:
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, p)


def write_markdown(report: dict, path: str | Path, title: str = "Prefill benchmark") -> None:
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(report_to_markdown(report, title))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child_entry(sys.argv[2], sys.argv[3])
    else:
        print("usage: python -m longctx.bench.core --child ARGS.json OUT.json (internal; use `longctx bench prefill`)",
              file=sys.stderr)
        sys.exit(2)
