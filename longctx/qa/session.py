"""Long-document question answering: documents, prompts, one-shot answers and document sessions.

The prompt follows the model's chat template with the document first and the question after it,
in one user turn::

    <system turn>  <|im_start|>user\\n  <document block>  \\n\\n<question><|im_end|>\\n<|im_start|>assistant\\n
    \\___________________ document prefix ___________________/ \\________ question suffix _________/

The ids are spliced, never decoded and re-encoded: the document block is encoded once with
:meth:`Tokenizer.encode` (plain text: a document that spells ``<|im_end|>`` stays text) and handed
to :meth:`Tokenizer.chat_segments` as pre-tokenized content, followed by the string
``"\\n\\n" + question``. Every question therefore shares the same document prefix ids, which a
:class:`DocumentSession` prefills once and keeps in its KV cache; each :meth:`DocumentSession.ask`
truncates the cache back to that prefix and prefills only the question suffix.

One RoPE base serves a session: with dynamic NTK it is fixed from
``len(document prefix) + question_budget + max_new_tokens`` (:meth:`LongCtxModel.rope_base_for`),
so cached keys and new tokens always agree. The one-shot :func:`ask` runs the same two prefill
stages with the same base when given the same budgets, and so returns the same greedy tokens.

With ``history=True`` a session is a conversation about the document; turn k > 1 continues the
chat template (the document stays in the first user turn)::

    ... \\n\\n<q1><|im_end|>\\n<|im_start|>assistant\\n<a1 ids><|im_end|>\\n<|im_start|>user\\n<q2><|im_end|>\\n<|im_start|>assistant\\n

where ``<a1 ids>`` are the token ids the model generated (not a re-encoding of their text). The
whole conversation after the document must fit in ``question_budget`` tokens.
"""
from __future__ import annotations

import time
import warnings as _warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from longctx.backends.base import common_prefix_len
from longctx.engine.results import Generation, GenerationStats
from longctx.errors import ContextLengthError, DocumentTruncatedWarning, QAError
from longctx.qa.documents import document_block, load_documents
from longctx.qa.prompt import (OVERFLOW_POLICIES, check_budget, check_question, conversation_ids, fit_document,
                               split_prompt)

if TYPE_CHECKING:  # annotations only: the session drives whatever model it is given
    from longctx.engine.runtime import LongCtxModel

__all__ = ["Answer", "AnswerStream", "DocumentSession", "ask", "open_document"]

DEFAULT_QUESTION_BUDGET = 512
DEFAULT_MAX_NEW_TOKENS = 256

ProgressFn = Callable[[int, int], None]


@dataclass
class Answer(Generation):
    """One answer and what it cost (the fields of :class:`~longctx.engine.results.Generation`).

    ``prompt_tokens`` counts the whole prompt (document prefix + conversation + question),
    ``cached_tokens`` of it came from the session's KV cache, ``stop_reason`` may also be
    ``"interrupted"`` (a stream closed early).

    Attributes:
        document_tokens: tokens of the document block in the prompt (after any truncation).
        question_tokens: tokens of the question suffix (question, end of turn, assistant header).
        warnings: human messages, e.g. the document truncation.
        truncated: the document was trimmed to fit.
    """

    document_tokens: int = 0
    question_tokens: int = 0
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False

    def footer(self) -> str:
        """One human line: tokens, prefill seconds and speed, time to first token, decode speed."""
        cached = f" ({self.cached_tokens} cached)" if self.cached_tokens else ""
        return (f"{self.prompt_tokens} prompt tokens{cached} · prefill {self.prefilled_tokens} in "
                f"{self.prefill_s:.2f}s ({self.prefill_tokens_per_s:,.0f} tok/s) · first token {self.ttft_s:.2f}s · "
                f"{self.new_tokens} new tokens in {self.decode_s:.2f}s ({self.decode_tokens_per_s:.1f} tok/s) · "
                f"stop: {self.stop_reason}" + (" · document truncated" if self.truncated else ""))


class AnswerStream:
    """Iterator of answer text pieces; ``.answer`` holds the :class:`Answer` once it is exhausted."""

    def __init__(self, gen: Iterator[str], answer: Answer) -> None:
        self._gen = gen
        self._partial = answer
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        for piece in self._gen:
            yield piece
        self.answer = self._partial

    @property
    def partial(self) -> Answer:
        """The answer so far (token ids and counts fill as the stream runs)."""
        return self._partial

    def close(self) -> None:
        """Stops generating (an unfinished answer is not added to a session's history)."""
        self._gen.close()

    def text(self) -> str:
        """Consumes the stream and returns the whole text."""
        return "".join(self)



