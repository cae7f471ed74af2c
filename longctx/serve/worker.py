"""The engine worker of ``longctx serve``: one thread owns the engine; jobs wait in a bounded queue.

The engine is not thread-safe, so :class:`EngineWorker` runs one :class:`Job` at a time, in arrival
order. Requests wait in a bounded FIFO (``max_queue`` waiting besides the one generating); a full
queue is answered 429. A job is cancelled through its flag, which the worker checks between tokens
and between prefill chunks, so a client that disconnects (mid-stream or while queued) frees the
worker at once. :class:`TextStream` turns a job's token events into text deltas on the HTTP
handler's event loop and applies stop strings.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from longctx.engine.generation import GenerationStats
from longctx.serve.schemas import APIError

DEFAULT_MAX_QUEUE = 64
DISCONNECT_POLL_S = 0.25


class _Cancelled(Exception):
    """Raised inside the worker to abandon a cancelled job."""


class ClientGone(Exception):
    """The HTTP client disconnected before its answer was complete."""


@dataclass
class Job:
    """One generation request travelling from the HTTP handler to the worker thread and back.

    The worker posts events onto ``events`` (an asyncio queue of the handler's loop):
    ``("token", (id, text))``, ``("done", stats)``, ``("cancelled", None)``, ``("error", exc)``.
    """

    prompt_ids: list[int]
    params: dict
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancel_flag: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancel_flag.set()

    def emit(self, kind: str, value: Any = None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the handler's loop is gone (shutdown)
            self.cancel_flag.set()


class EngineWorker:
    """A thread that owns the engine and runs queued :class:`Job` s one at a time.

    Args:
        model: a :class:`~longctx.engine.runtime.LongCtxModel`.
        max_queue: requests allowed to wait besides the one generating (>= 1).
    """

    def __init__(self, model, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self.model = model
        self.max_queue = int(max_queue)
        self._q: queue.Queue = queue.Queue(maxsize=self.max_queue)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.current: Job | None = None
        self.counters = {"completed": 0, "cancelled": 0, "failed": 0, "rejected": 0}

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="longctx-engine", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancels the running and queued jobs and ends the thread."""
        self._stopping.set()
        cur = self.current
        if cur is not None:
            cur.cancel()
        while True:
            try:
                job = self._q.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.cancel()
                job.emit("cancelled")
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)

    # -- submission ------------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        return self._q.qsize()

    @property
    def busy(self) -> bool:
        return self.current is not None

    def submit(self, job: Job) -> None:
        """Queues a job.

        Raises:
            APIError: 429 when the queue is full, 503 when the server is shutting down.
        """
        if self._stopping.is_set():
            raise APIError(503, "server is shutting down", "server_error", "shutting_down")
        try:
            self._q.put_nowait(job)
        except queue.Full:
            self.counters["rejected"] += 1
            raise APIError(429, f"server busy: {self.max_queue} requests already queued (--max-queue {self.max_queue}); "
                                "retry later", "rate_limit_error", "queue_full", headers={"Retry-After": "1"}) from None

    # -- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        m = self.model
        while True:
            job = self._q.get()
            if job is None or self._stopping.is_set():
                if job is not None:
                    job.emit("cancelled")
                break
            if job.cancel_flag.is_set():
                self.counters["cancelled"] += 1
                job.emit("cancelled")
                continue
            self.current = job

            def progress(done: int, total: int, job=job) -> None:
                if job.cancel_flag.is_set() or self._stopping.is_set():
                    raise _Cancelled()

            stats = GenerationStats()
            decoder = m.tokenizer.stream_decoder() if m.tokenizer is not None else None
            gen = m.generate_ids(job.prompt_ids, stats=stats, progress=progress, **job.params)
            try:
                for tok in gen:
                    if job.cancel_flag.is_set() or self._stopping.is_set():
                        raise _Cancelled()
                    job.emit("token", (tok, decoder.push(tok) if decoder is not None else ""))
                if job.cancel_flag.is_set():
                    raise _Cancelled()
                tail = decoder.flush() if decoder is not None else ""
                if tail:
                    job.emit("token", (None, tail))
                self.counters["completed"] += 1
                job.emit("done", stats)
            except _Cancelled:
                self.counters["cancelled"] += 1
                job.emit("cancelled")
            except Exception as e:  # noqa: BLE001 -- reported to the client as a 500
                self.counters["failed"] += 1
                job.emit("error", e)
            finally:
                gen.close()
                self.current = None


# ----------------------------------------------------------------------------------------------
# Generation plumbing shared by the endpoints
# ----------------------------------------------------------------------------------------------
def stop_holdback(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class TextStream:
    """Consumes a job's events and applies stop strings; yields text deltas.

    Args:
        job: the submitted job.
        request: the Starlette request, polled for a disconnect (None: never polled).
        stops: stop strings; the text is cut before the first match and ``finish_reason`` is ``stop``.
    """

    def __init__(self, job: Job, request, stops: list[str]) -> None:
        self.job, self.request, self.stops = job, request, stops
        self.text = ""  # generated text so far (before stop-string truncation)
        self.sent = 0  # characters of ``text`` already yielded
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.stats = None

    async def _next_event(self):
        while True:
            try:
                return await asyncio.wait_for(self.job.events.get(), timeout=DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                if self.request is not None and await self.request.is_disconnected():
                    raise ClientGone()

    async def deltas(self) -> AsyncIterator[str]:
        try:
            while True:
                kind, value = await self._next_event()
                if kind == "token":
                    tok, piece = value
                    if tok is not None:
                        self.completion_tokens += 1
                    self.text += piece
                    out = self._advance(final=False)
                    if out:
                        yield out
                    if self.finish_reason is not None:  # a stop string matched
                        self.job.cancel()
                        return
                    if self.request is not None and self.completion_tokens % 8 == 0 \
                            and await self.request.is_disconnected():
                        raise ClientGone()
                elif kind == "done":
                    self.stats = value
                    out = self._advance(final=True)
                    if out:
                        yield out
                    if self.finish_reason is None:
                        self.finish_reason = "stop" if value.stop_reason == "stop" else "length"
                    return
                elif kind == "cancelled":
                    raise APIError(503, "request cancelled (server shutting down)", "server_error", "cancelled")
                else:
                    raise APIError(500, f"generation failed: {value}", "server_error", "engine_error")
        finally:
            self.job.cancel()  # no-op when finished; frees the worker on disconnect / error

    def _advance(self, final: bool) -> str:
        if self.stops:
            start = max(0, self.sent - max(len(s) for s in self.stops))
            hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
            if hits:
                cut = min(hits)
                out = self.text[self.sent:cut] if cut > self.sent else ""
                self.sent = max(self.sent, cut)
                self.finish_reason = "stop"
                return out
            if not final:
                safe = len(self.text) - stop_holdback(self.text, self.stops)
                out = self.text[self.sent:safe] if safe > self.sent else ""
                self.sent = max(self.sent, safe)
                return out
        out = self.text[self.sent:]
        self.sent = len(self.text)
        return out

