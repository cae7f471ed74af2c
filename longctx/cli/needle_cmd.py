"""``longctx needle``: a needle-in-a-haystack sweep, resumable results, heatmaps at the end.

Registered on the app with ``needle_cmd.register(app)``. Everything the user can get wrong is
checked before the model runs; bad input gives one line on stderr and exit code 2.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import typer

from longctx.cli.common import (CliError, ModelArgs, check_device, check_output_dir, check_plot_targets, check_positive,
                                check_prefill, cli_errors, model_options, option_group)

#: The default grid with the embedded default model (SmolLM2-135M-Instruct, 8K window): sized to
#: finish well inside 5 minutes on a 2-core CPU, model load included (see README / docs/benchmarks.md).
DEFAULT_LENGTHS = "1000,2000,4000"
DEFAULT_DEPTHS = "0,25,50,75,100"
#: Without --lengths for another model: this many lengths from --min-len to --max-len.
DEFAULT_LENGTH_COUNT = 8
#: Depths for another model when --depths is not given.
DEFAULT_DEPTH_RANGE = "11@0..100"
DEFAULT_OUT = Path("results/needle.jsonl")


def _parse_shard(spec: Optional[str]) -> Optional[tuple[int, int]]:
    if spec is None:
        return None
    parts = spec.strip().split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        i, n = int(parts[0]), int(parts[1])
    except ValueError:
        raise CliError(f"bad --shard {spec!r}: expected i/n with 0 <= i < n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise CliError(f"bad --shard {spec!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return i, n


def rope_factor_for(cfg, need: int) -> int:
    """The smallest whole dynamic-NTK factor whose window covers ``need`` tokens (1 = none needed)."""
    return max(1, math.ceil(need / int(cfg.max_position_embeddings)))


def _context_hint(cfg, need: int) -> str:
    """How to fit ``need`` tokens (the LONGEST length + answer budget) into ``cfg``'s context."""
    m = int(cfg.max_position_embeddings)
    factor = max(2, rope_factor_for(cfg, need))
    if cfg.rope_scaling is None:
        return (f"; to go past the trained window of {m} tokens use --rope-scaling dynamic:{factor} "
                f"(or --rope-scaling auto; or --max-context {need} to run without scaling)")
    return (f"; raise it with --rope-scaling dynamic:{factor} or --rope-scaling auto (now {cfg.rope_scaling}) "
            f"or --max-context {need}")


@dataclass
class BackendArgs:
    """Options of the transformers / openai backends (``--base-url`` ... ``--trust-remote-code``)."""

    base_url: Optional[str] = None
    served_model: Optional[str] = None
    api_key_env: Optional[str] = None
    concurrency: Optional[int] = None
    tokenizer: Optional[str] = None
    approximate_lengths: bool = False
    api_mode: str = "auto"
    request_timeout: Optional[float] = None
    max_retries: Optional[int] = None
    trust_remote_code: bool = False

    def factory_kwargs(self) -> dict:
        """The backends.factory keyword arguments (``--request-timeout`` is its ``timeout``)."""
        kw = dict(vars(self))
        kw["timeout"] = kw.pop("request_timeout")
        return kw


