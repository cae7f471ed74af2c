"""Engine commands: ``longctx generate`` and ``longctx info``."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from longctx.cli import app
from longctx.cli.common import (CliError, ModelArgs, ModelOpt, RopeOpt, check_positive, cli_errors, human_bytes,
                                model_options)


@app.command()
@cli_errors
@model_options
def generate(
    prompt: str = typer.Argument(..., help="Prompt text."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n", help="Tokens to generate at most."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampling seed."),
    chat: bool = typer.Option(False, "--chat/--raw", help="Apply the chat template (default: raw completion)."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt with --chat (default: the model's)."),
    stats: bool = typer.Option(True, "--stats/--no-stats", help="Print a stats line on stderr at the end."),
    margs: ModelArgs = ModelArgs(),
) -> None:
    """Generate text from a prompt, streamed to stdout as it is produced."""
    if not prompt.strip():
        raise CliError("empty prompt")
    if max_new_tokens < 1:
        raise CliError("--max-new-tokens must be at least 1")
    from longctx.engine.config import check_sampling

    check_sampling(temperature, top_p)
    m = margs.load()
    kwargs = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
    if chat:
        s = m.chat([{"role": "user", "content": prompt}], system=system if system is not None else ..., stream=True, **kwargs)
    else:
        s = m.stream(prompt, **kwargs)
        sys.stdout.write(prompt)
    for piece in s:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if stats:
        typer.echo(s.stats.footer(), err=True)


@app.command()
@cli_errors
def info(
    model: Optional[str] = ModelOpt,
    preset: Optional[str] = typer.Option(None, "--preset", help="A named shape instead of a checkpoint: internlm2-chat-7b | internlm2-chat-20b | tiny."),
    context: str = typer.Option("32Ki", "--context", "-c", help="Context length for the memory estimate (32K = 32000, 32Ki = 32768)."),
    dtype: str = typer.Option("bfloat16", "--dtype", help="dtype for the estimate: bfloat16 | float16 | float32"),
    chunk_size: int = typer.Option(8192, "--chunk-size", help="Prefill chunk for the working-memory estimate (tokens)."),
    rope_scaling: Optional[str] = RopeOpt,
    kv_dtype: str = typer.Option("auto", "--kv-dtype", help="KV cache storage: auto (the model dtype) | int8 | fp8."),
    free_gb: Optional[float] = typer.Option(None, "--free-gb", help="Device memory to plan against, in GB (10^9 "
                                            "bytes). Default: free CUDA memory, else available RAM."),
) -> None:
    """Show a model's configuration, the memory a context length needs (weights + KV cache + working) and the
    prefill plan (one shot, layer-wise or chunk size) for the free memory."""
    from longctx.checkpoints.resolve import resolve  # lazy: keeps torch out of `longctx --help`
    from longctx.engine.config import get_preset
    from longctx.engine.kv_cache import KV_DTYPES
    from longctx.engine.memory import estimate_memory, plan_prefill
    from longctx.engine.rope import base_for

    from longctx.units import parse_size

    context = parse_size(context, "--context")
    check_positive(chunk_size=chunk_size)
    if preset is not None:
        cfg = get_preset(preset)
    else:
        spec = resolve(model)
        cfg = spec.config
        if spec.is_default:
            cfg.name += " (default)"
    if rope_scaling is not None:
        cfg = cfg.with_rope_scaling(rope_scaling)
    nbytes = {"bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "float32": 4, "fp32": 4}.get(dtype)
    if nbytes is None:
        raise CliError(f"unknown dtype {dtype!r}")
    if kv_dtype not in KV_DTYPES:
        raise CliError(f"unknown --kv-dtype {kv_dtype!r}: expected one of {', '.join(KV_DTYPES)}")
    if free_gb is not None and not free_gb > 0:
        raise CliError(f"--free-gb must be positive, got {free_gb:g}")
    free, where = (int(free_gb * 1e9), "given") if free_gb is not None else _free_memory()
    est = estimate_memory(cfg, context, dtype_bytes=nbytes, chunk=chunk_size, kv_dtype=kv_dtype)
    plan = plan_prefill(cfg, context, free_bytes=free, dtype_bytes=nbytes, kv_dtype=kv_dtype)
    how = {"one-shot": "one shot",
           "layerwise": f"layer-wise (attention in one shot; projections and MLP in chunks of {plan.chunk} tokens)",
           }.get(plan.mode, f"chunks of {plan.chunk} tokens")
    rows = [
        ("model", cfg.name), ("layout", cfg.source_layout),
        ("layers / hidden / intermediate", f"{cfg.num_layers} / {cfg.hidden_size} / {cfg.intermediate_size}"),
        ("heads / kv heads / head dim", f"{cfg.num_heads} / {cfg.num_kv_heads} / {cfg.head_dim} (G = {cfg.num_groups})"),
        ("vocab", str(cfg.vocab_size)), ("parameters", f"{cfg.num_parameters() / 1e9:.3f} B"),
        ("max_position_embeddings", str(cfg.max_position_embeddings)), ("rope_theta", f"{cfg.rope_theta:g}"),
        ("rope scaling", str(cfg.rope_scaling or "none")), ("context limit", str(cfg.context_limit)),
        (f"RoPE base at {context} tokens", f"{base_for(cfg, context):.6g}"),
        ("tied embeddings", str(cfg.tie_word_embeddings)),
        (f"memory at {context} tokens ({dtype})", ""),
        ("  weights", human_bytes(est["weights"])), (f"  KV cache ({kv_dtype})", human_bytes(est["kv_cache"])),
        (f"  working (chunk {chunk_size})", human_bytes(est["working"])), ("  total", human_bytes(est["total"])),
        (f"prefill plan for {human_bytes(free)} free ({where})",
         f"{how}: {human_bytes(plan.total)}" + ("" if plan.fits else " -- does NOT fit (try --kv-dtype fp8)")),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"{k:<{width}}  {v}")
    if context > cfg.context_limit:
        typer.echo(f"note: {context} tokens exceed this configuration's context limit of {cfg.context_limit}; "
                   f"use --rope-scaling dynamic:F", err=True)


def _free_memory() -> tuple[int, str]:
    """Free CUDA memory when a GPU is present, else the available RAM."""
    import os

    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0]), "cuda free"
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")), "available RAM"
