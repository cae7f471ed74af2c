"""Question-answering prompts as token ids, spliced (never decoded and re-encoded), and the
overflow policies that fit a document into the allowed context. Torch-free.

The document block is encoded once with :meth:`Tokenizer.encode` (plain text: a document that
spells ``<|im_end|>`` stays text) and handed to :meth:`Tokenizer.chat_segments` as pre-tokenized
content, followed by the string ``"\\n\\n" + question`` (:func:`split_prompt`).
"""
from __future__ import annotations

from typing import Any

from longctx.errors import ContextLengthError, QAError

__all__ = ["OVERFLOW_POLICIES", "check_budget", "check_question", "conversation_ids", "fit_document", "split_prompt"]

OVERFLOW_POLICIES = ("error", "truncate_middle", "truncate_end")


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


def conversation_ids(tok, doc_ids: list[int], turns: list[tuple[str, list[int]]], question: str,
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



def check_budget(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise QAError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_question(question: Any) -> str:
    if not isinstance(question, str):
        raise QAError(f"the question must be a str, not {type(question).__name__}")
    if not question.strip():
        raise QAError("the question is empty")
    return question.strip()


def _omitted_marker(n: int) -> str:
    return f"\n\n[... {n} tokens omitted ...]\n\n"


def fit_document(tok, doc_ids: list[int], usable: int, overflow: str, detail: str) -> tuple[list[int], list[str]]:
    """Applies the overflow policy; returns the (possibly trimmed) ids and warnings."""
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

