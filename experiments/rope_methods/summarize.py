"""Tables and figures of the RoPE-methods experiment (no torch: reads the results JSONL only).

    python experiments/rope_methods/summarize.py            # after run.sh (or on a partial run)
    python experiments/rope_methods/summarize.py --readme   # and rewrite the README's generated block

Prints the README's generated block (between its "summarize.py: begin/end" markers): per task, score
per (setting, length) with its 95% Wilson interval; the paired comparisons (same cells: task, length,
depth, trial, seed) of the pairs the README discusses, per length, with the exact McNemar p-value and the
discordant pairs, as `longctx compare` computes them; the perplexity table (mean NLL per 8K span of the
held-out text, from results/ppl_web_bible_*.jsonl).
Writes, under experiments/rope_methods/figures/:
  heatmaps_{task}.png/.svg            depth x length per setting
  heatmaps_{task}_by_length.png/.svg  mean score per length per setting, Wilson error bars
  ppl_web_bible.png/.svg              loss vs position, one line per setting (the window dashed)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run from a clone without installing

from experiments.summary_common import fmt_score, load_partial  # noqa: E402
from longctx.niah.compare import pair_scores  # noqa: E402
from longctx.niah.plot import plot_accuracy_vs_length, plot_heatmaps  # noqa: E402
from longctx.niah.stats import format_tokens, paired_rows, summary_table  # noqa: E402
from longctx.ppl.plot import plot_loss_vs_position, read_ppl_records  # noqa: E402
from longctx.units import parse_size  # noqa: E402

RESULTS = HERE / "results"
FIGURES = HERE / "figures"
TASKS = ("single", "multikey")
# file suffix -> label (the --rope-scaling value run.sh passes)
SETTINGS = {"none": "none", "linear4": "linear:4", "dynamic4": "dynamic:4", "yarn4": "yarn:4",
            "dynamic2": "dynamic:2", "yarn2": "yarn:2"}
WINDOW = 8192  # SmolLM2-135M-Instruct's max_position_embeddings
SPAN = 8000  # ppl table: mean NLL per span of this many positions
# (A, B) pairs the README discusses: B - A per length
PAIRS = [("linear4", "yarn4"), ("none", "dynamic4"), ("none", "yarn4"), ("dynamic4", "yarn4"),
         ("dynamic4", "dynamic2"), ("yarn4", "yarn2")]


NOT_PLANNED = "n/r"  # a cell run.sh does not queue (its comment says why)


def planned() -> set[tuple[str, str, int]]:
    """(task, setting, length) of every NIAH job ``run.sh --plan`` lists: the plan has one copy, in run.sh.

    The whole plan, whatever LENGTHS a partial ``LENGTHS=4K run.sh`` set (it would otherwise mark the
    lengths it skipped `n/r`, "not in the plan", in the tables it writes at its end)."""
    env = {k: v for k, v in os.environ.items() if k != "LENGTHS"}
    out = subprocess.run(["bash", str(HERE / "run.sh"), "--plan"], capture_output=True, text=True, check=True,
                         env=env)
    jobs = (line.split() for line in out.stdout.splitlines())
    return {(task, s, parse_size(length)) for length, s, *rest in jobs if length != "ppl" for task in rest}


def load(task: str, setting: str) -> list[dict]:
    return load_partial(RESULTS / f"{task}_{setting}.jsonl")


def score_table(task: str, data: dict, lengths: list[int], plan: set) -> list[str]:
    head = f"| {task} | " + " | ".join(map(format_tokens, lengths)) + " | n per cell |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for s, name in SETTINGS.items():
        if not data[task, s]:
            continue
        rows = {r["target_length"]: r for r in summary_table(data[task, s])}
        cells = [fmt_score(rows.get(n)) if n in rows or (task, s, n) in plan else NOT_PLANNED for n in lengths]
        ns = sorted({rows[n]["n"] for n in lengths if n in rows})
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {','.join(map(str, ns))} |")
    return lines


def pair_table(data: dict, lengths: list[int], plan: set) -> list[str]:
    head = "| task | B vs A | " + " | ".join(map(format_tokens, lengths)) + " | all |"
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
                if r is None and n != "all" and {(task, a, n), (task, b, n)} - plan:
                    cells.append(NOT_PLANNED)
                elif r is None:
                    cells.append("–")
                elif r.discordant == (0, 0):
                    cells.append("= (no discordant pair)")
                else:
                    d = r.discordant
                    cells.append(f"{r.diff:+.0f}, p={r.p_value:.2g} ({d[0]}/{d[1]})" if d
                                 else f"{r.diff:+.0f}, p={r.p_value:.2g}")
            lines.append(f"| {task} | {SETTINGS[b]} vs {SETTINGS[a]} | " + " | ".join(cells) + " |")
    return lines


def ppl_records() -> list[dict]:
    """The ppl runs, one file per setting (run.sh writes each whole), in SETTINGS order."""
    out = []
    for s in SETTINGS:
        path = RESULTS / f"ppl_web_bible_{s}.jsonl"
        if path.exists():
            out += read_ppl_records(path)
    return out


def ppl_table(records: list[dict]) -> list[str]:
    """Mean NLL per SPAN of positions (token-weighted over the buckets starting in it), and perplexity."""
    n_tok = max(int(r["tokens"]) for r in records)
    spans = list(range(0, n_tok, SPAN))
    head = ("| setting | RoPE base | " + " | ".join(f"NLL {format_tokens(a)}–{format_tokens(min(a + SPAN, n_tok))}" for a in spans)
            + " | NLL all | perplexity |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for rec in records:
        cells = []
        for a in spans:
            pairs = [(nll, c) for st, nll, c in zip(rec["bucket_starts"], rec["bucket_nll"], rec["bucket_counts"])
                     if a <= st - 1 < a + SPAN]
            w = sum(c for _, c in pairs)
            cells.append(f"{sum(nll * c for nll, c in pairs) / w:.3f}" if w else "–")
        rs = rec.get("rope_scaling")
        name = f"{rs['type']}:{float(rs['factor']):g}" if rs else "none"
        lines.append(f"| {name} | {rec['rope_base']:,.0f} | " + " | ".join(cells)
                     + f" | {rec['mean_nll']:.3f} | {rec['perplexity']:.1f} |")
    return lines


BEGIN, END = "<!-- summarize.py: begin -->", "<!-- summarize.py: end -->"


def tables_markdown(data: dict, lengths: list[int], ppl: list[dict], plan: set | None = None) -> str:
    """The README's generated block: score tables, paired comparisons, the perplexity table."""
    plan = planned() if plan is None else plan
    parts = ["### NIAH score per setting and length", "",
             "Score = mean x 100 over the cell's scored trials (3 depths x 5 trials = 15 per length), 95 % Wilson "
             "interval in brackets; `–`: not run yet; `n/r`: not in the plan (run.sh's queue says why).", ""]
    for task in TASKS:
        parts += score_table(task, data, lengths, plan) + [""]
    parts += ["### Paired comparisons", "",
              "Same cells on both sides (task, length, depth, trial, seed): B − A in points, exact McNemar p, and "
              "the discordant pairs (A right / B wrong, A wrong / B right); `=`: every pair agrees "
              "(`longctx compare results/A.jsonl results/B.jsonl` prints the same per file pair).", ""]
    parts += pair_table(data, lengths, plan) + [""]
    if ppl:
        parts += ["### Loss by position to 32K (web_bible, never used by the sweeps)", "",
                  f"Mean negative log-likelihood per token over {max(int(r['tokens']) for r in ppl):,} tokens, "
                  f"per span of {SPAN:,} positions (`longctx ppl`; the dynamic base is the one for the whole "
                  "text, so it applies from position 0).", ""]
        parts += ppl_table(ppl) + [""]
    return "\n".join(parts)


