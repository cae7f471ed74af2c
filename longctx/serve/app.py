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

Layout: the request models live in :mod:`longctx.serve.schemas`, the engine thread and its queue in
:mod:`longctx.serve.worker`; here are two routers (``/health`` public, everything else behind the
API-key dependency) over one :class:`~longctx.serve.service.ModelService` (the serving logic,
:mod:`longctx.serve.service`) stored in ``app.state.service``.

The event loop only moves bytes. Parsing, validation, tokenization, id checks and large JSON
responses run in the threadpool (``run_in_threadpool``), and generation in the worker thread, so
``/health`` answers at once while a huge prompt is tokenized or rejected. Request bodies are read
up to ``max_body_bytes`` (413 beyond; a declared ``Content-Length`` over the limit is refused before
reading). A client that disconnects before its body is complete is logged as one line.

Errors use OpenAI's body ``{"error": {"message", "type", "param", "code"}}``: malformed JSON and
invalid fields -> 400, over-length prompts -> 400 naming the numbers, bad or missing API key ->
401, unknown model -> 404, body over the limit -> 413, queue full -> 429.

Sampling follows the request: OpenAI's default ``temperature`` is 1, so evaluations must send
``temperature: 0`` for greedy decoding (``longctx needle --backend openai`` does).
"""
from __future__ import annotations

import errno
import logging
import socket
import threading
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable, TypeVar

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from longctx.errors import ServeError
from longctx.serve.schemas import APIError
from longctx.serve.service import ModelService
from longctx.serve.worker import DEFAULT_MAX_QUEUE, ClientGone, EngineWorker

__all__ = ["create_app", "serve", "bind_socket", "ModelService", "DEFAULT_PORT", "DEFAULT_MAX_TOKENS",
           "DEFAULT_MAX_BODY_BYTES"]

DEFAULT_PORT = 23333
DEFAULT_MAX_TOKENS = 4096  # chat default when the request gives none (capped by the remaining context)
DEFAULT_MAX_BODY_BYTES = 32 * 2 ** 20  # 32 MiB: a 200K-token prompt as text or as ids is well under it

log = logging.getLogger("uvicorn.error")  # uvicorn configures this logger (format and --log-level)
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------
# Dependencies
# ----------------------------------------------------------------------------------------------
def get_service(request: Request) -> ModelService:
    return request.app.state.service


def require_api_key(request: Request, svc: ModelService = Depends(get_service)) -> None:
    """The auth dependency of every endpoint but ``/health``."""
    svc.check_key(request.headers.get("authorization", ""))


async def read_body(request: Request, svc: ModelService = Depends(get_service)) -> bytes:
    """The request body, at most ``svc.max_body_bytes`` (413 beyond; refused early on a declared size).

    Raises:
        APIError: 413.
        ClientGone: the client disconnected before the body was complete.
    """
    limit = svc.max_body_bytes
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes "
                            "(--max-body-bytes)", code="request_too_large")
    chunks, size = [], 0
    try:
        async for piece in request.stream():
            size += len(piece)
            if size > limit:
                raise APIError(413, f"request body exceeds the limit of {limit} bytes (--max-body-bytes)",
                               code="request_too_large")
            chunks.append(piece)
    except ClientDisconnect:
        client = f"client {request.client.host}:{request.client.port}" if request.client else "a client"
        raise ClientGone(f"{client} disconnected after sending {size} of {declared or '?'} body bytes "
                         f"({request.method} {request.url.path})") from None
    return b"".join(chunks)


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Runs CPU-heavy request work in the threadpool, so the event loop keeps answering."""
    return await run_in_threadpool(fn, *args)


# ----------------------------------------------------------------------------------------------
# Routers
# ----------------------------------------------------------------------------------------------
public = APIRouter()
api = APIRouter(dependencies=[Depends(require_api_key)])


@public.get("/health")
async def health(svc: ModelService = Depends(get_service)):
    return svc.health()


@api.get("/v1/models")
async def models(svc: ModelService = Depends(get_service)):
    return {"object": "list", "data": [svc.model_card()]}


@api.get("/v1/models/{model_id:path}")
async def one_model(model_id: str, svc: ModelService = Depends(get_service)):
    if model_id != svc.name:
        raise svc.unknown_model(model_id)
    return svc.model_card()


@api.post("/v1/chat/completions")
async def chat_completions(request: Request, raw: bytes = Depends(read_body),
                           svc: ModelService = Depends(get_service)):
    req, ids, params = await off_loop(svc.prepare_chat, raw)
    return await svc.respond(request, req, ids, params, chat=True)


@api.post("/v1/completions")
async def completions(request: Request, raw: bytes = Depends(read_body), svc: ModelService = Depends(get_service)):
    req, ids, params = await off_loop(svc.prepare_completion, raw)
    return await svc.respond(request, req, ids, params, chat=False)


