"""The retrieval family in Chinese and with --distractors (near-miss needles)."""
from __future__ import annotations

import dataclasses

import pytest

from longctx.errors import TaskError
from longctx.niah.scoring import score_cell
from longctx.niah.tasks import make_task

from . import haystack
from .task_checks import check_cell, check_deterministic


@pytest.mark.parametrize("spec", ["passkey", "single", "multikey", "multivalue:word", "multiquery:uuid"])
def test_chinese_cells(tok, spec):
    check_deterministic(spec, lang="zh")
    cells = check_cell(tok, haystack("zh"), spec, lang="zh", trials=2)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in cells[0].question)


@pytest.mark.parametrize("spec", ["single", "multikey", "multivalue", "multiquery"])
@pytest.mark.parametrize("k", [1, 4])
def test_near_misses(tok, austen, spec, k):
    check_deterministic(spec, near_miss=k)
    cells = check_cell(tok, austen, spec, near_miss=k)
    task = make_task(spec, near_miss=k)
    inst = task.instance(seed=0, length=2500, depth=50.0, trial=0)
    asked = inst.needles[0].key
    near = [n for n in inst.needles if n.role == "near-miss"]
    assert len(near) == k
    for n in near:
        adj, noun = n.key.split("-")
        assert n.key != asked and (asked.startswith(adj + "-") or asked.endswith("-" + noun))
        assert n.value not in inst.expected
    # distractor depths are recorded per needle and stay the same across target depths
    other = check_cell(tok, austen, spec, near_miss=k, depth=10.0, trials=1)[0]
    assert ([n["target_depth"] for n in cells[0].needles if n["role"] == "near-miss"]
            == [n["target_depth"] for n in other.needles if n["role"] == "near-miss"])


def test_no_near_misses_changes_nothing():
    for spec in ("single", "multikey:word", "multiquery"):
        a = make_task(spec).instance(seed=0, length=3000, depth=30.0, trial=1)
        b = make_task(spec, near_miss=2).instance(seed=0, length=3000, depth=30.0, trial=1)
        assert b.needles[: len(a.needles)] == a.needles and b.expected == a.expected


def test_settings_hide_new_fields_at_defaults():
    d = make_task("single").settings()
    assert "lang" not in d and "hops" not in d and "near_miss" not in d and d["id"] == "single:number"
    z = make_task("single", lang="zh", near_miss=2).settings()
    assert z["lang"] == "zh" and z["near_miss"] == 2
    assert dataclasses.asdict(make_task("single")).keys() - d.keys() == {"extra", "lang", "hops", "near_miss", "version"}


def test_option_errors():
    with pytest.raises(TaskError, match="--distractors applies to"):
        make_task("trace", near_miss=1)
    with pytest.raises(TaskError, match="distractors must be between 0 and 20"):
        make_task("single", near_miss=21)
    with pytest.raises(TaskError, match="unknown language"):
        make_task("single", lang="fr")


def test_chinese_scoring_full_width_digits():
    inst = make_task("passkey", lang="zh").instance(seed=0, length=2000, depth=50.0, trial=0)
    fw = "".join(chr(ord(c) + 0xFEE0) for c in inst.expected[0])
    assert score_cell(f"通行密码是{fw}。", inst.expected, inst.metric) == 1.0
    assert score_cell("通行密码是１２３。", inst.expected, inst.metric) == 0.0
