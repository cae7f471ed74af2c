"""Heatmaps and charts from NIAH results files.

This module reads the JSONL results records described in ``docs/design.md`` and
draws them with matplotlib's Agg canvas. It never imports torch, so plotting works
on a machine that only has the results files.

Scores are shown on a 0-100 scale: a cell is the mean ``score`` x 100 of the valid
records at one (``target_depth``, ``target_length``); records with ``error`` set or
``score`` null do not count, and a cell with no valid record is missing (NaN), not 0.
"""
from __future__ import annotations

from longctx.errors import ResultsWarning

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "ResultsWarning",
    "load_results",
    "score_matrix",
    "summary_table",
    "run_label",
    "format_tokens",
    "plot_heatmaps",
    "plot_accuracy_vs_length",
    "PALETTE",
]

#: Colours of the score scale, low to high (the usual NIAH heatmap palette).
PALETTE = ("#F0496E", "#EBB839", "#0CD79F")

_KEY_FIELDS = ("run_id", "target_length", "target_depth", "trial", "task")
_IMAGE_SUFFIXES = {".png", ".svg", ".pdf", ".jpg", ".jpeg", ".webp"}
_MISSING_FACE = "#ededed"
_MISSING_HATCH = "#c2c2c2"
_TEXT = "#1d1d1d"


# --------------------------------------------------------------------------- loading
def _read_jsonl(path: str | Path) -> list[dict]:
    p = Path(path)
    if not p.exists():
        raise ValueError(f"results file not found: {p}")
    if not p.is_file():
        raise ValueError(f"not a results file (is a directory?): {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a UTF-8 JSONL results file") from None
    except OSError as e:
        raise ValueError(f"cannot read {p}: {e.strerror or e}") from None

    # Split on "\n" only: JSON strings may legally hold raw U+2028 and friends.
    lines = text.split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records: list[dict] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{p}:{i + 1}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if i == last:
                warnings.warn(f"{where}: skipping torn last line (incomplete JSON)", ResultsWarning, stacklevel=4)
                continue
            raise ValueError(f"{where}: not valid JSON ({e.msg}); is this a JSONL results file?") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected one JSON object per line, got {type(obj).__name__}")
        missing = [k for k in ("target_length", "target_depth") if obj.get(k) is None]
        if missing:
            raise ValueError(f"{where}: record has no {' or '.join(missing)}; is this a NIAH results file?")
        rec = dict(obj)
        try:
            rec["target_length"] = int(rec["target_length"])
            rec["target_depth"] = float(rec["target_depth"])
        except OverflowError:
            raise ValueError(f"{where}: target_length is not a finite number") from None
        except (TypeError, ValueError):
            raise ValueError(f"{where}: target_length/target_depth are not numbers") from None
        if not math.isfinite(rec["target_depth"]):
            raise ValueError(f"{where}: target_depth is not a finite number")
        if isinstance(rec.get("score"), float) and not math.isfinite(rec["score"]):
            raise ValueError(f"{where}: score is not a finite number")
        records.append(rec)
    if not records:
        raise ValueError(f"{p}: no records")
    return records


def _hashable(v):
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return v


