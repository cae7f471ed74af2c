"""``longctx compare``: two NIAH results files cell by cell, with a paired test per length.

Registered on the app with ``compare_cmd.register(app)``. Torch-free: the numbers come from
:mod:`longctx.niah.results` (reading, pairing) and :mod:`longctx.niah.stats` (the tests).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from longctx.cli.common import CliError, cli_errors


def _p_text(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"


def _test_text(row) -> str:
    if row.test == "mcnemar":
        return f"McNemar, {row.discordant[0]}/{row.discordant[1]} discordant"
    return "paired bootstrap"


def comparison_table(rows: list):
    """Paired rows (``longctx.niah.stats.PairedRow``) as a rich table: length, pairs, A, B, B - A, p, test."""
    from rich import box  # rich.table and numpy: only when the command runs (keeps --help light)
    from rich.table import Table

    from longctx.niah.stats import format_tokens

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in ("length", "pairs", "A", "B", "B - A", "p"):
        table.add_column(name, justify="right")
    table.add_column("test", justify="left")
    for r in rows:
        length = "all" if r.target_length == "all" else format_tokens(r.target_length)
        table.add_row(length, str(r.pairs), f"{r.mean_a:.1f}", f"{r.mean_b:.1f}", f"{r.diff:+.1f}",
                      _p_text(r.p_value), _test_text(r), end_section=r is rows[-2])
    return table


def register(app: typer.Typer) -> None:
    """Add the ``compare`` command to ``app``."""

    @app.command("compare")
    @cli_errors
    def compare(
        a: Annotated[Path, typer.Argument(help="Results JSONL of run A.", show_default=False, metavar="A.jsonl")],
        b: Annotated[Path, typer.Argument(help="Results JSONL of run B.", show_default=False, metavar="B.jsonl")],
        labels: Annotated[Optional[str], typer.Option(
            "--labels", help='Names of A and B, comma-separated, e.g. "dynamic ×2,dynamic ×4" (default: file names).')] = None,
        n_boot: Annotated[int, typer.Option(
            "--bootstrap", help="Resamples of the paired bootstrap (fractional scores).")] = 10_000,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the paired bootstrap.")] = 0,
    ) -> None:
        """Pair two runs' cells on (task, length, depth, trial, seed); mean scores and a paired test per length."""
        from rich.console import Console  # rich and numpy: only when the command runs (keeps --help light)

        from longctx.niah.compare import pair_scores
        from longctx.niah.results import load_results
        from longctx.niah.stats import paired_rows

        names = [s.strip() for s in labels.split(",")] if labels is not None else [a.name, b.name]
        if len(names) != 2 or not all(names):
            raise CliError(f"--labels needs two names, comma-separated (got {labels!r})")
        if n_boot < 100:
            raise CliError(f"--bootstrap must be at least 100 (got {n_boot})")

        def warn(msg: str) -> None:
            typer.echo(f"warning: {msg}", err=True)

        pairing = pair_scores(load_results([a], warn=warn), load_results([b], warn=warn), (str(a), str(b)))
        if not pairing.pairs:
            what = "with a score in both" if pairing.unscored else "(task, length, depth, trial, seed)"
            raise CliError(f"no common cells {what}: {a} and {b} cannot be paired")
        rows = paired_rows(pairing.pairs, n_boot=n_boot, seed=seed)

        typer.echo(f"A = {names[0]} ({a})")
        typer.echo(f"B = {names[1]} ({b})")
        Console(highlight=False, width=100).print(comparison_table(rows))
        typer.echo(f"unpaired cells: {pairing.only_a} only in A, {pairing.only_b} only in B; "
                   f"{pairing.unscored} common cell(s) without a score in A or B")
        typer.echo(f"scores: mean x 100; p: two-sided, exact McNemar when every paired score is 0 or 1, else a "
                   f"paired bootstrap ({n_boot} resamples, seed {seed}); per-length p-values are not corrected "
                   f"for multiple comparisons")