_BACKEND_OPTIONS = [
    ('base_url', Optional[str], typer.Option(None, "--base-url", help="openai backend: the API root, e.g. http://127.0.0.1:23333/v1")),
    ('served_model', Optional[str], typer.Option(None, "--served-model", help="openai backend: the model id to send (default: the server's only model).")),
    ('api_key_env', Optional[str], typer.Option(None, "--api-key-env", help="openai backend: environment variable holding the API key (default OPENAI_API_KEY, if set).")),
    ('concurrency', Optional[int], typer.Option(None, "--concurrency", help="openai backend: requests in flight (default 4).")),
    ('tokenizer', Optional[str], typer.Option(None, "--tokenizer", help="openai/transformers: the served model's tokenizer or checkpoint directory (exact lengths).")),
    ('approximate_lengths', bool, typer.Option(False, "--approximate-lengths", help="openai backend: run without the served model's tokenizer; records are marked APPROXIMATE.")),
    ('api_mode', str, typer.Option("auto", "--api-mode", help="openai backend: auto | ids (token-id prompts) | text | chat.")),
    ('request_timeout', Optional[float], typer.Option(None, "--request-timeout", help="openai backend: seconds per request (default 600).")),
    ('max_retries', Optional[int], typer.Option(None, "--max-retries", help="openai backend: retries on 429/5xx/connection errors (default 5).")),
    ('trust_remote_code', bool, typer.Option(False, "--trust-remote-code", help="transformers backend: allow the checkpoint's own modelling code (InternLM2 needs it).")),
]
#: the backend options as one ``bargs: BackendArgs`` argument.
backend_options = option_group(BackendArgs, _BACKEND_OPTIONS, "bargs")

def _config_and_tokenizer(model: Optional[str], random_weights: Optional[str] = None):
    """The model's configuration and tokenizer without its weights (to plan before loading). With
    ``random_weights`` (a preset name): that preset's shape and the default model's tokenizer, the vocabulary
    grown to the tokenizer's where the preset's is smaller (only ``tiny``)."""
    from longctx.checkpoints.resolve import resolve  # torch: only when the command runs

    spec = resolve(model)
    cfg = spec.config  # a bad config.json is reported before a missing tokenizer
    tok = spec.load_tokenizer()
    if tok is None:
        raise CliError(f"the model {model} has no tokenizer")
    if random_weights is not None:
        from longctx.bench.naive import random_weights_shape

        cfg = random_weights_shape(random_weights, tok)
    return cfg, tok


def _random_model(cfg, tok, margs: ModelArgs, max_context: int):
    """A random-weight engine model of ``cfg``'s shape with ``tok`` (``--random-weights``: timing runs)."""
    from longctx.engine.runtime import random_model

    m = random_model(cfg, device=margs.device, dtype=margs.dtype, attn=margs.attn, chunk_size=margs.chunk_size,
                     max_context=max_context, kv_dtype=margs.kv_dtype, prefill=margs.prefill)
    m.tokenizer = tok
    return m


def _make_plan(cfg, tok, builder, grid, out: Path, device: str, dtype: str, chunk_size: Optional[int],
               prefix_sharing: bool, budget: int, recalibrate: bool = False, kv_dtype: str = "auto"):
    """The sweep's plan (cells not yet in ``out``, tokens, time, memory) from config + tokenizer only."""
    import functools

    from longctx.engine.rope import base_for
    from longctx.engine.runtime import default_chunk_size, resolve_device, resolve_dtype
    from longctx.niah import plan as P
    from longctx.niah.results import cell_key, read_records

    done = set()
    if out.is_file():
        done = {cell_key(r.get("task"), r.get("target_length"), r.get("target_depth"), r.get("trial"))
                for r in read_records(out) if all(k in r for k in ("task", "target_length", "target_depth", "trial"))}
    todo = [c for c in grid if cell_key(builder.task.id, c.length, c.depth, c.trial) not in done]
    built = [builder.build(c.length, c.depth, c.trial) for c in todo]
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev, cfg.torch_dtype)
    cost = P.calibrate(cfg, str(dev), str(dt).replace("torch.", ""), refresh=recalibrate)
    return P.make_plan(grid, built, answer_budget=budget, group_key=functools.partial(base_for, cfg),
                       prefix_sharing=prefix_sharing, cost=cost, cfg=cfg, dtype_bytes=dt.itemsize,
                       chunk=int(chunk_size or default_chunk_size(dev)), free_bytes=P.available_memory(str(dev)),
                       skipped=len(grid) - len(todo), kv_dtype=kv_dtype)


