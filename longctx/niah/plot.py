"""Heatmaps and charts of NIAH results (drawing only; no torch).

The records come from :func:`longctx.niah.results.load_results` and the numbers from
:mod:`longctx.niah.stats`; this module lays them out with matplotlib's Agg canvas. It never
imports torch, so plotting works on a machine that only has the results files.

Scores are shown on a 0-100 scale: a cell is the mean ``score`` x 100 of its valid records
(``error`` unset, ``score`` not null) at one (``target_depth``, ``target_length``); a cell with no
valid record is missing (grey, hatched), not 0. The heatmap says how many trials each cell holds
and stars cells whose needle sits more than :data:`~longctx.niah.stats.DEPTH_TOLERANCE` points
from the requested depth; the by-length chart draws each length's 95% Wilson interval as an
error bar.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from longctx.niah.stats import DEPTH_TOLERANCE, format_tokens, score_grid, summary_table

__all__ = ["PALETTE", "run_label", "rope_label", "heatmap_figure", "plot_heatmaps", "length_figure",
           "plot_accuracy_vs_length"]

#: Colours of the score scale, low to high (the usual NIAH heatmap palette).
PALETTE = ("#F0496E", "#EBB839", "#0CD79F")

_IMAGE_SUFFIXES = {".png", ".svg", ".pdf", ".jpg", ".jpeg", ".webp"}
_MISSING_FACE = "#ededed"
_MISSING_HATCH = "#c2c2c2"
_TEXT = "#1d1d1d"
#: Marks a heatmap cell whose needle is far from the requested depth.
DEPTH_MARK = "*"


# --------------------------------------------------------------------------- labels
def length_labels(lengths: Sequence[int]) -> list[str]:
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


def rope_label(value) -> str:
    """Short text of a rope_scaling setting: "no scaling", "dynamic×2"..."""
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
    ropes = _unique(rope_label(r.get("rope_scaling")) for r in records) or ["no scaling"]
    return f"{'/'.join(models)} · {'/'.join(ropes)}"


def _describe(values: Iterable, limit: int = 3) -> str:
    vals = [v for v in _unique(values) if v not in (None, "")]
    if not vals:
        return "?"
    text = ", ".join(_field_text(v) for v in vals[:limit])
    return text + (f" (+{len(vals) - limit})" if len(vals) > limit else "")


# --------------------------------------------------------------------------- drawing
def score_cmap():
    """The heatmaps' colour map (0 = red, 100 = green; missing = grey), for figures drawn elsewhere."""
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


def cell_text(v: float) -> str:
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


def _trials_note(grids) -> tuple[str, bool]:
    """The figure's note on trials per cell, and whether cells must show their own n."""
    ns = sorted({int(n) for g in grids for n in g.n[g.n > 0]})
    if not ns:
        return "no scored cells", False
    if len(ns) == 1:
        return ("1 trial per cell" if ns[0] == 1 else f"n = {ns[0]} trials per cell"), False
    return f"n = {ns[0]}-{ns[-1]} trials per cell (shown where > 1)", True


def _mean_text(mean) -> str:
    return "n/a" if mean is None else f"{mean:.1f}"


def _per_length(rows: list[dict], lengths: Sequence[int], key: str) -> np.ndarray:
    """``key`` of :func:`summary_table` rows at each of ``lengths``; NaN where the run has none."""
    by_len = {r["target_length"]: r[key] for r in rows[:-1]}
    return np.array([np.nan if by_len.get(n) is None else by_len[n] for n in lengths], dtype=float)


def _panel_means(runs, tables) -> tuple[list[float | None], set[int] | None]:
    """Each run's mean score for its legend or panel title, and the lengths it is over: None when
    every run has scores at the same lengths (each run's overall mean), else the set of lengths every
    run has a score at (the means over those only; None for every run if the set is empty)."""
    scored = [{r["target_length"] for r in rows[:-1] if r["mean"] is not None} for rows in tables]
    if all(s == scored[0] for s in scored):
        return [rows[-1]["mean"] for rows in tables], None
    shared = set.intersection(*scored)
    if not shared:
        return [None] * len(runs), shared
    return [summary_table(r for r in recs if int(r["target_length"]) in shared)[-1]["mean"] for _, recs in runs], shared


