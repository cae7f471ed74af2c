"""``longctx plot``: NIAH heatmaps and an accuracy-vs-length chart from results files.

Registered on the app with ``plot_cmd.register(app)``. Nothing here imports torch;
matplotlib is imported only when a figure is drawn.
"""
from __future__ import annotations

import enum
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


def _group_runs(records: list[dict], by: GroupBy) -> list[tuple[str, list[dict]]]:
    """Panels in the order their first record was read (``load_results`` keeps runs in file order)."""
    from longctx.niah.plot import rope_label  # numpy: only when the command runs (keeps --help light)

    groups: dict[str, list[dict]] = {}
    for rec in records:
        key = str(rec.get("run_id")) if by is GroupBy.run else rope_label(rec.get("rope_scaling"))
        groups.setdefault(key, []).append(rec)
    return list(groups.items())


def _default_labels(groups: list[tuple[str, list[dict]]], by: GroupBy) -> list[str]:
    from longctx.niah.plot import run_label  # numpy: only when the command runs (keeps --help light)

    labels = [run_label(recs) for _, recs in groups]
    if len(set(labels)) != len(labels):  # same model and scaling in two runs: tell them apart
        labels = [f"{lab} ({key})" if by is GroupBy.run else lab for lab, (key, _) in zip(labels, groups)]
    return labels


def _print_summary(label: str, rows: list[dict]) -> None:
    from longctx.niah.stats import summary_lines  # numpy: only when the command runs (keeps --help light)

    typer.echo(label)
    for line in summary_lines(rows):
        typer.echo(f"  {line}")


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
        # numpy (and matplotlib when drawing): only when the command runs (keeps --help light)
        from longctx.niah.plot import plot_accuracy_vs_length, plot_heatmaps
        from longctx.niah.results import ResultsError, load_results
        from longctx.niah.stats import summary_table

        try:
            loaded = load_results(results, warn=lambda msg: typer.echo(f"warning: {msg}", err=True))
        except ResultsError as e:
            raise _fail(str(e)) from None

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
            written = plot_heatmaps(runs, base, title=title)
            written += plot_accuracy_vs_length(runs, base.with_name(base.name + "_by_length"), title=title)
        except OSError as e:
            raise _fail(f"cannot write {out}: {e.strerror or e}", 1) from None

        for name, recs in runs:
            _print_summary(name, summary_table(recs))
        for path in written:
            typer.echo(f"wrote {path}")