@api.post("/tokenize")
async def tokenize(raw: bytes = Depends(read_body), svc: ModelService = Depends(get_service)):
    return await off_loop(svc.tokenize_response, raw)


@api.post("/detokenize")
async def detokenize(raw: bytes = Depends(read_body), svc: ModelService = Depends(get_service)):
    return await off_loop(svc.detokenize_response, raw)


@api.get("/tokenizer")
async def tokenizer_endpoint(svc: ModelService = Depends(get_service)):
    """The model's tokenizer files (a longctx extension), so clients build byte-identical prompts."""
    return await off_loop(svc.tokenizer_files)


# ----------------------------------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------------------------------
async def _api_error(request: Request, exc: APIError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _validation(request: Request, exc: RequestValidationError) -> Response:
    return JSONResponse(APIError(400, f"invalid request: {exc.errors()[:3]}").body(), status_code=400)


async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return JSONResponse(APIError(exc.status_code, str(exc.detail), type_).body(), status_code=exc.status_code)


async def _client_gone(request: Request, exc: ClientGone) -> Response:
    log.warning("%s", exc)  # one line: a client that goes away is not a server error
    return Response(status_code=499)  # nobody reads it


def create_app(model, *, served_model_name: str | None = None, api_key: str | None = None,
               max_queue: int = DEFAULT_MAX_QUEUE, default_max_tokens: int = DEFAULT_MAX_TOKENS,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    """Builds the FastAPI app serving ``model`` (a :class:`~longctx.engine.runtime.LongCtxModel`).

    Args:
        model: the loaded engine.
        served_model_name: the id clients send as ``model`` (default: the model's name).
        api_key: when set, every endpoint but ``/health`` needs ``Authorization: Bearer <key>``.
        max_queue: requests allowed to wait besides the one generating; more -> 429.
        default_max_tokens: chat ``max_tokens`` when the request gives none (capped by the
            context left after the prompt).
        max_body_bytes: the largest request body accepted; more -> 413.

    Returns:
        A ``fastapi.FastAPI``; ``state.service`` is the :class:`ModelService` and ``state.worker`` its
        :class:`~longctx.serve.worker.EngineWorker` (started and stopped by the app's lifespan).

    Raises:
        ConfigError: an empty ``api_key`` or a limit below 1.
    """
    svc = ModelService(model, served_model_name or model.name, api_key=api_key, max_queue=max_queue,
                       default_max_tokens=default_max_tokens, max_body_bytes=max_body_bytes)

    @asynccontextmanager
    async def lifespan(app):
        svc.worker.start()
        if svc.tokproc is not None:  # spawn the tokenizer child while the server is idle
            threading.Thread(target=svc.tokproc.start, name="longctx-tokproc-start", daemon=True).start()
        try:
            yield
        finally:
            svc.worker.stop()
            if svc.tokproc is not None:
                svc.tokproc.close()

    app = FastAPI(title="longctx", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = svc
    app.state.worker = svc.worker
    app.state.served_model_name = svc.name
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(ClientGone, _client_gone)
    app.include_router(public)
    app.include_router(api)
    return app


def _version() -> str:
    try:
        return version("longctx")
    except PackageNotFoundError:
        return "0"


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` for uvicorn: a busy port fails here, before any model loads.

    Raises:
        ServeError: the address does not resolve, or the port is in use or not allowed.
    """
    try:
        family, type_, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                           flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ServeError(f"cannot resolve --host {host!r}: {getattr(e, 'strerror', None) or e}") from None
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not "in use"
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {host} is already in use (choose another with --port)") from None
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def serve(model, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, served_model_name: str | None = None,
          api_key: str | None = None, max_queue: int = DEFAULT_MAX_QUEUE, default_max_tokens: int = DEFAULT_MAX_TOKENS,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, log_level: str = "info",
          sock: socket.socket | None = None) -> None:
    """Runs the server until SIGINT / SIGTERM (uvicorn's graceful shutdown cancels running requests).

    Args:
        sock: a socket from :func:`bind_socket` (default: binds ``host:port`` now).

    Raises:
        ServeError: the port is in use (only without ``sock``).
        ConfigError: see :func:`create_app`.
    """
    app = create_app(model, served_model_name=served_model_name, api_key=api_key, max_queue=max_queue,
                     default_max_tokens=default_max_tokens, max_body_bytes=max_body_bytes)
    sock = sock if sock is not None else bind_socket(host, port)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5,
                            access_log=log_level == "debug")
    worker: EngineWorker = app.state.worker

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:  # SIGINT / SIGTERM: cancel generation at once
            worker.stop(timeout=0)
            super().handle_exit(sig, frame)

    _Server(config).run(sockets=[sock])