def _shared_note(shared: set[int], what: str) -> str:
    if not shared:
        return f"{what} means: no length every run has"
    return f"{what} means over {', '.join(length_labels(sorted(shared)))} (the lengths every run has)"


def heatmap_figure(runs: list[tuple[str, list[dict]]], *, title: str | None = None, max_cols: int = 4):
    """The NIAH heatmaps of ``(label, records)`` runs, side by side (in rows of ``max_cols`` panels), as a
    matplotlib ``Figure``.

    Rows are needle depth (0% at the top), columns context length in model tokens; each cell
    shows its mean score (0-100) on one colour scale shared by all panels (one colour bar), and
    its trial count when cells differ in it (the title says the count otherwise). Missing cells
    (no valid record) are grey, hatched and marked "–"; a cell whose needle sits more than
    ``DEPTH_TOLERANCE`` points from the requested depth carries :data:`DEPTH_MARK` (explained in
    the title). Under each heatmap an "avg" row gives the per-length mean over depths. Panels share
    one set of columns and rows (the union of the runs' lengths and depths), so a length one run lacks
    shows as missing cells there; panel means are as in :func:`length_figure`'s legend.
    """
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    runs = _check_runs(runs)
    # one layout for all panels: the union of the runs' lengths and depths
    lengths = sorted({int(r["target_length"]) for _, recs in runs for r in recs})
    depths = sorted({float(r["target_depth"]) for _, recs in runs for r in recs})
    grids = [score_grid(recs, lengths=lengths, depths=depths) for _, recs in runs]
    tables = [summary_table(recs) for _, recs in runs]
    means, shared = _panel_means(runs, tables)
    n_len, n_dep = len(lengths), len(depths)
    n_runs = len(runs)
    trials_note, show_n = _trials_note(grids)

    # Cell size in inches: roomy for small grids, shrinking (within limits) for big ones.
    cell_w = min(0.9, max(0.34, 10.0 / n_len))
    cell_h = min(0.44, max(0.25, 8.0 / n_dep))
    panel_w = n_len * cell_w + 1.0
    panel_h = (n_dep + 1.3) * cell_h
    ann_size = max(5.0, min(11.0, cell_w * 72 / 2.5, cell_h * 72 / 1.7))
    tick_size = max(7.5, min(10.5, cell_h * 72 / 1.45))
    widest = max(len(lab) for lab in length_labels(lengths))
    rotate = widest * 0.62 * tick_size / 72 + 0.06 > cell_w  # would neighbouring x labels touch?
    n_cols = min(n_runs, max(1, max_cols))
    n_rows = math.ceil(n_runs / n_cols)
    fig_w = max(5.5, n_cols * panel_w + 1.3)
    fig_h = n_rows * (panel_h + 1.0 + (0.35 if rotate else 0.0)) + 1.3
    fig = _new_figure(fig_w, fig_h)
    fig.get_layout_engine().set(w_pad=0.12, h_pad=0.1, wspace=0.06)

    cmap = score_cmap()
    norm = Normalize(vmin=0.0, vmax=100.0)
    grid_axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for spare in grid_axes[n_runs:]:
        spare.set_visible(False)
    axes = grid_axes[:n_runs]
    mesh = None
    gap = 0.3  # white space between the heatmap and its average row, in cell units
    worst_offset = 0.0

    for k, (ax, (label, recs), g, rows) in enumerate(zip(axes, runs, grids, tables)):
        nl, nd = len(g.lengths), len(g.depths)
        avg = _per_length(rows, g.lengths, "mean")
        offsets = g.depth_offset * _depth_scale(g.depths)
        x_edges = np.arange(nl + 1)
        mesh = ax.pcolormesh(x_edges, np.arange(nd + 1), np.ma.masked_invalid(g.mean), cmap=cmap,
                             norm=norm, edgecolors="white", linewidth=0.8)
        ax.pcolormesh(x_edges, np.array([nd + gap, nd + gap + 1]), np.ma.masked_invalid(avg[None, :]),
                      cmap=cmap, norm=norm, edgecolors="white", linewidth=0.8)

        def cell(x, y, v, bold=False, n=0, offset=math.nan):
            nonlocal worst_offset
            if np.isfinite(v):
                text = cell_text(v) + (f"\nn={n}" if show_n and n > 1 else "")
                ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize=ann_size, color=_TEXT,
                        fontweight="bold" if bold else "normal", linespacing=0.95)
            else:
                ax.add_patch(Rectangle((x, y), 1, 1, facecolor=_MISSING_FACE, edgecolor=_MISSING_HATCH,
                                       hatch="///", linewidth=0.0))
                ax.add_patch(Rectangle((x, y), 1, 1, fill=False, edgecolor="white", linewidth=0.8))
                ax.text(x + 0.5, y + 0.5, "–", ha="center", va="center", fontsize=ann_size, color="#666666")
            if offset > DEPTH_TOLERANCE:
                worst_offset = max(worst_offset, offset)
                ax.text(x + 0.93, y + 0.08, DEPTH_MARK, ha="right", va="top", fontsize=ann_size, color=_TEXT,
                        fontweight="bold")

        for i in range(nd):
            for j in range(nl):
                cell(j, i, g.mean[i, j], n=int(g.n[i, j]), offset=float(offsets[i, j]))
        for j in range(nl):
            cell(j, nd + gap, avg[j], bold=True)

        ax.set_xlim(0, nl)
        ax.set_ylim(nd + gap + 1, 0)  # depth 0% at the top, the average row at the bottom
        ax.set_xticks(np.arange(nl) + 0.5)
        ax.set_xticklabels(length_labels(g.lengths), fontsize=tick_size,
                           rotation=45 if rotate else 0, ha="right" if rotate else "center",
                           rotation_mode="anchor")
        ax.set_yticks(list(np.arange(nd) + 0.5) + [nd + gap + 0.5])
        ax.set_yticklabels(_depth_labels(g.depths) + ["avg"], fontsize=tick_size)
        ax.get_yticklabels()[-1].set_fontweight("bold")
        ax.tick_params(length=0, pad=4)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_xlabel("Context length (model tokens)", fontsize=11)
        if k % n_cols == 0:
            ax.set_ylabel("Needle depth (% of context)", fontsize=11)
        ax.set_title(label if n_runs == 1 else f"{label}\n{'overall' if shared is None else 'shared lengths'} "
                     f"{_mean_text(means[k])}", fontsize=12, pad=8)

    cbar = fig.colorbar(mesh, ax=list(axes), fraction=0.9 / (n_cols * panel_w + 0.9), pad=0.02,
                        aspect=max(12, 1.6 * n_dep))
    cbar.set_label("Score (%)", fontsize=10.5)
    cbar.set_ticks([0, 20, 40, 60, 80, 100])
    cbar.ax.tick_params(labelsize=9)
    cbar.outline.set_visible(False)

    all_recs = [r for _, recs in runs for r in recs]
    heading = title or "Needle in a haystack"
    if n_runs == 1:
        heading += "  —  overall " + _mean_text(tables[0][-1]["mean"])
    meta = [f"model: {_describe(_short_model(r.get('model')) for r in all_recs)}",
            f"task: {_describe(r.get('task') for r in all_recs)}",
            f"tokenizer: {_describe(_field_text(r.get('tokenizer')) for r in all_recs if r.get('tokenizer'))}",
            trials_note]
    if shared is not None:
        meta.append(_shared_note(shared, "panel"))
    if worst_offset:
        meta.append(f"{DEPTH_MARK} needle >{DEPTH_TOLERANCE:g} pts from requested depth (max {worst_offset:.1f})")
    fig.suptitle(_title_text(heading, meta, fig_w, 13.0), fontsize=13.0)
    return fig


