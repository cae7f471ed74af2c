"""``longctx bench prefill``: prefill speed and memory, engine against transformers.

Registered on the app with ``bench_cmd.register(app)``; the measuring lives in :mod:`longctx.bench`
(``spec`` options, ``runner`` the run, ``report`` the JSON / Markdown / tables).
"""
from __future__ import annotations

from typing import Optional

import typer

from longctx.cli.common import CliError, cli_errors


def prefill(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint directory (default: embedded SmolLM2-135M-Instruct)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="A named shape: internlm2-chat-7b | internlm2-chat-20b | tiny (needs --random-weights)."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Random weights of the preset's shape (no checkpoint needed)."),
    lengths: str = typer.Option("8192,32768,131072,200000", "--lengths", help="Prompt lengths in tokens: 8192,32768 or 8K,32Ki (K = 1000, Ki = 1024)."),
    chunk: Optional[int] = typer.Option(None, "--chunk", help="Engine prefill chunk (default: 8192 CUDA, the engine's CPU default otherwise)."),
    prefill: str = typer.Option("auto", "--prefill", help="Engine prefill: auto (= chunked here) | chunked | layerwise (attention in one shot, projections and MLP in chunks of --chunk)."),
    baseline: str = typer.Option("transformers", "--baseline", help="transformers | none"),
    dtype: str = typer.Option("auto", "--dtype", help="bf16 | fp16 | fp32 | auto (fp32 on CPU, the checkpoint's half type on CUDA)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    attn: str = typer.Option("auto", "--attn", help="Engine attention backend: auto | sdpa | flash | eager"),
    rope_scaling: Optional[str] = typer.Option(None, "--rope-scaling", help="dynamic:FACTOR for the engine (e.g. dynamic:2); the baseline keeps default RoPE."),
    repeats: int = typer.Option(1, "--repeats", help="Timed prefills per point (median reported)."),
    rounds: int = typer.Option(1, "--rounds", help="With isolation: run every (length, implementation) point this many times, alternating, and report medians."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per point (default: torch's; 1 gives stable comparisons on a loaded machine)."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the full report as JSON (updated after every point)."),
    markdown_out: Optional[str] = typer.Option(None, "--markdown", help="Write the tables as Markdown."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Seconds; lengths predicted to end later are skipped."),
    isolate: Optional[bool] = typer.Option(None, "--isolate/--no-isolate", help="A fresh subprocess per point (default: on CPU, where peak RSS is process-wide)."),
    seed: int = typer.Option(0, "--seed", help="Seed for random weights and token ids."),
) -> None:
    """Time prefill at several prompt lengths: seconds, tokens/s, TFLOP/s, % of a matmul peak, peak memory."""
    # torch is imported only when the command runs, so `longctx --help` stays fast
    from longctx.bench.report import BenchReport, report_to_text, write_json, write_markdown
    from longctx.bench.runner import run_prefill_bench
    from longctx.bench.spec import BenchOptions, parse_lengths

    try:
        lens = parse_lengths(lengths)
    except ValueError as e:
        raise CliError(str(e)) from None
    opts = BenchOptions(lengths=lens, model=model, preset=preset, random_weights=random_weights, chunk=chunk,
                        prefill=prefill, baseline=baseline, dtype=dtype, device=device, attn=attn, rope_scaling=rope_scaling,
                        repeats=repeats, rounds=rounds, threads=threads, time_budget=time_budget, isolate=isolate, seed=seed)
    opts.validate()

    def save(report: BenchReport) -> None:
        if json_out:
            write_json(report, json_out)

    report = run_prefill_bench(opts, on_point=save)
    save(report)
    if markdown_out:
        write_markdown(report, markdown_out)
    typer.echo(report_to_text(report))
    if json_out:
        typer.echo(f"wrote {json_out}", err=True)
    if markdown_out:
        typer.echo(f"wrote {markdown_out}", err=True)


def register(app: typer.Typer) -> None:
    """Adds the ``bench`` command group (``bench prefill``) to ``app``."""
    bench_app = typer.Typer(help="Benchmarks: prefill speed and memory.", no_args_is_help=True)
    bench_app.command("prefill")(cli_errors(prefill))
    app.add_typer(bench_app, name="bench")
