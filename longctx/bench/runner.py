"""Runs a prefill benchmark: every (length, implementation) point, optionally each in a fresh process.

Used by ``longctx bench prefill`` (``longctx/cli/bench_cmd.py``) and by the GPU script
(``experiments/gpu/run_all.py``); nothing here parses command lines.

The fresh-subprocess protocol (``isolate``; the default on CPU, where peak RSS is process-wide):
the parent writes the point's arguments (implementation, spec, length, repeats, warm-up, matmul
peak, probe flag) to ``args.json`` in a temporary folder and runs
``python -m longctx.bench.runner --child ARGS.json OUT.json``. The child sets its thread count,
reads its RSS *before* building the model (``runtime_bytes``), builds the model from the spec,
measures the point (:mod:`longctx.bench.measure`) and writes the record to ``OUT.json``. Every
failure in the child becomes a status record (``OOM``, ``error: ...``); a child killed by the kernel
(-9) is ``OOM (killed)``, one past the time budget ``skipped (time budget), stopped``. With
``rounds`` > 1 the whole (length x implementation) sequence runs that many times, alternating
implementations, and each point reports the median over rounds.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from longctx.bench.flops import FLOP_FORMULA, prefill_flops
from longctx.bench.measure import (baseline_point, engine_point, error_text, finish_point, rss_bytes,
                                   status_record, free_memory, machine_info, matmul_peak)
from longctx.bench.report import BenchReport, ComparisonRow, PointRecord
from longctx.bench.spec import IMPLS, BenchOptions, build_baseline, build_engine, resolve_spec, spec_config, torch_dtype
from longctx.engine.config import ConfigError

SKIP_BUDGET = "skipped (time budget)"

LogFn = Callable[[str], None]


def _child_main(args: dict) -> dict:
    """Subprocess body: builds the model, measures one point, returns the record."""
    impl, spec, length = args["impl"], args["spec"], args["length"]
    try:
        if spec.get("threads"):
            torch.set_num_threads(int(spec["threads"]))
        if impl == "transformers":
            import transformers  # noqa: F401  (imported before the runtime RSS is read)
        runtime = rss_bytes("VmRSS")
        t0 = time.perf_counter()
        model = build_engine(spec) if impl == "longctx" else build_baseline(spec)[0]
        load_s = time.perf_counter() - t0
        if impl == "longctx":
            raw = engine_point(model, spec, length, args["repeats"], args["warmup"], args["probe_only"])
        else:
            raw = baseline_point(model, spec, length, args["repeats"], args["warmup"])
        raw["load_s"] = load_s
        return finish_point(impl, length, raw, spec, args["peak_tflops"], runtime, args["probe_only"])
    except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
        return status_record(impl, length, error_text(e), spec)


def _child_entry(arg_path: str, out_path: str) -> None:
    """``python -m longctx.bench.runner --child ARGS.json OUT.json``: one isolated point."""
    args = json.loads(Path(arg_path).read_text())
    rec = _child_main(args)
    Path(out_path).write_text(json.dumps(rec, default=str))


def _run_isolated(impl: str, spec: dict, length: int, repeats: int, warmup: int, peak_tflops, probe_only: bool,
                  timeout: float | None) -> dict:
    """Runs one point in a fresh Python process (``python -m longctx.bench.runner --child``)."""
    with tempfile.TemporaryDirectory(prefix="longctx-bench-") as tmp:
        arg_path, out_path = Path(tmp) / "args.json", Path(tmp) / "out.json"
        arg_path.write_text(json.dumps({"impl": impl, "spec": spec, "length": length, "repeats": repeats,
                                        "warmup": warmup, "peak_tflops": peak_tflops, "probe_only": probe_only}))
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "longctx.bench.runner", "--child", str(arg_path), str(out_path)]
        try:
            proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  timeout=max(1.0, timeout) if timeout is not None else None)
        except subprocess.TimeoutExpired:
            return status_record(impl, length, SKIP_BUDGET + ", stopped", spec)
        if out_path.is_file():
            try:
                return json.loads(out_path.read_text())
            except json.JSONDecodeError:
                pass
        if proc.returncode in (-9, 137):
            return status_record(impl, length, "OOM (killed)", spec)
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        return status_record(impl, length, f"error: subprocess exited with code {proc.returncode}: {tail[0][:200]}", spec)



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
                      on_point: Callable[[BenchReport], None] | None = None) -> BenchReport:
    """Runs the benchmark and returns the report (fields: :class:`~longctx.bench.report.BenchReport`).

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
    dtype = torch_dtype(spec["dtype"])
    cfg = spec_config(spec)
    isolate = opts.isolate if opts.isolate is not None else device.type == "cpu"
    warmup = opts.warmup if opts.warmup is not None else (256 if device.type == "cpu" else spec["chunk"] + 512)
    lengths = sorted(set(int(n) for n in opts.lengths))
    impls = ["longctx"] + (["transformers"] if opts.baseline == "transformers" else [])
    if "transformers" in impls:
        try:
            import transformers  # noqa: F401  (optional; only the baseline needs it)
        except ImportError:
            raise ConfigError("--baseline transformers needs the transformers package") from None
    report = BenchReport(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), machine=machine_info(device),
        options={**dataclasses.asdict(opts), "lengths": lengths, "isolate": isolate, "warmup": warmup},
        model={"name": cfg.name, "source": spec["source"], "path": spec["path"], "preset": spec["preset"],
               "parameters": cfg.num_parameters(), "nonembedding_parameters": cfg.nonembedding_parameters(),
               "layers": cfg.num_layers, "hidden": cfg.hidden_size, "intermediate": cfg.intermediate_size,
               "heads": cfg.num_heads, "kv_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
               "vocab": cfg.vocab_size, "rope_scaling": str(cfg.rope_scaling) if cfg.rope_scaling else None,
               "max_position_embeddings": cfg.max_position_embeddings},
        device=str(device), dtype=spec["dtype"], chunk=spec["chunk"], flop_formula=FLOP_FORMULA,
    )
    try:
        mp = report.matmul_peak = matmul_peak(device, dtype)
        log(f"matmul peak: {mp['tflops']:.2f} TFLOP/s ({mp['n']}^3 {mp['dtype']} on {device})")
    except Exception as e:  # noqa: BLE001
        log(f"matmul peak failed: {error_text(e)}")
    peak_tflops = report.matmul_peak["tflops"] if report.matmul_peak else None
    est = _Estimator()
    stopped: dict[str, str] = {}  # impl -> why the longer lengths are skipped

    def elapsed() -> float:
        return time.perf_counter() - t_start

    rounds_seen: dict[tuple[str, int], list[PointRecord]] = {}

    def emit(rec: PointRecord, merge: bool = False) -> None:
        if merge:  # one more round of a point: the point's record becomes the merge of its rounds
            key = (rec["impl"], rec["length"])
            rounds_seen.setdefault(key, []).append(rec)
            report.rounds_raw = (report.rounds_raw or []) + [rec]
            merged = {k: merge_rounds(v, peak_tflops) for k, v in rounds_seen.items()}
            order = {impl: i for i, impl in enumerate(IMPLS)}
            report.results = [merged[k] for k in sorted(merged, key=lambda k: (order.get(k[0], 9), k[1]))]
        else:
            report.results.append(rec)
        report.comparison = compare(report.results)
        ok = [r["length"] for r in report.results if r["impl"] == "transformers" and r["status"] == "ok"]
        report.baseline_max_length = max(ok) if ok else None
        report.elapsed_s = elapsed()
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

    def run_point(impl: str, length: int, model=None) -> PointRecord:
        probe_only = impl == "longctx" and length in opts.probe_only_lengths
        if impl in stopped:
            return status_record(impl, length, stopped[impl], spec)
        ok, remaining = budget_ok(impl, length, probe_only)
        if not ok and impl == "longctx" and not probe_only and opts.probe_when_over_budget:
            probe_only = True
            ok, remaining = budget_ok(impl, length, probe_only)
        if not ok:
            return status_record(impl, length, SKIP_BUDGET, spec)
        t0 = time.perf_counter()
        if isolate:
            rec = _run_isolated(impl, spec, length, opts.repeats, warmup, peak_tflops, probe_only,
                                timeout=remaining if opts.time_budget is not None else None)
        else:
            try:
                if impl == "longctx":
                    raw = engine_point(model, spec, length, opts.repeats, warmup, probe_only)
                else:
                    raw = baseline_point(model, spec, length, opts.repeats, warmup)
                rec = finish_point(impl, length, raw, spec, peak_tflops, None, probe_only)
            except Exception as e:  # noqa: BLE001 - recorded, the run goes on
                rec = status_record(impl, length, error_text(e), spec)
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
                    emit(status_record(impl, n, SKIP_BUDGET, spec))
                continue
            try:
                t0 = time.perf_counter()
                free_memory(device)
                model = build_engine(spec) if impl == "longctx" else build_baseline(spec)[0]
                log(f"{impl}: model ready in {time.perf_counter() - t0:.1f} s")
            except Exception as e:  # noqa: BLE001
                status = error_text(e)
                for n in pending:
                    emit(status_record(impl, n, "OOM (loading)" if status == "OOM" else status, spec))
                model = None
                free_memory(device)
                continue
            for n in pending:
                emit(run_point(impl, n, model))
            del model
            free_memory(device)
    if opts.baseline == "transformers":
        report.baseline = "transformers LlamaForCausalLM (sdpa, use_cache=True, logits_to_keep=1)"
    report.elapsed_s = elapsed()
    return report


def merge_rounds(recs: list[PointRecord], peak_tflops: float | None) -> PointRecord:
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


def compare(results: list[PointRecord]) -> list[ComparisonRow]:
    """Engine / baseline ratios per length (tokens/s and peak memory)."""
    by = {(r["impl"], r["length"]): r for r in results}
    out = []
    for (impl, n), e in sorted(by.items(), key=lambda kv: kv[0][1]):
        if impl != "longctx":
            continue
        b = by.get(("transformers", n))
        if b is None:
            continue
        row: ComparisonRow = {"length": n, "engine_tokens_per_s": e.get("tokens_per_s"),
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



if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child_entry(sys.argv[2], sys.argv[3])
    else:
        print("usage: python -m longctx.bench.runner --child ARGS.json OUT.json (internal; use `longctx bench prefill`)",
              file=sys.stderr)
        sys.exit(2)
