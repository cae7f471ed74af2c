"""The committed experiments' README tables are what their summarize scripts compute from the committed
results (a table edited by hand, or results changed without the README, fails here)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    path = ROOT / "experiments" / name / "summarize.py"
    spec = importlib.util.spec_from_file_location(f"summarize_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _readme_tables(name: str) -> str:
    return (ROOT / "experiments" / name / "README.md").read_text(encoding="utf-8")


def test_task_suite_readme_table_matches_results():
    ts = _module("task_suite")
    data = {(t, lang): ts.load(t, lang) for t in ts.TASKS for lang in ts.LANGS}
    lengths = sorted({int(r["target_length"]) for recs in data.values() for r in recs})
    assert lengths == [1000, 2000, 4000, 8000]
    table = "\n".join(ts.table(data, lengths))
    assert table in _readme_tables("task_suite")
    # every (task, language) has 10 scored trials per length: 2 depths x 5 trials
    assert all(len(recs) == 40 for recs in data.values())


def test_rope_methods_readme_tables_match_results():
    rm = _module("rope_methods")
    data = {(t, s): rm.load(t, s) for t in rm.TASKS for s in rm.SETTINGS}
    lengths = sorted({int(r["target_length"]) for recs in data.values() for r in recs})
    if not lengths:
        pytest.fail("no committed rope_methods results")
    readme = _readme_tables("rope_methods")
    block = readme.split(rm.BEGIN, 1)[1].split(rm.END, 1)[0]
    assert block.strip() == rm.tables_markdown(data, lengths, rm.ppl_records()).strip()


def test_rope_methods_results_are_in_the_plan():
    """Every committed cell is one run.sh queues (`run.sh --plan`), so `n/r` in the tables means "never run"."""
    rm = _module("rope_methods")
    plan = rm.planned()
    assert ("single", "yarn4", 32000) in plan and ("multikey", "dynamic2", 16000) in plan
    assert ("single", "linear4", 16000) not in plan and ("single", "none", 32000) not in plan
    for task in rm.TASKS:
        for s in rm.SETTINGS:
            lengths = {int(r["target_length"]) for r in rm.load(task, s)}
            assert {(task, s, n) for n in lengths} <= plan, (task, s)


def test_rope_methods_plan_ignores_a_partial_runs_lengths(monkeypatch):
    """`LENGTHS=4K run.sh` ends with summarize.py --readme: its tables must still see the whole plan."""
    rm = _module("rope_methods")
    whole = rm.planned()
    monkeypatch.setenv("LENGTHS", "4K")
    assert rm.planned() == whole and ("multikey", "yarn4", 32000) in whole