def _save_figure(fig, out, formats) -> list[Path]:
    try:
        return _save(fig, out, formats)
    finally:
        fig.clear()


def plot_heatmaps(runs: list[tuple[str, list[dict]]], out: str | Path, *, title: str | None = None,
                  formats: Sequence[str] = ("png", "svg"), max_cols: int = 4) -> list[Path]:
    """Draws :func:`heatmap_figure` and saves it: ``out`` may carry an image suffix or none; one
    file per format is written. Returns the written paths."""
    return _save_figure(heatmap_figure(runs, title=title, max_cols=max_cols), out, formats)


def length_figure(runs: list[tuple[str, list[dict]]], *, title: str | None = None):
    """Mean score (0-100, mean over depth cells) against context length, as a ``Figure``.

    One line per ``(label, records)`` run with each length's 95% Wilson interval as an error bar
    (see :func:`longctx.niah.stats.summary_table`), runs shifted a little sideways so that equal
    bars stay visible; the x axis is log-scaled in model tokens with
    the grid's lengths as ticks. A length a run has no score at (not run, or no valid record)
    breaks its line there instead of being bridged. The legend's mean per run is over the
    lengths every run has a score at, so that the runs' means compare like with like; when the runs'
    length sets differ, the subtitle names those lengths.
    """
    from matplotlib.ticker import FixedLocator, NullLocator

    runs = _check_runs(runs)
    fig = _new_figure(8.0, 4.8)
    ax = fig.add_subplot()
    colours = ["#3366CC", "#E8772E", "#2CA58D", "#C23B80", "#7A5CC4", "#8C6D31", "#5F6B7A"]
    markers = ["o", "s", "D", "^", "v", "P", "X"]
    tables = [summary_table(recs) for _, recs in runs]
    all_lengths = sorted({r["target_length"] for rows in tables for r in rows[:-1]})
    overall_means, shared = _panel_means(runs, tables)
    for k, ((label, recs), rows) in enumerate(zip(runs, tables)):
        # one value per length of any run; NaN where this run has none (a gap in its line)
        means, lo, hi = (_per_length(rows, all_lengths, key) for key in ("mean", "ci_low", "ci_high"))
        overall = overall_means[k]
        tag = "" if overall is None else f" ({'overall' if shared is None else 'shared lengths'} {overall:.1f})"
        dodge = 10 ** (0.012 * (k - (len(runs) - 1) / 2))  # side by side, so equal bars stay visible
        ax.errorbar(np.array(all_lengths) * dodge, means, yerr=np.clip(np.nan_to_num(np.vstack([means - lo, hi - means])), 0.0, None),
                    marker=markers[k % len(markers)], color=colours[k % len(colours)], linewidth=2.0,
                    markersize=6.5, capsize=4, elinewidth=1.2, label=f"{label}{tag}")
    ticks = all_lengths
    ax.set_xscale("log")
    if len(ticks) > 1:
        pad = (ticks[-1] / ticks[0]) ** 0.04
        ax.set_xlim(ticks[0] / pad, ticks[-1] * pad)
    else:
        ax.set_xlim(ticks[0] / 1.5, ticks[0] * 1.5)
    shown = ticks if len(ticks) <= 12 else ticks[:: math.ceil(len(ticks) / 12)]
    ax.xaxis.set_major_locator(FixedLocator(shown))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels(length_labels(shown), fontsize=10)
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
            f"task: {_describe(r.get('task') for r in all_recs)}",
            _trials_note([score_grid(recs) for _, recs in runs])[0],
            "error bars: 95% Wilson interval"]
    if shared is not None:
        meta.append(_shared_note(shared, "legend"))
    fig.suptitle(_title_text(heading, meta, 8.0, 12.5), fontsize=12.5)
    return fig


def plot_accuracy_vs_length(runs: list[tuple[str, list[dict]]], out: str | Path, *, title: str | None = None,
                            formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Draws :func:`length_figure` and saves it (see :func:`plot_heatmaps`). Returns the written paths."""
    return _save_figure(length_figure(runs, title=title), out, formats)
