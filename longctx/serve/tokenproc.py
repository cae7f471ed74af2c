"""Long texts are tokenized in a child process, so the server's event loop never waits for them.

Why a process and not the threadpool: tokenizing a 10 MB text in-process holds the GIL in single C
calls of 0.1-0.6 s (building the ``tokenizers`` Encoding's id list, freeing it), which would stall
every other request, ``/health`` included. The child has its own GIL. It rebuilds the tokenizer
from the files ``GET /tokenizer`` serves (:func:`~longctx.tokenizer.save_tokenizer_json` ->
:func:`~longctx.tokenizer.core.load_tokenizer`, the path the ``openai`` backend relies on for
exact prompts) and refuses to start unless the fingerprint matches. Texts shorter than
:data:`BIG_TEXT_CHARS` stay in-process (the threadpool): their GIL bursts are a few milliseconds.

Torch-free on purpose: this module is all the spawned child imports.
"""
from __future__ import annotations

import multiprocessing
import tempfile
import threading
from array import array
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Sequence

from longctx.errors import TokenizerError
from longctx.tokenizer import Tokenizer, load_tokenizer, save_tokenizer_json

BIG_TEXT_CHARS = 1 << 18  # 256K characters (~64K tokens): longer texts go to the child process

_child_tok: Tokenizer | None = None  # the child's tokenizer (set by _child_init)


def _child_init(tok_dir: str, fingerprint: str) -> None:
    global _child_tok
    tok = load_tokenizer(tok_dir)
    if tok.fingerprint != fingerprint:
        raise TokenizerError("the tokenizer rebuilt in the tokenizer process does not match the served one")
    _child_tok = tok


def _child_encode(text: str) -> bytes:
    return array("q", _child_tok.encode(text)).tobytes()


def _child_chat_ids(messages: list[dict], add_generation_prompt: bool) -> bytes:
    return array("q", _child_tok.chat_ids(messages, add_generation_prompt=add_generation_prompt)).tobytes()


def _ids(raw: bytes) -> list[int]:
    a = array("q")
    a.frombytes(raw)
    return a.tolist()


class TokenizerProcess:
    """``encode`` / ``chat_ids`` of a :class:`~longctx.tokenizer.core.Tokenizer`, long texts in a child process.

    The child is started by :meth:`start` or on the first long text (``spawn``, one process,
    requests take turns) and stopped by :meth:`close`. Results are the tokenizer's own, id for id. If the child cannot
    start, long texts fall back to in-process tokenization.

    Args:
        tok: the served model's tokenizer.
    """

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self._pool: ProcessPoolExecutor | None = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self._lock = threading.Lock()
        self._broken = False

    def start(self) -> None:
        """Starts the child now (the server does it in the background at startup, so the first long
        prompt does not pay for the spawn); idempotent."""
        self._run(_child_encode, "warm-up")

    def _run(self, fn, *args: Any) -> list[int] | None:
        """``fn(*args)`` in the child, or None when the child cannot run it."""
        with self._lock:
            if self._broken:
                return None
            if self._pool is None:
                self._dir = tempfile.TemporaryDirectory(prefix="longctx-tokproc-")
                save_tokenizer_json(self.tok, self._dir.name)
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_child_init,
                                                 initargs=(self._dir.name, self.tok.fingerprint))
            pool = self._pool
        try:
            return _ids(pool.submit(fn, *args).result())
        except (BrokenProcessPool, OSError):
            self._broken = True
            return None

    def encode(self, text: str) -> list[int]:
        """``tok.encode(text)``."""
        if len(text) >= BIG_TEXT_CHARS:
            ids = self._run(_child_encode, text)
            if ids is not None:
                return ids
        return self.tok.encode(text)

    def chat_ids(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> list[int]:
        """``tok.chat_ids(messages, add_generation_prompt=...)``."""
        if sum(len(str(m.get("content") or "")) for m in messages) >= BIG_TEXT_CHARS:
            ids = self._run(_child_chat_ids, list(messages), add_generation_prompt)
            if ids is not None:
                return ids
        return self.tok.chat_ids(messages, add_generation_prompt=add_generation_prompt)

    def close(self) -> None:
        """Stops the child (running work is abandoned) and removes its tokenizer files."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            if self._dir is not None:
                self._dir.cleanup()
                self._dir = None
