"""The NIAH sweep runner: build every cell, skip finished ones, run the rest, score, record.

:func:`run_sweep` is the whole loop::

    grid cells -> (context check) -> builder.build() for each -> skip cells already in the
    results file -> backend.run() (the backend picks the order; the native one shares
    prompt prefixes) -> score each answer -> append one fsync-ed JSONL record per cell

It fails before any compute when a length (plus the answer budget) does not fit the
backend's context or a cell cannot be built (length too small for template + needle +
question). A failure inside one cell (say, an exception during generation) is recorded in
that cell's ``error`` field (score null) and the sweep goes on.

No torch import here: the backend owns the engine.
"""
from __future__ import annotations

from longctx.errors import ContextLimitError

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from longctx.backends.base import Backend, GenRequest, GenResult
from longctx.niah.excerpt import cell_excerpt
from longctx.niah.results import ResultsFile, cell_key, check_results_file
from longctx.niah.scoring import score_cell
from longctx.niah.stats import format_tokens, summary_table

__all__ = ["ContextLimitError", "Summary", "run_sweep", "sweep_settings", "check_context", "prompt_file_name",
           "Progress", "LogProgress", "RichProgress", "NullProgress"]


# --------------------------------------------------------------------------- configuration
def _sentinel(value: Any) -> Any:
    """AUTO / DEFAULT markers as stable strings; everything else as is."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return f"<{type(value).__name__.strip('_').lower()}>"


def sweep_settings(backend: Backend, builder) -> dict[str, Any]:
    """Everything that affects a sweep's results (hashed into the results file's config)."""
    info = backend.model_info()
    task = builder.task
    task_d = task.settings()  # new task fields only when not at their defaults: old files resume
    hs = builder.haystack
    return {
        "model": info.get("model"),
        "model_config_hash": info.get("config_hash"),
        "tokenizer": info.get("tokenizer"),
        "tokenizer_fingerprint": info.get("tokenizer_fingerprint"),
        "rope_scaling": info.get("rope_scaling"),
        "dtype": info.get("dtype"),
        **_non_auto(info, "kv_dtype"),  # the prefill mode changes no result beyond rounding: not hashed
        "task": task_d,
        "haystack_sha256": hs.corpus_sha256,
        "repeat_haystack": bool(getattr(builder, "repeat_ok", True)),
        "seed": int(builder.seed),
        "chat": bool(builder.chat),
        "system": _sentinel(builder.system),
        "answer_prefix": _sentinel(builder.answer_prefix),
        "instruction": _sentinel(builder.instruction),
        "decoding": "greedy",
    }


def check_context(lengths: Iterable[int], budget: int, limit: int) -> None:
    """Raises :class:`ContextLimitError` for the first length with ``L + budget > limit``."""
    bad = sorted(int(L) for L in set(lengths) if int(L) + int(budget) > int(limit))
    if bad:
        raise ContextLimitError(bad[0], int(budget), int(limit), len(bad))


def prompt_file_name(task: str, length: int, depth: float, trial: int) -> str:
    """``<task>_L<len>_d<depth>_t<trial>.txt`` with a file-name-safe task id."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(task))
    return f"{safe}_L{int(length)}_d{float(depth):g}_t{int(trial)}.txt"


# --------------------------------------------------------------------------- progress
class Progress:
    """Progress callbacks; the default does nothing."""

    def start(self, total: int, skipped: int, planned_tokens: int) -> None: ...

    def schedule(self, items: Sequence[tuple[Any, int, int]]) -> None:
        """The run order before it starts: ``(cell, prompt tokens, tokens to prefill)`` per cell."""

    def cell_started(self, cell, planned_tokens: int) -> None: ...

    def cell_done(self, cell, record: dict) -> None: ...

    def finish(self) -> None: ...


NullProgress = Progress


