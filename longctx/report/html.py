"""One self-contained HTML page from NIAH results (no torch, no network: inline CSS and JS only).

The heatmaps, score and timing tables and run metadata are plain HTML (readable without
JavaScript; every cell shows its value as text); a small inline script adds the drill-down panel,
keyboard navigation and the colour-blind-safe palette toggle. The drill-down data of every
record is embedded as JSON in ``<script type="application/json" id="report-data">``. A cell's
id is ``c<run>-<row>-<col>``; opening ``report.html#cell=c0-2-1`` clicks that cell on load.
"""
from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Optional, Sequence

from longctx.niah import plot as P
from longctx.report.assets import CSS, JS
from longctx.report.data import load_runs, run_model

__all__ = ["PALETTE", "PALETTE_CB", "build_report", "colour", "render", "write_report"]

#: The usual NIAH palette, low -> high score (shared with ``longctx plot``).
PALETTE = tuple(P.PALETTE)
#: Colour-blind-safe alternative: viridis (perceptually uniform, readable with any colour vision).
PALETTE_CB = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")


def _rgb(h: str) -> tuple[int, int, int]:
    return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)


def colour(score: float, palette: Sequence[str] = PALETTE) -> str:
    """The colour of a 0-100 score: linear interpolation between evenly spaced palette stops."""
    x = min(1.0, max(0.0, score / 100.0)) * (len(palette) - 1)
    i = min(int(x), len(palette) - 2)
    f = x - i
    a, b = _rgb(palette[i]), _rgb(palette[i + 1])
    return "#%02x%02x%02x" % tuple(round(a[k] + (b[k] - a[k]) * f) for k in range(3))