class DocumentSession:
    """A document prefilled once; :meth:`ask` answers questions from the cached prefix.

    Use as a context manager or call :meth:`close` to free the KV cache. The constructor takes
    the arguments of :func:`open_document`, plus ``defer_prefill=True`` to build the prompt
    without computing it yet (:meth:`prefill` or the first :meth:`ask` does).

    Attributes:
        model: the engine.
        documents: the loaded :class:`Document` list.
        document_tokens: tokens of the document block in the prompt (after truncation).
        original_document_tokens: tokens of the document block before truncation.
        prefix_tokens: tokens of the document prefix (system turn, user header, document).
        template_tokens: prefix tokens that are not document (the chat template around it).
        question_budget, max_new_tokens: the per-question budgets the session reserved.
        rope_base: the one RoPE base of the session.
        capacity: KV cache positions (``prefix_tokens + question_budget + max_new_tokens``).
        prefill_s: seconds the document prefill took.
        warnings, truncated: the overflow policy's record.
        history: whether questions continue a conversation.
        turns: answered ``(question, answer_text)`` pairs kept in the conversation (history only).
    """

    def __init__(self, model: "LongCtxModel", document: Any, *, system: Any = ...,
                 question_budget: int = DEFAULT_QUESTION_BUDGET, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 history: bool = False, overflow: str = "error", progress: ProgressFn | None = None,
                 defer_prefill: bool = False) -> None:
        if model.tokenizer is None:
            raise QAError("this model has no tokenizer; document QA needs one")
        if overflow not in OVERFLOW_POLICIES:
            raise QAError(f"unknown overflow policy {overflow!r} (choose from {', '.join(OVERFLOW_POLICIES)})")
        self.model = model
        self.system = system
        self.question_budget = check_budget("question_budget", question_budget)
        self.max_new_tokens = check_budget("max_new_tokens", max_new_tokens)
        self.history = bool(history)
        self.overflow = overflow
        self.documents = load_documents(document)
        tok = model.tokenizer
        doc_ids = tok.encode(document_block(self.documents))
        self.original_document_tokens = len(doc_ids)
        probe, _ = split_prompt(tok, doc_ids[:1] or [0], "?", system)
        self.template_tokens = len(probe) - min(1, len(doc_ids))
        reserve = self.question_budget + self.max_new_tokens
        usable = model.max_context - reserve - self.template_tokens
        detail = (f"allowed context {model.max_context} - question budget {self.question_budget} - "
                  f"answer budget {self.max_new_tokens} - chat template {self.template_tokens}")
        if usable < 1:
            raise ContextLengthError(f"no room for a document: {detail} = {usable} tokens")
        doc_ids, self.warnings = fit_document(tok, doc_ids, usable, overflow, detail)
        for w in self.warnings:
            _warnings.warn(w, DocumentTruncatedWarning, stacklevel=3)
        self.truncated = bool(self.warnings)
        self.doc_ids = doc_ids
        self.document_tokens = len(doc_ids)
        self.prefix_ids, _ = split_prompt(tok, doc_ids, "?", system)
        self.prefix_tokens = len(self.prefix_ids)
        self.capacity = self.prefix_tokens + reserve
        self.rope_base = model.rope_base_for(self.capacity)
        self.turns: list[tuple[str, str]] = []
        self._turn_ids: list[tuple[str, list[int]]] = []
        self._cache = None
        self._cached_ids: list[int] = []  # ids behind the cache (may be longer than cache.length)
        self._active: AnswerStream | None = None
        self._committed = 0  # history: cache positions holding the answered conversation
        self.prefill_s = 0.0
        self.closed = False
        if not defer_prefill:
            self.prefill(progress)

    # -- lifecycle -----------------------------------------------------------------------------
    def prefill(self, progress: ProgressFn | None = None, *, _total: int | None = None) -> float:
        """Prefills the document prefix (done by the constructor); returns the seconds it took.

        ``progress(done, total)`` is called once with 0, then after each chunk (``total`` is the
        prefix length, or ``_total`` when the caller reports over a longer prompt).
        """
        self._check_open()
        if self._cache is not None and self._cache.length >= self.prefix_tokens:
            return self.prefill_s
        m = self.model
        self._cache = m.new_cache(self.capacity)
        cb = progress
        if progress is not None and _total is not None:
            def cb(done: int, _n: int) -> None:
                progress(done, _total)
        if cb is not None:
            cb(0, self.prefix_tokens)
        t0 = time.perf_counter()
        m.prefill(self.prefix_ids, self._cache, self.rope_base, progress=cb)
        m.synchronize()
        self.prefill_s = time.perf_counter() - t0
        self._cached_ids = list(self.prefix_ids)
        self._committed = self.prefix_tokens
        return self.prefill_s

    def close(self) -> None:
        """Frees the KV cache; later calls raise :class:`QAError`."""
        self._cache = None
        self._cached_ids = []
        self.closed = True

    def __enter__(self) -> "DocumentSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise QAError("this document session is closed; open the document again")

    def reset(self) -> None:
        """Forgets the conversation (history mode); the document stays cached."""
        self._check_open()
        self.turns.clear()
        self._turn_ids.clear()
        self._committed = self.prefix_tokens

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.prefix_tokens} prefix tokens cached"
        return (f"DocumentSession({len(self.documents)} document(s), {self.document_tokens} tokens, "
                f"rope_base={self.rope_base:g}, history={self.history}, {state})")

    # -- questions -----------------------------------------------------------------------------
    def question_suffix(self, question: str) -> list[int]:
        """The ids a question adds after the document prefix (in a session without history)."""
        return split_prompt(self.model.tokenizer, self.doc_ids, check_question(question), self.system)[1]

    def ask(self, question: str, *, max_new_tokens: int | None = None, stream: bool = False) -> Answer | AnswerStream:
        """Answers a question from the cached document (greedy).

        Args:
            question: the question text.
            max_new_tokens: at most the session's ``max_new_tokens`` (the default).
            stream: return an :class:`AnswerStream` of text pieces instead of an :class:`Answer`.

        Raises:
            QAError: a closed session, an empty question, a question (or conversation) longer
                than ``question_budget`` tokens, ``max_new_tokens`` above the session's.
        """
        s = self._start(question, max_new_tokens, t0=time.perf_counter())
        return s if stream else _finish(s)

    def _start(self, question: str, max_new_tokens: int | None, *, t0: float, base_answer: Answer | None = None,
               progress: ProgressFn | None = None) -> AnswerStream:
        self._check_open()
        question = check_question(question)
        mnt = self.max_new_tokens if max_new_tokens is None else check_budget("max_new_tokens", max_new_tokens)
        if mnt > self.max_new_tokens:
            raise QAError(f"max_new_tokens {mnt} exceeds the {self.max_new_tokens} this session reserved "
                          "(open the document with a larger max_new_tokens)")
        tok = self.model.tokenizer
        turns = self._turn_ids if self.history else []
        full = conversation_ids(tok, self.doc_ids, turns, question, self.system)
        if full[:self.prefix_tokens] != self.prefix_ids:
            raise QAError("internal error: the conversation does not start with the document prefix")
        after = len(full) - self.prefix_tokens
        if after > self.question_budget:
            what = "question" if not turns else f"conversation ({len(turns)} earlier turns + question)"
            raise QAError(f"{what} needs {after} tokens after the document but the session reserved "
                          f"question_budget={self.question_budget}; open the document with a larger question_budget"
                          + ("" if not turns else " or call reset()"))
        if self._active is not None:
            self._active.close()  # an unfinished earlier stream is abandoned
            self._active = None
        if self._cache is None:
            self.prefill()
        cache = self._cache
        # Reuse: the document prefix always; in a conversation, everything still valid.
        keep = self.prefix_tokens
        if self.history and self._committed > keep:  # + the answered turns still in the cache
            lcp = common_prefix_len(self._cached_ids[:min(cache.length, self._committed)], full)
            keep = max(keep, min(lcp, len(full) - 1))
        cache.truncate(keep)
        self._cached_ids = list(full)  # positions >= cache.length are refreshed as tokens go in
        suffix = full[keep:]
        ans = base_answer or Answer()
        ans.prompt_tokens = len(full)
        ans.document_tokens = self.document_tokens
        ans.cached_tokens = keep if base_answer is None else 0
        ans.prefilled_tokens = len(suffix) + (0 if base_answer is None else keep)
        ans.question_tokens = (after if not turns
                               else len(split_prompt(tok, self.doc_ids, question, self.system)[1]))
        ans.rope_base = self.rope_base
        ans.warnings = list(self.warnings)
        ans.truncated = self.truncated
        gen = self._generate(question, suffix, mnt, ans, t0, progress)
        self._active = AnswerStream(gen, ans)
        return self._active

    def _generate(self, question: str, suffix: list[int], mnt: int, ans: Answer, t0: float,
                  progress: ProgressFn | None) -> Iterator[str]:
        m = self.model
        tok = m.tokenizer
        stats = GenerationStats()
        cache = self._cache
        prior_prefill = ans.prefill_s
        started = time.perf_counter() - t0
        ids_iter = m.generate_ids(suffix, max_new_tokens=mnt, rope_base=self.rope_base, cache=cache, stats=stats,
                                  progress=progress)
        decoder = tok.stream_decoder()
        out: list[int] = ans.token_ids
        completed = False
        try:
            for t in ids_iter:
                if self._cache is not cache:
                    raise QAError("this document session was closed while answering")
                if not out:
                    ans.prefill_s = prior_prefill + stats.prefill_s
                    ans.ttft_s = started + stats.ttft_s
                out.append(t)
                self._cached_ids.append(t)
                ans.new_tokens = len(out)
                piece = decoder.push(t)
                if piece:
                    yield piece
            tail = decoder.flush()
            completed = True
            if tail:
                yield tail
        finally:
            ids_iter.close()
            ans.decode_s = stats.decode_s
            if not out:
                ans.prefill_s = prior_prefill + stats.prefill_s
                ans.ttft_s = started + stats.ttft_s
            ans.stop_reason = stats.stop_reason if completed else "interrupted"
            ans.text = tok.decode(out)
        if self.history:
            self._turn_ids.append((question, list(out)))
            self.turns.append((question, ans.text))
            self._committed = cache.length


