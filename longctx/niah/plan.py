"""What a NIAH sweep will cost, before any model loads: cells, tokens, time and memory.

Cost model (per cell, seconds), for a model of ``L`` layers, a prompt whose first ``P`` tokens
are reused from the previous cell (prefix sharing) and ``T`` new prompt tokens, and ``n``
answer tokens::

    prefill = L * (a * T + b * ((P + T)^2 - P^2) / 2)          # linear work + causal attention
    decode  = n * (L * (s + c * (P + T)) + h)                   # per token: layers, attention, head

``a`` (seconds per token per layer), ``b`` (seconds per query-key pair per layer), ``c`` (seconds
per cached key per layer in a decode step: one query reading every key is memory-bound, several
times ``b`` at 32K on a CPU), ``s`` (seconds per decode step per layer) and ``h`` (embedding +
output head per decode step) are
measured for the device, dtype, thread count and layer shape by a short probe on a random-weight
model of one and three layers of that shape (:func:`calibrate`; a few seconds on a CPU; prefill per
layer is the difference of the two over 2, since a prefill's last layer works on the last position
only: counting it as a full layer overestimates by at most 1/L) and stored
in ``<cache>/calibration.json`` (:func:`longctx.paths.cache_root`), so later plans are instant. On a
CPU they are CPU seconds, divided at plan time by the cores the process gets now
(:func:`cpu_cores_now`, from the load average): on a shared machine a short probe runs at full speed
while a long sweep gets its fair share.
Answers stop at the stop token; the plan assumes :data:`ASSUMED_ANSWER_TOKENS` per cell (at most
the answer budget). The running ETA of a sweep uses the same model, scaled by the ratio of the
measured to the predicted time of the cells finished so far.

No torch import at module level: :func:`calibrate` imports the engine only when it must probe.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from longctx.backends.base import GenRequest, prefix_groups, prefix_schedule
from longctx.errors import PlanLimitError
from longctx.paths import cache_root
from longctx.units import format_size

__all__ = ["CostModel", "Plan", "make_plan", "format_plan", "calibrate", "calibration_key", "check_plan",
           "ASSUMED_ANSWER_TOKENS", "TIME_LIMIT_S", "available_memory", "cpu_cores_now"]

ASSUMED_ANSWER_TOKENS = 32
TIME_LIMIT_S = 2 * 3600.0
_PROBE_LENGTHS = (512, 2048)
_PROBE_STEPS = 8
_DECODE_FAR = 16384  # decode is also timed after this many cached positions (1-layer model)
# 2: prefill per layer from the 3- minus the 1-layer model (version 1 timed the 1-layer model, whose
# only layer is the last-position-only last layer: 5-6x under the measured 16K and 32K prefills), and
# decode's cost per cached key measured on its own (c).
PROBE_VERSION = 2


@dataclass
class CostModel:
    """Per-layer costs of the engine on one device (see the module doc for the formula)."""

    num_layers: int
    a: float  # s / token / layer (prefill, linear work)
    b: float  # s / query-key pair / layer (attention)
    s: float  # s / decode step / layer
    h: float  # s / decode step outside the layers (embedding, output head)
    c: Optional[float] = None  # s / cached key / layer in a decode step (None: b)
    key: str = ""
    measured: str = ""
    cores: float = 1.0  # CPU: the cores this process gets now (the coefficients are CPU seconds); CUDA: 1

    def cell_seconds(self, prompt_len: int, prefilled: int, new_tokens: int = ASSUMED_ANSWER_TOKENS) -> float:
        """Predicted seconds of one cell: prefill of ``prefilled`` tokens after ``prompt_len - prefilled``
        cached ones, then ``new_tokens`` decode steps."""
        P, T, L = prompt_len - prefilled, prefilled, self.num_layers
        prefill = L * (self.a * T + self.b * ((P + T) ** 2 - P ** 2) / 2.0)
        c = self.b if self.c is None else self.c
        decode = new_tokens * (L * (self.s + c * prompt_len) + self.h)
        return (prefill + decode) / self.cores


def cpu_cores_now(threads: int) -> float:
    """The CPU cores a process with ``threads`` busy threads gets now: ``threads`` on an idle machine,
    its fair share ``cpus x threads / (load + threads)`` when other jobs keep the CPUs busy (1-minute
    load average; a short probe measures CPU seconds because the scheduler favours short bursts)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(1e-3, min(float(threads), cpus * threads / max(load + threads, cpus)))


