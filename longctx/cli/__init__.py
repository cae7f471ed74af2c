"""The ``longctx`` command line.

Each feature area keeps its commands in its own module here and registers them on
the one typer app. Imports flow one way: cli -> experiment drivers -> engine.
"""
from __future__ import annotations

import typer

app = typer.Typer(
    name="longctx",
    help="Long-context inference and needle-in-a-haystack evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules register themselves on import (one line each).
from longctx.cli import engine_cmds  # noqa: E402,F401
from longctx.cli import plot_cmd  # noqa: E402
from longctx.cli import needle_cmd  # noqa: E402
from longctx.cli import serve_cmd  # noqa: E402
from longctx.cli import qa_cmds  # noqa: E402
from longctx.cli import bench_cmd; bench_cmd.register(app)  # noqa: E402,E702
from longctx.cli import report_cmd; report_cmd.register(app)  # noqa: E402,E702
from longctx.cli import ppl_cmd; ppl_cmd.register(app)  # noqa: E402,E702
from longctx.cli import compare_cmd; compare_cmd.register(app)  # noqa: E402,E702

plot_cmd.register(app)
needle_cmd.register(app)
serve_cmd.register(app)
qa_cmds.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