def _text_on(bg: str) -> str:
    """Black or white text, whichever contrasts more with ``bg`` (WCAG relative luminance)."""
    def lin(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in _rgb(bg))
    lum = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "#1d1d1d" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "#ffffff"


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _f(v, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def _heatmap(k: int, m: dict) -> str:
    rows, cols = len(m["depths"]), len(m["lengths"])
    out = [f'<table class="heat" role="grid" id="grid{k}" data-rows="{rows}" data-cols="{cols}" '
           f'aria-label="{_e(m["label"])}: score 0-100 by needle depth (rows) and context length (columns)">',
           '<thead><tr><th scope="col">depth \\ length</th>']
    out += [f'<th scope="col">{_e(lab)}</th>' for lab in m["length_labels"]]
    out.append("</tr></thead><tbody>")
    first = True
    for i, dlab in enumerate(m["depth_labels"]):
        out.append(f'<tr><th scope="row">{_e(dlab)}</th>')
        for j, lab in enumerate(m["length_labels"]):
            c = m["cells"][i][j]
            s = c["score"]
            if s is None:
                style, cls = "", "cell missing"
                text = "err" if c["errors"] else "–"
                what = f"{c['errors']} error(s)" if c["errors"] else "no scored record"
            else:
                a = colour(s, PALETTE_CB)
                style = f' style="--c:{colour(s)};--a:{a};--ta:{_text_on(a)}"'
                cls, text = "cell", P.cell_text(s)
                what = f"score {s:.1f} (n={c['n']})"
            label = f"{lab} tokens, depth {dlab}: {what}"
            recs = " ".join(str(x) for x in c["records"])
            out.append(f'<td class="{cls}" role="gridcell" id="c{k}-{i}-{j}" data-run="{k}" data-row="{i}" '
                       f'data-col="{j}" data-recs="{recs}" data-score="{"" if s is None else f"{s:.4f}"}" '
                       f'data-n="{c["n"]}" tabindex="{0 if first else -1}" aria-selected="false" '
                       f'aria-label="{_e(label)}" title="{_e(label)}"{style}>{_e(text)}</td>')
            first = False
        out.append("</tr>")
    means = {r["length"]: r["mean"] for r in m["per_length"]}
    out.append('<tr><th scope="row">mean</th>')
    out += [f'<td class="avg">{"–" if means.get(L) is None else P.cell_text(means[L])}</td>' for L in m["lengths"]]
    out.append('</tr></tbody></table><p class="note">Rows: needle depth; columns: context length in model tokens; '
               'cell: mean score 0-100 (– = no scored record). Click a cell, or Enter on it, for the details.</p>')
    return "".join(out)


def _per_length_table(m: dict) -> str:
    out = ['<table class="tbl"><thead><tr><th scope="col">length</th><th scope="col" class="num">score</th>'
           '<th scope="col" class="num">n</th><th scope="col" class="num">95% interval (Wilson)</th>'
           '<th scope="col" class="num">errors</th></tr></thead><tbody>']
    for r in m["per_length"]:
        ci = "n/a" if r["lo"] is None else f"{r['lo']:.1f} to {r['hi']:.1f}"
        cls = ' class="total"' if r["length"] == "all" else ""
        out.append(f'<tr{cls}><td>{_e(r["label"])}</td><td class="num">{_f(r["mean"])}</td>'
                   f'<td class="num">{r["n"]}</td><td class="num">{ci}</td><td class="num">{r["errors"]}</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _timing_tables(m: dict) -> str:
    out = ['<table class="tbl"><thead><tr><th scope="col">length</th><th scope="col" class="num">records</th>'
           '<th scope="col" class="num">prefill s / cell</th><th scope="col" class="num">decode s / cell</th>'
           '<th scope="col" class="num">tokens prefilled</th><th scope="col" class="num">naive</th>'
           '<th scope="col" class="num">new tokens</th></tr></thead><tbody>']
    for t in m["timing"]:
        cls = ' class="total"' if t["length"] == "all" else ""
        out.append(f'<tr{cls}><td>{_e(t["label"])}</td><td class="num">{t["records"]}</td>'
                   f'<td class="num">{_f(t["prefill_s"], 2)}</td><td class="num">{_f(t["decode_s"], 2)}</td>'
                   f'<td class="num">{t["prefilled_tokens"]:,}</td><td class="num">{t["naive_tokens"]:,}</td>'
                   f'<td class="num">{t["new_tokens"]:,}</td></tr>')
    out.append("</tbody></table>")
    tot = m["timing"][-1]
    if tot["prefilled_tokens"]:
        ratio = tot["naive_tokens"] / tot["prefilled_tokens"]
        out.append(f'<p class="note">{tot["prefilled_tokens"]:,} prompt tokens prefilled vs {tot["naive_tokens"]:,} '
                   f'for a naive sweep ({ratio:.2f}x fewer); prefill {tot["prefill_total_s"]:,.1f} s, '
                   f'decode {tot["decode_total_s"]:,.1f} s in all.</p>')
    out.append('<table class="tbl"><caption class="sub">Per cell: prefill s / decode s (mean over trials)</caption>'
               '<thead><tr><th scope="col">depth</th>')
    out += [f'<th scope="col" class="num">{_e(lab)}</th>' for lab in m["length_labels"]]
    out.append("</tr></thead><tbody>")
    for i, dlab in enumerate(m["depth_labels"]):
        out.append(f'<tr><th scope="row">{_e(dlab)}</th>')
        for c in m["cells"][i]:
            out.append(f'<td class="num" title="{c["prefilled_tokens"]:,} tokens prefilled">'
                       f'{_f(c["prefill_s"], 2)} / {_f(c["decode_s"], 2)}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _run_section(k: int, m: dict) -> str:
    meta = "".join(f"<dt>{_e(name)}</dt><dd>{_e(value)}</dd>" for name, value in m["meta"])
    return (f'<section class="run" id="run{k}" aria-labelledby="run{k}-title"><h2 id="run{k}-title">{_e(m["label"])}</h2>'
            f'{_heatmap(k, m)}<h3>Score by length</h3>{_per_length_table(m)}'
            f'<details><summary>Timings</summary>{_timing_tables(m)}</details>'
            f'<details open><summary>Run</summary><dl class="meta">{meta}</dl></details></section>')


def _comparison(models: list[dict]) -> str:
    lengths = sorted({L for m in models for L in m["lengths"]})
    out = ['<section class="run"><h2>Runs side by side: score by length (95% interval, n)</h2>'
           '<table class="tbl"><thead><tr><th scope="col">length</th>']
    out += [f'<th scope="col" class="num">{_e(m["label"])}</th>' for m in models]
    out.append("</tr></thead><tbody>")
    for L in lengths + ["all"]:
        out.append(f'<tr><th scope="row">{_e(P.format_tokens(L) if L != "all" else "all")}</th>')
        for m in models:
            r = next((x for x in m["per_length"] if x["length"] == L), None)
            if r is None or r["mean"] is None:
                out.append('<td class="num">–</td>')
            else:
                out.append(f'<td class="num">{r["mean"]:.1f} ({r["lo"]:.0f} to {r["hi"]:.0f}, n={r["n"]})</td>')
        out.append("</tr>")
    out.append("</tbody></table></section>")
    return "".join(out)


def _json_script(obj) -> str:
    # "<" escaped as \u003c: no "</script>" or "<!--" can end the data block early.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def render(models: list[dict], *, title: Optional[str] = None, sources: Sequence[str] = ()) -> str:
    """The HTML page for run models from :func:`longctx.report.data.run_model`."""
    title = title or ("NIAH report: " + " | ".join(m["label"] for m in models))
    grad = ", ".join(f"{c} {100 * i / (len(PALETTE) - 1):.0f}%" for i, c in enumerate(PALETTE))
    grad_cb = ", ".join(f"{c} {100 * i / (len(PALETTE_CB) - 1):.1f}%" for i, c in enumerate(PALETTE_CB))
    payload = {"format": "longctx-report/1",
               "runs": [{"label": m["label"], "drill": m["drill"]} for m in models]}
    body = "".join(_run_section(k, m) for k, m in enumerate(models))
    if len(models) > 1:
        body += _comparison(models)
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{CSS}</style></head>
<body style="--g:{grad};--ga:{grad_cb}">
<header><h1>{_e(title)}</h1>
<p class="sub">{len(models)} run(s) from {_e(", ".join(sources))}; generated {generated} by longctx report.</p>
<div class="tools"><button type="button" id="cb-toggle" aria-pressed="false">Colour-blind-safe palette</button>
<span class="legend" aria-hidden="true">0 <span class="bar"></span> 100</span>
<span class="help">Click a cell, or Tab into a heatmap, move with the arrow keys and press Enter; Escape closes.</span></div>
</header>
<div class="layout"><main><div class="runs">{body}</div></main>
<aside id="panel" aria-live="polite" aria-label="Cell details" tabindex="-1"><p class="note">Select a cell to see the
model's answer and the prompt around the needle.</p></aside></div>
<script type="application/json" id="report-data">{_json_script(payload)}</script>
<script>{JS}</script>
</body></html>
"""


def build_report(paths: Sequence[str | Path], *, labels: Optional[Sequence[str]] = None,
                 title: Optional[str] = None) -> str:
    """The report page for results files (see :func:`longctx.report.data.load_runs` for errors)."""
    runs = load_runs(paths, labels)
    return render([run_model(r) for r in runs], title=title, sources=[str(p) for p in paths])


def write_report(paths: Sequence[str | Path], out: str | Path, *, labels: Optional[Sequence[str]] = None,
                 title: Optional[str] = None) -> Path:
    """Writes the report page to ``out`` (via a temporary file: a failure leaves ``out`` untouched)."""
    page = build_report(paths, labels=labels, title=title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