def _format_plan(plan) -> list[str]:
    from longctx.niah.plan import format_plan

    return format_plan(plan)


def _check_plan(plan, yes: bool) -> None:
    from longctx.niah.plan import check_plan

    check_plan(plan, yes)


def _cost_fn(plan):
    """The plan's per-cell cost model for the running ETA (None when there is none)."""
    if plan is None or plan.cost_model is None:
        return None
    return plan.cell_seconds


def _plot(out: Path, plot: Path) -> list[Path]:
    from longctx.niah import plot as P
    from longctx.niah.results import load_results

    records = load_results([out])
    runs = [(P.run_label(records), records)]
    base = plot.with_suffix("") if plot.suffix.lower() in (".png", ".svg", ".pdf") else plot
    written = P.plot_heatmaps(runs, base)
    written += P.plot_accuracy_vs_length(runs, base.with_name(base.name + "_by_length"))
    return written


def _print_summary(summary, echo=typer.echo) -> None:
    from longctx.niah.stats import summary_lines

    echo("")
    for line in summary_lines(summary.rows):
        echo(line)
    echo("score: mean over depth cells (0-100); 95% CI: Wilson interval over the n scored trials")
    ratio = summary.sharing_ratio
    echo(f"cells: {summary.done} run now, {summary.skipped} already in {summary.results_path} (skipped), "
         f"{summary.errors} errors")
    if summary.done:
        echo(f"tokens prefilled: {summary.prefilled_tokens:,} vs {summary.naive_tokens:,} for a naive sweep"
             + (f" ({ratio:.2f}x fewer with prefix sharing)" if ratio else ""))


