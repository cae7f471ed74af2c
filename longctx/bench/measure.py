"""Measuring one point: timing, peak memory, the matmul peak and the machine.

One *point* is one (implementation, prompt length L) pair:

* a warm-up prefill at a small length (kernels, allocator, thread pools);
* ``repeats`` timed prefills of L random token ids (median reported). The engine runs
  ``model.prefill(ids, cache, base)`` over a fresh KV cache of exactly L positions; the baseline runs
  one forward with ``use_cache=True`` (it builds its own ``DynamicCache``) and
  ``logits_to_keep=1`` (``num_logits_to_keep`` on transformers < 4.50), ``attn_implementation="sdpa"``.
  CUDA is synchronized before and after each timed call;
* peak memory. CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (weights
  are already allocated, so the peak is weights + KV cache + working memory). CPU: the kernel's
  peak-RSS counter is reset (``/proc/self/clear_refs`` = 5) after the warm-up and read back
  (``VmHWM``) after the timed runs; RSS is process-wide, so on CPU each point runs in a fresh
  subprocess (:mod:`longctx.bench.runner`);
* a breakdown: ``weights`` (parameter bytes), ``kv_cache`` (:func:`~longctx.bench.flops.kv_cache_bytes`;
  the baseline's DynamicCache holds the same), ``rest = peak - weights - kv_cache`` (activations,
  allocator slack and, on CPU, the runtime).

Percent of peak divides achieved TFLOP/s by a matmul peak measured in the same run
(:func:`matmul_peak`): the best of several ``torch.mm`` of two square matrices (8192 on CUDA, 2048
on CPU) in the run's dtype.
"""
from __future__ import annotations

import gc
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable

import torch

import longctx.engine.attention as attention
from longctx.bench.flops import kv_cache_bytes, prefill_flops
from longctx.bench.spec import logits_kwarg, torch_dtype, spec_config



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


def rss_bytes(field_name: str = "VmRSS") -> int | None:
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
        v = rss_bytes("VmHWM")
        if v is not None:
            return v
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
        import transformers  # transformers is optional: only its version is recorded

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
# Measuring one point
# ---------------------------------------------------------------------------------------------

def _random_ids(vocab: int, length: int, seed: int) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, vocab, (length,), generator=gen)


def timed_runs(device: torch.device, repeats: int, run: Callable[[Any], Any],
               setup: Callable[[], Any] = lambda: None) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of ``repeats`` calls ``run(setup())``; only ``run`` is timed.

    CUDA is synchronized before and after each timed call; ``run``'s result and ``setup``'s object
    are dropped after each call (so a KV cache or an output does not outlive its repeat).
    """
    times, cpu_times = [], []
    for _ in range(repeats):
        arg = setup()
        _sync(device)
        c0, t0 = time.process_time(), time.perf_counter()
        run(arg)
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        del arg
    return times, cpu_times


def engine_point(m, spec: dict, length: int, repeats: int, warmup: int, probe_only: bool) -> dict:
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
    # probe: the KV cache of L plus one chunk is the memory peak of the full prefill
    timed_ids = ids[: min(length, m.chunk_size)] if probe_only else ids
    kv_sizes: list[int] = []

    def new_cache():
        cache = m.new_cache(length)
        kv_sizes.append(cache.nbytes)
        return cache

    times, cpu_times = timed_runs(device, 1 if probe_only else repeats, lambda cache: m.prefill(timed_ids, cache, base),
                                  setup=new_cache)
    kv = kv_sizes[-1]
    peak = read_peak_memory(device, method)
    free_memory(device)
    return {"times": times, "cpu_times": cpu_times, "peak": peak, "kv": kv, "weights": module_bytes(m.net), "mem_method": method,
            "rope_base": base, "chunk": m.chunk_size, "attn": m.attn, "chunk_path": _chunk_path(m),
            "prefill": m.prefill_plan(length)[0]}


def _chunk_path(m) -> str:
    """Which kernel path a chunk after a prefix took (``sdpa`` backend)."""
    if m.attn != "sdpa":
        return m.attn
    if m.device.type != "cuda":
        return "cpu split (flash_for_cpu + LSE merge)"
    used = [v for v in attention._SPLIT_OK.values()]
    if used and all(used):
        return "cuda split (cuDNN prefix + flash diagonal)"
    return "causal_lower_right"


def baseline_point(model, spec: dict, length: int, repeats: int, warmup: int) -> dict:
    device = torch.device(spec["device"])
    cfg = spec_config(spec)
    kw = logits_kwarg(model)
    ids = _random_ids(cfg.vocab_size, length, spec["seed"] + length).to(device)[None]  # [1, L]
    wl = max(1, min(length, warmup))
    with torch.inference_mode():
        out = model(input_ids=ids[:, :wl], use_cache=True, **{kw: 1})
        _sync(device)
        del out
        free_memory(device)
        method = reset_peak_memory(device)
        times, cpu_times = timed_runs(device, repeats, lambda _: model(input_ids=ids, use_cache=True, **{kw: 1}))
    peak = read_peak_memory(device, method)
    free_memory(device)
    dtype = torch_dtype(spec["dtype"])
    return {"times": times, "cpu_times": cpu_times, "peak": peak, "kv": kv_cache_bytes(cfg, length, dtype),
            "weights": module_bytes(model),
            "mem_method": method, "rope_base": cfg.rope_theta, "chunk": None, "attn": "sdpa"}


def finish_point(impl: str, length: int, raw: dict, spec: dict, peak_tflops: float | None, runtime: int | None,
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
        "chunk": raw["chunk"], "prefill": raw.get("prefill"), "attn": raw["attn"], "chunk_path": raw.get("chunk_path"),
        "rope_base": raw["rope_base"],
        "load_s": raw.get("load_s"),
    }
    if probe_only:
        rec["probe_seconds"] = sec
    if peak_tflops and rec["tflops"] is not None:
        rec["pct_peak"] = 100.0 * rec["tflops"] / peak_tflops
    return rec


def status_record(impl: str, length: int, status: str, spec: dict, **extra) -> dict:
    cfg = spec_config(spec)
    fl = prefill_flops(cfg, length)
    rec = {"impl": impl, "length": length, "status": status, "seconds": None, "tokens_per_s": None,
           "flops": fl["total"], "flops_linear": fl["linear"], "flops_attention": fl["attention"], "tflops": None,
           "pct_peak": None, "peak_mem_bytes": None, "weights_bytes": None, "kv_cache_bytes": None,
           "rest_bytes": None, "runtime_bytes": None, "net_peak_bytes": None}
    rec.update(extra)
    return rec


def error_text(exc: BaseException) -> str:
    if is_oom(exc):
        return "OOM"
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"error: {exc.__class__.__name__}: {msg}"[:300]

