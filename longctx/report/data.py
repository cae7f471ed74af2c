"""The data behind ``longctx report`` (no torch): results files -> runs -> everything the page shows.

:func:`load_runs` reads JSONL results files (with ``niah.results.read_records``) and groups their
records into runs by ``run_id`` (the shards of one run merge; different runs are shown side by
side). :func:`run_model` turns one run into plain data: the heatmap cells (mean score x 100 per
(target depth, target length), as ``longctx plot`` draws them), per-length scores with n and a
Wilson 95% interval, timings, the run's metadata, and the drill-down record of every cell.
"""
from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from longctx.errors import ReportError
from longctx.niah import plot as P
from longctx.niah import stats as S
from longctx.niah.results import config_path, read_records
from longctx.niah.scoring import string_match_part

__all__ = ["Run", "DRILL_FIELDS", "drill_record", "load_runs", "run_model"]

#: Record fields copied verbatim into a cell's drill-down (the rest of a record stays in the JSONL).
DRILL_FIELDS = ("task", "target_length", "length", "target_depth", "depth", "trial", "seed", "needles",
                "expected", "metric", "answer_budget", "response", "score", "error", "excerpt", "prefill_s",
                "decode_s", "prefilled_tokens", "cached_tokens", "new_tokens", "stop_reason", "peak_mem_bytes",
                "rope_base", "haystack_repeated")


@dataclass
class Run:
    """The records of one run (one ``run_id``) and where they came from.

    Attributes:
        key: the run_id (or ``file:<path>`` for records without one).
        label: the panel title.
        files: the results files holding its records, in argument order.
        records: deduplicated by (task, target_length, target_depth, trial), the last copy read winning.
        sidecars: the ``<results>.config.json`` contents of those files that have one.
    """

    key: str
    label: str = ""
    files: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    sidecars: list[dict] = field(default_factory=list)


def _read(path: Path) -> list[dict]:
    if path.is_dir():
        raise ReportError(f"not a results file (is a directory): {path}")
    try:
        records = read_records(path)
    except OSError as e:
        raise ReportError(f"cannot read {path}: {e.strerror or e}") from None
    if not records:
        raise ReportError(f"{path}: no results records (is this a NIAH results JSONL file?)")
    for i, rec in enumerate(records):
        try:
            rec["target_length"] = int(rec["target_length"])
            rec["target_depth"] = float(rec["target_depth"])
        except (KeyError, TypeError, ValueError):
            raise ReportError(f"{path}: record {i + 1} has no numeric target_length/target_depth; "
                              f"is this a NIAH results file?") from None
        if not math.isfinite(rec["target_depth"]):
            raise ReportError(f"{path}: record {i + 1} has a target_depth that is not a finite number")
    return records


def _sidecar(path: Path) -> Optional[dict]:
    p = config_path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def load_runs(paths: Sequence[str | Path], labels: Optional[Sequence[str]] = None) -> list[Run]:
    """Reads results files and groups their records into runs (order of first appearance).

    Args:
        paths: JSONL results files.
        labels: one panel label per run (default: model and RoPE scaling, as ``longctx plot``).

    Raises:
        ReportError: no files, a missing/unreadable file, a file without NIAH records, or a
            ``labels`` count that does not match the runs.
    """
    if not paths:
        raise ReportError("no results files given")
    runs: dict[str, Run] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ReportError(f"results file not found: {path}")
        side = _sidecar(path)
        for rec in _read(path):
            key = str(rec.get("run_id") or f"file:{path}")
            run = runs.setdefault(key, Run(key))
            if str(path) not in run.files:
                run.files.append(str(path))
                if side is not None:
                    run.sidecars.append(side)
            run.records.append(rec)
    out = list(runs.values())
    for run in out:
        kept: dict[tuple, dict] = {}
        for rec in run.records:
            kept[(str(rec.get("task")), rec["target_length"], round(rec["target_depth"], 6), rec.get("trial"))] = rec
        run.records = sorted(kept.values(), key=lambda r: (r["target_length"], r["target_depth"], _num(r.get("trial")) or 0,
                                                           str(r.get("task"))))
    if labels is not None:
        if len(labels) != len(out) or not all(str(x).strip() for x in labels):
            raise ReportError(f"--labels gives {len(labels)} name(s) but there are {len(out)} run(s) "
                              f"({', '.join(r.key for r in out)})")
        for run, lab in zip(out, labels):
            run.label = str(lab).strip()
    else:
        names = [P.run_label(r.records) for r in out]
        if len(set(names)) != len(names):  # same model and scaling twice: tell them apart
            names = [f"{n} ({Path(r.files[0]).stem})" for n, r in zip(names, out)]
        for run, name in zip(out, names):
            run.label = name
    return out


