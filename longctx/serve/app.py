"""``longctx serve``: an OpenAI-compatible HTTP server on the native engine (FastAPI + uvicorn).

Endpoints
    * ``GET /health`` -- liveness plus queue counters (never needs the API key).
    * ``GET /v1/models`` -- the one served model.
    * ``POST /v1/chat/completions`` -- chat under the model's template; ``stream`` = server-sent events.
    * ``POST /v1/completions`` -- raw completion; ``prompt`` is a string or a list of token ids
      (exact-length NIAH prompts are sent as ids, as vLLM accepts them).
    * ``POST /tokenize`` / ``POST /detokenize`` -- exact token counts (vLLM's request/response
      shapes: ``{"prompt"}`` or ``{"messages"}`` -> ``{"tokens", "count", "max_model_len"}``;
      ``{"tokens"}`` -> ``{"prompt"}``).
    * ``GET /tokenizer`` -- the tokenizer files themselves (a longctx extension): the ``openai``
      backend rebuilds the exact tokenizer from them (fingerprint-checked) to make exact-length
      prompts without a local copy of the model.

Concurrency: the engine is not thread-safe, so one worker thread owns it and generates one
request at a time. Requests wait in a bounded FIFO queue (``max_queue`` waiting besides the one
generating); when it is full the server answers 429. A client that disconnects (mid-stream or
while queued) cancels its request: the worker checks a cancel flag between tokens and between
prefill chunks, so it is freed at once.

Errors use OpenAI's body ``{"error": {"message", "type", "param", "code"}}``: malformed JSON and
invalid fields -> 400, over-length prompts -> 400 naming the numbers, bad or missing API key ->
401, unknown model -> 404, queue full -> 429.

Sampling follows the request: OpenAI's default ``temperature`` is 1, so evaluations must send
``temperature: 0`` for greedy decoding (``longctx needle --backend openai`` does).
"""


import asyncio
import hmac
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["EngineWorker", "create_app", "serve", "DEFAULT_PORT", "DEFAULT_MAX_QUEUE", "DEFAULT_MAX_TOKENS"]

DEFAULT_PORT = 23333
DEFAULT_MAX_QUEUE = 64
DEFAULT_MAX_TOKENS = 4096  # chat default when the request gives none (capped by the remaining context)
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's legacy completions default
MAX_STOP_STRINGS = 16
DISCONNECT_POLL_S = 0.25


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------
class APIError(Exception):
    """An error answered with an OpenAI-style JSON body."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _validation_message(e: ValidationError) -> tuple[str, str | None]:
    errs = e.errors()
    parts, param = [], None
    for err in errs[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        if param is None and loc:
            param = loc
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
    return "invalid request: " + "; ".join(parts) + more, param


# ----------------------------------------------------------------------------------------------
# Request schemas (unknown fields are accepted and ignored, as OpenAI clients send many)
# ----------------------------------------------------------------------------------------------
class _Req(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Req):
    type: Literal["text"]
    text: str


class ChatMessage(_Req):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart], None] = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(_Req):
    include_usage: bool = False


class _SamplingReq(_Req):
    model: Optional[str] = None
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    seed: Optional[int] = None
    stop: Union[str, list[str], None] = None
    stop_token_ids: Optional[list[int]] = None  # vLLM extension
    ignore_eos: bool = False  # vLLM extension
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: Optional[int] = 1
    frequency_penalty: Optional[float] = 0.0
    presence_penalty: Optional[float] = 0.0

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        if v is None:
            return []
        v = [v] if isinstance(v, str) else list(v)
        if len(v) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings")
        if any(s == "" for s in v):
            raise ValueError("stop strings must not be empty")
        return v

    def check_supported(self) -> None:
        if self.n not in (None, 1):
            raise APIError(400, "only n=1 is supported", param="n")
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name) not in (None, 0, 0.0):
                raise APIError(400, f"{name} is not supported by longctx serve (send 0 or leave it out)", param=name)
        for name in ("logprobs", "top_logprobs", "logit_bias", "tools", "functions", "response_format"):
            extra = (self.model_extra or {}).get(name)
            if extra not in (None, False, {}, []):
                raise APIError(400, f"{name} is not supported by longctx serve", param=name)


class ChatRequest(_SamplingReq):
    messages: list[ChatMessage] = Field(..., min_length=1)


class CompletionRequest(_SamplingReq):
    prompt: Union[str, list[int], list[str], list[list[int]]]
    echo: bool = False
    suffix: Optional[str] = None
    best_of: Optional[int] = None


class TokenizeRequest(_Req):
    model: Optional[str] = None
    prompt: Optional[str] = None
    messages: Optional[list[ChatMessage]] = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True


class DetokenizeRequest(_Req):
    model: Optional[str] = None
    tokens: list[int]


# ----------------------------------------------------------------------------------------------
# The engine worker
# ----------------------------------------------------------------------------------------------
class _Cancelled(Exception):
    """Raised inside the worker to abandon a cancelled job."""


class _ClientGone(Exception):
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
        from longctx.engine.generation import GenerationStats

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
def _stop_holdback(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class _Run:
    """Consumes a job's events and applies stop strings; yields text deltas."""

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
                    raise _ClientGone()

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
                        raise _ClientGone()
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
                safe = len(self.text) - _stop_holdback(self.text, self.stops)
                out = self.text[self.sent:safe] if safe > self.sent else ""
                self.sent = max(self.sent, safe)
                return out
        out = self.text[self.sent:]
        self.sent = len(self.text)
        return out


