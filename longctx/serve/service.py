"""The serving logic of ``longctx serve``, independent of routing: parse, prompt, limit, answer.

:class:`ModelService` holds the served model, its :class:`~longctx.serve.worker.EngineWorker` and the
per-request work. Its ``prepare_*`` and ``*_response`` methods are plain functions of the request
body that the app runs in the threadpool (JSON parsing, validation, tokenization, id checks and
large JSON answers never run on the event loop); :meth:`ModelService.respond` runs on the loop and
streams the worker's tokens.
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from longctx.errors import ConfigError, ContextLengthError
from longctx.serve.schemas import (APIError, ChatMessage, ChatRequest, CompletionRequest, DetokenizeRequest,
                                   SamplingRequest, TokenizeRequest, validation_message)
from longctx.serve.tokenproc import TokenizerProcess
from longctx.serve.worker import ClientGone, EngineWorker, Job, TextStream
from longctx.tokenizer import save_tokenizer_json

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's legacy completions default


def _sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode("utf-8")


class ModelService:
    """The served model, its worker and the per-request work (parsing, prompts, limits, answers).

    The ``prepare_*`` / ``*_response`` methods are plain functions of the request body, meant to
    run in the threadpool; :meth:`respond` runs on the event loop.

    Args:
        model: the loaded engine (a :class:`~longctx.engine.runtime.LongCtxModel`).
        name: the id clients send as ``model``.
        api_key: when set, every endpoint but ``/health`` needs ``Authorization: Bearer <key>``.
        max_queue: requests allowed to wait besides the one generating; more -> 429.
        default_max_tokens: chat ``max_tokens`` when the request gives none.
        max_body_bytes: the largest request body read; more -> 413.

    Raises:
        ConfigError: an empty ``api_key``, or limits below 1.
    """

    def __init__(self, model, name: str, *, api_key: str | None, max_queue: int, default_max_tokens: int,
                 max_body_bytes: int) -> None:
        if api_key is not None and not api_key:
            raise ConfigError("the API key must not be empty (leave it out to serve without authentication)")
        if default_max_tokens < 1:
            raise ConfigError(f"default_max_tokens must be at least 1, got {default_max_tokens}")
        if max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
        self.model, self.name, self.api_key = model, name, api_key
        self.default_max_tokens, self.max_body_bytes = int(default_max_tokens), int(max_body_bytes)
        self.worker = EngineWorker(model, max_queue=max_queue)
        self.created = int(time.time())
        self.tok = model.tokenizer
        self.tokproc = TokenizerProcess(self.tok) if self.tok is not None else None
        self.vocab = self.tok.vocab_size if self.tok is not None else model.config.vocab_size
        self._tokenizer_files: dict = {}

    # -- checks ----------------------------------------------------------------------------------
    def check_key(self, authorization: str) -> None:
        """Raises 401 unless ``authorization`` is ``Bearer <api_key>`` (no-op without a key)."""
        if self.api_key is None:
            return
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.api_key.encode()):
            raise APIError(401, "invalid or missing API key (send 'Authorization: Bearer <key>')",
                           "authentication_error", "invalid_api_key")

    def parse(self, raw: bytes, schema: type[BaseModel]):
        """The validated request model of a JSON body (400 / 404 as OpenAI answers them)."""
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise APIError(400, f"malformed JSON body: {e}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object", code="invalid_json")
        try:
            req = schema.model_validate(body)
        except ValidationError as e:
            msg, param = validation_message(e)
            raise APIError(400, msg, param=param, code="invalid_request") from None
        if req.model is not None and req.model != self.name:
            raise self.unknown_model(req.model)
        return req

    def unknown_model(self, model_id: str) -> APIError:
        return APIError(404, f"the model '{model_id}' does not exist; this server serves '{self.name}'",
                        "not_found_error", "model_not_found", param="model")

    def need_tokenizer(self) -> None:
        if self.tok is None:
            raise APIError(400, "this model has no tokenizer: send the prompt as token ids to /v1/completions")

    def check_ids(self, ids: list[int]) -> list[int]:
        if not ids:
            raise APIError(400, "empty prompt", param="prompt")
        bad = next((i for i in ids if not 0 <= i < self.vocab), None)
        if bad is not None:
            raise APIError(400, f"token id {bad} is outside the vocabulary (size {self.vocab})", param="prompt")
        return ids

    # -- prompts and parameters ------------------------------------------------------------------
    def chat_prompt_ids(self, messages: list[ChatMessage], add_generation_prompt: bool = True) -> list[int]:
        self.need_tokenizer()
        msgs = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages]
        return self.tokproc.chat_ids(msgs, add_generation_prompt=add_generation_prompt)

    def encode_text(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of a text prompt: BOS (when the tokenizer adds one, as ``LongCtxModel.encode``) + plain-text ids."""
        self.need_tokenizer()
        ids = self.tokproc.encode(text)
        return [self.tok.bos_id] + ids if add_special_tokens and self.tok.add_bos else ids

    def gen_params(self, req: SamplingRequest, prompt_len: int, default_max: int | None) -> dict:
        """The worker's generation keywords; 400 when prompt + max_tokens exceed the context."""
        req.check_supported()
        model = self.model
        max_tokens = req.max_completion_tokens or req.max_tokens
        room = model.max_context - prompt_len
        if max_tokens is None:
            max_tokens = max(1, min(default_max, room)) if default_max is not None else max(1, room)
        if prompt_len + max_tokens > model.max_context:
            raise APIError(400, f"prompt of {prompt_len} tokens + max_tokens {max_tokens} exceeds the context of "
                                f"{model.max_context} tokens", code="context_length_exceeded", param="messages"
                           if isinstance(req, ChatRequest) else "prompt")
        try:
            model.check_length(prompt_len, int(max_tokens))
        except ContextLengthError as e:
            raise APIError(400, str(e), code="context_length_exceeded") from None
        stops = [] if req.ignore_eos else list(self.tok.stop_ids if self.tok is not None else [])
        stops += [int(i) for i in (req.stop_token_ids or [])]
        temperature = 1.0 if req.temperature is None else float(req.temperature)
        return dict(max_new_tokens=int(max_tokens), temperature=temperature,
                    top_p=1.0 if req.top_p is None else float(req.top_p), seed=req.seed, stop_ids=stops)

    def prepare_chat(self, raw: bytes) -> tuple[ChatRequest, list[int], dict]:
        req: ChatRequest = self.parse(raw, ChatRequest)
        ids = self.chat_prompt_ids(req.messages)
        return req, ids, self.gen_params(req, len(ids), self.default_max_tokens)

    def prepare_completion(self, raw: bytes) -> tuple[CompletionRequest, list[int], dict]:
        req: CompletionRequest = self.parse(raw, CompletionRequest)
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
            ids = self.encode_text(prompt)
        else:
            ids = [int(t) for t in prompt]
        self.check_ids(ids)
        return req, ids, self.gen_params(req, len(ids), COMPLETIONS_DEFAULT_MAX_TOKENS)

    # -- whole answers (built in the threadpool) -------------------------------------------------
    def tokenize_response(self, raw: bytes) -> JSONResponse:
        req: TokenizeRequest = self.parse(raw, TokenizeRequest)
        self.need_tokenizer()
        if (req.prompt is None) == (req.messages is None):
            raise APIError(400, "send exactly one of 'prompt' or 'messages'", param="prompt")
        if req.prompt is not None:
            ids = self.encode_text(req.prompt, req.add_special_tokens)
        else:
            if not req.messages:
                raise APIError(400, "messages must not be empty", param="messages")
            ids = self.chat_prompt_ids(req.messages, req.add_generation_prompt)
        return JSONResponse({"tokens": ids, "count": len(ids), "max_model_len": self.model.max_context})

    def detokenize_response(self, raw: bytes) -> JSONResponse:
        req: DetokenizeRequest = self.parse(raw, DetokenizeRequest)
        self.need_tokenizer()
        if req.tokens:
            self.check_ids(req.tokens)
        return JSONResponse({"prompt": self.tok.decode(req.tokens)})

    def tokenizer_files(self) -> dict:
        """``{"name", "fingerprint", "files": {filename: {"encoding": "utf-8" | "base64", "data"}}}`` (cached)."""
        self.need_tokenizer()
        if not self._tokenizer_files:
            files = {}
            with tempfile.TemporaryDirectory(prefix="longctx-tok-") as d:
                for p in save_tokenizer_json(self.tok, d):
                    data = Path(p).read_bytes()
                    if p.suffix == ".json":
                        files[p.name] = {"encoding": "utf-8", "data": data.decode("utf-8")}
                    else:
                        files[p.name] = {"encoding": "base64", "data": base64.b64encode(data).decode("ascii")}
            self._tokenizer_files = {"name": self.tok.name, "fingerprint": self.tok.fingerprint, "files": files}
        return self._tokenizer_files

    def model_card(self) -> dict:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "longctx",
                "root": self.model.path, "max_model_len": self.model.max_context}

    def health(self) -> dict:
        w = self.worker
        return {"status": "ok", "model": self.name, "max_model_len": self.model.max_context, "busy": w.busy,
                "queued": w.queued, "max_queue": w.max_queue, **w.counters}

    # -- generation (on the event loop) ----------------------------------------------------------
    async def respond(self, request: Request, req: SamplingRequest, prompt_ids: list[int], params: dict, *,
                      chat: bool) -> Response:
        """Queues the job and answers with one JSON body or a server-sent event stream."""
        job = Job(prompt_ids=prompt_ids, params=params, loop=asyncio.get_running_loop())
        self.worker.submit(job)
        run = TextStream(job, request, req.stop or [])
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        now, name, n_prompt = int(time.time()), self.name, len(prompt_ids)
        obj = "chat.completion" if chat else "text_completion"

        def usage() -> dict:
            return {"prompt_tokens": n_prompt, "completion_tokens": run.completion_tokens,
                    "total_tokens": n_prompt + run.completion_tokens}

        if not req.stream:
            try:
                text = "".join([d async for d in run.deltas()])
            except ClientGone:
                return Response(status_code=499)  # nobody is listening any more
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                       "finish_reason": run.finish_reason} if chat else
                      {"index": 0, "text": text, "logprobs": None, "finish_reason": run.finish_reason})
            return JSONResponse({"id": rid, "object": obj, "created": now, "model": name, "choices": [choice],
                                 "usage": usage(), "system_fingerprint": None})
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
                except ClientGone:
                    return
                except APIError as e:
                    yield _sse(e.body())
                    yield b"data: [DONE]\n\n"
                    return
                yield _sse(chunk({} if chat else "", run.finish_reason))
                if include_usage:
                    yield _sse({"id": rid, "object": chunk_obj, "created": now, "model": name, "choices": [],
                                "usage": usage()})
                yield b"data: [DONE]\n\n"
            finally:
                job.cancel()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
