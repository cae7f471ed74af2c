"""The ``openai`` backend: any OpenAI-compatible server (longctx serve, vLLM, LMDeploy, TGI, llama.cpp ...).

Exact lengths over HTTP. NIAH prompts are token ids built with the model's tokenizer, which
comes from (in this order) ``tokenizer=`` (a local checkpoint / tokenizer directory, e.g. the
Hugging Face snapshot the server loaded), or the server itself when it publishes its tokenizer
files (``GET /tokenizer``, a longctx serve extension; fingerprint-checked). When the server has
vLLM's ``POST /tokenize`` the local tokenizer is checked against it on a probe text. Without a
tokenizer the backend refuses (``approximate_lengths=True`` runs anyway with the default
model's tokenizer; every record's ``tokenizer`` then starts with ``APPROXIMATE``).

How prompts travel (``api_mode``):
    * ``ids`` -- ``POST /v1/completions`` with ``prompt`` = the token ids (longctx serve and vLLM
      accept this): the server sees exactly the ids the native engine would.
    * ``text`` -- ``POST /v1/completions`` with the prompt decoded to text, control tokens
      spelled out (the server's tokenizer re-encodes them; the reported ``prompt_tokens`` is
      compared with the intended length and mismatches are counted in ``length_mismatches``).
    * ``chat`` -- ``POST /v1/chat/completions`` with the messages recovered from the template
      (for chat-only servers; an answer prefix is sent as a final assistant message with vLLM's
      ``continue_final_message``).
    * ``auto`` (default) -- ``ids`` when a one-token probe with an id prompt succeeds, else
      ``text``, else ``chat``.

Decoding is greedy (``temperature`` 0, ``top_p`` 1). Requests run ``concurrency`` at a time
in the order of :meth:`OpenAIBackend.schedule`: ascending length, and within a length
descending needle position (lexicographic token order when requests carry no needles), so
servers with prefix caching (vLLM ``--enable-prefix-caching``, LMDeploy) reuse each prompt's
prefix. Timeouts, connection errors, 429 and 5xx are retried with exponential backoff (honouring
``Retry-After``); a request that still fails becomes a ``GenResult`` with ``error`` set, so the
sweep records it as an error cell (score null) and goes on.
"""
from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from longctx.backends.base import BaseBackend, GenRequest, GenResult, OnResult, OnStart, error_text
from longctx.errors import ContextLengthError

__all__ = ["OpenAIBackend", "HTTPStatusError", "API_MODES", "fetch_server_tokenizer"]

API_MODES = ("auto", "ids", "text", "chat")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
PROBE_TEXT = "Hello world! The quick brown fox jumps over 13 lazy dogs."


class HTTPStatusError(RuntimeError):
    """A non-2xx answer (after retries when retryable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _error_message(resp) -> str:
    try:
        body = resp.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or err
        else:
            msg = err
    except ValueError:
        msg = resp.text
    msg = str(msg).strip().splitlines()
    return msg[0][:500] if msg else resp.reason_phrase


def _root_url(base_url: str) -> str:
    """``http://h:p/v1`` -> ``http://h:p`` (where /tokenize, /tokenizer and /health live)."""
    u = base_url.rstrip("/")
    return u[: -len("/v1")] if u.endswith("/v1") else u