def register(app: typer.Typer) -> None:
    """Add the ``needle`` command to ``app``."""

    @app.command("needle")
    @cli_errors
    @model_options(skip=("rope_scaling",))  # its own --rope-scaling also takes "auto"
    @backend_options
    def needle(
        max_len: Optional[str] = typer.Option(None, "--max-len", help="Longest context in model tokens (200K = 200000); without --lengths: --num-lengths lengths up to it."),
        min_len: Optional[str] = typer.Option(None, "--min-len", help="Shortest context for --num-lengths (default 1K)."),
        num_lengths: Optional[int] = typer.Option(None, "--num-lengths", help=f"How many lengths from --min-len to --max-len (default {DEFAULT_LENGTH_COUNT})."),
        lengths: Optional[str] = typer.Option(None, "--lengths", help="One length (16K), a list (1K,2K,4K) or N lengths N@FROM..TO (10@1K..200K). K = 1000, Ki = 1024; a bare number is ONE length."),
        length_spacing: str = typer.Option("linear", "--length-spacing", help="linear | geometric spacing of N@FROM..TO / --num-lengths."),
        depths: Optional[str] = typer.Option(None, "--depths", help="Percent in [0, 100]: one depth (50), a list (0,25,50), N depths N@FROM..TO (11@0..100) or sigmoid:N (denser at the ends). A bare number is ONE depth."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (cells, tokens, time, memory) and exit without loading the model."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Run even when the plan is over 2 hours or over free memory."),
        recalibrate: bool = typer.Option(False, "--recalibrate", help="Probe this device again for the time estimate (a few seconds; stored in the cache folder)."),
        task: str = typer.Option("single", "--task", help="passkey | single | multikey | multivalue | multiquery | custom | reasoning | trace | vt | cwe | fwe | latent | absent (NAME:VALUE_TYPE ok for single/multi*)."),
        hops: Optional[int] = typer.Option(None, "--hops", help="Chain length: reasoning 2-5 needles (default 3), trace 1-20 parent statements (4), vt 1-20 re-assignments (4)."),
        distractors: int = typer.Option(0, "--distractors", help="K near-miss needles (similar key, other value) at recorded depths: single, multi*, latent, absent."),
        value_type: Optional[str] = typer.Option(None, "--value-type", help="number | word | uuid (single/multi* tasks)."),
        answer_budget: Optional[int] = typer.Option(None, "--answer-budget", help="Max new tokens per answer (default: the task's, 128 for single)."),
        trials: int = typer.Option(1, "--trials", help="Trials per (length, depth) cell, each with its own seeded needle."),
        seed: int = typer.Option(0, "--seed", help="Base seed of the needle values."),
        haystack: str = typer.Option("austen", "--haystack", help="austen | web_bible | zh (Chinese: Chinese needles and questions) | noise, or a .txt file / a folder of .txt files."),
        out: Path = typer.Option(DEFAULT_OUT, "--out", "-o", help="Results JSONL; an existing results file of the same configuration is resumed; any other existing file is refused."),
        plot: Optional[Path] = typer.Option(None, "--plot", help="Heatmap image (PNG; SVG and a _by_length chart beside it). Default: plots/<out name>.png"),
        no_plot: bool = typer.Option(False, "--no-plot", help="Do not draw the heatmap."),
        report: Optional[bool] = typer.Option(None, "--report/--no-report", help="Also write the clickable HTML report beside the heatmap (plots/<out name>.html). Default: only for the default sweep."),
        dump_prompts: Optional[Path] = typer.Option(None, "--dump-prompts", help="Write each cell's prompt text to DIR/<task>_L<len>_d<depth>_t<trial>.txt."),
        force: bool = typer.Option(False, "--force", help="If --out holds another configuration's results, move them to <out>.bak-<time> and start fresh."),
        no_chat: bool = typer.Option(False, "--no-chat", help="No chat template (base models): BOS + plain text, the task's answer prefix."),
        answer_prefix: Optional[str] = typer.Option(None, "--answer-prefix", help="Text the answer starts with (after the generation prompt)."),
        system: Optional[str] = typer.Option(None, "--system", help="System prompt (default: the model's; '' = no system turn)."),
        custom_needle: Optional[str] = typer.Option(None, "--custom-needle", help="Custom task: the needle sentence."),
        custom_question: Optional[str] = typer.Option(None, "--custom-question", help="Custom task: the question."),
        custom_answer: Optional[List[str]] = typer.Option(None, "--custom-answer", help="Custom task: an expected answer (repeat for several)."),
        custom_file: Optional[Path] = typer.Option(None, "--custom-file", help="Custom task from JSON/YAML: needle, question, answers [, metric, answer_budget, answer_prefix]."),
        shard: Optional[str] = typer.Option(None, "--shard", help="Run shard i of n (0-based, e.g. 0/4) of the grid's cells."),
        prefix_sharing: bool = typer.Option(True, "--prefix-sharing/--no-prefix-sharing", help="Reuse the KV cache of shared prompt prefixes between cells."),
        backend_name: str = typer.Option("native", "--backend", help="What answers: native (the engine) | transformers (local checkpoint) | openai (an OpenAI-compatible server). See docs/serving.md."),
        random_weights: Optional[str] = typer.Option(None, "--random-weights", help="PRESET: time the sweep on a model of this shape (internlm2-chat-7b | internlm2-chat-20b | tiny) with random weights and the default model's tokenizer; answers are noise."),
        rope_scaling: Optional[str] = typer.Option(None, "--rope-scaling", help="METHOD:FACTOR (linear:4, dynamic:4, yarn:4, llama3:8), none, or auto (the dynamic-NTK factor that covers the longest length; recorded in the results); default: the checkpoint's."),
        margs: ModelArgs = ModelArgs(),
        bargs: BackendArgs = BackendArgs(),
    ) -> None:
        """Needle-in-a-haystack sweep: context length x needle depth, scored, resumable; ends with a heatmap.

        Grid: a bare number is ONE value (--lengths 4K = one length of 4000 tokens, --depths 50 = one depth); N values are written N@FROM..TO (--lengths 10@1K..200K, --depths 11@0..100) or --num-lengths N with --max-len. K = 1000, Ki = 1024.

        Plan: before the model loads it prints the cells, tokens to prefill (with prefix sharing), largest context, estimated time (calibrated for this device) and memory against free memory. --dry-run stops there; a plan over 2 hours or over free memory needs --yes.
        """
        from longctx.niah.grid import make_grid, parse_depths, parse_lengths
        from longctx.niah.grid import shard as shard_cells
        from longctx.niah.results import check_results_file
        from longctx.niah.tasks import make_task
        from longctx.units import parse_size

        t_start = time.perf_counter()
        model, device, dtype, attn, max_context, chunk_size = (margs.model, margs.device, margs.dtype, margs.attn,
                                                               margs.max_context, margs.chunk_size)
        # -- everything checkable without the model ----------------------------------------------
        check_prefill(margs.prefill)
        if random_weights is not None and (model is not None or backend_name != "native"):
            raise CliError("--random-weights builds its own model on the native backend: leave out --model and --backend")
        if trials < 1:
            raise CliError(f"--trials must be at least 1 (got {trials})")
        depth_list = parse_depths(depths if depths is not None else (DEFAULT_DEPTHS if model is None else
                                                                       DEFAULT_DEPTH_RANGE))
        max_l = parse_size(max_len, "--max-len") if max_len is not None else None
        min_l = parse_size(min_len, "--min-len") if min_len is not None else None
        if num_lengths is not None and lengths is not None:
            raise CliError("give either --lengths or --num-lengths, not both")
        if length_spacing not in ("linear", "geometric"):
            raise CliError(f"bad --length-spacing {length_spacing!r}: choose linear or geometric")
        shard_spec = _parse_shard(shard)
        custom_given = any(v is not None for v in (custom_needle, custom_question, custom_answer or None, custom_file))
        task_spec = task
        if custom_given and task.split(":")[0].lower() != "custom":
            if task != "single":
                raise CliError("--custom-needle/--custom-question/--custom-answer/--custom-file need --task custom")
            task_spec = "custom"
        if custom_file is not None and not custom_file.is_file():
            raise CliError(f"custom task file not found: {custom_file}")
        task_obj = make_task(task_spec, value_type=value_type, needle=custom_needle, question=custom_question,
                             answers=list(custom_answer) if custom_answer else None,
                             custom_file=str(custom_file) if custom_file is not None else None,
                             answer_budget=answer_budget, lang="zh" if haystack == "zh" else "en", hops=hops,
                             near_miss=distractors)
        from longctx.data import BUILTIN_HAYSTACKS, read_haystack_path

        if haystack not in BUILTIN_HAYSTACKS:
            read_haystack_path(haystack)  # missing / empty / not UTF-8 -> one line, before the model loads
        check_results_file(out)  # an existing file that is not our results file is never touched
        check_output_dir(dump_prompts, "--dump-prompts")
        plot_path = None if no_plot else (plot if plot is not None else
                                          Path("plots") / f"{out.name.split('.')[0] or 'needle'}.png")
        if plot_path is not None:
            check_plot_targets(plot_path)
        check_positive(max_context=max_context, chunk_size=chunk_size)
        rope_auto = rope_scaling is not None and rope_scaling.strip().lower() == "auto"
        if rope_scaling is not None and not rope_auto:
            from longctx.engine.config import parse_rope_scaling

            parse_rope_scaling(rope_scaling)
        if rope_auto and backend_name != "native":
            raise CliError("--rope-scaling auto needs the native backend")
        check_device(device)
        from longctx.backends.factory import check_options, make_backend

        backend_opts = dict(model=str(Path(model).resolve()) if model is not None else None, device=device, dtype=dtype,
                            rope_scaling=None if rope_auto else rope_scaling, attn=attn, max_context=max_context,
                            chunk_size=chunk_size, **bargs.factory_kwargs())
        backend_name = check_options(backend_name, **backend_opts)
        budget = task_obj.answer_budget

        def grid_lengths(ctx: int) -> list[int]:
            if lengths is None and max_l is None and min_l is None and num_lengths is None and model is None:
                return parse_lengths(DEFAULT_LENGTHS)
            if lengths is not None:
                return parse_lengths(lengths, min_l, max_l, scale=length_spacing)
            top = max_l if max_l is not None else ctx - budget
            if top < 1:
                raise CliError(f"the model's context of {ctx} tokens leaves no room for the "
                               f"answer budget of {budget} tokens")
            return parse_lengths(None, min_l, top, scale=length_spacing,
                                 count=DEFAULT_LENGTH_COUNT if num_lengths is None else num_lengths)

        # -- the plan: before any weights load ----------------------------------------------------
        from longctx.niah.haystack import get_haystack
        from longctx.niah.prompt import AUTO, DEFAULT_SYSTEM, PromptBuilder
        from longctx.niah.runner import ContextLimitError, LogProgress, RichProgress, run_sweep

        def make_builder(tok, ctx):
            return PromptBuilder(tok, get_haystack(haystack, tok), task_obj, chat=not no_chat,
                                 system=DEFAULT_SYSTEM if system is None else (system or None),
                                 answer_prefix=AUTO if answer_prefix is None else answer_prefix,
                                 max_context=ctx, seed=seed)

        def select(length_list: list[int]):
            grid = make_grid(length_list, depth_list, trials)
            if shard_spec is not None:
                grid = shard_cells(grid, *shard_spec)
                if not grid:
                    raise CliError(f"shard {shard} of {len(length_list) * len(depth_list) * trials} cells is empty")
            return grid

        plan_obj = None
        if backend_name == "native":
            cfg, tok = _config_and_tokenizer(str(Path(model).resolve()) if model is not None else None, random_weights)
            if rope_scaling is not None and not rope_auto:
                cfg = cfg.with_rope_scaling(rope_scaling)
            ctx = int(max_context or cfg.context_limit)
            length_list = grid_lengths(ctx)
            need = max(length_list) + budget
            if rope_auto:
                factor = rope_factor_for(cfg, need)
                rope_scaling = f"dynamic:{factor}" if factor > 1 else "none"
                cfg = cfg.with_rope_scaling(rope_scaling)
                ctx = int(max_context or cfg.context_limit)
            problem = None
            if need > ctx:
                problem = str(ContextLimitError(min(L for L in length_list if L + budget > ctx), budget, ctx,
                                                sum(L + budget > ctx for L in length_list))) + _context_hint(cfg, need)
                if not dry_run:
                    raise CliError(problem)
                cfg = cfg.with_rope_scaling(f"dynamic:{max(2, rope_factor_for(cfg, need))}")
                ctx = int(cfg.context_limit)
            grid = select(length_list)
            plan_obj = _make_plan(cfg, tok, make_builder(tok, ctx), grid, out, device, dtype, chunk_size,
                                  prefix_sharing, budget, recalibrate, margs.kv_dtype)
            if rope_auto:
                plan_obj.notes.append(f"--rope-scaling auto: {rope_scaling} (window {cfg.context_limit:,} tokens)")
            if problem:
                plan_obj.notes.append(f"cannot run as given: {problem.replace('; ', '; hint: ', 1)}; "
                                      f"planned with --rope-scaling {cfg.rope_scaling}")
            for line in _format_plan(plan_obj):
                typer.echo(line)
            if dry_run:
                return
            _check_plan(plan_obj, yes)
            if random_weights is not None:
                m = _random_model(cfg, tok, margs, int(max_context or cfg.context_limit))
            else:
                m = margs.load(model=str(Path(model).resolve()) if model is not None else None, rope_scaling=rope_scaling)
            if m.tokenizer is None:
                raise CliError("the model has no tokenizer")
            from longctx.backends.native import NativeBackend

            backend = NativeBackend(m, prefix_sharing=prefix_sharing)
        else:  # transformers / openai: the backend brings the tokenizer and the context limit
            m = None
            backend = make_backend(backend_name, **{k: v for k, v in backend_opts.items() if v is not None})
            length_list = grid_lengths(backend.max_context)
            grid = select(length_list)
            if dry_run:
                typer.echo(f"plan: {len(grid)} cells; time and memory are not estimated for the {backend_name} "
                           f"backend")
                return
        tok, ctx = backend.tokenizer, backend.max_context
        bad = [L for L in length_list if L + budget > ctx]
        if bad:
            e = ContextLimitError(bad[0], budget, ctx, len(bad))
            raise CliError(str(e) + (_context_hint(m.config, max(bad) + budget) if m is not None else ""))
        builder = make_builder(tok, ctx)

        def warn(msg: str) -> None:
            typer.echo(f"warning: {msg}", err=True)

        info = {"lengths": length_list, "depths": depth_list, "trials": trials,
                "shard": shard, "haystack": haystack, "argv": sys.argv[1:], "host": os.uname().nodename
                if hasattr(os, "uname") else None}
        if plan_obj is not None:
            info["plan"] = {"cells": plan_obj.cells, "prefill_tokens": plan_obj.prefill_tokens,
                            "estimated_s": plan_obj.seconds}
        if rope_auto:
            info["rope_scaling_auto"] = rope_scaling
        cost = _cost_fn(plan_obj)
        progress = RichProgress(cost=cost) if sys.stderr.isatty() else LogProgress(cost=cost)
        binfo = backend.model_info()
        who = f"{m.name} ({m.path})" if m is not None else \
            f"{binfo.get('model_name')} ({backend_name}{' at ' + binfo['base_url'] if binfo.get('base_url') else ''})"
        typer.echo(f"needle: {who}, task {task_obj.id}, haystack {haystack}, "
                   f"{len(length_list)} lengths x {len(depth_list)} depths x {trials} trial(s)"
                   + (f", shard {shard}: {len(grid)} cells" if shard_spec else f" = {len(grid)} cells")
                   + f", results {out}", err=True)
        try:
            summary = run_sweep(backend, builder, grid, out, progress=progress, dump_prompts=dump_prompts,
                                force=force, info=info, warn=warn)
        except ContextLimitError as e:  # pragma: no cover - checked above already
            raise CliError(str(e) + (_context_hint(m.config, e.length + e.budget) if m is not None else "")) from None
        for note in (backend.notes() if hasattr(backend, "notes") else []):
            warn(note)
        summary.wall_s = time.perf_counter() - t_start
        _print_summary(summary)
        if task_obj.metric == "absent" and summary.overall is not None:  # abstention: 100 - score answered anyway
            typer.echo(f"false-positive rate: {100.0 - summary.overall:.1f}% (answered although the needle is absent)")
        typer.echo(f"wall time: {summary.wall_s:.1f}s (model load and cell building included)")
        typer.echo(f"results: {out}")

        if plot_path is not None:
            try:
                written = _plot(out, plot_path)
            except (OSError, ValueError) as e:
                typer.echo(f"error: cannot draw the heatmap {plot_path}: {e}", err=True)
                raise typer.Exit(1)
            for p in written:
                typer.echo(f"plot: {p}")

        if report or (report is None and model is None and lengths is None and max_len is None and min_len is None
                      and depths is None):  # the default sweep writes plots/needle.html
            from longctx.report import write_report

            image = plot if plot is not None else Path("plots") / f"{out.name.split('.')[0] or 'needle'}.png"
            try:
                page = write_report([out], image.with_suffix(".html"))
            except (OSError, ValueError) as e:
                typer.echo(f"error: cannot write the report {image.with_suffix('.html')}: {e}", err=True)
                raise typer.Exit(1)
            typer.echo(f"report: {page}")
