"""Shared CLI plumbing: one-line errors with exit code 2, model options, progress output."""
from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from longctx.errors import LongctxError, OutputError

# Option declarations reused by every command that loads a model.
ModelOpt = typer.Option(None, "--model", "-m", help="Checkpoint directory or .gguf file (default: embedded SmolLM2-135M-Instruct).")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N")
DtypeOpt = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16")
RopeOpt = typer.Option(None, "--rope-scaling", help="RoPE scaling METHOD:FACTOR: linear:4 (position interpolation), dynamic:2 (dynamic NTK), yarn:4, llama3:8; or none. Default: the checkpoint's.")
AttnOpt = typer.Option("auto", "--attn", help="Attention backend: auto | sdpa | eager | flash")
MaxCtxOpt = typer.Option(None, "--max-context", help="Longest request (prompt + new tokens) to allow.")
ChunkOpt = typer.Option(None, "--chunk-size", help="Prefill chunk length in tokens (default: 2048 on CPU; on CUDA one shot when it fits free memory, else 8192).")
PrefillOpt = typer.Option("auto", "--prefill", help="Prefill mode: auto (CUDA without --chunk-size: one shot, else "
                          "layer-wise, else chunked, whichever fits free memory; CPU: chunked) | chunked | layerwise "
                          "(each layer over the whole prompt: attention in one shot, projections and MLP in chunks).")
KvDtypeOpt = typer.Option("auto", "--kv-dtype", help="KV cache storage: auto (the model dtype) | int8 | fp8 (e4m3), "
                                                     "both with a scale per position and KV head.")


@dataclass
class ModelArgs:
    """The model-loading options of a command (see :func:`model_options`)."""

    model: Optional[str] = None
    device: str = "auto"
    dtype: str = "auto"
    rope_scaling: Optional[str] = None
    attn: str = "auto"
    max_context: Optional[int] = None
    chunk_size: Optional[int] = None
    kv_dtype: str = "auto"
    prefill: str = "auto"

    def load(self, **overrides: Any):
        """Loads the model these options name (``overrides`` replace fields, e.g. ``rope_scaling``)."""
        a = {f.name: getattr(self, f.name) for f in fields(self)} | overrides
        return load_from_cli(**a)


# (name, annotation, typer option) of every ModelArgs field, in the order --help lists them.
_MODEL_OPTIONS = [("model", Optional[str], ModelOpt), ("device", str, DeviceOpt), ("dtype", str, DtypeOpt),
                  ("rope_scaling", Optional[str], RopeOpt), ("attn", str, AttnOpt),
                  ("max_context", Optional[int], MaxCtxOpt), ("chunk_size", Optional[int], ChunkOpt),
                  ("kv_dtype", str, KvDtypeOpt), ("prefill", str, PrefillOpt)]


def option_group(cls: type, options: list[tuple[str, Any, Any]], arg: str) -> Callable:
    """A decorator giving a command a group of options declared once, handed to it as one ``cls`` instance.

    ``options`` lists ``(field, annotation, typer option)``; the command takes one keyword argument ``arg``
    instead of the options, and typer sees them as ordinary options (the wrapper's signature lists them).
    The decorator takes ``skip=(...)`` for options the command declares its own way (their fields keep the
    defaults). Hand-written because typer has no shared-option groups.
    """
    def decorate(fn: Optional[Callable] = None, *, skip: tuple[str, ...] = ()) -> Callable:
        if fn is None:
            return functools.partial(decorate, skip=skip)
        opts = [o for o in options if o[0] not in skip]
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.name != arg]
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
                 for name, ann, opt in opts]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any):
            kwargs[arg] = cls(**{name: kwargs.pop(name) for name, _, _ in opts})
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params + extra)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k != arg} | {
            name: ann for name, ann, _ in opts}
        return wrapper

    return decorate


#: ``--model`` ... ``--kv-dtype`` as one ``margs: ModelArgs`` argument.
model_options = option_group(ModelArgs, _MODEL_OPTIONS, "margs")


class CliError(Exception):
    """An error to report as one line with exit code 2."""


