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

from longctx.errors import QAError, DocumentError, DocumentTruncatedWarning

import os
import time
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, Union

if TYPE_CHECKING:  # the engine (torch) is imported lazily
    from longctx.engine.runtime import LongCtxModel

__all__ = [
    "Answer",
    "AnswerStream",
    "Document",
    "DocumentError",
    "DocumentSession",
    "DocumentTruncatedWarning",
    "OVERFLOW_POLICIES",
    "QAError",
    "TEXT_SUFFIXES",
    "ask",
    "document_block",
    "load_documents",
    "open_document",
]

OVERFLOW_POLICIES = ("error", "truncate_middle", "truncate_end")
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text", ".rst")
PDF_SUFFIX = ".pdf"
DEFAULT_QUESTION_BUDGET = 512
DEFAULT_MAX_NEW_TOKENS = 256
_PATH_MAX = 4096

ProgressFn = Callable[[int, int], None]
DocumentInput = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


# ----------------------------------------------------------------------------------------------
# Documents
# ----------------------------------------------------------------------------------------------
@dataclass
class Document:
    """One loaded document.

    Attributes:
        text: the document text (newlines normalized to ``\\n``, surrounding whitespace stripped).
        title: file name for files, None for text given directly.
        source: the path read, or None.
    """

    text: str
    title: str | None = None
    source: str | None = None


def _looks_like_path(s: str) -> bool:
    return 0 < len(s) < _PATH_MAX and "\n" not in s and "\r" not in s