def calibration_key(cfg, device: str, dtype: str, threads: int) -> str:
    """Identifies a calibration: device, dtype, threads and the layer shape (not the depth)."""
    return (f"{device}|{dtype}|t{threads}|h{cfg.hidden_size}-i{cfg.intermediate_size}-H{cfg.num_heads}"
            f"-kv{cfg.num_kv_heads}-d{cfg.head_dim}-V{cfg.vocab_size}")


def _calibration_file() -> Path:
    return cache_root() / "calibration.json"


def _load_store() -> dict:
    try:
        obj = json.loads(_calibration_file().read_text(encoding="utf-8"))
        return obj if isinstance(obj, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(key: str, coeffs: dict) -> None:
    from longctx.niah.results import write_json_atomic

    store = _load_store()
    store[key] = coeffs
    try:
        write_json_atomic(_calibration_file(), store)
    except OSError:
        pass  # a read-only cache only costs a new probe next time


def calibrate(cfg, device: str, dtype: str, *, refresh: bool = False) -> CostModel:
    """The stored calibration for this device / dtype / shape, else a probe (stored for next time).

    Args:
        cfg: the model's :class:`~longctx.engine.config.ModelConfig`.
        device: a resolved device (``"cpu"``, ``"cuda:0"``).
        dtype: ``"float32"`` | ``"bfloat16"`` | ``"float16"``.
        refresh: probe even when a calibration is stored.
    """
    import torch  # the probe runs the engine; planning without a probe stays torch-free

    key = calibration_key(cfg, device, dtype, torch.get_num_threads())
    stored = None if refresh else _load_store().get(key)
    if not isinstance(stored, dict) or not all(isinstance(stored.get(k), (int, float)) for k in "abcsh") \
            or stored.get("clock") not in ("cpu", "wall") or stored.get("probe") != PROBE_VERSION:
        stored = _probe(cfg, device, dtype)
        _save(key, stored)
    cores = 1.0 if device.startswith("cuda") else cpu_cores_now(torch.get_num_threads())
    return CostModel(num_layers=cfg.num_layers, key=key, **{k: float(stored[k]) for k in "abcsh"},
                     measured=str(stored.get("measured", "")), cores=cores)


def _probe(cfg, device: str, dtype: str) -> dict:
    """Times prefill and decode on random one- and three-layer models of ``cfg``'s layer shape."""
    import dataclasses

    import numpy as np
    import torch

    from longctx.engine.runtime import random_model

    cuda = device.startswith("cuda")
    clock = time.perf_counter if cuda else time.process_time  # CPU: CPU seconds (see cpu_cores_now)

    def timed(fn) -> float:
        best = float("inf")
        for _ in range(2):
            t0 = clock()
            fn()
            if cuda:
                torch.cuda.synchronize()
            best = min(best, clock() - t0)
        return best

    n1, n2 = _PROBE_LENGTHS
    far = _DECODE_FAR
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg.vocab_size, size=far + _PROBE_STEPS, dtype=np.int64)
    prefill_s: dict[int, list[float]] = {}
    decode: dict[tuple[int, int], float] = {}  # (layers, cached positions) -> s per step
    for layers in (1, 3):
        shape = dataclasses.replace(cfg, num_layers=layers, rope_scaling=None, max_position_embeddings=max(
            cfg.max_position_embeddings, len(ids)))
        m = random_model(shape, device=device, dtype=dtype)
        base = m.rope_base_for(len(ids))
        contexts = (n2, far) if layers == 1 else (n2,)  # decode after these many cached positions
        cache = m.new_cache(max(contexts) + _PROBE_STEPS + 1)

        def prefill(n: int) -> None:
            cache.truncate(0)
            m.prefill(torch.from_numpy(ids[:n]), cache, base)

        prefill(64)  # warm-up
        prefill_s[layers] = [timed(lambda n=n: prefill(n)) for n in _PROBE_LENGTHS]
        # the 1-layer model also decodes after `far` positions: its prefill is cheap (last-position-only layer)
        for ctx in contexts:
            prefill(ctx)

            def steps(ctx: int = ctx) -> None:
                cache.truncate(ctx)
                for i in range(_PROBE_STEPS):
                    m.decode_step(int(ids[ctx + i]), cache, base)

            decode[layers, ctx] = timed(steps) / _PROBE_STEPS
        del m, cache
    # Prefill per layer: (3 layers - 1 layer) / 2. A prefill's last layer computes attention and MLP
    # for the last position only (only the logits read it), so a 1-layer model times little but its
    # K/V projections; the two middle layers of the 3-layer model are full ones.
    t1, t2 = ((prefill_s[3][i] - prefill_s[1][i]) / 2.0 for i in (0, 1))
    # t = a n + b n^2 / 2 at two lengths
    b = (t2 - t1 * n2 / n1) / ((n2 * n2 - n1 * n2) / 2.0)
    a = (t1 - b * n1 * n1 / 2.0) / n1
    if b <= 0 or a <= 0:  # too noisy to split: attention at the linear rate per FLOP
        a = max(t2, prefill_s[3][1] / 3.0) / n2
        per_layer_params = 2 * cfg.hidden_size * (cfg.num_heads + cfg.num_kv_heads) * cfg.head_dim \
            + 3 * cfg.hidden_size * cfg.intermediate_size
        b = a * 2 * cfg.num_heads * cfg.head_dim / per_layer_params
    # Decode: one query reads every cached key (memory-bound, unlike prefill's pairs), so the cost per
    # cached key per layer c comes from the 1-layer model at n2 and at `far` cached positions.
    c = (decode[1, far] - decode[1, n2]) / (far - n2)
    if c <= 0:  # too noisy: prefill's cost per pair
        c = b
    per_layer = max((decode[3, n2] - decode[1, n2]) / 2.0, decode[3, n2] / 6.0)  # at n2 cached keys
    h = max(decode[1, n2] - per_layer, 0.0)
    s = max(per_layer - c * n2, per_layer / 10.0)  # the floor only guards against noise
    return dict(a=a, b=b, c=c, s=s, h=h, probe=PROBE_VERSION, measured=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                clock="wall" if cuda else "cpu")