def fail(message: str) -> None:
    """Prints ``error: message`` on stderr and exits with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def cli_errors(fn: Callable) -> Callable:
    """Turns the engine's user-facing errors into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)
        except (CliError, LongctxError, ValueError, UnicodeDecodeError) as e:
            fail(one_line(e))
        except OSError as e:  # read-only folder, disk full, missing file: one line, never a traceback
            fail(one_line(e))

    return wrapper


def one_line(e: BaseException) -> str:
    """The first line of an exception's message; an OSError as ``<reason>: <file>``."""
    if isinstance(e, OSError) and not isinstance(e, LongctxError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else str(e.strerror)
    text = str(e).strip()
    return text.splitlines()[0] if text else e.__class__.__name__


def check_device(device: str) -> None:
    """Refuses a --device string that is not auto, cpu, cuda or cuda:N (before torch loads)."""
    from longctx.engine.config import parse_device

    parse_device(device)


def check_positive(**values: Optional[float]) -> None:
    """Refuses zero or negative values of the named options (None = not given, the default applies)."""
    for name, v in values.items():
        if v is not None and v <= 0:
            raise CliError(f"--{name.replace('_', '-')} must be positive (got {v})")


def check_output_dir(path: Optional[Path], option: str) -> None:
    """A folder the command will write files into: refused when it is an existing non-folder."""
    if path is not None and path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path} is a file, not a folder; give a folder (it was left untouched)")


_IMAGE_MAGIC = {".png": (b"\x89PNG\r\n\x1a\n",), ".pdf": (b"%PDF",), ".svg": (b"<?xml", b"<svg")}


def check_plot_targets(plot: Path) -> None:
    """Refuses a --plot whose image files (``X.png``, ``X.svg``, ``X_by_length.*``) exist and are not images."""
    base = plot.with_suffix("") if plot.suffix.lower() in _IMAGE_MAGIC else plot
    for p in (base.with_name(base.name + ext) for ext in (".png", ".svg", "_by_length.png", "_by_length.svg")):
        if p.is_dir():
            raise OutputError(f"plot file {p} is a folder")
        if p.exists():
            with open(p, "rb") as f:
                head = f.read(512).lstrip()
            if not any(head.startswith(m) for m in _IMAGE_MAGIC[p.suffix.lower()]):
                raise OutputError(f"plot file {p} exists and is not a {p.suffix[1:].upper()} image; "
                                  f"choose another --plot (it was left untouched)")


def check_prefill(prefill: str) -> None:
    """``--prefill`` must name a mode (checked before any model loads; torch is imported only here)."""
    from longctx.engine.memory import check_prefill_mode

    check_prefill_mode(prefill, "--prefill")


def load_from_cli(model: Optional[str], device: str, dtype: str, rope_scaling: Optional[str], attn: str = "auto",
                  max_context: Optional[int] = None, chunk_size: Optional[int] = None, kv_dtype: str = "auto",
                  prefill: str = "auto"):
    """Loads a model from CLI options (errors surface as ValueError subclasses)."""
    from longctx.qa.model import load_model  # the engine model plus .ask / .open (lazy: torch)

    check_device(device)
    check_positive(max_context=max_context, chunk_size=chunk_size)
    if rope_scaling is not None:
        from longctx.engine.config import parse_rope_scaling

        parse_rope_scaling(rope_scaling)
    from longctx.engine.kv_cache import KV_DTYPES  # torch: the model loads next anyway

    if kv_dtype not in KV_DTYPES:  # checked before the model loads
        raise CliError(f"unknown --kv-dtype {kv_dtype!r}: expected one of {', '.join(KV_DTYPES)}")
    check_prefill(prefill)
    kwargs: dict[str, Any] = dict(device=device, dtype=dtype, attn=attn, max_context=max_context, chunk_size=chunk_size,
                                  kv_dtype=kv_dtype, prefill=prefill)
    if rope_scaling is not None:
        kwargs["rope_scaling"] = rope_scaling
    if model is not None and not Path(model).exists():
        raise CliError(f"model path not found: {model}")
    return load_model(model, **kwargs)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def human_tokens(n: int) -> str:
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}K"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}Ki"
    return str(n)


def is_tty() -> bool:
    return sys.stderr.isatty()
