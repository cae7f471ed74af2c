"""vt, cwe and fwe (longctx.niah.tasks.aggregation): generation, placement, scoring."""
from __future__ import annotations

from collections import Counter

import pytest

from longctx.niah.scoring import score_cell
from longctx.niah.tasks import make_task
from longctx.niah.tasks.aggregation import CWE_COMMON, CWE_COMMON_REPEAT, FWE_COUNTS, FWE_TOP

from . import haystack
from .task_checks import check_cell, check_deterministic


@pytest.mark.parametrize("spec", ["vt", "cwe", "fwe"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_deterministic(spec, lang):
    check_deterministic(spec, lang=lang)


@pytest.mark.parametrize("spec", ["vt", "cwe", "fwe"])
def test_cells(tok, austen, spec):
    check_cell(tok, austen, spec)
    check_cell(tok, haystack("zh"), spec, lang="zh", trials=2)


def test_vt_chain():
    inst = make_task("vt", hops=6).instance(seed=0, length=3000, depth=10.0, trial=0)
    assert inst.metric == "all" and len(inst.expected) == 7 and len(inst.needles) == 7
    value = inst.needles[0].value
    assert inst.needles[0].text == f"VAR {inst.expected[0]} = {value}." and value in inst.question
    for prev, n, name in zip(inst.expected, inst.needles[1:], inst.expected[1:]):
        assert n.text == f"VAR {name} = VAR {prev}."
    assert all(len(v) == 5 and v.isupper() and not set(v) & set("AEIOUY") for v in inst.expected)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_cwe_counts(lang):
    inst = make_task("cwe", lang=lang).instance(seed=5, length=3000, depth=10.0, trial=0)
    body = inst.needles[0].text.split("：" if lang == "zh" else ": ", 1)[1].rstrip("。.")
    words = body.split()[1::2]  # "1. w 2. w ..." -> the words
    counts = Counter(words)
    assert sorted(inst.expected) == sorted(w for w, c in counts.items() if c == CWE_COMMON_REPEAT)
    assert len(inst.expected) == CWE_COMMON and max(c for w, c in counts.items() if w not in inst.expected) == 2


def test_fwe_counts():
    inst = make_task("fwe").instance(seed=7, length=3000, depth=10.0, trial=0)
    counts = Counter(inst.needles[0].text.removeprefix("Coded text: ").rstrip(".").split())
    assert sorted(counts.values(), reverse=True) == list(FWE_COUNTS)
    assert list(inst.expected) == [w for w, _ in counts.most_common(FWE_TOP)]


def test_scoring_hand_written():
    vt = make_task("vt", lang="zh").instance(seed=0, length=2000, depth=50.0, trial=0)
    full_width = "，".join(chr(ord(c) + 0xFEE0) for c in vt.expected[0])  # ＡＢＣ... form
    full = "变量有：" + "、".join("".join(chr(ord(c) + 0xFEE0) for c in v) for v in vt.expected)
    assert score_cell(full, vt.expected, vt.metric) == 1.0  # full-width letters count
    assert score_cell(full_width, vt.expected, vt.metric) == 0.0  # letters split apart do not
    half = " ".join(v.lower() for v in vt.expected[:2])
    assert score_cell(half, vt.expected, vt.metric) == pytest.approx(2 / len(vt.expected))
    cwe = make_task("cwe", lang="zh").instance(seed=0, length=2000, depth=50.0, trial=0)
    assert score_cell("出现最多的是：" + "，".join(cwe.expected[:3]), cwe.expected, cwe.metric) == pytest.approx(0.6)
    fwe = make_task("fwe").instance(seed=0, length=2000, depth=50.0, trial=0)
    assert score_cell(", ".join(w.upper() for w in fwe.expected), fwe.expected, fwe.metric) == 1.0
