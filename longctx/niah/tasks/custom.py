"""The ``custom`` task: one needle, question and answers given by the user (flags or a
JSON/YAML file); metric ``part`` and a 64-token budget unless the file or flags say otherwise."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from longctx.niah.tasks.base import NeedleSpec, TaskInstance

__all__ = ["default_instruction", "instance", "load_custom_task_file", "parse_answers"]

_INSTRUCTION = {
    "en": "Read the following text carefully. A question about it comes after the text.",
    "zh": "请仔细阅读下面的文字。读完后会有一个关于它的问题。",
}


def default_instruction(lang: str) -> str:
    """The custom task's instruction in ``lang``."""
    return _INSTRUCTION.get(lang, _INSTRUCTION["en"])


def instance(task, cs: int, ls: int) -> TaskInstance:
    """The user's needle at the cell's depth."""
    value = "; ".join(task.custom_answers)
    needles = (NeedleSpec(task.custom_needle, "", value),)
    return TaskInstance(task.id, needles, task.custom_question, tuple(task.custom_answers), task.metric,
                        task.answer_budget, task.instruction, task.custom_answer_prefix, cs, ls)


def load_custom_task_file(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a custom task from JSON or YAML: keys ``needle``, ``question``, ``answers`` (a
    string or a list), optional ``metric``, ``answer_budget``, ``answer_prefix``,
    ``instruction``.  Raises ``ValueError`` (one line) on a missing/unreadable file or bad keys."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"custom task file not found: {p}")
    raw = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            import yaml  # only for YAML files: JSON-only users never import it

            data = yaml.safe_load(raw)
    except Exception as e:  # noqa: BLE001 -- json/yaml errors differ; report one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot parse custom task file {p}: {first}") from None
    if not isinstance(data, dict):
        raise ValueError(f"custom task file {p} must hold a mapping with needle, question, answers")
    allowed = {"needle", "question", "answers", "metric", "answer_budget", "answer_prefix", "instruction"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"custom task file {p}: unknown key(s) {', '.join(map(str, unknown))}")
    missing = [k for k in ("needle", "question", "answers") if k not in data]
    if missing:
        raise ValueError(f"custom task file {p}: missing key(s) {', '.join(missing)}")
    return data


def parse_answers(answers: Any) -> tuple[str, ...]:
    """The expected answers as a tuple of non-empty stripped strings (one line on bad input)."""
    if isinstance(answers, (str, int, float)):
        answers = [answers]
    if not isinstance(answers, (list, tuple)):
        raise ValueError("custom task answers must be a string or a list of strings")
    out = tuple(str(a).strip() for a in answers if str(a).strip())
    if not out:
        raise ValueError("custom task needs at least one non-empty expected answer")
    return out


