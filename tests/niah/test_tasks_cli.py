"""``longctx needle`` with the new tasks: option errors (one line, exit 2, before the model loads)
and a short Chinese run whose dumped prompt shows the Chinese haystack."""
from __future__ import annotations

import json

import pytest

from .test_needle_cli import _err_line, cli  # noqa: F401 -- the fixture


@pytest.mark.parametrize("args, needle", [
    (["--task", "reasoning", "--hops", "7"], "hops must be between 2 and 5"),
    (["--task", "single", "--hops", "3"], "--hops applies to"),
    (["--task", "trace", "--distractors", "2"], "--distractors applies to"),
    (["--task", "single", "--distractors", "99"], "distractors must be between 0 and 20"),
    (["--task", "vt:word"], "takes no value type"),
])
def test_bad_task_options(cli, args, needle):  # noqa: F811
    res = cli(*args)
    assert res.exit_code == 2, res.output
    assert needle in _err_line(res)
    assert res.loads == []


@pytest.mark.slow
def test_chinese_trace_end_to_end(cli, tmp_path):  # noqa: F811
    out, dump = tmp_path / "zh.jsonl", tmp_path / "prompts"
    res = cli("--task", "trace", "--hops", "2", "--haystack", "zh", "--lengths", "500,", "--depths", "50,",
              "--answer-budget", "12", "--out", out, "--dump-prompts", dump, "--no-plot")
    assert res.exit_code == 0, res.output
    (rec,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert rec["task"] == "trace:h2" and rec["haystack"] == "zh" and len(rec["needles"]) == 2
    assert rec["score"] in (0.0, 1.0) and rec["length"] == 500
    (prompt,) = dump.iterdir()
    text = prompt.read_text(encoding="utf-8")
    assert "往上第2代的祖先是谁" in text and ("的父亲。" in text or "的母亲。" in text)
    assert sum("\u4e00" <= c <= "\u9fff" for c in text) > 150  # the haystack is Chinese text (~1.9 tokens/char)
