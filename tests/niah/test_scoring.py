"""RULER-style string-match scoring (longctx.niah.scoring)."""
from __future__ import annotations

import pytest

from longctx.niah.scoring import METRICS, score_cell, string_match_all, string_match_part


@pytest.mark.parametrize("pred, refs, want", [
    ("The special magic number for calm-owl mentioned in the provided text is 1234567.", ["1234567"], 1.0),
    ("1234567", ["1234567"], 1.0),
    ("  1234567\n", [" 1234567 "], 1.0),
    ("I could not find it.", ["1234567"], 0.0),
    ("The numbers are 111 and 222.", ["111", "222", "333", "444"], 0.5),
    ("111, 222, 333, 444", ["111", "222", "333", "444"], 1.0),
    ("AMBER-LANTERN", ["amber-lantern"], 1.0),
    ("amber-lantern", ["Amber-Lantern"], 1.0),
    ("", ["1234567"], 0.0),
    ("   \n", ["1234567"], 0.0),
    (None, ["1234567"], 0.0),
    ("Straße", ["STRASSE"], 1.0),  # casefold, not just lower
    ("1234567", "1234567", 1.0),   # a bare string reference
])
def test_string_match_all(pred, refs, want):
    assert string_match_all(pred, refs) == pytest.approx(want)


@pytest.mark.parametrize("pred, refs, want", [
    ("Paris is the answer.", ["paris", "Paris, France"], 1.0),
    ("The numbers are 111 and 222.", ["111", "222", "333", "444"], 1.0),
    ("nothing here", ["111", "222"], 0.0),
    ("", ["111"], 0.0),
    ("THE PASS KEY IS 12345", ["12345"], 1.0),
])
def test_string_match_part(pred, refs, want):
    assert string_match_part(pred, refs) == pytest.approx(want)


def test_score_cell_dispatch_and_range():
    refs = ["111", "222", "333"]
    assert score_cell("111 and 333", refs, "all") == pytest.approx(2 / 3)
    assert score_cell("111 and 333", refs, "part") == 1.0
    assert set(METRICS) == {"all", "part", "absent"}
    for pred in ["", "111", "111 222 333", "x"]:
        for m in METRICS:
            assert 0.0 <= score_cell(pred, refs, m) <= 1.0


def test_score_cell_errors():
    with pytest.raises(ValueError, match="unknown metric"):
        score_cell("x", ["x"], "exact")
    with pytest.raises(ValueError, match="no expected answers"):
        score_cell("x", [], "all")
    with pytest.raises(ValueError, match="no expected answers"):
        score_cell("x", ["  "], "part")
