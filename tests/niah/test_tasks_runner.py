"""Sweeps of the new tasks through the runner with a fake backend: records and run settings."""
from __future__ import annotations

import json

import pytest

from longctx.backends.base import GenResult
from longctx.niah.grid import make_grid
from longctx.niah.prompt import PromptBuilder
from longctx.niah.results import config_path
from longctx.niah.runner import run_sweep
from longctx.niah.tasks import make_task

from .test_runner import FakeBackend


class ScriptedBackend(FakeBackend):
    """Answers every prompt with ``reply``."""

    def __init__(self, tokenizer, reply: str) -> None:
        super().__init__(tokenizer)
        self.reply = reply

    def generate(self, ids, max_new_tokens: int) -> GenResult:
        return GenResult(text=self.reply, prompt_tokens=len(ids), prefilled_tokens=len(ids), rope_base=10000.0,
                         stop_reason="stop")


@pytest.mark.parametrize("reply, score, fp", [("It is not in the text.", 1.0, False), ("1234567", 0.0, True)])
def test_absent_records_false_positive(tmp_path, tok, austen, reply, score, fp):
    out = tmp_path / "a.jsonl"
    b = PromptBuilder(tok, austen, make_task("absent", near_miss=1))
    s = run_sweep(ScriptedBackend(tok, reply), b, make_grid([600], [25, 75], 1), out)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["score"] for r in recs] == [score, score] and [r["false_positive"] for r in recs] == [fp, fp]
    assert all(r["metric"] == "absent" and len(r["needles"]) == 2 for r in recs)
    assert s.overall == 100.0 * score
    settings = json.loads(config_path(out).read_text())["settings"]["task"]
    assert settings["id"] == "absent" and settings["near_miss"] == 1 and "lang" not in settings


def test_chinese_settings_and_no_false_positive_field(tmp_path, tok, austen):
    out = tmp_path / "z.jsonl"
    b = PromptBuilder(tok, austen, make_task("trace", lang="zh", hops=2))
    run_sweep(ScriptedBackend(tok, "不知道"), b, make_grid([600], [50], 1), out)
    (rec,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert rec["task"] == "trace:h2" and rec["score"] == 0.0 and "false_positive" not in rec
    settings = json.loads(config_path(out).read_text())["settings"]["task"]
    assert settings["lang"] == "zh" and settings["hops"] == 2
