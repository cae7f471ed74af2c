"""Tables and figures of the task-suite experiment (no torch: reads the results JSONL only).

    python experiments/task_suite/summarize.py            # after run.sh (or on a partial run)

Writes, under experiments/task_suite/figures/:
  summary.png/.svg          one matrix: task x (language, length), mean score with its 95% interval
  heatmaps_en.png/.svg      depth x length heatmap per task, English haystack (and _by_length: error bars)
  heatmaps_zh.png/.svg      the same on the Chinese haystack
and prints the README's markdown table (score per length with Wilson 95% intervals, n per length) and
the model time per file (sum of the recorded prefill and decode seconds).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run from a clone without installing

from experiments.summary_common import fmt_score, load_partial  # noqa: E402
from longctx.niah.plot import plot_accuracy_vs_length, plot_heatmaps, score_cmap  # noqa: E402
from longctx.niah.stats import format_tokens, summary_table  # noqa: E402

RESULTS = HERE / "results"
FIGURES = HERE / "figures"
LANGS = {"en": "English (Austen)", "zh": "Chinese (zh)"}
# task -> (what it asks, counterpart in the suites people compare against)
TASKS = {
    "single": ("one key-value needle", "RULER niah_single / NeedleBench single-needle retrieval"),
    "multikey": ("target + 3 other keys", "RULER niah_multikey"),
    "reasoning": ("3 chained relations + 2 distractor birthplaces", "NeedleBench multi-needle reasoning"),
    "trace": ("4 chained parent statements", "NeedleBench Ancestral Trace Challenge"),
    "vt": ("VAR chain, 4 re-assignments: all 5 names", "RULER vt (variable tracking)"),
    "cwe": ("the 5 words seen 5x in a list (15 others 2x)", "RULER cwe"),
    "fwe": ("the 3 most frequent words of a coded text", "RULER fwe"),
    "latent": ("needle with no word of the question", "NoLiMa (one latent hop)"),
    "absent": ("asked key not in the text (score = says so; 100 - score = false positives)",
               "OneRuler 'none' cells"),
}


def load(task: str, lang: str) -> list[dict]:
    return load_partial(RESULTS / f"{task}_{lang}.jsonl")


def table(data: dict, lengths: list[int]) -> list[str]:
    labels = [format_tokens(n) for n in lengths]
    head = "| task | asks | counterpart | lang | " + " | ".join(labels) + " | all | n per length |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for task, (asks, counterpart) in TASKS.items():
        for lang in LANGS:
            recs = data[task, lang]
            if not recs:
                continue
            rows = {r["target_length"]: r for r in summary_table(recs)}
            ns = sorted({rows[n]["n"] for n in lengths if n in rows})
            cells = [fmt_score(rows.get(n)) for n in lengths]
            lines.append(f"| {task} | {asks} | {counterpart} | {lang} | " + " | ".join(cells)
                         + f" | {fmt_score(rows.get('all'))} | {','.join(map(str, ns))} |")
    return lines


def summary_figure(data: dict, lengths: list[int], out: Path) -> list[Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = [t for t in TASKS if any(data[t, lang] for lang in LANGS)]
    cols = [(lang, n) for lang in LANGS for n in lengths]
    mean = np.full((len(tasks), len(cols)), np.nan)
    text = [["" for _ in cols] for _ in tasks]
    for i, task in enumerate(tasks):
        for lang in LANGS:
            if not data[task, lang]:
                continue
            rows = {r["target_length"]: r for r in summary_table(data[task, lang])}
            for j, col in enumerate(cols):
                r = rows.get(col[1]) if col[0] == lang else None
                if r is not None and r["mean"] is not None:
                    mean[i, j] = r["mean"]
                    text[i][j] = f"{r['mean']:.0f}\n{r['ci_low']:.0f}–{r['ci_high']:.0f}"
    fig = Figure(figsize=(1.0 + 0.95 * len(cols), 1.4 + 0.55 * len(tasks)), layout="constrained",
                 facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    mesh = ax.imshow(np.ma.masked_invalid(mean), cmap=score_cmap(), vmin=0, vmax=100, aspect="auto")
    for i in range(len(tasks)):
        for j in range(len(cols)):
            ax.text(j, i, text[i][j] or "–", ha="center", va="center", fontsize=7.5)
    ax.set_xticks(range(len(cols)), [f"{lang.upper()} {format_tokens(n)}" for lang, n in cols], fontsize=8)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=9)
    ax.axvline(len(lengths) - 0.5, color="black", linewidth=1.5)
    ax.set_xlabel("haystack language, context length (model tokens)")
    fig.colorbar(mesh, ax=ax, label="score (0-100)", shrink=0.8)
    n = sorted({r["n"] for k, recs in data.items() if recs for r in summary_table(recs)[:-1]})
    fig.suptitle("SmolLM2-135M-Instruct on every task: mean score and 95% Wilson interval per length\n"
                 f"(n = {','.join(map(str, n))} scored trials per length: 2 depths x 5 trials; "
                 "absent: share of correct abstentions)", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, dpi=150, facecolor="white", metadata={"Date": None} if p.suffix == ".svg" else None)
    return paths


def main() -> None:
    data = {(t, lang): load(t, lang) for t in TASKS for lang in LANGS}
    lengths = sorted({int(r["target_length"]) for recs in data.values() for r in recs})
    if not lengths:
        sys.exit("no results yet: run experiments/task_suite/run.sh first")
    print("\n".join(table(data, lengths)))
    print()
    written = summary_figure(data, lengths, FIGURES / "summary.png")
    for lang, name in LANGS.items():
        runs = [(task, data[task, lang]) for task in TASKS if data[task, lang]]
        if runs:
            title = f"Every task, {name} haystack (SmolLM2-135M-Instruct, 5 trials per cell)"
            written += plot_heatmaps(runs, FIGURES / f"heatmaps_{lang}.png", title=title)
            written += plot_accuracy_vs_length(runs, FIGURES / f"heatmaps_{lang}_by_length.png", title=title)
    total = 0.0
    for (task, lang), recs in data.items():
        if recs:
            s = sum(float(r.get("prefill_s") or 0) + float(r.get("decode_s") or 0) for r in recs)
            total += s
            print(f"model time {task}_{lang}: {s / 60:.1f} min over {len(recs)} cells")
    print(f"model time, all files: {total / 60:.1f} min")
    print("wrote", *[str(p.relative_to(HERE.parents[1])) for p in written], sep="\n  ")


if __name__ == "__main__":
    main()