def _sortable(v):
    if v is None:
        return (0, 0.0, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (1, float(v), "")
    return (2, 0.0, str(v))


def _sort_key(rec: dict):
    return (
        _sortable(rec.get("run_id")),
        _sortable(rec.get("task")),
        rec["target_length"],
        rec["target_depth"],
        _sortable(rec.get("trial")),
    )


def _load(paths: Sequence[str | Path] | str | Path) -> list[tuple[int, dict]]:
    """Records with the sequence number of the kept copy (argument order, then line order)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise ValueError("no results files given")
    kept: dict[tuple, tuple[int, dict]] = {}
    seq = 0
    for p in paths:
        for rec in _read_jsonl(p):
            key = tuple(_hashable(rec.get(k)) for k in _KEY_FIELDS)
            kept[key] = (seq, rec)  # later copies (re-runs, overlapping shards) win
            seq += 1
    return sorted(kept.values(), key=lambda sr: _sort_key(sr[1]))


def load_results(paths: list[str | Path]) -> list[dict]:
    """Read and merge one or more JSONL results files (for example the shards of one run).

    Records sharing (run_id, target_length, target_depth, trial, task) are deduplicated,
    keeping the last one read (files in the given order). A last line that is not valid
    JSON (a write torn by a crash) is skipped with a :class:`ResultsWarning`. A missing,
    unreadable or unparsable file, or one without records, raises ``ValueError`` with a
    one-line message. The result is sorted by run_id, task, length, depth and trial;
    ``target_length`` is normalised to ``int`` and ``target_depth`` to ``float``.
    """
    return [rec for _, rec in _load(paths)]


# --------------------------------------------------------------------------- numbers
def _valid_score(rec: dict) -> float | None:
    if rec.get("error"):
        return None
    s = rec.get("score")
    if s is None or isinstance(s, str):
        return None
    try:
        s = float(s)
    except (TypeError, ValueError):
        return None
    return s if math.isfinite(s) else None


def score_matrix(records: Iterable[dict]) -> tuple[list[int], list[float], np.ndarray]:
    """Mean score x 100 per (target_depth row, target_length column).

    Rows are ascending depth and columns ascending length; every depth and length that
    occurs in ``records`` gets a row/column. Records with ``error`` set or ``score``
    null are left out, and a cell without any valid record is NaN.
    """
    records = list(records)
    lengths = sorted({int(r["target_length"]) for r in records})
    depths = sorted({float(r["target_depth"]) for r in records})
    li = {v: j for j, v in enumerate(lengths)}
    di = {v: i for i, v in enumerate(depths)}
    sums = np.zeros((len(depths), len(lengths)))
    counts = np.zeros((len(depths), len(lengths)), dtype=np.int64)
    for r in records:
        s = _valid_score(r)
        if s is None:
            continue
        i, j = di[float(r["target_depth"])], li[int(r["target_length"])]
        sums[i, j] += s
        counts[i, j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(counts > 0, 100.0 * sums / np.maximum(counts, 1), np.nan)
    return lengths, depths, matrix


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    finite = a[np.isfinite(a)]
    return float(finite.mean()) if finite.size else math.nan


def _length_means(matrix: np.ndarray) -> np.ndarray:
    return np.array([_nanmean(matrix[:, j]) for j in range(matrix.shape[1])])


def summary_table(records: Iterable[dict]) -> list[dict]:
    """One row per target length plus a final ``"all"`` row.

    Each row: ``target_length`` (int, or ``"all"``), ``label`` ("8K"), ``mean`` (0-100, the
    mean over the length's non-missing depth cells, as in the heatmap's average row; None if
    none), ``records``, ``valid`` (scored, no error), ``errors`` (error set), ``cells``
    (depth cells with a score) and ``missing_cells``. The ``"all"`` row's mean is the mean
    over all non-missing cells (the figure's overall score).
    """
    records = list(records)
    lengths, depths, matrix = score_matrix(records)
    rows: list[dict] = []

    def row(length, label, recs, cells):
        finite = int(np.isfinite(cells).sum())
        mean = _nanmean(cells)
        return {
            "target_length": length,
            "label": label,
            "mean": None if math.isnan(mean) else mean,
            "records": len(recs),
            "valid": sum(1 for r in recs if _valid_score(r) is not None),
            "errors": sum(1 for r in recs if r.get("error")),
            "cells": finite,
            "missing_cells": int(cells.size) - finite,
        }

    for j, length in enumerate(lengths):
        recs = [r for r in records if int(r["target_length"]) == length]
        rows.append(row(length, format_tokens(length), recs, matrix[:, j]))
    rows.append(row("all", "all", records, matrix.ravel()))
    return rows


# --------------------------------------------------------------------------- labels
def format_tokens(n: int | float) -> str:
    """Compact token count: 1000 -> "1K", 8192 -> "8K", 128000 and 131072 -> "128K", 1500 -> "1.5K"."""
    n = int(n)
    if n < 1000:
        return str(n)
    for unit, (binary, decimal) in (("M", (1 << 20, 1_000_000)), ("K", (1 << 10, 1000))):
        if n >= decimal:
            if n % decimal == 0:
                return f"{n // decimal}{unit}"
            if n % binary == 0:
                return f"{n // binary}{unit}"
            val = n / decimal
            return f"{val:.1f}".rstrip("0").rstrip(".") + unit if val < 100 else f"{val:.0f}{unit}"
    return str(n)  # pragma: no cover


def _length_labels(lengths: Sequence[int]) -> list[str]:
    labels = [format_tokens(n) for n in lengths]
    if len(set(labels)) != len(labels):  # e.g. 1000 and 1024 in one grid: be exact
        labels = [f"{n:,}" for n in lengths]
    return labels


def _depth_scale(depths: Sequence[float]) -> float:
    # The record schema stores depth in percent (0-100); tolerate fractions (0-1) too.
    return 100.0 if depths and max(depths) <= 1.0 and any(0 < d < 1 for d in depths) else 1.0


def _depth_labels(depths: Sequence[float]) -> list[str]:
    scale = _depth_scale(depths)
    out = []
    for d in depths:
        v = d * scale
        out.append(f"{v:.0f}%" if abs(v - round(v)) < 1e-6 else f"{v:.1f}%")
    return out


def _fmt_factor(f) -> str:
    try:
        f = float(f)
    except (TypeError, ValueError):
        return str(f)
    return f"{f:g}"


def _rope_text(value) -> str:
    if value is None or value is False:
        return "no scaling"
    if isinstance(value, dict):
        kind = value.get("type") or value.get("rope_type") or "scaled"
        factor = value.get("factor")
    else:
        s = str(value).strip()
        if s.lower() in ("", "none", "null", "off", "no"):
            return "no scaling"
        kind, _, factor = s.partition(":")
        factor = factor or None
    kind = str(kind).strip()
    if kind.lower() in ("none", "default"):
        return "no scaling"
    return f"{kind}×{_fmt_factor(factor)}" if factor not in (None, "") else kind


def _short_model(value) -> str:
    if value is None:
        return "model?"
    if isinstance(value, dict):
        value = value.get("name") or value.get("path") or json.dumps(value, sort_keys=True)
    s = str(value).rstrip("/\\")
    s = s.replace("\\", "/").rsplit("/", 1)[-1] or s
    for ext in (".gguf", ".safetensors", ".bin"):
        if s.lower().endswith(ext):
            s = s[: -len(ext)]
    return s


def _field_text(value) -> str:
    if isinstance(value, dict):
        return str(value.get("name") or json.dumps(value, sort_keys=True))
    return str(value)


def _unique(values: Iterable) -> list:
    seen: list = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def run_label(records: Iterable[dict]) -> str:
    """Short panel label from the records' ``model`` and ``rope_scaling`` fields.

    For example ``"SmolLM2-135M · dynamic×2"`` or ``"internlm2-chat-7b · no scaling"``;
    several distinct values are joined with "/".
    """
    records = list(records)
    models = _unique(_short_model(r.get("model")) for r in records) or ["model?"]
    ropes = _unique(_rope_text(r.get("rope_scaling")) for r in records) or ["no scaling"]
    return f"{'/'.join(models)} · {'/'.join(ropes)}"


def _describe(values: Iterable, limit: int = 3) -> str:
    vals = [v for v in _unique(values) if v not in (None, "")]
    if not vals:
        return "?"
    text = ", ".join(_field_text(v) for v in vals[:limit])
    return text + (f" (+{len(vals) - limit})" if len(vals) > limit else "")


# --------------------------------------------------------------------------- drawing
def _cmap():
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("niah", list(PALETTE), N=256).with_extremes(bad=_MISSING_FACE)


def _new_figure(width: float, height: float):
    # A bare Figure on the Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _out_paths(out: str | Path, formats: Sequence[str]) -> list[Path]:
    p = Path(out)
    if p.suffix.lower() in _IMAGE_SUFFIXES:
        p = p.with_suffix("")
    if isinstance(formats, str):
        formats = (formats,)
    fmts = _unique(f.lower().lstrip(".") for f in formats)
    if not fmts:
        raise ValueError("no output formats given")
    return [p.with_name(f"{p.name}.{f}") for f in fmts]


def _save(fig, out, formats) -> list[Path]:
    paths = _out_paths(out, formats)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path in paths:
        fig.savefig(path, dpi=150, facecolor="white", metadata={"Date": None} if path.suffix == ".svg" else None)
    return paths


def _cell_text(v: float) -> str:
    # Round, but never show a perfect 100 or a flat 0 that the data does not have.
    r = int(math.floor(v + 0.5))
    if r >= 100 and v < 100:
        r = 99
    if r <= 0 and v > 0:
        r = 1
    return str(r)


def _title_text(heading: str, parts: list[str], width_in: float, fontsize: float) -> str:
    """Heading line plus the metadata parts, wrapped to fit the figure width."""
    capacity = max(30, int(width_in * 72 / (fontsize * 0.6)))
    lines, cur = [], ""
    for part in parts:
        if len(part) > capacity:
            part = part[: capacity - 1] + "…"
        cand = f"{cur}   ·   {part}" if cur else part
        if cur and len(cand) > capacity:
            lines.append(cur)
            cand = part
        cur = cand
    lines.append(cur)
    return "\n".join([heading if len(heading) <= capacity else heading[: capacity - 1] + "…"] + lines)


def _check_runs(runs) -> list[tuple[str, list[dict]]]:
    runs = [(str(label), list(recs)) for label, recs in runs]
    if not runs:
        raise ValueError("nothing to plot: no runs given")
    for label, recs in runs:
        if not recs:
            raise ValueError(f"nothing to plot for run {label!r}: no records")
    return runs


def plot_heatmaps(
    runs: list[tuple[str, list[dict]]],
    out: str | Path,
    *,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Draw one NIAH heatmap per ``(label, records)`` run, side by side, and save it.

    Rows are needle depth (0% at the top), columns context length in model tokens; each
    cell shows its mean score (0-100) on one fixed colour scale shared by all panels (one
    colour bar). Missing cells (no valid record) are grey, hatched and marked "–". Under
    each heatmap an "avg" row gives the per-length mean over depths. ``out`` may carry an
    image suffix or none; one file per format is written. Returns the written paths.
    """
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    runs = _check_runs(runs)
    grids = [score_matrix(recs) for _, recs in runs]
    n_len = max(len(g[0]) for g in grids)
    n_dep = max(len(g[1]) for g in grids)
    n_runs = len(runs)

    # Cell size in inches: roomy for small grids, shrinking (within limits) for big ones.
    cell_w = min(0.9, max(0.34, 10.0 / n_len))
    cell_h = min(0.44, max(0.25, 8.0 / n_dep))
    panel_w = n_len * cell_w + 1.0
    panel_h = (n_dep + 1.3) * cell_h
    ann_size = max(5.0, min(11.0, cell_w * 72 / 2.5, cell_h * 72 / 1.7))
    tick_size = max(7.5, min(10.5, cell_h * 72 / 1.45))
    widest = max(len(lab) for g in grids for lab in _length_labels(g[0]))
    rotate = widest * 0.62 * tick_size / 72 + 0.06 > cell_w  # would neighbouring x labels touch?
    fig_w = max(5.5, n_runs * panel_w + 1.3)
    fig_h = panel_h + 2.3 + (0.35 if rotate else 0.0)
    fig = _new_figure(fig_w, fig_h)
    fig.get_layout_engine().set(w_pad=0.12, h_pad=0.1, wspace=0.06)

    cmap = _cmap()
    norm = Normalize(vmin=0.0, vmax=100.0)
    axes = fig.subplots(1, n_runs, squeeze=False)[0]
    mesh = None
    gap = 0.3  # white space between the heatmap and its average row, in cell units

    for k, (ax, (label, recs), (lengths, depths, matrix)) in enumerate(zip(axes, runs, grids)):
        nl, nd = len(lengths), len(depths)
        avg = _length_means(matrix)
        x_edges = np.arange(nl + 1)
        mesh = ax.pcolormesh(x_edges, np.arange(nd + 1), np.ma.masked_invalid(matrix), cmap=cmap,
                             norm=norm, edgecolors="white", linewidth=0.8)
        ax.pcolormesh(x_edges, np.array([nd + gap, nd + gap + 1]), np.ma.masked_invalid(avg[None, :]),
                      cmap=cmap, norm=norm, edgecolors="white", linewidth=0.8)

        def cell(x, y, v, bold=False):
            if np.isfinite(v):
                ax.text(x + 0.5, y + 0.5, _cell_text(v), ha="center", va="center", fontsize=ann_size,
                        color=_TEXT, fontweight="bold" if bold else "normal")
            else:
                ax.add_patch(Rectangle((x, y), 1, 1, facecolor=_MISSING_FACE, edgecolor=_MISSING_HATCH,
                                       hatch="///", linewidth=0.0))
                ax.add_patch(Rectangle((x, y), 1, 1, fill=False, edgecolor="white", linewidth=0.8))
                ax.text(x + 0.5, y + 0.5, "–", ha="center", va="center", fontsize=ann_size, color="#666666")

        for i in range(nd):
            for j in range(nl):
                cell(j, i, matrix[i, j])
        for j in range(nl):
            cell(j, nd + gap, avg[j], bold=True)

        ax.set_xlim(0, nl)
        ax.set_ylim(nd + gap + 1, 0)  # depth 0% at the top, the average row at the bottom
        ax.set_xticks(np.arange(nl) + 0.5)
        ax.set_xticklabels(_length_labels(lengths), fontsize=tick_size,
                           rotation=45 if rotate else 0, ha="right" if rotate else "center",
                           rotation_mode="anchor")
        ax.set_yticks(list(np.arange(nd) + 0.5) + [nd + gap + 0.5])
        ax.set_yticklabels(_depth_labels(depths) + ["avg"], fontsize=tick_size)
        ax.get_yticklabels()[-1].set_fontweight("bold")
        ax.tick_params(length=0, pad=4)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_xlabel("Context length (model tokens)", fontsize=11)
        if k == 0:
            ax.set_ylabel("Needle depth (% of context)", fontsize=11)
        overall = _nanmean(matrix)
        score = "n/a" if math.isnan(overall) else f"{overall:.1f}"
        ax.set_title(label if n_runs == 1 else f"{label}\noverall {score}", fontsize=12, pad=8)

    cbar = fig.colorbar(mesh, ax=list(axes), fraction=0.9 / (n_runs * panel_w + 0.9), pad=0.02,
                        aspect=max(12, 1.6 * n_dep))
    cbar.set_label("Score (%)", fontsize=10.5)
    cbar.set_ticks([0, 20, 40, 60, 80, 100])
    cbar.ax.tick_params(labelsize=9)
    cbar.outline.set_visible(False)

    all_recs = [r for _, recs in runs for r in recs]
    heading = title or "Needle in a haystack"
    if n_runs == 1:
        overall = _nanmean(grids[0][2])
        heading += "  —  overall " + ("n/a" if math.isnan(overall) else f"{overall:.1f}")
    meta = [f"model: {_describe(_short_model(r.get('model')) for r in all_recs)}",
            f"task: {_describe(r.get('task') for r in all_recs)}",
            f"tokenizer: {_describe(_field_text(r.get('tokenizer')) for r in all_recs if r.get('tokenizer'))}"]
    fig.suptitle(_title_text(heading, meta, fig_w, 13.0), fontsize=13.0)
    try:
        return _save(fig, out, formats)
    finally:
        fig.clear()


def plot_accuracy_vs_length(
    runs: list[tuple[str, list[dict]]],
    out: str | Path,
    *,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Line chart of mean score (0-100, mean over depth cells) against context length.

    One line per ``(label, records)`` run; the x axis is log-scaled in model tokens with the
    grid's lengths as ticks. Lengths without any valid record leave a gap. Returns the
    written paths.
    """
    from matplotlib.ticker import FixedLocator, NullLocator

    runs = _check_runs(runs)
    fig = _new_figure(8.0, 4.8)
    ax = fig.add_subplot()
    all_lengths: set[int] = set()
    colours = ["#3366CC", "#E8772E", "#2CA58D", "#C23B80", "#7A5CC4", "#8C6D31", "#5F6B7A"]
    markers = ["o", "s", "D", "^", "v", "P", "X"]
    for k, (label, recs) in enumerate(runs):
        lengths, _, matrix = score_matrix(recs)
        means = _length_means(matrix)
        all_lengths.update(lengths)
        overall = _nanmean(matrix)
        tag = "" if math.isnan(overall) else f" (overall {overall:.1f})"
        ax.plot(lengths, means, marker=markers[k % len(markers)], color=colours[k % len(colours)],
                linewidth=2.0, markersize=6.5, label=f"{label}{tag}")
    ticks = sorted(all_lengths)
    ax.set_xscale("log")
    if len(ticks) > 1:
        pad = (ticks[-1] / ticks[0]) ** 0.04
        ax.set_xlim(ticks[0] / pad, ticks[-1] * pad)
    else:
        ax.set_xlim(ticks[0] / 1.5, ticks[0] * 1.5)
    shown = ticks if len(ticks) <= 12 else ticks[:: math.ceil(len(ticks) / 12)]
    ax.xaxis.set_major_locator(FixedLocator(shown))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels(_length_labels(shown), fontsize=10)
    ax.set_ylim(-3, 103)
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    ax.tick_params(labelsize=10)
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("Context length (model tokens, log scale)", fontsize=11)
    ax.set_ylabel("Mean score (%)", fontsize=11)
    ax.legend(fontsize=9.5, frameon=False, loc="best")
    all_recs = [r for _, recs in runs for r in recs]
    heading = title or "Needle in a haystack: accuracy vs context length"
    meta = [f"model: {_describe(_short_model(r.get('model')) for r in all_recs)}",
            f"task: {_describe(r.get('task') for r in all_recs)}"]
    fig.suptitle(_title_text(heading, meta, 8.0, 12.5), fontsize=12.5)
    try:
        return _save(fig, out, formats)
    finally:
        fig.clear()
