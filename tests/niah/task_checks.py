"""Checks shared by the task-family tests: build a cell and verify its needles and answers."""
from __future__ import annotations

import dataclasses

from longctx.niah.prompt import PromptBuilder
from longctx.niah.tasks import make_task


def check_deterministic(spec: str, **kw) -> None:
    """Same seed -> same instance; another seed or trial -> another one."""
    t = make_task(spec, **kw)
    a = t.instance(seed=3, length=4000, depth=40.0, trial=1)
    assert dataclasses.asdict(a) == dataclasses.asdict(make_task(spec, **kw).instance(
        seed=3, length=4000, depth=40.0, trial=1))
    b = t.instance(seed=4, length=4000, depth=40.0, trial=1)
    c = t.instance(seed=3, length=4000, depth=40.0, trial=2)
    assert a.needles != b.needles and a.needles != c.needles


def check_cell(tok, hs, spec: str, length: int = 2500, depth: float = 50.0, trials: int = 3, **kw):
    """Builds ``trials`` cells; each has exactly the promised needles once each (ids and
    text), the promised roles, and no expected answer outside the needles.  Returns the cells."""
    task = make_task(spec, **kw)
    b = PromptBuilder(tok, hs, task)
    cells = []
    for trial in range(trials):
        cell = b.build(length, depth, trial=trial)
        cell.verify()  # exact length; every needle's ids and text exactly once
        assert len(cell.needles) == task.n_needles
        roles = [n["role"] for n in cell.needles]
        assert roles.count("near-miss") == task.near_miss
        text = cell.prompt_text(skip_special=True)
        needle_texts = cell._needle_texts
        if task.metric != "absent":
            for ans in cell.expected:
                inside = sum(t.count(ans) for t in needle_texts)
                assert inside >= 1, (ans, needle_texts)
                assert text.count(ans) == inside, f"answer {ans!r} occurs outside the needles"
        for nd in cell.needles:
            assert 0.0 <= nd["depth"] <= 100.0 and nd["target_depth"] is not None
        cells.append(cell)
    return cells