def _sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode("utf-8")


# ----------------------------------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------------------------------
def create_app(model, *, served_model_name: str | None = None, api_key: str | None = None,
               max_queue: int = DEFAULT_MAX_QUEUE, default_max_tokens: int = DEFAULT_MAX_TOKENS):
    """Builds the FastAPI app serving ``model`` (a :class:`~longctx.engine.runtime.LongCtxModel`).

    Args:
        model: the loaded engine.
        served_model_name: the id clients send as ``model`` (default: the model's name).
        api_key: when set, every endpoint but ``/health`` needs ``Authorization: Bearer <key>``.
        max_queue: requests allowed to wait besides the one generating; more -> 429.
        default_max_tokens: chat ``max_tokens`` when the request gives none (capped by the
            context left after the prompt).

    Returns:
        A ``fastapi.FastAPI``; its ``state.worker`` is the :class:`EngineWorker` (started and
        stopped by the app's lifespan).
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse

    from longctx.engine.runtime import ContextLengthError

    name = served_model_name or model.name
    created = int(time.time())
    worker = EngineWorker(model, max_queue=max_queue)
    tok = model.tokenizer
    vocab = tok.vocab_size if tok is not None else model.config.vocab_size

    @asynccontextmanager
    async def lifespan(app):
        worker.start()
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(title="longctx", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.worker = worker
    app.state.served_model_name = name

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return JSONResponse(APIError(400, f"invalid request: {exc.errors()[:3]}").body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(APIError(exc.status_code, str(exc.detail), type_).body(), status_code=exc.status_code)

    # -- helpers ---------------------------------------------------------------------------------
    def auth(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise APIError(401, "invalid or missing API key (send 'Authorization: Bearer <key>')",
                           "authentication_error", "invalid_api_key")

    async def parse(request: Request, schema: type[BaseModel]):
        auth(request)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise APIError(400, f"malformed JSON body: {e}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object", code="invalid_json")
        try:
            req = schema.model_validate(body)
        except ValidationError as e:
            msg, param = _validation_message(e)
            raise APIError(400, msg, param=param, code="invalid_request") from None
        if req.model is not None and req.model != name:
            raise APIError(404, f"the model '{req.model}' does not exist; this server serves '{name}'",
                           "not_found_error", "model_not_found", param="model")
        return req

    def need_tokenizer() -> None:
        if tok is None:
            raise APIError(400, "this model has no tokenizer: send the prompt as token ids to /v1/completions")

    def check_ids(ids: list[int]) -> list[int]:
        if not ids:
            raise APIError(400, "empty prompt", param="prompt")
        bad = next((i for i in ids if not 0 <= i < vocab), None)
        if bad is not None:
            raise APIError(400, f"token id {bad} is outside the vocabulary (size {vocab})", param="prompt")
        return ids

    def chat_prompt_ids(messages: list[ChatMessage], add_generation_prompt: bool = True) -> list[int]:
        need_tokenizer()
        msgs = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages]
        return tok.chat_ids(msgs, add_generation_prompt=add_generation_prompt)

    def gen_params(req: _SamplingReq, prompt_len: int, default_max: int | None) -> tuple[dict, int]:
        req.check_supported()
        max_tokens = req.max_completion_tokens or req.max_tokens
        room = model.max_context - prompt_len
        if max_tokens is None:
            max_tokens = max(1, min(default_max, room)) if default_max is not None else max(1, room)
        if prompt_len + max_tokens > model.max_context:
            raise APIError(400, f"prompt of {prompt_len} tokens + max_tokens {max_tokens} exceeds the context of "
                                f"{model.max_context} tokens", code="context_length_exceeded", param="messages"
                           if isinstance(req, ChatRequest) else "prompt")
        stops = [] if req.ignore_eos else list(tok.stop_ids if tok is not None else [])
        stops += [int(i) for i in (req.stop_token_ids or [])]
        temperature = 1.0 if req.temperature is None else float(req.temperature)
        params = dict(max_new_tokens=int(max_tokens), temperature=temperature,
                      top_p=1.0 if req.top_p is None else float(req.top_p), seed=req.seed, stop_ids=stops)
        return params, int(max_tokens)

    def start_job(request: Request, prompt_ids: list[int], params: dict) -> Job:
        try:
            model.check_length(len(prompt_ids), params["max_new_tokens"])
        except ContextLengthError as e:
            raise APIError(400, str(e), code="context_length_exceeded") from None
        job = Job(prompt_ids=prompt_ids, params=params, loop=asyncio.get_running_loop())
        worker.submit(job)
        return job

    def usage(prompt_len: int, run: _Run) -> dict:
        return {"prompt_tokens": prompt_len, "completion_tokens": run.completion_tokens,
                "total_tokens": prompt_len + run.completion_tokens}

    async def respond(request: Request, req: _SamplingReq, prompt_ids: list[int], params: dict, *, chat: bool):
        job = start_job(request, prompt_ids, params)
        run = _Run(job, request, req.stop or [])
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        now = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        n_prompt = len(prompt_ids)
        if not req.stream:
            try:
                text = "".join([d async for d in run.deltas()])
            except _ClientGone:
                return Response(status_code=499)  # nobody is listening any more
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                       "finish_reason": run.finish_reason} if chat else
                      {"index": 0, "text": text, "logprobs": None, "finish_reason": run.finish_reason})
            return JSONResponse({"id": rid, "object": obj, "created": now, "model": name, "choices": [choice],
                                 "usage": usage(n_prompt, run), "system_fingerprint": None})
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        chunk_obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta_or_text, finish=None) -> dict:
            if chat:
                ch = {"index": 0, "delta": delta_or_text, "logprobs": None, "finish_reason": finish}
            else:
                ch = {"index": 0, "text": delta_or_text, "logprobs": None, "finish_reason": finish}
            out = {"id": rid, "object": chunk_obj, "created": now, "model": name, "choices": [ch]}
            if include_usage:
                out["usage"] = None
            return out

        async def events():
            try:
                if chat:
                    yield _sse(chunk({"role": "assistant", "content": ""}))
                try:
                    async for d in run.deltas():
                        yield _sse(chunk({"content": d} if chat else d))
                except _ClientGone:
                    return
                except APIError as e:
                    yield _sse(e.body())
                    yield b"data: [DONE]\n\n"
                    return
                yield _sse(chunk({} if chat else "", run.finish_reason))
                if include_usage:
                    yield _sse({"id": rid, "object": chunk_obj, "created": now, "model": name, "choices": [],
                                "usage": usage(n_prompt, run)})
                yield b"data: [DONE]\n\n"
            finally:
                job.cancel()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- endpoints -------------------------------------------------------------------------------
    @app.get("/health")
    async def health():
        return {"status": "ok", "model": name, "max_model_len": model.max_context, "busy": worker.busy,
                "queued": worker.queued, "max_queue": worker.max_queue, **worker.counters}

    @app.get("/v1/models")
    async def models(request: Request):
        auth(request)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "longctx",
                                            "root": model.path, "max_model_len": model.max_context}]}

    @app.get("/v1/models/{model_id:path}")
    async def one_model(model_id: str, request: Request):
        auth(request)
        if model_id != name:
            raise APIError(404, f"the model '{model_id}' does not exist; this server serves '{name}'",
                           "not_found_error", "model_not_found", param="model")
        return {"id": name, "object": "model", "created": created, "owned_by": "longctx", "root": model.path,
                "max_model_len": model.max_context}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req: ChatRequest = await parse(request, ChatRequest)
        ids = chat_prompt_ids(req.messages)
        params, _ = gen_params(req, len(ids), default_max_tokens)
        return await respond(request, req, ids, params, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        req: CompletionRequest = await parse(request, CompletionRequest)
        if req.echo:
            raise APIError(400, "echo is not supported by longctx serve", param="echo")
        if req.suffix:
            raise APIError(400, "suffix is not supported by longctx serve", param="suffix")
        if req.best_of not in (None, 1):
            raise APIError(400, "only best_of=1 is supported", param="best_of")
        prompt = req.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            if len(prompt) != 1:
                raise APIError(400, "batched prompts are not supported: send one prompt per request", param="prompt")
            prompt = prompt[0]
        if isinstance(prompt, str):
            if not prompt:
                raise APIError(400, "empty prompt", param="prompt")
            need_tokenizer()
            ids = model.encode(prompt)
        else:
            ids = [int(t) for t in prompt]
        check_ids(ids)
        params, _ = gen_params(req, len(ids), COMPLETIONS_DEFAULT_MAX_TOKENS)
        return await respond(request, req, ids, params, chat=False)

    @app.post("/tokenize")
    async def tokenize(request: Request):
        req: TokenizeRequest = await parse(request, TokenizeRequest)
        need_tokenizer()
        if (req.prompt is None) == (req.messages is None):
            raise APIError(400, "send exactly one of 'prompt' or 'messages'", param="prompt")
        if req.prompt is not None:
            ids = model.encode(req.prompt) if req.add_special_tokens else tok.encode(req.prompt)
        else:
            if not req.messages:
                raise APIError(400, "messages must not be empty", param="messages")
            ids = chat_prompt_ids(req.messages, req.add_generation_prompt)
        return {"tokens": ids, "count": len(ids), "max_model_len": model.max_context}

    tokenizer_files: dict = {}

    @app.get("/tokenizer")
    async def tokenizer_endpoint(request: Request):
        """The model's tokenizer files (a longctx extension), so clients build byte-identical prompts."""
        auth(request)
        need_tokenizer()
        if not tokenizer_files:
            tokenizer_files.update(_tokenizer_payload(tok))
        return tokenizer_files

    @app.post("/detokenize")
    async def detokenize(request: Request):
        req: DetokenizeRequest = await parse(request, DetokenizeRequest)
        need_tokenizer()
        if req.tokens:
            check_ids(req.tokens)
        return {"prompt": tok.decode(req.tokens)}

    return app