def write_readme(block: str) -> Path:
    """Replaces the README's text between the BEGIN and END markers with ``block``."""
    path = HERE / "README.md"
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        sys.exit(f"{path}: no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + BEGIN + "\n" + block + "\n" + END + rest.split(END, 1)[1], encoding="utf-8")
    return path


def main() -> None:
    data = {(t, s): load(t, s) for t in TASKS for s in SETTINGS}
    lengths = sorted({int(r["target_length"]) for recs in data.values() for r in recs})
    if not lengths:
        sys.exit("no results yet: run experiments/rope_methods/run.sh first")
    ppl = ppl_records()
    block = tables_markdown(data, lengths, ppl)
    print(block)
    written = [write_readme(block)] if "--readme" in sys.argv[1:] else []
    for task in TASKS:
        runs = [(name, data[task, s]) for s, name in SETTINGS.items() if data[task, s]]
        title = f"RoPE methods, task {task} (SmolLM2-135M-Instruct, window 8,192)"
        written += plot_heatmaps(runs, FIGURES / f"heatmaps_{task}.png", title=title, max_cols=3)
        written += plot_accuracy_vs_length(runs, FIGURES / f"heatmaps_{task}_by_length.png", title=title)
    if ppl:
        for suffix in (".png", ".svg"):
            written.append(plot_loss_vs_position(
                ppl, FIGURES / f"ppl_web_bible{suffix}", window=WINDOW,
                title="Loss vs position past the 8K window, web_bible (SmolLM2-135M-Instruct)"))
    total = sum(float(r.get("prefill_s") or 0) + float(r.get("decode_s") or 0)
                for recs in data.values() for r in recs)
    print(f"model time, all files: {total / 60:.1f} min over {sum(map(len, data.values()))} cells")
    print("wrote", *[str(Path(p).resolve().relative_to(HERE.parents[1])) for p in written], sep="\n  ")


if __name__ == "__main__":
    main()
