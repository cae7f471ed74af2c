"""``longctx plot``: NIAH heatmaps and an accuracy-vs-length chart from results files.

Registered on the app with ``plot_cmd.register(app)``. Nothing here imports torch;
matplotlib is imported only when the command runs.
"""
from __future__ import annotations

import enum
import math
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from longctx.cli.common import check_plot_targets


class GroupBy(str, enum.Enum):
    run = "run"
    rope_scaling = "rope_scaling"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _group_runs(loaded, by: GroupBy) -> list[tuple[str, list[dict]]]:
    """Panels in the order their first record was read (file argument order)."""
    from longctx.niah import plot as P

    groups: dict[object, list[tuple[int, dict]]] = {}
    for seq, rec in loaded:
        if by is GroupBy.run:
            key = P._hashable(rec.get("run_id"))
        else:
            key = P._rope_text(rec.get("rope_scaling"))
        groups.setdefault(key, []).append((seq, rec))
    ordered = sorted(groups.items(), key=lambda kv: min(s for s, _ in kv[1]))
    return [(str(key), [rec for _, rec in items]) for key, items in ordered]


def _default_labels(groups: list[tuple[str, list[dict]]], by: GroupBy) -> list[str]:
    from longctx.niah import plot as P

    labels = [P.run_label(recs) for _, recs in groups]
    if len(set(labels)) != len(labels):  # same model and scaling in two runs: tell them apart
        labels = [f"{lab} ({key})" if by is GroupBy.run else lab for lab, (key, _) in zip(labels, groups)]
    return labels


def _print_summary(label: str, rows: list[dict]) -> None:
    typer.echo(f"{label}")
    typer.echo(f"  {'length':>8}  {'score':>6}  {'records':>7}  {'valid':>5}  {'errors':>6}  {'missing cells':>13}")
    for row in rows:
        mean = "n/a" if row["mean"] is None or math.isnan(row["mean"]) else f"{row['mean']:.1f}"
        typer.echo(f"  {row['label']:>8}  {mean:>6}  {row['records']:>7}  {row['valid']:>5}  "
                   f"{row['errors']:>6}  {row['missing_cells']:>13}")


def register(app: typer.Typer) -> None:
    """Add the ``plot`` command to ``app``."""

    @app.command("plot")
    def plot(
        results: Annotated[list[Path], typer.Argument(
            help="NIAH results JSONL files. Shards of one run (same run_id) merge into one panel; "
                 "different runs become side-by-side panels.", show_default=False, metavar="RESULTS.jsonl")],
        out: Annotated[Optional[Path], typer.Option(
            "-o", "--out", help="Output image, e.g. plots/NAME.png; NAME.png/.svg and "
                                "NAME_by_length.png/.svg are written. Default: plots/<first results file>.png")] = None,
        title: Annotated[Optional[str], typer.Option("--title", help="Figure title.")] = None,
        group_by: Annotated[GroupBy, typer.Option(
            "--group-by", help="One panel per run_id, or per rope_scaling setting.")] = GroupBy.run,
        labels: Annotated[Optional[str], typer.Option(
            "--labels", help='Comma-separated panel labels in panel order, e.g. "no scaling,dynamic NTK ×2".')] = None,
    ) -> None:
        """Draw NIAH heatmaps (depth x context length) and an accuracy-vs-length chart."""
        from longctx.niah import plot as P

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", P.ResultsWarning)
            try:
                loaded = P._load(results)
            except ValueError as e:
                raise _fail(str(e)) from None
        for w in caught:
            if issubclass(w.category, P.ResultsWarning):
                typer.echo(f"warning: {w.message}", err=True)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

        groups = _group_runs(loaded, group_by)
        if labels is not None:
            names = [s.strip() for s in labels.split(",")]
            if len(names) != len(groups) or not all(names):
                raise _fail(f"--labels gives {len(names)} name(s) but there are {len(groups)} panel(s) "
                            f"({', '.join(key for key, _ in groups)})")
        else:
            names = _default_labels(groups, group_by)
        runs = [(name, recs) for name, (_, recs) in zip(names, groups)]

        if out is None:
            out = Path("plots") / f"{Path(results[0]).name.split('.')[0] or 'niah'}.png"
        base = out.with_suffix("") if out.suffix.lower() in (".png", ".svg", ".pdf") else out
        try:
            check_plot_targets(out)  # an existing file that is not an image is never overwritten
        except OSError as e:
            raise _fail(str(e)) from None
        try:
            written = P.plot_heatmaps(runs, base, title=title)
            written += P.plot_accuracy_vs_length(runs, base.with_name(base.name + "_by_length"), title=title)
        except OSError as e:
            raise _fail(f"cannot write {out}: {e.strerror or e}", 1) from None

        for name, recs in runs:
            _print_summary(name, P.summary_table(recs))
        for path in written:
            typer.echo(f"wrote {path}")
