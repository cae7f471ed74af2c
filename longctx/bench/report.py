"""The prefill benchmark's report: a typed :class:`BenchReport`, its JSON file, its tables.

The JSON file (``longctx bench prefill --json``) is ``BenchReport.to_dict()``: ``version``,
``created``, ``machine``, ``options``, ``model``, ``device``, ``dtype``, ``chunk``,
``flop_formula``, ``results`` (one record per point, :class:`PointRecord`), ``comparison`` (one
row per length, :class:`ComparisonRow`), ``baseline``, ``baseline_max_length``, ``matmul_peak``,
``elapsed_s`` and, when points ran in rounds, ``rounds_raw`` (every round's record). On screen the
tables are ``rich`` tables; ``--markdown`` writes the same rows as Markdown tables.

Torch-free: a saved report can be read and printed without the engine.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypedDict

from rich import box
from rich.console import Console
from rich.table import Table


class PointRecord(TypedDict, total=False):
    """One measured (or skipped) point; absent or ``None`` fields were not measured.

    A skipped or failed point carries only the fields from ``impl`` to ``net_peak_bytes``.
    """

    impl: str  # "longctx" (the engine) or "transformers" (the baseline)
    length: int
    status: str  # "ok", "ok (memory probe)", "OOM", "skipped (time budget)", "error: ..."
    seconds: Optional[float]  # median wall time of the timed prefills
    tokens_per_s: Optional[float]
    flops: int
    flops_linear: int
    flops_attention: int
    tflops: Optional[float]
    pct_peak: Optional[float]  # percent of the same run's matmul peak
    peak_mem_bytes: Optional[int]
    weights_bytes: Optional[int]
    kv_cache_bytes: Optional[int]
    rest_bytes: Optional[int]  # peak - weights - KV cache
    runtime_bytes: Optional[int]  # RSS before the model was built (isolated points)
    net_peak_bytes: Optional[int]  # peak - runtime: what the comparison uses
    seconds_all: list[float]
    cpu_seconds: Optional[float]
    mem_method: str  # "cuda.max_memory_allocated" | "VmHWM" | "ru_maxrss"
    chunk: Optional[int]
    prefill: Optional[str]  # engine: chunked | layerwise
    attn: str
    chunk_path: Optional[str]
    rope_base: float
    load_s: Optional[float]
    probe_seconds: float  # memory probes only
    round: int  # rounds_raw only
    rounds: int  # merged over rounds
    seconds_rounds: list[float]
    status_rounds: list[str]


class ComparisonRow(TypedDict):
    """Engine / baseline ratios at one length (``None`` where either side has no number)."""

    length: int
    engine_tokens_per_s: Optional[float]
    baseline_tokens_per_s: Optional[float]
    speed_ratio: Optional[float]
    engine_mem_bytes: Optional[int]
    baseline_mem_bytes: Optional[int]
    mem_ratio: Optional[float]
    baseline_status: str
    cpu_time_ratio: Optional[float]


@dataclass
class BenchReport:
    """A prefill benchmark run (see the module docstring for the JSON layout)."""

    created: str
    machine: dict[str, Any]
    options: dict[str, Any]
    model: dict[str, Any]
    device: str
    dtype: str
    chunk: int
    flop_formula: str
    results: list[PointRecord] = field(default_factory=list)
    comparison: list[ComparisonRow] = field(default_factory=list)
    baseline: Optional[str] = None
    baseline_max_length: Optional[int] = None
    matmul_peak: Optional[dict[str, Any]] = None
    elapsed_s: Optional[float] = None
    rounds_raw: Optional[list[PointRecord]] = None
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (``rounds_raw`` only when points ran in rounds)."""
        out: dict[str, Any] = {
            "version": self.version, "created": self.created, "machine": self.machine, "options": self.options,
            "model": self.model, "device": self.device, "dtype": self.dtype, "chunk": self.chunk,
            "flop_formula": self.flop_formula, "results": self.results, "comparison": self.comparison,
            "baseline": self.baseline, "baseline_max_length": self.baseline_max_length,
            "matmul_peak": self.matmul_peak, "elapsed_s": self.elapsed_s,
        }
        if self.rounds_raw is not None:
            out["rounds_raw"] = self.rounds_raw
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchReport":
        """A report from its JSON object (as written by :func:`write_json`)."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------

def _gib(n) -> str:
    return "" if n is None else f"{n / 2**30:.2f}"


def _fmt(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


def _ratio(v) -> str:
    return _fmt(v, ".2f") + ("x" if v else "")


RESULT_COLUMNS = ["impl", "L", "status", "s", "tok/s", "TFLOP/s", "% peak", "peak GiB", "weights GiB", "KV GiB",
                  "rest GiB"]
COMPARE_COLUMNS = ["L", "engine tok/s", "transformers tok/s", "speed ratio", "engine mem GiB", "transformers mem GiB",
                   "mem ratio"]
LEFT_COLUMNS = ("impl", "status")


def result_rows(report: BenchReport) -> list[list[str]]:
    """One row of :data:`RESULT_COLUMNS` per point."""
    return [[r["impl"], str(r["length"]), r["status"], _fmt(r.get("seconds"), ".3f"),
             _fmt(r.get("tokens_per_s"), ",.0f"), _fmt(r.get("tflops"), ".3g"), _fmt(r.get("pct_peak"), ".0f"),
             _gib(r.get("peak_mem_bytes")), _gib(r.get("weights_bytes")), _gib(r.get("kv_cache_bytes")),
             _gib(r.get("rest_bytes"))] for r in report.results]


def _cpu_report(report: BenchReport) -> bool:
    return str(report.device).startswith("cpu")


def compare_columns(report: BenchReport) -> list[str]:
    """The comparison columns; CPU reports add the ratio of process CPU time (robust to a loaded machine
    when points run single-threaded)."""
    cols = list(COMPARE_COLUMNS)
    if _cpu_report(report):
        cols.insert(4, "CPU-time ratio")
    return cols


def compare_rows(report: BenchReport) -> list[list[str]]:
    """One row of :func:`compare_columns` per length."""
    rows = []
    for c in report.comparison:
        row = [str(c["length"]), _fmt(c["engine_tokens_per_s"], ",.0f"),
               _fmt(c["baseline_tokens_per_s"], ",.0f") or c["baseline_status"], _ratio(c["speed_ratio"]),
               _gib(c["engine_mem_bytes"]), _gib(c["baseline_mem_bytes"]), _ratio(c["mem_ratio"])]
        if _cpu_report(report):
            row.insert(4, _ratio(c.get("cpu_time_ratio")))
        rows.append(row)
    return rows


def header_lines(report: BenchReport) -> list[str]:
    """Model, device, versions, matmul peak, baseline and memory method, one line each."""
    m, mach = report.model, report.machine
    dev = mach.get("gpu") or f"{mach.get('cpu_model')} ({mach.get('cpu_count')} CPUs, {mach.get('torch_threads')} threads)"
    lines = [
        f"model: {m['name']} ({m['source']}; {m['parameters'] / 1e9:.3g} B params, {m['layers']} layers, "
        f"{m['heads']}/{m['kv_heads']} heads x {m['head_dim']}, rope scaling {m['rope_scaling'] or 'none'})",
        f"device: {report.device} -- {dev}; dtype {report.dtype}; engine chunk {report.chunk}"
        + (f", prefill {report.options['prefill']}" if report.options.get("prefill", "auto") != "auto" else ""),
        f"torch {mach.get('torch')}, transformers {mach.get('transformers')}",
    ]
    mp = report.matmul_peak
    if mp:
        lines.append(f"matmul peak (same run): {mp['tflops']:.3g} TFLOP/s ({mp['n']}^3 {mp['dtype']} torch.mm)")
    if report.baseline:
        lines.append(f"baseline: {report.baseline}; longest length it ran: {report.baseline_max_length}")
    if report.options.get("isolate"):
        lines.append("memory: peak RSS of a fresh subprocess per point during the timed prefill; ratios use "
                     "peak minus the RSS before the model was built")
    elif report.device.startswith("cuda"):
        lines.append("memory: torch.cuda.max_memory_allocated (weights + KV cache + working)")
    return lines


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

def rich_table(columns: list[str], rows: list[list[str]], title: str | None = None) -> Table:
    """A ``rich`` table: text columns left-aligned, numbers right-aligned, cells never wrapped."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for c in columns:
        table.add_column(c, justify="left" if c in LEFT_COLUMNS else "right", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    return table


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table (``|`` in cells becomes ``/``)."""
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(out)


def report_to_text(report: BenchReport, width: int = 200) -> str:
    """The header lines and the tables as plain text (rich tables rendered without colour)."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, highlight=False, soft_wrap=True)
    console.print("\n".join(header_lines(report)), markup=False)
    console.print()
    console.print(rich_table(RESULT_COLUMNS, result_rows(report)))
    if report.comparison:
        console.print()
        console.print(rich_table(compare_columns(report), compare_rows(report), title="engine / transformers:"))
    return buf.getvalue().rstrip("\n")


def report_to_markdown(report: BenchReport, title: str = "Prefill benchmark") -> str:
    """The report as a Markdown section (header bullets, results table, comparison table, FLOP formula)."""
    parts = [f"## {title}", "", f"Run {report.created}, {report.elapsed_s or 0:.0f} s.", ""]
    parts += [f"- {line}" for line in header_lines(report)]
    parts += ["", markdown_table(RESULT_COLUMNS, result_rows(report))]
    if report.comparison:
        parts += ["", "Engine / transformers:", "", markdown_table(compare_columns(report), compare_rows(report))]
    parts += ["", f"FLOPs: {report.flop_formula}.", ""]
    return "\n".join(parts)


def write_json(report: BenchReport, path: str | Path) -> None:
    """Writes ``report.to_dict()`` atomically (a temporary file renamed over ``path``)."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    os.replace(tmp, p)


def write_markdown(report: BenchReport, path: str | Path, title: str = "Prefill benchmark") -> None:
    """Writes :func:`report_to_markdown`."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(report_to_markdown(report, title))
