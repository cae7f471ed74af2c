"""CJK-aware scoring: NFKC normalisation, no whitespace word splitting, 'not in the text' phrasings."""
from __future__ import annotations

import pytest

from longctx.niah.scoring import ABSENT_PHRASES, normalize, score_cell, string_match_all, string_match_part


@pytest.mark.parametrize("raw, want", [
    ("１２３４５６７", "1234567"),
    ("答案：ＡＢＣ", "答案:abc"),
    ("周 梓轩", "周梓轩"),
    ("周  梓 轩 。", "周梓轩。"),
    ("answer:  1234567 \n", "answer: 1234567"),
    ("I couldn’t find it", "i couldn't find it"),
    ("", ""),
    (None, ""),
])
def test_normalize(raw, want):
    assert normalize(raw) == want


@pytest.mark.parametrize("pred, refs, want", [
    ("特殊魔法数字是７２１４５６４。", ["7214564"], 1.0),  # full-width digits
    ("特殊魔法数字是7214564。", ["７２１４５６４"], 1.0),   # full-width reference
    ("答案是枫湾镇", ["枫湾镇"], 1.0),                      # no word boundaries needed
    ("答案是 枫 湾 镇", ["枫湾镇"], 1.0),
    ("答案是枫湾", ["枫湾镇"], 0.0),
    ("咖啡、吸管，香蕉", ["咖啡", "吸管", "香蕉", "篮球"], 0.75),
])
def test_cjk_containment(pred, refs, want):
    assert string_match_all(pred, refs) == pytest.approx(want)


def test_part_and_absent_metrics():
    assert string_match_part("是莲坪镇。", ["莲坪镇", "x"]) == 1.0
    assert score_cell("文中没有提到。", ABSENT_PHRASES["zh"], "absent") == 1.0
    assert score_cell("是７２１４５６４", ABSENT_PHRASES["zh"], "absent") == 0.0
    assert score_cell("It is not mentioned in the text.", ABSENT_PHRASES["en"], "absent") == 1.0
    with pytest.raises(ValueError, match="unknown metric"):
        score_cell("x", ["x"], "nope")


def test_phrasings_are_normalised_forms():
    for lang, phrases in ABSENT_PHRASES.items():
        assert phrases and all(normalize(p) == p for p in phrases), lang
