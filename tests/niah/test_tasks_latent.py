"""latent (NoLiMa-style) and absent (no needle for the asked key): generation, placement, scoring."""
from __future__ import annotations

import re

import pytest

from longctx.niah.scoring import ABSENT_PHRASES, score_cell
from longctx.niah.tasks import make_task
from longctx.niah.tasks.latent import LATENT_PAIRS

from . import haystack
from .task_checks import check_cell, check_deterministic


@pytest.mark.parametrize("spec", ["latent", "absent"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_deterministic(spec, lang):
    check_deterministic(spec, lang=lang, near_miss=2)


@pytest.mark.parametrize("k", [0, 3])
def test_latent_cells(tok, austen, k):
    check_cell(tok, austen, "latent", near_miss=k)
    check_cell(tok, haystack("zh"), "latent", lang="zh", near_miss=k, trials=2)


def _words(s: str) -> set[str]:
    stop = {"the", "a", "of", "to", "in", "on", "has", "been", "which", "character", "lives", "with", "their",
            "own", "last", "right", "next", "under", "whole", "twice", "over", "long", "time", "took", "spent"}
    return {w for w in re.findall(r"[a-z]+", s.lower()) if w not in stop}


def test_latent_pairs_share_no_content_word():
    for en_n, en_q, kw, zh_n, zh_q, zh_kw in LATENT_PAIRS:
        assert not _words(en_n.format(name="")) & _words(en_q), (en_n, en_q)
        assert kw in en_q and kw not in en_n and zh_kw in zh_q and zh_kw not in zh_n


def test_latent_distractors_carry_the_keyword():
    inst = make_task("latent", near_miss=3).instance(seed=0, length=3000, depth=50.0, trial=0)
    target, *dis = inst.needles
    kw = target.key
    assert kw in inst.question and kw not in target.text and inst.expected == (target.value,)
    assert [d.role for d in dis] == ["near-miss"] * 3 and all(kw in d.text for d in dis)
    assert len({target.value, *(d.value for d in dis)}) == 4


@pytest.mark.parametrize("k", [0, 2])
def test_absent_cells(tok, austen, k):
    for lang, hs in (("en", austen), ("zh", haystack("zh"))):
        task = make_task("absent", lang=lang, near_miss=k)
        for cell in check_cell(tok, hs, "absent", lang=lang, near_miss=k, trials=2):
            inst = task.instance(seed=0, length=2500, depth=50.0, trial=cell.trial)
            asked = re.search(r"for (\S+) mentioned|提到的(\S+?)的特殊", inst.question)
            key = asked.group(1) or asked.group(2)
            text = cell.prompt_text(skip_special=True)
            assert text.count(key) == 1  # only in the question: the needle is absent
            assert cell.metric == "absent" and tuple(cell.expected) == ABSENT_PHRASES[lang]
            assert [n["role"] for n in cell.needles].count("distractor") == 1


@pytest.mark.parametrize("response, want", [
    ("The text does not mention a special magic number for calm-dragon.", 1.0),
    ("That number is not in the text.", 1.0),
    ("I couldn’t find it in the provided text.", 1.0),  # curly apostrophe
    ("NOT MENTIONED", 1.0),
    ("The special magic number for calm-dragon is 2291098.", 0.0),
    ("", 0.0),
])
def test_absent_scoring_en(response, want):
    inst = make_task("absent").instance(seed=0, length=2000, depth=50.0, trial=0)
    assert score_cell(response, inst.expected, inst.metric) == want


@pytest.mark.parametrize("response, want", [
    ("文中没有提到这个数字。", 1.0),
    ("抱歉，文本中未给出该信息。", 1.0),
    ("我找不到。", 1.0),
    ("特殊魔法数字是６４９４７４７。", 0.0),
])
def test_absent_scoring_zh(response, want):
    inst = make_task("absent", lang="zh").instance(seed=0, length=2000, depth=50.0, trial=0)
    assert score_cell(response, inst.expected, inst.metric) == want


def test_latent_scoring():
    inst = make_task("latent", lang="zh").instance(seed=0, length=2000, depth=50.0, trial=0)
    assert score_cell(f"是{inst.expected[0]}。", inst.expected, inst.metric) == 1.0
    en = make_task("latent").instance(seed=0, length=2000, depth=50.0, trial=0)
    assert score_cell(f"{en.expected[0].upper()} has.", en.expected, en.metric) == 1.0
    assert score_cell("Nobody.", en.expected, en.metric) == 0.0