def available_memory(device: str) -> Optional[int]:
    """Free bytes on ``device``: CUDA's free memory, else the host's ``MemAvailable`` (None if unknown)."""
    if device.startswith("cuda"):
        import torch  # only for a CUDA device

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass
class Plan:
    """A sweep's plan: what runs, what it prefills, how long and how much memory it needs."""

    cells: int
    skipped: int
    lengths: list[int]
    depths: list[float]
    trials: int
    prompt_tokens: int  # sum of the prompt lengths (a sweep without prefix sharing prefills this)
    prefill_tokens: int  # with prefix sharing
    largest_context: int  # longest prompt + answer budget
    seconds: Optional[float]
    memory: dict = field(default_factory=dict)  # weights, kv_cache, working, total, free (bytes)
    notes: list[str] = field(default_factory=list)
    cell_costs: list[float] = field(default_factory=list)
    cost_model: Optional[CostModel] = None
    answer_tokens: int = ASSUMED_ANSWER_TOKENS

    def cell_seconds(self, prompt_len: int, prefilled: int) -> Optional[float]:
        """The cost model's seconds for one cell of this plan (None without a cost model)."""
        if self.cost_model is None:
            return None
        return self.cost_model.cell_seconds(prompt_len, prefilled, self.answer_tokens)

    def reasons(self, time_limit_s: float = TIME_LIMIT_S) -> list[str]:
        """Why this plan needs ``--yes`` (empty when it does not)."""
        out = []
        if self.seconds is not None and self.seconds > time_limit_s:
            out.append(f"the estimated time {_clock(self.seconds)} is over {_clock(time_limit_s)}")
        free, need = self.memory.get("free"), self.memory.get("total")
        if free is not None and need is not None and need > free:
            out.append(f"it needs {_gib(need)} of memory and {_gib(free)} is free")
        return out


