"""``longctx serve``: the OpenAI-compatible server (see :mod:`longctx.serve.app` and docs/serving.md).

Registered on the app with ``serve_cmd.register(app)``.
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Optional

import typer

from longctx.cli.common import CliError, ModelArgs, cli_errors, model_options
from longctx.errors import ServeError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""

    @app.command("serve")
    @cli_errors
    @model_options
    def serve_command(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default; anything else "
                                                              "exposes the model to the network)."),
        port: int = typer.Option(23333, "--port", help="TCP port."),
        api_key: Optional[str] = typer.Option(None, "--api-key", help="Require 'Authorization: Bearer KEY' on every "
                                                                      "endpoint but /health (default: $LONGCTX_API_KEY "
                                                                      "if set, else no auth)."),
        max_queue: int = typer.Option(64, "--max-queue", help="Requests allowed to wait besides the one generating; "
                                                              "more are answered 429."),
        served_model_name: Optional[str] = typer.Option(None, "--served-model-name",
                                                        help="Model id clients send (default: the checkpoint's "
                                                             "directory name, or SmolLM2-135M-Instruct)."),
        default_max_tokens: int = typer.Option(4096, "--default-max-tokens",
                                               help="Chat max_tokens when a request gives none (capped by the "
                                                    "context left)."),
        max_body_bytes: int = typer.Option(32 * 2 ** 20, "--max-body-bytes",
                                           help="Largest request body in bytes (default 32 MiB); larger ones are "
                                                "answered 413."),
        log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: debug | info | warning | error"),
        margs: ModelArgs = ModelArgs(),
    ) -> None:
        """Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /tokenize)."""
        if not 0 < port < 65536:
            raise CliError(f"--port must be in 1..65535, got {port}")
        if max_queue < 1:
            raise CliError("--max-queue must be at least 1")
        if default_max_tokens < 1:
            raise CliError("--default-max-tokens must be at least 1")
        if max_body_bytes < 1:
            raise CliError("--max-body-bytes must be at least 1")
        if api_key is not None and not api_key.strip():
            raise CliError("--api-key must not be empty (leave it out to serve without authentication)")
        if api_key is None:
            api_key = os.environ.get("LONGCTX_API_KEY") or None
        try:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            raise CliError("longctx serve needs fastapi and uvicorn: pip install 'longctx[serve]'") from None
        from longctx.serve.app import bind_socket, serve  # needs fastapi and torch: only when the command runs

        if not _is_loopback(host) and api_key is None:
            typer.echo(f"warning: serving on {host} without --api-key: anyone who can reach this port can use the model",
                       err=True)
        try:  # the port is taken now, so a busy port fails before the model loads
            sock = bind_socket(host, port)
        except ServeError as e:
            raise CliError(str(e)) from None
        m = margs.load()
        name = served_model_name or (Path(margs.model).name if margs.model is not None else m.name)
        typer.echo(f"longctx serve: model '{name}' ({m.device}, {str(m.dtype).replace('torch.', '')}, max context "
                   f"{m.max_context} tokens) on http://{host}:{port}/v1", err=True)
        serve(m, host=host, port=port, served_model_name=name, api_key=api_key, max_queue=max_queue,
              default_max_tokens=default_max_tokens, max_body_bytes=max_body_bytes, log_level=log_level, sock=sock)
