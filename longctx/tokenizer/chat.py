"""Chat formats: a conversation as text pieces and control-token ids, apart from any tokenizer.

Formats (each pinned token for token against the checkpoint's own Jinja chat template by
``tests/test_chat_templates.py``):

* ``internlm2``: ``<s><|im_start|>system\\n{meta}<|im_end|>\\n<|im_start|>user\\n{q}<|im_end|>\\n``
  ``<|im_start|>assistant\\n{a}<|im_end|>\\n ... <|im_start|>assistant\\n``.
* ``chatml``: the same turns without BOS (unless the tokenizer adds one); SmolLM2's default system
  prompt comes from its chat template (:func:`default_system_from_template`).
* ``plain``: fallback for vocabularies without chat control tokens: BOS (if ``add_bos``), then
  ``"System: {s}\\n"`` (when a system prompt is given), ``"User: {q}\\n"``,
  ``"Assistant: {a}\\n"`` lines, ending with ``"Assistant:"`` as the generation prompt; all text.

Control tokens are ids in the segment list, never text, so message content cannot inject them.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Union

__all__ = [
    "CHAT_FORMATS", "DEFAULT", "IM_END", "IM_START", "INTERNLM2_SYSTEM_PROMPT", "Segment", "chat_segments",
    "default_system_from_template", "infer_chat_format",
]

CHAT_FORMATS = ("internlm2", "chatml", "plain")
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

INTERNLM2_SYSTEM_PROMPT = "\n".join([
    "You are an AI assistant whose name is InternLM (书生·浦语).",
    "- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai AI "
    "Laboratory (上海人工智能实验室). It is designed to be helpful, honest, and harmless.",
    "- InternLM (书生·浦语) can understand and communicate fluently in the language chosen by the "
    "user such as English and 中文.",
])

Segment = Union[str, int]


class _DefaultSystem:
    """Sentinel type for "use the tokenizer's default system prompt"."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"

    def __reduce__(self):
        return (_DefaultSystem, ())


DEFAULT = _DefaultSystem()
"""Sentinel for ``system=``: the tokenizer's ``default_system`` (skipped when the first message
is already a system message)."""


def infer_chat_format(model_type: str | None, has_im: bool) -> str:
    """``internlm2`` for InternLM2 models, else ``chatml`` when the vocabulary has
    ``<|im_start|>`` / ``<|im_end|>``, else ``plain``."""
    if model_type and model_type.lower().startswith("internlm2"):
        return "internlm2"
    return "chatml" if has_im else "plain"


_SYSTEM_IN_TEMPLATE = re.compile(
    r"<\|im_start\|>system(?:\n|\\n)((?:(?!<\|im_end\|>|\{\{|\{%|['\"]\s*[+~]|[+~]\s*['\"]).)*)<\|im_end\|>", re.S)


def default_system_from_template(template: str | None) -> str | None:
    """The literal default system prompt of a ChatML-style Jinja chat template, if any.

    Args:
        template: the ``chat_template`` string.

    Returns:
        The text between ``<|im_start|>system\\n`` and ``<|im_end|>`` in a string literal of
        the template, or None.
    """
    if not template or not isinstance(template, str):
        return None
    m = _SYSTEM_IN_TEMPLATE.search(template)
    if not m:
        return None
    text = m.group(1)
    if "\n" not in template[m.start():m.end()] and "\\n" in text:
        text = text.replace("\\n", "\n")
    return text


def _parts(content: Any) -> list[Segment]:
    """A message's content as segments: a string, or parts that are strings, ids or id lists."""
    if isinstance(content, str):
        return [content]
    parts: list[Segment] = []
    for p in content:
        if isinstance(p, str):
            parts.append(p)
        elif isinstance(p, (list, tuple)):
            parts.extend(int(x) for x in p)
        else:
            parts.append(int(p))
    return parts


def chat_segments(chat_format: str, messages: Sequence[Mapping[str, Any]], *, system: Any, default_system: str | None,
                  bos_id: int | None, im_start: int | None, im_end: int | None,
                  add_generation_prompt: bool = True) -> list[Segment]:
    """The chat prompt of ``chat_format`` as text pieces and token ids, in order.

    Args:
        chat_format: one of :data:`CHAT_FORMATS`.
        messages: ``[{"role": ..., "content": c}]``, ``c`` a string or a sequence of parts, each a
            string or an int / list of ints (token ids spliced verbatim).
        system: system prompt; ``DEFAULT`` uses ``default_system`` unless the first message is a
            system message; None means no system turn.
        default_system: the tokenizer's default system prompt.
        bos_id: the id to start with (None: no BOS).
        im_start: ``<|im_start|>`` id (internlm2 / chatml).
        im_end: ``<|im_end|>`` id (internlm2 / chatml).
        add_generation_prompt: end with the assistant header.

    Returns:
        ``str`` and ``int`` segments; adjacent strings are merged (so ``"user\\n" + question`` is
        one piece, as a template renderer would tokenize it) and empty strings dropped.
    """
    if isinstance(system, _DefaultSystem):
        system = None if messages and messages[0].get("role") == "system" else default_system
    turns: list[tuple[str, Any]] = [("system", system)] if system is not None else []
    turns += [(str(m["role"]), m["content"]) for m in messages]
    segs: list[Segment] = [bos_id] if bos_id is not None else []
    if chat_format == "plain":
        for role, content in turns:
            segs += [f"{role.capitalize()}: ", *_parts(content), "\n"]
        if add_generation_prompt:
            segs.append("Assistant:")
    else:
        for role, content in turns:
            segs += [im_start, f"{role}\n", *_parts(content), im_end, "\n"]
        if add_generation_prompt:
            segs += [im_start, "assistant\n"]
    merged: list[Segment] = []
    for s in segs:
        if isinstance(s, str) and merged and isinstance(merged[-1], str):
            merged[-1] += s
        elif not (isinstance(s, str) and s == ""):
            merged.append(s)
    return merged