def _finish(s: AnswerStream) -> Answer:
    for _ in s:
        pass
    assert s.answer is not None
    return s.answer



# ----------------------------------------------------------------------------------------------
# Entry points (bound as Model.open and Model.ask by longctx.qa.model)
# ----------------------------------------------------------------------------------------------
def open_document(model: "LongCtxModel", document: Any, *, system: Any = ...,
                  question_budget: int = DEFAULT_QUESTION_BUDGET, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                  history: bool = False, overflow: str = "error", progress: ProgressFn | None = None) -> DocumentSession:
    """Loads and prefills a document once; returns a :class:`DocumentSession`.

    Args:
        model: the engine.
        document: text, a path (``.txt``, ``.md``, ``.pdf``), or a list of them.
        system: system prompt; left out = the model's default; None = no system turn.
        question_budget: tokens reserved for each question (with its chat-template tokens; in
            history mode, for the whole conversation after the document).
        max_new_tokens: tokens reserved for each answer.
        history: keep each question and answer in the conversation.
        overflow: ``"error"`` | ``"truncate_middle"`` | ``"truncate_end"`` for a document that
            does not fit ``model.max_context``.
        progress: ``progress(done_tokens, total_tokens)``, once with 0 before the document
            prefill starts, then after each prefill chunk.

    Raises:
        FileNotFoundError, DocumentError, ContextLengthError, QAError (all but the first are ValueError).
    """
    return DocumentSession(model, document, system=system, question_budget=question_budget,
                           max_new_tokens=max_new_tokens, history=history, overflow=overflow, progress=progress)


