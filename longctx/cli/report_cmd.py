"""``longctx report``: one self-contained, clickable HTML page from NIAH results files (no torch).

Registered on the app with ``report_cmd.register(app)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from longctx.cli.common import cli_errors


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command("report")
    @cli_errors
    def report(
        results: Annotated[list[Path], typer.Argument(
            help="NIAH results JSONL files. Shards of one run (same run_id) merge; different runs are shown "
                 "side by side.", show_default=False, metavar="RESULTS.jsonl")],
        out: Annotated[Optional[Path], typer.Option(
            "-o", "--out", help="The HTML file to write. Default: plots/<first results file>.html")] = None,
        title: Annotated[Optional[str], typer.Option("--title", help="Page title.")] = None,
        labels: Annotated[Optional[str], typer.Option(
            "--labels", help='Comma-separated run labels in run order, e.g. "no scaling,dynamic NTK x2".')] = None,
    ) -> None:
        """Write one self-contained HTML report: heatmaps, scores with intervals, timings, and a click-through
        panel per cell (answer, expected, depths, the prompt around the needle). Opens offline."""
        from longctx.report import write_report

        if out is None:
            out = Path("plots") / f"{results[0].name.split('.')[0] or 'needle'}.html"
        if out.is_dir():
            raise ValueError(f"--out is a directory: {out}")
        if any(out.resolve() == p.resolve() for p in results):
            raise ValueError(f"--out {out} is one of the results files; choose an .html path")
        names = [s.strip() for s in labels.split(",")] if labels is not None else None
        try:
            written = write_report(results, out, labels=names, title=title)
        except OSError as e:
            raise ValueError(f"cannot write {out}: {e.strerror or e}") from None
        typer.echo(f"wrote {written} ({written.stat().st_size / 1024:,.0f} KiB)")