def make_plan(cells: Sequence, built: Sequence, *, answer_budget: int, group_key: Callable[[int], Any],
              prefix_sharing: bool, cost: Optional[CostModel], cfg=None, dtype_bytes: int = 4, chunk: int = 2048,
              free_bytes: Optional[int] = None, skipped: int = 0, kv_dtype: str = "auto") -> Plan:
    """The plan of running ``built`` (the cells still to run, built prompts with ``ids``).

    Prefill tokens come from the backends' own schedule (:func:`~longctx.backends.base.prefix_schedule`),
    so the plan counts prefix sharing exactly as the native backend will run it.
    """
    from longctx.engine.memory import estimate_memory

    reqs = [GenRequest(c.ids, answer_budget, c) for c in built]
    sched = prefix_schedule(prefix_groups(reqs, group_key)) if prefix_sharing else [(r, len(r.ids)) for r in reqs]
    largest = max((len(r.ids) + answer_budget for r in reqs), default=0)
    n_new = min(answer_budget, ASSUMED_ANSWER_TOKENS)
    costs = [cost.cell_seconds(len(r.ids), p, n_new) for r, p in sched] if cost is not None else []
    memory: dict = {}
    if cfg is not None and largest:
        memory = dict(estimate_memory(cfg, largest, dtype_bytes=dtype_bytes, chunk=chunk, kv_dtype=kv_dtype))
        memory["free"] = free_bytes
    return Plan(cells=len(reqs), skipped=skipped, lengths=sorted({c.length for c in cells}),
                depths=sorted({c.depth for c in cells}), trials=max((c.trial for c in cells), default=0) + 1,
                prompt_tokens=sum(len(r.ids) for r in reqs), prefill_tokens=sum(p for _, p in sched),
                largest_context=largest, seconds=sum(costs) if cost is not None else None, memory=memory,
                cell_costs=costs, cost_model=cost, answer_tokens=n_new)


def _clock(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}"


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.2f} GiB"


def format_plan(plan: Plan) -> list[str]:
    """The plan as lines for the terminal."""
    lens = ",".join(format_size(v) for v in plan.lengths)
    deps = ",".join(f"{d:g}" for d in plan.depths)
    lines = [f"plan: {plan.cells} cells to run" + (f" ({plan.skipped} already in the results file)" if plan.skipped
                                                   else "")
             + f": {len(plan.lengths)} lengths [{lens}] x {len(plan.depths)} depths [{deps}] x {plan.trials} trial(s)"]
    ratio = plan.prompt_tokens / plan.prefill_tokens if plan.prefill_tokens else 1.0
    lines.append(f"  tokens to prefill: {plan.prefill_tokens:,} (prompts total {plan.prompt_tokens:,}; "
                 f"{ratio:.2f}x fewer with prefix sharing)")
    lines.append(f"  largest context: {plan.largest_context:,} tokens (prompt + answer budget)")
    if plan.seconds is not None:
        cores = plan.cost_model.cores if plan.cost_model is not None else None
        lines.append(f"  estimated time: {_clock(plan.seconds)} (h:mm:ss, model load not included; "
                     f"{plan.answer_tokens} answer tokens per cell assumed"
                     + (f"; {cores:.2f} CPU cores free for it now" if cores is not None and cores != 1.0 else "")
                     + ")")
    else:
        lines.append("  estimated time: not estimated for this backend")
    mem = plan.memory
    if mem:
        free = "unknown" if mem.get("free") is None else _gib(mem["free"])
        lines.append(f"  memory: weights {_gib(mem['weights'])} + KV cache {_gib(mem['kv_cache'])} + working "
                     f"{_gib(mem['working'])} = {_gib(mem['total'])}; free {free}")
    lines += [f"  note: {n}" for n in plan.notes]
    return lines


def check_plan(plan: Plan, yes: bool, time_limit_s: float = TIME_LIMIT_S) -> None:
    """Raises :class:`PlanLimitError` when the plan is over the time or memory limit and not ``yes``."""
    reasons = plan.reasons(time_limit_s)
    if reasons and not yes:
        raise PlanLimitError("; ".join(reasons) + "; rerun with --yes to start it anyway")


def plan_dict(plan: Plan) -> dict:
    """The plan as JSON-able facts (stored with the run's configuration)."""
    d = asdict(plan)
    d.pop("cell_costs", None)
    d.pop("cost_model", None)
    return d
