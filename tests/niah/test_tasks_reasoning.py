"""reasoning and trace (longctx.niah.tasks.reasoning): chains, placement, answers, scoring."""
from __future__ import annotations

import pytest

from longctx.errors import TaskError
from longctx.niah.scoring import score_cell
from longctx.niah.tasks import make_task

from . import haystack
from .task_checks import check_cell, check_deterministic


@pytest.mark.parametrize("spec, hops", [("reasoning", 2), ("reasoning", 5), ("trace", 1), ("trace", 6)])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_deterministic(spec, hops, lang):
    check_deterministic(spec, hops=hops, lang=lang)


@pytest.mark.parametrize("spec, hops", [("reasoning", 2), ("reasoning", 3), ("reasoning", 5), ("trace", 4)])
def test_cells_english(tok, austen, spec, hops):
    cells = check_cell(tok, austen, spec, hops=hops)
    assert all(len(c.needles) == (2 * hops - 1 if spec == "reasoning" else hops) for c in cells)
    assert make_task(spec, hops=hops).id == f"{spec}:h{hops}"


@pytest.mark.parametrize("spec", ["reasoning", "trace"])
def test_cells_chinese(tok, spec):
    cells = check_cell(tok, haystack("zh"), spec, hops=4, lang="zh")
    assert "出生在" in cells[0].question or "祖先" in cells[0].question


def test_reasoning_chain_links_question_to_answer():
    inst = make_task("reasoning", hops=4).instance(seed=1, length=3000, depth=20.0, trial=0)
    n = [x for x in inst.needles if x.role == "target"]
    assert len(n) == 4 and inst.needles[:4] == tuple(n)
    assert n[0].depth is None and all(x.depth is not None for x in inst.needles[1:])
    assert n[0].key in inst.question  # the chain starts at the person the question names
    for a, b in zip(n, n[1:]):
        assert a.value == b.key  # each statement's object is the next one's subject
    assert n[-1].value == inst.expected[0] and inst.expected[0] not in inst.question


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_reasoning_needs_the_chain(lang):
    """Every person of the chain has a birthplace sentence, so matching "born in" alone finds
    hops towns of which one is the answer; the distractors' towns are all different."""
    task = make_task("reasoning", hops=3, lang=lang)
    assert task.settings()["version"] == 2 and "version" not in make_task("trace").settings()
    inst = task.instance(seed=4, length=3000, depth=30.0, trial=1)
    chain = [x for x in inst.needles if x.role == "target"]
    decoys = [x for x in inst.needles if x.role == "distractor"]
    assert len(decoys) == 2 and task.n_needles == 5
    born = "was born in the town of" if lang == "en" else "出生在"
    assert sum(born in x.text for x in inst.needles) == 3
    assert [d.key for d in decoys] == [c.key for c in chain[:2]]  # the people the chain passes through
    towns = {d.value for d in decoys} | {inst.expected[0]}
    assert len(towns) == 3 and all(d.value not in inst.question for d in decoys)


def test_trace_asks_n_generations_up():
    inst = make_task("trace", hops=5, lang="zh").instance(seed=2, length=3000, depth=20.0, trial=0)
    assert "第5代" in inst.question and inst.needles[0].key in inst.question
    assert inst.expected == (inst.needles[-1].value,)
    for a, b in zip(inst.needles, inst.needles[1:]):
        assert a.value == b.key


def test_hop_limits():
    with pytest.raises(TaskError, match="hops must be between 2 and 5"):
        make_task("reasoning", hops=6)
    with pytest.raises(TaskError, match="hops must be between 1 and 20"):
        make_task("trace", hops=0)
    with pytest.raises(TaskError, match="--hops applies to"):
        make_task("single", hops=3)


def test_scoring_hand_written():
    en = make_task("reasoning").instance(seed=0, length=2000, depth=50.0, trial=0)
    town = en.expected[0]
    assert score_cell(f"They were born in {town}.", en.expected, en.metric) == 1.0
    assert score_cell(f"They were born in {town.upper()}!", en.expected, en.metric) == 1.0
    assert score_cell("They were born in Paris.", en.expected, en.metric) == 0.0
    zh = make_task("trace", lang="zh").instance(seed=0, length=2000, depth=50.0, trial=0)
    name = zh.expected[0]
    assert score_cell(f"往上第4代的祖先是{name}。", zh.expected, zh.metric) == 1.0
    assert score_cell(f"祖先是 {name[0]} {name[1:]} 。", zh.expected, zh.metric) == 1.0  # spaces in CJK
    assert score_cell(f"祖先是{name[:2]}。", zh.expected, zh.metric) == 0.0
