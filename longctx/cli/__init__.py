"""The ``longctx`` command line.

Each feature area keeps its commands in its own module here and registers them on
the one typer app. Imports flow one way: cli -> experiment drivers -> engine.
"""
from __future__ import annotations

import sys

import typer
from typer._click import exceptions as click_errors  # typer vendors click; its errors live here
from typer.core import TyperGroup


class OneLineErrors(TyperGroup):
    """Click's usage and type errors as one ``error: ...`` line on stderr with exit code 2 (no usage box)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as e:  # bare `longctx`: the help text, as before
            e.show()
            sys.exit(e.exit_code)
        except click_errors.ClickException as e:
            msg = " ".join(e.format_message().split())
            typer.echo(f"error: {msg}", err=True)
            sys.exit(2 if isinstance(e, click_errors.UsageError) else e.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
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