def _tokenizer_payload(tok) -> dict:
    """``{"name", "fingerprint", "files": {filename: {"encoding": "utf-8" | "base64", "data"}}}``."""
    import base64
    import tempfile
    from pathlib import Path

    from longctx.tokenizer import save_tokenizer_json

    files = {}
    with tempfile.TemporaryDirectory(prefix="longctx-tok-") as d:
        for p in save_tokenizer_json(tok, d):
            raw = Path(p).read_bytes()
            if p.suffix == ".json":
                files[p.name] = {"encoding": "utf-8", "data": raw.decode("utf-8")}
            else:
                files[p.name] = {"encoding": "base64", "data": base64.b64encode(raw).decode("ascii")}
    return {"name": tok.name, "fingerprint": tok.fingerprint, "files": files}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("longctx")
    except Exception:  # noqa: BLE001
        return "0"


def serve(model, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, served_model_name: str | None = None,
          api_key: str | None = None, max_queue: int = DEFAULT_MAX_QUEUE, default_max_tokens: int = DEFAULT_MAX_TOKENS,
          log_level: str = "info") -> None:
    """Runs the server until SIGINT / SIGTERM (uvicorn's graceful shutdown cancels running requests)."""
    import uvicorn

    app = create_app(model, served_model_name=served_model_name, api_key=api_key, max_queue=max_queue,
                     default_max_tokens=default_max_tokens)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5,
                            access_log=log_level == "debug")
    worker: EngineWorker = app.state.worker

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:  # SIGINT / SIGTERM: cancel generation at once
            worker.stop(timeout=0)
            super().handle_exit(sig, frame)

    _Server(config).run()