def ask(model: "LongCtxModel", document: Any, question: str, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        system: Any = ..., stream: bool = False, overflow: str = "error", question_budget: int | None = None,
        progress: ProgressFn | None = None) -> Answer | AnswerStream:
    """Answers one question about a document (greedy).

    Runs the same prompt, RoPE base and prefill stages (document prefix, then question suffix) as
    a :class:`DocumentSession` opened with the same ``question_budget`` and ``max_new_tokens``,
    so the answer tokens are the same.

    Args:
        model: the engine.
        document: text, a path (``.txt``, ``.md``, ``.pdf``), or a list of them.
        question: the question.
        max_new_tokens: answer tokens at most.
        system: system prompt; left out = the model's default; None = no system turn.
        stream: return an :class:`AnswerStream` of text pieces (``.answer`` at the end).
        overflow: ``"error"`` | ``"truncate_middle"`` | ``"truncate_end"``.
        question_budget: tokens reserved for the question; None = exactly the question's.
        progress: ``progress(done_tokens, total_tokens)`` over the whole prompt: once with 0
            before the prefill starts, then after each prefill chunk.

    Returns:
        An :class:`Answer`, or an :class:`AnswerStream` with ``stream=True``.
    """
    t0 = time.perf_counter()
    question = check_question(question)
    max_new_tokens = check_budget("max_new_tokens", max_new_tokens)
    if model.tokenizer is None:
        raise QAError("this model has no tokenizer; document QA needs one")
    if question_budget is None:  # exactly the question's tokens (they do not depend on the document)
        question_budget = len(split_prompt(model.tokenizer, [0], question, system)[1])
    sess = DocumentSession(model, document, system=system, question_budget=question_budget,
                           max_new_tokens=max_new_tokens, overflow=overflow, defer_prefill=True)
    total = sess.prefix_tokens + len(sess.question_suffix(question))
    sess.prefill(progress, _total=total)
    base = Answer(prefill_s=sess.prefill_s)
    wrapped_progress = None
    if progress is not None:
        def wrapped_progress(done: int, _n: int) -> None:
            progress(sess.prefix_tokens + done, total)
    s = sess._start(question, max_new_tokens, t0=t0, base_answer=base, progress=wrapped_progress)
    inner = s._gen

    def gen() -> Iterator[str]:
        try:
            yield from inner
        finally:
            sess.close()

    s._gen = gen()
    return s if stream else _finish(s)
