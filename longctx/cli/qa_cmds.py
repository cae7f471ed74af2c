"""Long-document QA commands: ``longctx ask FILE QUESTION`` and ``longctx chat FILE``."""
from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any, Callable, Optional

import typer

from longctx.cli.common import CliError, ModelArgs, cli_errors, model_options

OverflowOpt = typer.Option("error", "--overflow",
                           help="A document too long for the context: error | truncate_middle | truncate_end.")
SystemOpt = typer.Option(None, "--system", help="System prompt (default: the model's; --system '' for none).")
EXIT_WORDS = ("exit", "quit")
PROMPT = "> "


class PrefillProgress:
    """Prefill feedback on stderr: a rich progress bar on a terminal, plain periodic lines otherwise.

    Called as ``progress(done_tokens, total_tokens)``. Prompts that fit in one chunk show nothing.

    Args:
        chunk_size: the model's prefill chunk (for the chunk count).
        tty: draw a rich bar (default: whether stderr is a terminal).
        every_s: the least seconds between two plain lines.
    """

    def __init__(self, chunk_size: int, *, tty: bool | None = None, every_s: float = 2.0) -> None:
        self.chunk = max(1, int(chunk_size))
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.every_s = every_s
        self._bar = None
        self._task = None
        self._t0 = 0.0
        self._last_line = 0.0
        self._total = 0
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        if total <= self.chunk:
            return  # one chunk: nothing to show
        now = time.perf_counter()
        if done == 0 or self._total != total:
            self._start(total, now)
            if done == 0:
                return
        self._done = done
        elapsed = max(now - self._t0, 1e-9)
        rate = done / elapsed
        chunks = math.ceil(total / self.chunk)
        chunk_i = min(chunks, math.ceil(done / self.chunk))
        if self._bar is not None:
            self._bar.update(self._task, completed=done, chunk=chunk_i, chunks=chunks, rate=f"{rate:,.0f}")
            if done >= total:
                self.close()
            return
        if done >= total or now - self._last_line >= self.every_s:
            self._last_line = now
            if done >= total:
                typer.echo(f"prefill: {total:,} tokens in {elapsed:.1f}s ({rate:,.0f} tok/s)", err=True)
            else:
                eta = (total - done) / rate if rate > 0 else float("nan")
                typer.echo(f"prefill: {done:,}/{total:,} tokens ({100 * done / total:.0f}%), chunk {chunk_i}/{chunks}, "
                           f"{rate:,.0f} tok/s, ETA {eta:.0f}s", err=True)

    def _start(self, total: int, now: float) -> None:
        self.close()
        self._total, self._t0, self._last_line, self._done = total, now, now, 0
        if not self.tty:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("prefill"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} tokens"),
            TextColumn("chunk {task.fields[chunk]}/{task.fields[chunks]}"), TextColumn("{task.fields[rate]} tok/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task("prefill", total=total, chunk=0, chunks=math.ceil(total / self.chunk),
                                        rate="-")

    def close(self) -> None:
        """Stops the bar (safe to call twice)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _read_document(file: str):
    from longctx.qa import Document, load_documents

    if file == "-":
        text = sys.stdin.read()
        return load_documents([Document(text=text, title="stdin")])[0]
    from pathlib import Path

    return load_documents(Path(file))[0]


def _system_arg(system: Optional[str]) -> Any:
    if system is None:
        return ...
    return system if system.strip() else None


def _check_common(max_new_tokens: int, overflow: str) -> None:
    from longctx.qa import OVERFLOW_POLICIES

    if max_new_tokens < 1:
        raise CliError("--max-new-tokens must be at least 1")
    if overflow not in OVERFLOW_POLICIES:
        raise CliError(f"--overflow must be one of {', '.join(OVERFLOW_POLICIES)}, not {overflow!r}")


def _warn(msgs: list[str]) -> None:
    for w in msgs:
        typer.echo(f"warning: {w}", err=True)


def _prefill(margs: ModelArgs, file: str, start: Callable):
    """Reads the document, loads the model and runs ``start(model, document, progress)`` -- the call that
    prefills the document -- with a prefill progress line on stderr; returns ``(document, what start returns)``."""
    doc = _read_document(file)
    m = margs.load()
    progress = PrefillProgress(m.chunk_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation is reported by the caller, from the answer's warnings
        try:
            return doc, start(m, doc, progress)
        finally:
            progress.close()


def _print_answer(stream, stats: bool) -> None:
    """Streams an answer to stdout as it is generated; its stats line to stderr."""
    for piece in stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    if stats:
        typer.echo(stream.answer.footer(), err=True)


def register(app: typer.Typer) -> None:
    """Adds ``ask`` and ``chat`` to the CLI app."""

    @app.command()
    @cli_errors
    @model_options
    def ask(
        file: str = typer.Argument(..., help="Document: .txt, .md or .pdf file (- reads text from stdin)."),
        question: str = typer.Argument(..., help="The question."),
        max_new_tokens: int = typer.Option(256, "--max-new-tokens", "-n", help="Answer tokens at most."),
        overflow: str = OverflowOpt,
        system: Optional[str] = SystemOpt,
        question_budget: Optional[int] = typer.Option(
            None, "--question-budget", help="Tokens reserved for the question (default: exactly its own)."),
        stats: bool = typer.Option(True, "--stats/--no-stats", help="Print a stats line on stderr at the end."),
        margs: ModelArgs = ModelArgs(),
    ) -> None:
        """Answer a question about a document; the answer streams to stdout, stats go to stderr."""
        if not question.strip():
            raise CliError("the question is empty")
        _check_common(max_new_tokens, overflow)
        if question_budget is not None and question_budget < 1:
            raise CliError("--question-budget must be at least 1")
        _, s = _prefill(margs, file, lambda m, doc, progress: m.ask(
            doc, question, max_new_tokens=max_new_tokens, system=_system_arg(system), stream=True, overflow=overflow,
            question_budget=question_budget, progress=progress))
        _warn(s.partial.warnings)
        _print_answer(s, stats)

    @app.command()
    @cli_errors
    @model_options
    def chat(
        file: str = typer.Argument(..., help="Document: .txt, .md or .pdf file."),
        max_new_tokens: int = typer.Option(256, "--max-new-tokens", "-n", help="Answer tokens at most (per question)."),
        question_budget: int = typer.Option(512, "--question-budget",
                                            help="Tokens reserved per question (with --history: the whole conversation)."),
        history: bool = typer.Option(False, "--history/--no-history",
                                     help="Keep earlier questions and answers in the conversation."),
        overflow: str = OverflowOpt,
        system: Optional[str] = SystemOpt,
        stats: bool = typer.Option(True, "--stats/--no-stats", help="Print a stats line on stderr after each answer."),
        margs: ModelArgs = ModelArgs(),
    ) -> None:
        """Prefill a document once, then answer questions typed at the prompt (Ctrl-D, exit or quit ends)."""
        from longctx.qa import QAError

        if file == "-":
            raise CliError("chat reads questions from stdin; give the document as a file")
        _check_common(max_new_tokens, overflow)
        if question_budget < 1:
            raise CliError("--question-budget must be at least 1")
        doc, sess = _prefill(margs, file, lambda m, doc, progress: m.open(
            doc, system=_system_arg(system), question_budget=question_budget, max_new_tokens=max_new_tokens,
            history=history, overflow=overflow, progress=progress))
        _warn(sess.warnings)
        rate = sess.prefix_tokens / sess.prefill_s if sess.prefill_s > 0 else 0.0
        typer.echo(f"{doc.title or 'document'}: {sess.document_tokens:,} tokens ({sess.prefix_tokens:,} with the chat "
                   f"template) prefilled in {sess.prefill_s:.1f}s ({rate:,.0f} tok/s). Ask about it; Ctrl-D, 'exit' or "
                   "'quit' ends"
                   + ("; the conversation is kept." if history else "."), err=True)
        interactive = sys.stdin.isatty()
        if interactive:
            try:
                import readline  # noqa: F401  (line editing for input())
            except ImportError:
                pass
        with sess:
            while True:
                try:
                    if interactive:
                        line = input(PROMPT)
                    else:
                        line = sys.stdin.readline()
                        if not line:
                            break
                except EOFError:
                    if interactive:
                        sys.stdout.write("\n")
                    break
                except KeyboardInterrupt:  # at the prompt: drop the line, keep the session
                    sys.stdout.write("\n")
                    continue
                q = line.strip()
                if not q:
                    continue
                if q.lower() in EXIT_WORDS:
                    break
                try:
                    s = sess.ask(q, stream=True)
                except QAError as e:
                    typer.echo(f"error: {e}", err=True)
                    continue
                try:
                    _print_answer(s, stats)
                except KeyboardInterrupt:  # during an answer: stop it, keep the session
                    s.close()
                    if s.answer is None:
                        sys.stdout.write("\n")
                        sys.stdout.flush()
                        typer.echo("[answer interrupted]", err=True)