def fetch_server_tokenizer(client, root: str, cache_dir: str | os.PathLike | None = None):
    """Rebuilds the served model's tokenizer from ``GET {root}/tokenizer`` (longctx serve).

    Returns:
        A :class:`~longctx.tokenizer.core.Tokenizer`, or None when the server does not publish one.

    Raises:
        ValueError: the rebuilt tokenizer's fingerprint differs from the server's.
    """
    import base64

    from longctx.paths import cache_root
    from longctx.tokenizer import load_tokenizer

    try:
        r = client.get(root + "/tokenizer")
    except Exception:  # noqa: BLE001 -- no such endpoint / unreachable: the caller decides
        return None
    if r.status_code != 200:
        return None
    try:
        body = r.json()
        fp, files = str(body["fingerprint"]), body["files"]
    except (ValueError, KeyError, TypeError):
        return None
    d = Path(cache_dir) if cache_dir is not None else cache_root() / "tokenizers" / f"server-{fp[:16]}"
    if not (d / "tokenizer_meta.json").is_file():
        tmp = d.with_name(d.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        for name, f in files.items():
            if "/" in name or "\\" in name or name.startswith("."):
                raise ValueError(f"server sent a tokenizer file with a bad name: {name!r}")
            data = f["data"]
            raw = data.encode("utf-8") if f.get("encoding") == "utf-8" else base64.b64decode(data)
            (tmp / name).write_bytes(raw)
        try:
            os.replace(tmp, d)
        except OSError:  # another process wrote it first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    tok = load_tokenizer(d)
    if tok.fingerprint != fp:
        raise ValueError(f"the tokenizer rebuilt from {root}/tokenizer does not match the server's fingerprint")
    return tok


class OpenAIBackend(BaseBackend):
    """Answers prompts through an OpenAI-compatible HTTP server.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:23333/v1``.
        served_model: the ``model`` id to send (default: the server's only model).
        api_key: the key itself (overrides ``api_key_env``).
        api_key_env: environment variable holding the key (``OPENAI_API_KEY``); unset -> no auth
            header, unless the variable was named explicitly (then it is an error).
        tokenizer: a :class:`~longctx.tokenizer.core.Tokenizer` or a directory to load one from.
        approximate_lengths: run without an exact tokenizer (marked in every record).
        concurrency: requests in flight at once.
        client: an ``httpx.Client`` to use (tests); the auth header is added to it.
        timeout: seconds per request (connect timeout 10 s).
        max_retries: retries of a retryable failure (so ``max_retries + 1`` tries).
        backoff: first retry delay in seconds (doubles each time, +-25 % jitter, capped at 60 s).
        api_mode: ``auto`` | ``ids`` | ``text`` | ``chat`` (see the module doc).
        max_context: the longest prompt + answer to allow (default: the server's
            ``max_model_len`` when it reports one).
        verify_tokenizer: compare the tokenizer with the server's ``/tokenize`` when it has one.
    """

    name = "openai"
    supports_prefix_sharing = False

    def __init__(self, base_url: str, *, served_model: str | None = None, api_key: str | None = None,
                 api_key_env: str | None = None, tokenizer: Any = None, approximate_lengths: bool = False,
                 concurrency: int = 4, timeout: float = 600.0, max_retries: int = 5, backoff: float = 1.0,
                 api_mode: str = "auto", max_context: int | None = None, verify_tokenizer: bool = True,
                 client: Any = None) -> None:
        try:
            import httpx
        except ImportError:
            raise ValueError("the openai backend needs httpx: pip install 'longctx[serve]'") from None

        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"--base-url must be an http(s) URL such as http://127.0.0.1:23333/v1, got {base_url!r}")
        if api_mode not in API_MODES:
            raise ValueError(f"unknown api mode {api_mode!r}; choose from {', '.join(API_MODES)}")
        if int(concurrency) < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if int(max_retries) < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.root = _root_url(self.base_url)
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.approximate = False
        self.length_mismatches = 0
        self.retries = 0
        self._lock = threading.Lock()
        key = api_key
        if key is None:
            env = api_key_env or "OPENAI_API_KEY"
            key = os.environ.get(env) or None
            if key is None and api_key_env is not None:
                raise ValueError(f"environment variable {api_key_env} (from --api-key-env) is not set")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if client is None:
            client = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                                  limits=httpx.Limits(max_connections=self.concurrency + 2))
        client.headers.update(headers)
        self.client = client

        # -- the model ---------------------------------------------------------------------------
        try:
            models = self._call("GET", self.base_url + "/models", retries=min(self.max_retries, 2)).get("data") or []
        except (HTTPStatusError, ConnectionError) as e:
            hint = " (check the API key: --api-key-env)" if isinstance(e, HTTPStatusError) and e.status == 401 else ""
            raise ValueError(f"cannot list the models of {self.base_url}: {e}{hint}") from None
        ids = [str(m.get("id")) for m in models if isinstance(m, dict)]
        if served_model is None:
            if len(ids) != 1:
                raise ValueError(f"{self.base_url} serves {len(ids)} models ({', '.join(ids) or 'none'}); "
                                 f"pick one with --served-model")
            served_model = ids[0]
        elif ids and served_model not in ids:
            raise ValueError(f"{self.base_url} does not serve {served_model!r}; it serves: {', '.join(ids)}")
        self.served_model = served_model
        entry = next((m for m in models if isinstance(m, dict) and m.get("id") == served_model), {})
        server_len = entry.get("max_model_len") or entry.get("context_length") or entry.get("max_context_length")
        if max_context is not None:
            self.max_context = int(max_context)
        elif server_len:
            self.max_context = int(server_len)
        else:
            self.max_context = 1 << 31  # unknown: the server's own 400s become error cells
        self.server_max_context = int(server_len) if server_len else None

        # -- the tokenizer -----------------------------------------------------------------------
        tok, source = None, None
        if tokenizer is not None:
            if isinstance(tokenizer, (str, os.PathLike)):
                from longctx.tokenizer import load_tokenizer

                p = Path(tokenizer).expanduser()
                if not p.exists():
                    raise ValueError(f"--tokenizer path not found: {p}")
                tok, source = load_tokenizer(p if p.is_dir() else p.parent), f"local:{p}"
            else:
                tok, source = tokenizer, "given"
        else:
            tok = fetch_server_tokenizer(self.client, self.root)
            source = f"server:{self.root}/tokenizer" if tok is not None else None
        if tok is None:
            if not approximate_lengths:
                raise ValueError(
                    f"no tokenizer for exact prompt lengths: {self.root} does not publish its tokenizer "
                    f"(GET /tokenizer). Pass --tokenizer PATH (the served model's checkpoint or tokenizer "
                    f"directory), or --approximate-lengths to run with lengths counted by another tokenizer "
                    f"(records are marked APPROXIMATE)")
            from longctx.checkpoints.resolve import resolve  # lazy: keeps torch out of the openai backend

            tok, source = resolve(None).load_tokenizer(), "approximate:default"
            self.approximate = True
        self.tokenizer = tok
        self.tokenizer_source = source
        self.tokenize_checked: Optional[bool] = None
        if verify_tokenizer and not self.approximate:
            self._verify_tokenizer()

        # -- how prompts travel ------------------------------------------------------------------
        if self.approximate and api_mode == "ids":
            raise ValueError("--api-mode ids needs the served model's exact tokenizer (not --approximate-lengths)")
        self.api_mode = self._pick_mode() if api_mode == "auto" else api_mode
        if self.api_mode == "chat" and getattr(tok, "chat_format", "plain") not in ("chatml", "internlm2"):
            raise ValueError("--api-mode chat needs a chat template with <|im_start|>/<|im_end|> tokens")

    # -- HTTP --------------------------------------------------------------------------------------
    def _call(self, method: str, url: str, json: Any = None, *, retries: int | None = None) -> dict:
        """One JSON call with retries on connection errors, timeouts, 429 and 5xx."""
        import httpx

        retries = self.max_retries if retries is None else retries
        attempt = 0
        while True:
            delay = None
            try:
                resp = self.client.request(method, url, json=json)
                if resp.status_code < 400:
                    return resp.json()
                err = HTTPStatusError(resp.status_code, _error_message(resp))
                if resp.status_code not in RETRY_STATUS:
                    raise err
                ra = resp.headers.get("retry-after")
                if ra:
                    try:
                        delay = min(60.0, max(0.0, float(ra)))
                    except ValueError:
                        delay = None
            except httpx.HTTPError as e:  # connection refused/reset, timeouts, protocol errors
                err = e
            except ValueError as e:  # a 2xx whose body is not JSON
                raise HTTPStatusError(200, f"invalid JSON in the answer: {e}") from None
            if attempt >= retries:
                if isinstance(err, HTTPStatusError):
                    raise err
                raise ConnectionError(f"{type(err).__name__}: {err} ({url}, after {attempt + 1} tries)") from None
            if delay is None:
                delay = min(60.0, self.backoff * (2 ** attempt)) * random.uniform(0.75, 1.25)
            attempt += 1
            with self._lock:
                self.retries += 1
            time.sleep(delay)

    def _verify_tokenizer(self) -> None:
        """Compares the tokenizer with the server's ``/tokenize`` (vLLM / longctx serve) when present."""
        try:
            r = self.client.post(self.root + "/tokenize", json={"model": self.served_model, "prompt": PROBE_TEXT,
                                                                 "add_special_tokens": False})
        except Exception:  # noqa: BLE001 -- optional check
            return
        if r.status_code != 200:
            return
        try:
            theirs = [int(t) for t in r.json()["tokens"]]
        except (ValueError, KeyError, TypeError):
            return
        mine = list(self.tokenizer.encode(PROBE_TEXT))
        if theirs != mine:
            raise ValueError(f"the tokenizer ({self.tokenizer_source}) does not match the server's: "
                             f"{PROBE_TEXT!r} -> {mine[:12]} here, {theirs[:12]} on the server")
        self.tokenize_checked = True

    def _pick_mode(self) -> str:
        if not self.approximate:
            probe = self._prompt_ids(self.tokenizer.encode("Hello"))
            try:
                self._call("POST", self.base_url + "/completions",
                           {"model": self.served_model, "prompt": probe, "max_tokens": 1, "temperature": 0},
                           retries=1)
                return "ids"
            except HTTPStatusError as e:
                if e.status == 404:
                    return "chat"
        try:
            self._call("POST", self.base_url + "/completions",
                       {"model": self.served_model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}, retries=1)
            return "text"
        except HTTPStatusError:
            return "chat"

    def _prompt_ids(self, ids: list[int]) -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "add_bos", False) and tok.bos_id is not None and (not ids or ids[0] != tok.bos_id):
            ids = [tok.bos_id] + list(ids)
        return list(ids)

    # -- the protocol ------------------------------------------------------------------------------
    def model_info(self) -> dict[str, Any]:
        tok = self.tokenizer
        tok_name = getattr(tok, "name", None)
        if self.approximate:
            tok_name = f"APPROXIMATE lengths ({tok_name})"
        return {
            "backend": self.name,
            "model": self.served_model,
            "model_name": self.served_model,
            "config_hash": None,
            "tokenizer": tok_name,
            "tokenizer_fingerprint": getattr(tok, "fingerprint", None),
            "rope_scaling": None,
            "dtype": None,
            "device": None,
            "max_context": self.max_context,
            # not part of the results' identity (sharded runs may use different servers):
            "base_url": self.base_url,
            "api_mode": self.api_mode,
            "tokenizer_source": self.tokenizer_source,
            "exact_lengths": not self.approximate and self.api_mode == "ids",
            "concurrency": self.concurrency,
        }

    def rope_base_for(self, total_len: int) -> float:
        return float("nan")  # the server decides; unknown here

    def _payload(self, ids: list[int], max_new_tokens: int) -> tuple[str, dict]:
        tok = self.tokenizer
        base = {"model": self.served_model, "max_tokens": int(max_new_tokens), "temperature": 0, "top_p": 1}
        if self.api_mode == "ids":
            return "/completions", dict(base, prompt=ids, stop_token_ids=list(tok.stop_ids))
        if self.api_mode == "text":
            body = ids[1:] if (getattr(tok, "add_bos", False) and ids and ids[0] == tok.bos_id) else ids
            return "/completions", dict(base, prompt=tok.decode(body, skip_special=False))
        messages, prefix = self._messages(ids)
        body = dict(base, messages=messages)
        if prefix:
            body["messages"] = messages + [{"role": "assistant", "content": prefix}]
            body.update(add_generation_prompt=False, continue_final_message=True)  # vLLM extensions
        return "/chat/completions", body

    def _messages(self, ids: list[int]) -> tuple[list[dict], str]:
        """The chat turns of a templated prompt (split at the control tokens) and the answer prefix."""
        tok = self.tokenizer
        start, end = tok.token_to_id("<|im_start|>"), tok.token_to_id("<|im_end|>")
        turns, cur = [], None
        for t in ids:
            if t == start:
                cur = []
            elif t == end and cur is not None:
                turns.append(cur)
                cur = None
            elif cur is not None:
                cur.append(t)
        messages = []
        for turn in turns:
            role, _, content = tok.decode(turn, skip_special=False).partition("\n")
            messages.append({"role": role.strip(), "content": content})
        prefix = ""
        if cur is not None:  # the open assistant turn: "assistant\n" + answer prefix
            _, _, prefix = tok.decode(cur, skip_special=False).partition("\n")
        if not messages:
            raise ValueError("cannot recover chat messages from this prompt (no chat template)")
        return messages, prefix

    def generate(self, ids: Sequence[int] | np.ndarray, max_new_tokens: int) -> GenResult:
        """One prompt (greedy), with retries; raises on a final failure."""
        ids = [int(t) for t in np.asarray(ids).tolist()]
        if len(ids) + int(max_new_tokens) > self.max_context:
            raise ContextLengthError.for_request(len(ids), max_new_tokens, self.max_context)
        path, body = self._payload(ids, max_new_tokens)
        t0 = time.perf_counter()
        out = self._call("POST", self.base_url + path, body)
        elapsed = time.perf_counter() - t0
        try:
            choice = out["choices"][0]
            text = choice["message"]["content"] if path == "/chat/completions" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise HTTPStatusError(200, f"unexpected answer shape: {str(out)[:200]}") from None
        text = text or ""
        usage = out.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or len(ids))
        if usage.get("prompt_tokens") is not None and prompt_tokens != len(ids):
            with self._lock:
                self.length_mismatches += 1
        details = usage.get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        finish = choice.get("finish_reason")
        res = GenResult(text=text, token_ids=list(self.tokenizer.encode(text)) if text else [],
                        prompt_tokens=prompt_tokens, prefilled_tokens=max(0, prompt_tokens - cached),
                        cached_tokens=cached, prefill_s=elapsed, decode_s=0.0, rope_base=None,
                        stop_reason="length" if finish == "length" else "stop")
        return res

    def schedule(self, requests: Sequence[GenRequest]) -> list[tuple[GenRequest, int]]:
        """Ascending length; within a length, descending needle position (prefix-cache friendly)."""

        def needle_pos(r: GenRequest) -> Optional[int]:
            needles = getattr(r.tag, "needles", None)
            try:
                return min(int(n["token_start"]) for n in needles) if needles else None
            except (TypeError, KeyError, ValueError):
                return None

        def key(r: GenRequest):
            pos = needle_pos(r)
            trial = getattr(r.tag, "trial", 0)
            if pos is not None:
                return (len(r.ids), 0, -pos, trial if isinstance(trial, int) else 0, b"")
            return (len(r.ids), 1, 0, 0, np.asarray(r.ids, dtype=np.int64).astype(">u4").tobytes())

        return [(r, len(r.ids)) for r in sorted(requests, key=key)]

    def run(self, requests: Sequence[GenRequest], *, on_result: OnResult,
            on_start: Optional[OnStart] = None) -> None:
        """``concurrency`` requests in flight, sent in :meth:`schedule` order; callbacks on this thread."""
        order = [r for r, _ in self.schedule(requests)]
        pending: dict[Future, tuple[GenRequest, float]] = {}

        def one(req: GenRequest) -> GenResult:
            return self.generate(req.ids, req.max_new_tokens)

        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="longctx-http") as ex:
            it = iter(order)
            exhausted = False
            while pending or not exhausted:
                while not exhausted and len(pending) < self.concurrency:
                    req = next(it, None)
                    if req is None:
                        exhausted = True
                        break
                    if on_start is not None:
                        on_start(req, len(req.ids))
                    pending[ex.submit(one, req)] = (req, time.perf_counter())
                if not pending:
                    break
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in done:
                    req, t0 = pending.pop(fut)
                    try:
                        res = fut.result()
                    except Exception as e:  # noqa: BLE001 -- an error cell, not a score of 0
                        res = GenResult(prompt_tokens=len(req.ids), stop_reason="error", error=error_text(e),
                                        prefill_s=time.perf_counter() - t0)
                    on_result(req, res)

    def notes(self) -> list[str]:
        """One-line warnings for the end of a run (approximate lengths, token-count mismatches, retries)."""
        out = []
        if self.approximate:
            out.append("prompt lengths are APPROXIMATE (counted with another tokenizer than the served model's); "
                       "pass --tokenizer PATH for exact lengths")
        if self.length_mismatches:
            out.append(f"{self.length_mismatches} request(s) were counted differently by the server "
                       f"(usage.prompt_tokens != the intended length; --api-mode {self.api_mode})")
        if self.retries:
            out.append(f"{self.retries} HTTP retries (429 / 5xx / connection errors)")
        return out

    def close(self) -> None:
        self.client.close()