class _Tracker(Progress):
    """Counts, running accuracy and an ETA.

    With ``cost`` (``cost(prompt_tokens, prefill_tokens) -> seconds``, the sweep plan's cost model,
    :meth:`longctx.niah.plan.Plan.cell_seconds`) the ETA is the model's prediction for the cells left,
    scaled by measured / predicted time of the cells done so far; without it, tokens left over the
    observed prefill rate.
    """

    def __init__(self, cost: Optional[Callable[[int, int], Optional[float]]] = None) -> None:
        self.cost = cost

    def start(self, total: int, skipped: int, planned_tokens: int) -> None:
        self.total, self.skipped, self.planned_left = total, skipped, planned_tokens
        self.done = 0
        self.scores: list[float] = []
        self.prefill_tok = 0
        self.prefill_s = 0.0
        self.decode_s = 0.0
        self.t0 = time.perf_counter()
        self.current = ""
        self._planned_now = 0
        self._pred_left = getattr(self, "_pred_left", None)
        self._pred_now = 0.0
        self._pred_done = 0.0

    def schedule(self, items: Sequence[tuple[Any, int, int]]) -> None:
        cost = getattr(self, "cost", None)
        preds = [cost(n, p) for _, n, p in items] if cost is not None else []
        self._pred_left = sum(preds) if preds and None not in preds else None

    def cell_started(self, cell, planned_tokens: int) -> None:
        self.current = _cell_text(cell)
        self._planned_now = planned_tokens
        cost = getattr(self, "cost", None)
        pred = cost(len(cell.ids), planned_tokens) if cost is not None and hasattr(cell, "ids") else None
        self._pred_now = pred or 0.0

    def cell_done(self, cell, record: dict) -> None:
        self.done += 1
        self.planned_left = max(0, self.planned_left - self._planned_now)
        if self._pred_left is not None:
            self._pred_left = max(0.0, self._pred_left - self._pred_now)
            self._pred_done += self._pred_now
        if record.get("score") is not None:
            self.scores.append(float(record["score"]))
        self.prefill_tok += int(record.get("prefilled_tokens") or 0)
        self.prefill_s += float(record.get("prefill_s") or 0.0)
        self.decode_s += float(record.get("decode_s") or 0.0)

    @property
    def accuracy(self) -> str:
        return f"{100.0 * sum(self.scores) / len(self.scores):.1f}%" if self.scores else "–"

    @property
    def eta(self) -> str:
        if self._pred_left is not None:
            measured = self.prefill_s + self.decode_s
            ratio = measured / self._pred_done if self.done and self._pred_done > 0 and measured > 0 else 1.0
            return _clock(self._pred_left * ratio)
        if self.done == 0 or self.prefill_s <= 0:
            return "–"
        rate = self.prefill_tok / self.prefill_s
        left = self.planned_left / rate + (self.total - self.done) * (self.decode_s / self.done)
        return _clock(left)


