"""Tables and figures of the RoPE-methods experiment (no torch: reads the results JSONL only).

    python experiments/rope_methods/summarize.py          # after run.sh (or on a partial run)

Prints the README's tables: per task, score per (setting, length) with its 95% Wilson interval; then the
paired comparisons (same cells: task, length, depth, trial, seed) of the pairs the README discusses,
per length, with the exact McNemar p-value and the discordant pairs, as `longctx compare` computes them.
Writes, under experiments/rope_methods/figures/:
  heatmaps_{task}.png/.svg            depth x length per setting
  heatmaps_{task}_by_length.png/.svg  mean score per length per setting, Wilson error bars
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run from a clone without installing

from longctx.errors import ResultsError  # noqa: E402
from longctx.niah.compare import pair_scores  # noqa: E402
from longctx.niah.plot import plot_accuracy_vs_length, plot_heatmaps  # noqa: E402
from longctx.niah.results import load_results  # noqa: E402
from longctx.niah.stats import paired_rows, summary_table  # noqa: E402

RESULTS = HERE / "results"
FIGURES = HERE / "figures"
TASKS = ("single", "multikey")
# file suffix -> label (the --rope-scaling value run.sh passes)
SETTINGS = {"none": "none", "linear4": "linear:4", "dynamic4": "dynamic:4", "yarn4": "yarn:4",
            "dynamic2": "dynamic:2", "yarn2": "yarn:2"}
# (A, B) pairs the README discusses: B - A per length
PAIRS = [("linear4", "yarn4"), ("none", "dynamic4"), ("none", "yarn4"), ("dynamic4", "yarn4"),
         ("dynamic4", "dynamic2"), ("yarn4", "yarn2")]


def load(task: str, setting: str) -> list[dict]:
    path = RESULTS / f"{task}_{setting}.jsonl"
    try:
        return load_results(path) if path.exists() else []
    except ResultsError:  # a run that has not written its first cell yet
        return []


def label(n: int | str) -> str:
    return n if isinstance(n, str) else (f"{n // 1000}K" if n % 1000 == 0 else str(n))


def score_table(task: str, data: dict, lengths: list[int]) -> list[str]:
    head = f"| {task} | " + " | ".join(map(label, lengths)) + " | n per cell |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for s, name in SETTINGS.items():
        if not data[task, s]:
            continue
        rows = {r["target_length"]: r for r in summary_table(data[task, s])}
        cells = []
        for n in lengths:
            r = rows.get(n)
            cells.append("–" if r is None or r["mean"] is None
                         else f"{r['mean']:.0f} ({r['ci_low']:.0f}–{r['ci_high']:.0f})")
        ns = sorted({rows[n]["n"] for n in lengths if n in rows})
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {','.join(map(str, ns))} |")
    return lines


def pair_table(data: dict, lengths: list[int]) -> list[str]:
    head = "| task | B vs A | " + " | ".join(map(label, lengths)) + " | all |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for task in TASKS:
        for a, b in PAIRS:
            if not data[task, a] or not data[task, b]:
                continue
            pairing = pair_scores(data[task, a], data[task, b], (a, b))
            if not pairing.pairs:
                continue
            rows = {r.target_length: r for r in paired_rows(pairing.pairs)}
            cells = []
            for n in [*lengths, "all"]:
                r = rows.get(n)
                if r is None:
                    cells.append("–")
                elif r.discordant == (0, 0):
                    cells.append("= (no discordant pair)")
                else:
                    d = r.discordant
                    cells.append(f"{r.diff:+.0f}, p={r.p_value:.2g} ({d[0]}/{d[1]})" if d
                                 else f"{r.diff:+.0f}, p={r.p_value:.2g}")
            lines.append(f"| {task} | {SETTINGS[b]} vs {SETTINGS[a]} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    data = {(t, s): load(t, s) for t in TASKS for s in SETTINGS}
    lengths = sorted({int(r["target_length"]) for recs in data.values() for r in recs})
    if not lengths:
        sys.exit("no results yet: run experiments/rope_methods/run.sh first")
    for task in TASKS:
        print("\n".join(score_table(task, data, lengths)), end="\n\n")
    print("Paired comparisons (B - A in points, exact McNemar p, discordant pairs A right-B wrong / "
          "A wrong-B right):\n")
    print("\n".join(pair_table(data, lengths)), end="\n\n")
    written = []
    for task in TASKS:
        runs = [(name, data[task, s]) for s, name in SETTINGS.items() if data[task, s]]
        title = f"RoPE methods, task {task} (SmolLM2-135M-Instruct, window 8,192; 5 trials per cell)"
        written += plot_heatmaps(runs, FIGURES / f"heatmaps_{task}.png", title=title, max_cols=3)
        written += plot_accuracy_vs_length(runs, FIGURES / f"heatmaps_{task}_by_length.png", title=title)
    total = sum(float(r.get("prefill_s") or 0) + float(r.get("decode_s") or 0)
                for recs in data.values() for r in recs)
    print(f"model time, all files: {total / 60:.1f} min over {sum(map(len, data.values()))} cells")
    print("wrote", *[str(p.relative_to(HERE.parents[1])) for p in written], sep="\n  ")


if __name__ == "__main__":
    main()