def _read_text_file(p: Path) -> str:
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DocumentError(f"{p}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                            "convert it to UTF-8 first") from None
    return text


def _read_pdf(p: Path) -> str:
    try:
        import pypdf
    except ImportError:
        raise DocumentError(f"{p}: reading PDF files needs the optional package pypdf "
                            "(pip install pypdf, or pip install 'longctx[pdf]')") from None
    try:
        reader = pypdf.PdfReader(str(p))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception:  # noqa: BLE001
                raise DocumentError(f"{p}: the PDF is encrypted") from None
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except DocumentError:
        raise
    except Exception as e:  # noqa: BLE001 - pypdf raises many types for damaged files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DocumentError(f"{p}: cannot read PDF: {msg}") from None
    text = "\n\n".join(t for t in pages if t)
    if not text.strip():
        raise DocumentError(f"{p}: the PDF has no extractable text (a scanned PDF needs OCR first)")
    return text


def read_document_file(path: str | os.PathLike) -> Document:
    """Reads a ``.txt`` / ``.md`` (UTF-8) or ``.pdf`` (via pypdf) file.

    Files without a suffix are read as UTF-8 text; other suffixes are refused.

    Raises:
        FileNotFoundError: the file does not exist.
        DocumentError: a directory, an unsupported type, undecodable or empty text, a PDF
            without text or without pypdf installed.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"document not found: {p}")
    if p.is_dir():
        raise DocumentError(f"{p} is a directory, not a document file")
    suffix = p.suffix.lower()
    if suffix == PDF_SUFFIX:
        text = _read_pdf(p)
    elif suffix in TEXT_SUFFIXES or suffix == "":
        text = _read_text_file(p)
    else:
        raise DocumentError(f"{p}: unsupported document type {p.suffix!r} "
                            f"(supported: {', '.join(TEXT_SUFFIXES[:2])}, .pdf, or text without a suffix)")
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise DocumentError(f"{p}: the document is empty")
    return Document(text=text, title=p.name, source=str(p))


def _load_one(item: Any) -> Document:
    if isinstance(item, Document):
        if not item.text.strip():
            raise DocumentError("the document is empty")
        return item
    if isinstance(item, os.PathLike):
        return read_document_file(item)
    if isinstance(item, bytes):
        raise DocumentError("pass document text as str (decode the bytes first) or a file path")
    if not isinstance(item, str):
        raise DocumentError(f"a document must be text, a path or a list of them, not {type(item).__name__}")
    if _looks_like_path(item):
        try:
            is_file = os.path.isfile(item)
        except (OSError, ValueError):
            is_file = False
        if is_file or os.path.isdir(item):
            return read_document_file(item)
        # A one-word string ending in a document suffix is a mistyped path, not a document.
        suffix = os.path.splitext(item)[1].lower()
        if not any(c.isspace() for c in item) and suffix in (*TEXT_SUFFIXES, PDF_SUFFIX):
            raise FileNotFoundError(f"document not found: {item}")
    text = item.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise DocumentError("the document is empty")
    return Document(text=text)


def load_documents(document: Any) -> list[Document]:
    """Loads a document: text, a path (``pathlib.Path`` or an existing path as str), or a list.

    A str names a file when such a file exists; otherwise it is the document text.

    Raises:
        FileNotFoundError, DocumentError: see :func:`read_document_file`; an empty list.
    """
    if isinstance(document, (list, tuple)):
        if not document:
            raise DocumentError("the list of documents is empty")
        docs = []
        for i, item in enumerate(document, 1):
            if isinstance(item, (list, tuple)):
                raise DocumentError(f"document {i} is a nested list; pass a flat list of texts or paths")
            docs.append(_load_one(item))
        return docs
    return [_load_one(document)]


def document_block(docs: Sequence[Document]) -> str:
    """The document text of the user turn.

    One document is its text as is. Several are each introduced by a title line
    ``### Document i: <file name>`` (``### Document i`` for text given directly) and separated
    by blank lines.
    """
    if len(docs) == 1:
        return docs[0].text
    parts = []
    for i, d in enumerate(docs, 1):
        head = f"### Document {i}: {d.title}" if d.title else f"### Document {i}"
        parts.append(f"{head}\n\n{d.text}")
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------------------------
# Prompt building (token ids, spliced)
# ----------------------------------------------------------------------------------------------
def _segments(tok, messages: list[dict], system: Any, add_generation_prompt: bool = True) -> list:
    if system is ...:
        return tok.chat_segments(messages, add_generation_prompt=add_generation_prompt)
    return tok.chat_segments(messages, system, add_generation_prompt)


def _question_text(question: str) -> str:
    return "\n\n" + question


def split_prompt(tok, doc_ids: list[int], question: str, system: Any = ...) -> tuple[list[int], list[int]]:
    """Prompt ids for ``doc_ids`` + question, split into (document prefix, question suffix).

    The prefix ends with the last document token; the suffix is ``"\\n\\n" + question``, the end
    of the user turn and the assistant header. ``prefix + suffix`` equals
    ``tok.encode_segments(tok.chat_segments([{"role": "user", "content": [doc_ids, "\\n\\n" + question]}]))``.
    """
    segs = _segments(tok, [{"role": "user", "content": [list(doc_ids), _question_text(question)]}], system)
    n = len(doc_ids)
    for k in range(n, len(segs)):
        if isinstance(segs[k], str) and segs[k - n:k] == list(doc_ids):
            return tok.encode_segments(segs[:k]), tok.encode_segments(segs[k:])
    raise QAError("internal error: the chat template did not keep the document ids together")


def _conversation_ids(tok, doc_ids: list[int], turns: list[tuple[str, list[int]]], question: str,
                      system: Any) -> list[int]:
    """Ids of the whole conversation: the document turn, answered turns, the new question."""
    if not turns:
        pre, suf = split_prompt(tok, doc_ids, question, system)
        return pre + suf
    msgs: list[dict] = []
    for i, (q, a_ids) in enumerate(turns):
        content: Any = [list(doc_ids), _question_text(q)] if i == 0 else q
        msgs.append({"role": "user", "content": content})
        msgs.append({"role": "assistant", "content": [list(a_ids)] if a_ids else ""})
    msgs.append({"role": "user", "content": question})
    return tok.encode_segments(_segments(tok, msgs, system))


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class Answer:
    """One answer and what it cost.

    Attributes:
        text: the answer text.
        token_ids: generated ids (stop id excluded).
        prompt_tokens: tokens of the whole prompt (document prefix + conversation + question).
        document_tokens: tokens of the document block in the prompt (after any truncation).
        cached_tokens: prompt tokens reused from the session's KV cache.
        prefilled_tokens: prompt tokens this call computed (``prompt_tokens - cached_tokens``).
        question_tokens: tokens of the question suffix (question, end of turn, assistant header).
        new_tokens: generated tokens.
        prefill_s: seconds of prefill done by this call.
        decode_s: seconds generating after the first token.
        ttft_s: seconds from the call to the first generated token.
        rope_base: the RoPE base used.
        stop_reason: ``"stop"`` (end of turn) or ``"length"`` (``max_new_tokens``).
        warnings: human messages, e.g. the document truncation.
        truncated: the document was trimmed to fit.
    """

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    document_tokens: int = 0
    cached_tokens: int = 0
    prefilled_tokens: int = 0
    question_tokens: int = 0
    new_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    ttft_s: float = 0.0
    rope_base: float = 0.0
    stop_reason: str = ""
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prefilled_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        n = self.new_tokens - 1
        return n / self.decode_s if n > 0 and self.decode_s > 0 else 0.0

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


# ----------------------------------------------------------------------------------------------
# Sessions
# ----------------------------------------------------------------------------------------------
def _check_budget(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise QAError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_question(question: Any) -> str:
    if not isinstance(question, str):
        raise QAError(f"the question must be a str, not {type(question).__name__}")
    if not question.strip():
        raise QAError("the question is empty")
    return question.strip()


def _omitted_marker(n: int) -> str:
    return f"\n\n[... {n} tokens omitted ...]\n\n"


def _fit_document(tok, doc_ids: list[int], usable: int, overflow: str, detail: str) -> tuple[list[int], list[str]]:
    """Applies the overflow policy; returns the (possibly trimmed) ids and warnings."""
    from longctx.engine.runtime import ContextLengthError

    n = len(doc_ids)
    if n <= usable:
        return doc_ids, []
    if overflow == "error":
        raise ContextLengthError(
            f"document is {n} tokens but at most {usable} fit ({detail}); allow a larger context, reserve "
            "smaller budgets, or choose the truncate_middle / truncate_end overflow policy")
    if overflow == "truncate_end":
        kept = doc_ids[:usable]
        msg = f"document truncated: kept the first {usable} of {n} tokens (dropped the last {n - usable})"
        return kept, [msg]
    # truncate_middle: head + marker + tail, the marker naming the omitted count
    omitted = n - usable
    for _ in range(4):
        marker = tok.encode(_omitted_marker(omitted))
        keep = usable - len(marker)
        if keep < 2:
            raise ContextLengthError(f"document is {n} tokens but only {usable} fit ({detail}): too few to truncate")
        new_omitted = n - keep
        if new_omitted == omitted:
            break
        omitted = new_omitted
    marker = tok.encode(_omitted_marker(omitted))
    keep = usable - len(marker)
    head = (keep + 1) // 2
    tail = keep - head
    kept = doc_ids[:head] + marker + (doc_ids[n - tail:] if tail else [])
    msg = (f"document truncated: kept the first {head} and last {tail} of {n} tokens "
           f"(omitted {n - keep} in the middle)")
    return kept, [msg]


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
        self.question_budget = _check_budget("question_budget", question_budget)
        self.max_new_tokens = _check_budget("max_new_tokens", max_new_tokens)
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
            from longctx.engine.runtime import ContextLengthError

            raise ContextLengthError(f"no room for a document: {detail} = {usable} tokens")
        doc_ids, self.warnings = _fit_document(tok, doc_ids, usable, overflow, detail)
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
        _sync(m)
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
        return split_prompt(self.model.tokenizer, self.doc_ids, _check_question(question), self.system)[1]

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
        question = _check_question(question)
        mnt = self.max_new_tokens if max_new_tokens is None else _check_budget("max_new_tokens", max_new_tokens)
        if mnt > self.max_new_tokens:
            raise QAError(f"max_new_tokens {mnt} exceeds the {self.max_new_tokens} this session reserved "
                          "(open the document with a larger max_new_tokens)")
        tok = self.model.tokenizer
        turns = self._turn_ids if self.history else []
        full = _conversation_ids(tok, self.doc_ids, turns, question, self.system)
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
            lcp = _common_prefix(self._cached_ids[:min(cache.length, self._committed)], full)
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
        from longctx.engine.generation import GenerationStats

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


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _sync(model) -> None:
    if model.device.type == "cuda":
        import torch

        torch.cuda.synchronize(model.device)


def _finish(s: AnswerStream) -> Answer:
    for _ in s:
        pass
    assert s.answer is not None
    return s.answer


# ----------------------------------------------------------------------------------------------
# Entry points (also attached to LongCtxModel as .open and .ask)
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
    question = _check_question(question)
    max_new_tokens = _check_budget("max_new_tokens", max_new_tokens)
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