# --------------------------------------------------------------------------- one run
def drill_record(rec: dict) -> dict:
    """The fields a cell's panel shows, plus ``matches``: for each expected answer, whether the
    response contains it (RULER containment, case-insensitive) and its character spans there."""
    out = {k: rec.get(k) for k in DRILL_FIELDS}
    response = rec.get("response") or ""
    matches = []
    for ref in rec.get("expected") or []:
        ref_s = str(ref).strip()
        found = bool(ref_s) and bool(string_match_part(response, [ref_s]))
        spans = []
        if ref_s:
            low, needle = response.lower(), ref_s.lower()
            if len(low) == len(response):  # lower() kept the length: indices map back
                i = low.find(needle)
                while i >= 0:
                    spans.append([i, i + len(needle)])
                    i = low.find(needle, i + len(needle))
        matches.append({"ref": str(ref), "found": found, "spans": spans})
    out["matches"] = matches
    return out


def _num(v) -> Optional[float]:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _mean(vals: Iterable[Optional[float]]) -> Optional[float]:
    xs = [v for v in vals if v is not None]
    return sum(xs) / len(xs) if xs else None


def _text(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _distinct(values: Iterable[Any], limit: int = 4) -> Optional[str]:
    seen: list[str] = []
    for v in values:
        if v is None or v == "":
            continue
        t = _text(v)
        if t not in seen:
            seen.append(t)
    if not seen:
        return None
    return ", ".join(seen[:limit]) + (f" (+{len(seen) - limit} more)" if len(seen) > limit else "")


def _rope_base(recs: list[dict]) -> Optional[str]:
    bases = sorted({b for b in (_num(r.get("rope_base")) for r in recs) if b is not None})
    if not bases:
        return None
    if len(bases) == 1:
        return f"{bases[0]:g}"
    return f"{bases[0]:g} to {bases[-1]:g} (grows with length)"


def _meta(run: Run) -> list[tuple[str, str]]:
    recs = run.records
    settings = next((s.get("settings") for s in run.sidecars if isinstance(s.get("settings"), dict)), {}) or {}
    starts = [r for s in run.sidecars for r in (s.get("runs") or []) if isinstance(r, dict)]
    last = starts[-1] if starts else {}

    def col(name: str) -> Optional[str]:
        return _distinct(r.get(name) for r in recs)

    hs = col("haystack")
    sha = _distinct(str(r.get("haystack_sha256"))[:12] for r in recs if r.get("haystack_sha256"))
    lengths = {r["target_length"] for r in recs}
    depths = {round(r["target_depth"], 6) for r in recs}
    trials = {r.get("trial") for r in recs}
    errors = sum(1 for r in recs if r.get("error"))
    commit = _distinct([r.get("commit") or r.get("git_commit") for r in recs]
                       + [s.get("commit") or s.get("git_commit") for s in starts])
    argv = last.get("argv")
    times = sorted(str(r["time"]) for r in recs if r.get("time"))
    rows = [
        ("model", col("model")),
        ("model config", col("config_hash")),
        ("tokenizer", col("tokenizer")),
        ("RoPE scaling", _distinct(P.rope_label(r.get("rope_scaling")) for r in recs)),
        ("RoPE base", _rope_base(recs)),
        ("backend", col("backend")),
        ("dtype", col("dtype")),
        ("device", col("device")),
        ("task", col("task")),
        ("metric", col("metric")),
        ("answer budget", col("answer_budget")),
        ("haystack", f"{hs} (sha256 {sha}...)" if hs and sha else hs),
        ("haystack repeated", "yes" if any(r.get("haystack_repeated") for r in recs) else None),
        ("seed", col("seed")),
        ("chat template", ("yes" if settings["chat"] else "no") if "chat" in settings else None),
        ("decoding", _text(settings.get("decoding")) if settings.get("decoding") else None),
        ("grid", f"{len(lengths)} lengths x {len(depths)} depths x {len(trials)} trial(s): {len(recs)} records, "
                 f"{errors} error(s)"),
        ("commit", commit or "not recorded"),
        ("version", col("version")),
        ("run id", run.key),
        ("run config hash", col("run_config_hash")),
        ("recorded", f"{times[0]} to {times[-1]}" if len(times) > 1 and times[0] != times[-1] else
         (times[0] if times else None)),
        ("host", _distinct(s.get("host") for s in starts)),
        ("command", "longctx " + shlex.join(str(a) for a in argv) if isinstance(argv, list) else None),
        ("files", ", ".join(run.files)),
    ]
    return [(k, v) for k, v in rows if v is not None]


def _per_length(recs: list[dict]) -> list[dict]:
    """Per-length rows (and "all") from :func:`longctx.niah.stats.summary_table`: mean, n, Wilson interval."""
    return [{"length": row["target_length"], "label": row["label"], "mean": row["mean"], "n": row["n"],
             "errors": row["errors"], "lo": row["ci_low"], "hi": row["ci_high"]} for row in S.summary_table(recs)]


def _timing(group: list[dict]) -> dict:
    prefilled = sum(int(_num(r.get("prefilled_tokens")) or 0) for r in group)
    naive = sum(int(_num(r.get("length")) or r["target_length"]) for r in group)
    return {"records": len(group), "prefill_s": _mean(_num(r.get("prefill_s")) for r in group),
            "decode_s": _mean(_num(r.get("decode_s")) for r in group),
            "prefill_total_s": sum(_num(r.get("prefill_s")) or 0.0 for r in group),
            "decode_total_s": sum(_num(r.get("decode_s")) or 0.0 for r in group),
            "prefilled_tokens": prefilled, "naive_tokens": naive,
            "new_tokens": sum(int(_num(r.get("new_tokens")) or 0) for r in group)}


def run_model(run: Run) -> dict:
    """Everything the page shows for one run, as plain data.

    Returns:
        ``label``, ``meta`` ([(name, text)]), ``lengths`` / ``length_labels``, ``depths`` /
        ``depth_labels``, ``cells`` (rows of ``{score, n, errors, records, prefill_s, decode_s,
        prefilled_tokens}``: score 0-100 or None when no record of the cell is scored; records are
        indices into ``drill``), ``per_length`` (``{length, label, mean, n, errors, lo, hi}`` with
        the Wilson 95% interval in percent, last row ``"all"``), ``timing`` (per length and
        ``"all"``), ``drill`` (one :func:`drill_record` per record).
    """
    recs = run.records
    lengths, depths, matrix = S.score_matrix(recs)
    li = {v: j for j, v in enumerate(lengths)}
    di = {v: i for i, v in enumerate(depths)}
    members: list[list[list[int]]] = [[[] for _ in lengths] for _ in depths]
    for k, r in enumerate(recs):
        members[di[r["target_depth"]]][li[r["target_length"]]].append(k)
    cells = []
    for i in range(len(depths)):
        row = []
        for j in range(len(lengths)):
            group = [recs[k] for k in members[i][j]]
            v = float(matrix[i, j])
            t = _timing(group)
            row.append({"score": v if math.isfinite(v) else None, "n": sum(S.valid_score(r) is not None for r in group),
                        "errors": sum(1 for r in group if r.get("error")), "records": members[i][j],
                        "prefill_s": t["prefill_s"], "decode_s": t["decode_s"],
                        "prefilled_tokens": t["prefilled_tokens"]})
        cells.append(row)
    timing = [{"length": L, "label": S.format_tokens(L), **_timing([r for r in recs if r["target_length"] == L])}
              for L in lengths]
    timing.append({"length": "all", "label": "all", **_timing(recs)})
    return {
        "label": run.label, "meta": _meta(run), "lengths": lengths,
        "length_labels": P.length_labels(lengths), "depths": depths,
        "depth_labels": [f"{d:g}%" for d in depths], "cells": cells, "per_length": _per_length(recs),
        "timing": timing, "drill": [drill_record(r) for r in recs],
    }