def _clock(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def _cell_text(cell) -> str:
    return f"L={format_tokens(cell.target_length)} d={cell.target_depth:g}% t{cell.trial}"


class LogProgress(_Tracker):
    """One plain line per finished cell (for logs and non-terminal stderr)."""

    def __init__(self, stream=None, cost=None) -> None:
        super().__init__(cost)
        self.stream = stream or sys.stderr

    def start(self, total: int, skipped: int, planned_tokens: int) -> None:
        super().start(total, skipped, planned_tokens)
        msg = f"{total} cells to run"
        if skipped:
            msg += f", {skipped} already in the results file (skipped)"
        print(msg, file=self.stream, flush=True)

    def cell_done(self, cell, record: dict) -> None:
        super().cell_done(cell, record)
        score = record.get("score")
        what = f"error: {record.get('error')}" if record.get("error") else f"score {score:g}"
        print(f"[{self.done}/{self.total}] {_cell_text(cell)}: {what} · prefilled {record.get('prefilled_tokens')} tok "
              f"in {record.get('prefill_s', 0):.1f}s · decode {record.get('decode_s', 0):.1f}s · "
              f"acc {self.accuracy} · ETA {self.eta}", file=self.stream, flush=True)


class RichProgress(_Tracker):
    """A rich progress bar on stderr: cells done/total, running accuracy, current cell, ETA."""

    def __init__(self, console=None, cost=None) -> None:
        super().__init__(cost)
        self.console = console

    def start(self, total: int, skipped: int, planned_tokens: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RP, TextColumn, TimeElapsedColumn

        super().start(total, skipped, planned_tokens)
        console = self.console or Console(stderr=True)
        if skipped:
            console.print(f"{skipped} cells already in the results file (skipped)")
        self._rp = RP(TextColumn("[bold]needle[/]"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("acc {task.fields[acc]}"), TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
                      TextColumn("{task.fields[cell]}"), console=console, transient=False)
        self._rp.start()
        self._task = self._rp.add_task("needle", total=total, acc="–", eta="–", cell="")

    def cell_started(self, cell, planned_tokens: int) -> None:
        super().cell_started(cell, planned_tokens)
        self._rp.update(self._task, cell=f"{self.current} (prefill {planned_tokens} tok)")

    def cell_done(self, cell, record: dict) -> None:
        super().cell_done(cell, record)
        self._rp.update(self._task, advance=1, acc=self.accuracy, eta=self.eta)

    def finish(self) -> None:
        if getattr(self, "_rp", None) is not None:
            self._rp.update(self._task, cell="done", eta="0:00")
            self._rp.stop()


# --------------------------------------------------------------------------- the sweep
@dataclass
class Summary:
    """What a sweep did.

    Attributes:
        results_path, run_id: where the records are and the run they belong to.
        cells_total: cells of the requested grid; ``done``: run now; ``skipped``: already
            present; ``errors``: cells run now whose record has an error.
        prefilled_tokens: prompt tokens run through the model now; ``naive_tokens``: the sum
            of the lengths of the cells run now (what a sweep without prefix sharing prefills).
        wall_s: seconds of the whole call (building included).
        rows: per-length rows plus an ``"all"`` row (see ``longctx.niah.stats.summary_table``: mean,
            95% Wilson interval, n...), over every record of the grid in the results file (this run's
            and earlier ones); ``<results>.summary.json`` holds the same for the whole file, per cell too.
        build_s: seconds building cells.
    """

    results_path: Path
    run_id: str
    cells_total: int = 0
    done: int = 0
    skipped: int = 0
    errors: int = 0
    prefilled_tokens: int = 0
    naive_tokens: int = 0
    wall_s: float = 0.0
    build_s: float = 0.0
    rows: list[dict] = field(default_factory=list)
    backups: list[Path] = field(default_factory=list)

    @property
    def per_length(self) -> dict[int, Optional[float]]:
        """target_length -> mean score (0-100) over its depth cells (None if none scored)."""
        return {r["target_length"]: r["mean"] for r in self.rows if r["target_length"] != "all"}

    @property
    def overall(self) -> Optional[float]:
        for r in self.rows:
            if r["target_length"] == "all":
                return r["mean"]
        return None

    @property
    def sharing_ratio(self) -> Optional[float]:
        """naive / prefilled tokens (how many times fewer tokens prefix sharing prefilled)."""
        return self.naive_tokens / self.prefilled_tokens if self.prefilled_tokens else None


def _non_auto(info: dict, *names: str) -> dict:
    """``{name: value}`` for each of ``names`` the backend set to something other than ``auto`` (a quantized
    KV cache, a prefill mode), else nothing: earlier results keep their hash and records."""
    return {k: info[k] for k in names if info.get(k) not in (None, "auto")}


def _record(info: dict, hs, cell, res: GenResult, version: str) -> dict:
    rec: dict[str, Any] = {
        "model": info.get("model"),
        "model_name": info.get("model_name"),
        "config_hash": info.get("config_hash"),
        "tokenizer": info.get("tokenizer"),
        "tokenizer_fingerprint": info.get("tokenizer_fingerprint"),
        "rope_scaling": info.get("rope_scaling"),
        "rope_base": res.rope_base,
        "backend": info.get("backend"),
        "dtype": info.get("dtype"),
        "device": info.get("device"),
        **_non_auto(info, "kv_dtype", "prefill"),
    }
    rec.update(cell.record())
    score, error = None, res.error
    if error is None:
        try:
            score = float(score_cell(res.text, cell.expected, cell.metric))
        except Exception as e:  # noqa: BLE001 - a scoring problem is this cell's error
            error = f"scoring failed: {type(e).__name__}: {e}"
    if cell.metric == "absent":  # the needle is not there: any answer from the text is a false positive
        rec["false_positive"] = None if score is None else score == 0.0
    rec.update({
        "haystack": hs.name,
        "haystack_sha256": hs.corpus_sha256,
        "response": res.text,
        "excerpt": cell_excerpt(cell),  # the text around each needle, for `longctx report`
        "score": score,
        "error": error,
        "prefill_s": round(res.prefill_s, 6),
        "decode_s": round(res.decode_s, 6),
        "prefilled_tokens": int(res.prefilled_tokens),
        "cached_tokens": int(res.cached_tokens),
        "new_tokens": int(res.new_tokens),
        "stop_reason": res.stop_reason,
        "peak_mem_bytes": int(res.peak_mem_bytes),
        "version": version,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    return rec


def run_sweep(backend: Backend, builder, cells: Sequence, out_path: str | os.PathLike, *,
              progress: Optional[Progress] = None, dump_prompts: str | os.PathLike | None = None,
              force: bool = False, info: Optional[dict] = None,
              warn: Optional[Callable[[str], None]] = None) -> Summary:
    """Runs a NIAH sweep and appends one record per cell to ``out_path``.

    Args:
        backend: what answers (see :mod:`longctx.backends.base`).
        builder: a :class:`~longctx.niah.prompt.PromptBuilder` (tokenizer, haystack, task).
        cells: grid cells with ``length``, ``depth``, ``trial`` (``longctx.niah.grid.GridCell``).
        out_path: the JSONL results file (resumed when it holds this configuration's results).
        progress: a :class:`Progress` (default: none).
        dump_prompts: a folder to write every cell's prompt text to.
        force: move results of another configuration aside (``<out>.bak-<time>``) instead of refusing.
        info: extra facts stored in the run configuration (not hashed): grid, shard, command...
        warn: receives one-line warnings (torn line repaired, old results moved aside ...).

    Returns:
        A :class:`Summary`.

    Raises:
        ContextLimitError: a length + answer budget beyond ``backend.max_context`` (before any compute).
        ValueError: a cell cannot be built; ConfigMismatchError: another configuration's results.
        OutputError: ``out_path`` exists and is not a results file (it is left untouched).
    """
    from longctx import __version__

    t_start = time.perf_counter()
    progress = progress or Progress()
    cells = sorted(set(cells), key=lambda c: (c.length, c.depth, c.trial))
    if not cells:
        raise ValueError("the grid has no cells")
    budget = int(builder.task.answer_budget)
    check_context([c.length for c in cells], budget, backend.max_context)

    # Build everything first (cheap slicing); a length too small for the template fails here.
    t0 = time.perf_counter()
    built = [builder.build(c.length, c.depth, c.trial) for c in cells]
    build_s = time.perf_counter() - t0

    settings = sweep_settings(backend, builder)
    model_info = backend.model_info()
    run_info = dict(info or {})
    run_info.setdefault("cells", len(cells))
    run_info.setdefault("backend", model_info)
    check_results_file(out_path)  # never append to (or "repair") a file that is not a results file
    results = ResultsFile(out_path, settings, info=run_info, force=force, warn=warn, log_run=False)
    try:
        summary = Summary(results_path=Path(out_path), run_id=results.run_id, cells_total=len(cells),
                          build_s=build_s, backups=list(results.backups))
        if dump_prompts is not None:
            d = Path(dump_prompts)
            d.mkdir(parents=True, exist_ok=True)
            for cell in built:
                (d / prompt_file_name(cell.task, cell.target_length, cell.target_depth, cell.trial)).write_text(
                    cell.prompt_text(), encoding="utf-8")

        existing = {cell_key(r["task"], r["target_length"], r["target_depth"], r["trial"]): r for r in results.records}
        todo, stale = [], 0
        for cell in built:
            key = cell_key(cell.task, cell.target_length, cell.target_depth, cell.trial)
            if key in existing:
                summary.skipped += 1
                if existing[key].get("prompt_sha256") not in (None, cell.prompt_sha256):
                    stale += 1
            else:
                todo.append(cell)
        if stale and warn is not None:
            warn(f"{stale} finished cell(s) in {out_path} were built from a different prompt than this version "
                 f"builds; they are kept (use another --out to redo them)")
        del built, existing
        if todo:  # the config's run history lists runs that computed something, not every resume
            results.log_run()

        requests = [GenRequest(c.ids, c.answer_budget, c) for c in todo]
        plan = backend.schedule(requests)
        progress.schedule([(r.tag, len(r.ids), p) for r, p in plan])
        progress.start(len(requests), summary.skipped, sum(p for _, p in plan))
        hs = builder.haystack
        run_id = results.run_id

        def on_start(req: GenRequest, planned: int) -> None:
            progress.cell_started(req.tag, planned)

        def on_result(req: GenRequest, res: GenResult) -> None:
            rec = _record(model_info, hs, req.tag, res, __version__)
            rec = {"run_id": run_id, **rec}
            results.append(rec)  # flushed + fsync-ed before the next cell starts
            summary.done += 1
            summary.errors += 1 if rec["error"] else 0
            summary.prefilled_tokens += rec["prefilled_tokens"]
            summary.naive_tokens += len(req.ids)
            progress.cell_done(req.tag, rec)

        try:
            backend.run(requests, on_result=on_result, on_start=on_start)
        finally:
            progress.finish()

        wanted = {cell_key(builder.task.id, c.length, c.depth, c.trial) for c in cells}
        mine = [r for r in results.records
                if cell_key(r["task"], r["target_length"], r["target_depth"], r["trial"]) in wanted]
        summary.rows = summary_table(mine) if mine else []
        results.write_summary()
        summary.wall_s = time.perf_counter() - t_start
        return summary
    finally:
        results.close()

