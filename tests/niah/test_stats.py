"""Statistics of NIAH scores (longctx.niah.stats): Wilson intervals, paired tests, per-cell and per-length
summaries, against values worked out by hand from the formulas."""
from __future__ import annotations

import math

import pytest

from longctx.niah import stats as S

Z2 = S.Z95 ** 2  # 3.841458820694124


def rec(length, depth, score, *, trial=0, error=None, actual=None):
    return {"task": "single:number", "target_length": length, "target_depth": depth, "trial": trial,
            "depth": depth if actual is None else actual, "score": score, "error": error}


# --------------------------------------------------------------------------- Wilson
def test_wilson_interval_hand_values():
    # 3/5: p = .6, centre = (.6 + z²/10) / (1 + z²/5) = .556554, half = z*sqrt(.6*.4/5 + z²/100) / (1 + z²/5) = .325827
    lo, hi = S.wilson_interval(3, 5)
    assert lo == pytest.approx(0.230724, abs=1e-6) and hi == pytest.approx(0.882379, abs=1e-6)
    # 0/5: [0, z²/(n + z²)] = [0, 3.841459/8.841459]; 5/5 mirrors it: [n/(n + z²), 1]
    assert S.wilson_interval(0, 5) == pytest.approx((0.0, 0.434482), abs=1e-6)
    assert S.wilson_interval(5, 5) == pytest.approx((0.565518, 1.0), abs=1e-6)
    assert S.wilson_interval(0, 5)[1] == pytest.approx(Z2 / (5 + Z2))
    # fractional successes (multi-reference scores): 2.5 of 5 = the interval of p = .5 at n = 5
    lo, hi = S.wilson_interval(2.5, 5)
    half = S.Z95 * math.sqrt(0.25 / 5 + Z2 / 100) / (1 + Z2 / 5)
    assert (lo, hi) == pytest.approx((0.5 - half, 0.5 + half)) and lo == pytest.approx(0.170424, abs=1e-6)


@pytest.mark.parametrize("successes,n", [(1, 0), (-0.1, 3), (4, 3)])
def test_wilson_interval_rejects_bad_counts(successes, n):
    with pytest.raises(ValueError):
        S.wilson_interval(successes, n)


def test_mean_interval_is_on_the_percent_scale():
    assert S.mean_interval(60.0, 5) == pytest.approx((23.0724, 88.2379), abs=1e-4)
    assert S.mean_interval(None, 5) == (None, None) and S.mean_interval(50.0, 0) == (None, None)


# --------------------------------------------------------------------------- paired tests
def test_mcnemar_exact_hand_values():
    # b=7, c=1: 2 * P(X <= 1 | n=8) = 2 * (1 + 8) / 256
    assert S.mcnemar_exact(7, 1) == 0.0703125 == S.mcnemar_exact(1, 7)
    assert S.mcnemar_exact(0, 5) == 2 / 32
    assert S.mcnemar_exact(1, 5) == pytest.approx(2 * (1 + 6) / 64)  # 0.21875
    assert S.mcnemar_exact(3, 3) == 1.0 and S.mcnemar_exact(0, 0) == 1.0
    assert S.mcnemar_exact(0, 2) == 0.5
    with pytest.raises(ValueError):
        S.mcnemar_exact(-1, 2)


def test_paired_bootstrap():
    # a constant shift: every centred resample has mean 0 < 0.5, so only the observed one counts
    assert S.paired_bootstrap([0.5] * 20, n_boot=999) == pytest.approx(1 / 1000)
    assert S.paired_bootstrap([0.0] * 5) == 1.0 and S.paired_bootstrap([0.5, -0.5] * 10) == 1.0
    noisy = [0.5, -0.25, 0.75, 0.0, 0.25, -0.5, 1.0, 0.25]
    p = S.paired_bootstrap(noisy, n_boot=2000, seed=3)
    assert p == S.paired_bootstrap(noisy, n_boot=2000, seed=3)  # seeded: reproducible
    assert 0.0 < p < 1.0
    with pytest.raises(ValueError):
        S.paired_bootstrap([])


def test_paired_rows_choose_the_test():
    # length 1000: A right/B wrong never, A wrong/B right twice; length 2000: 1 and 5 -> overall 1 and 7
    pairs = {}
    for t, (a, b) in enumerate([(1, 1), (1, 1), (0, 1), (0, 1)]):
        pairs[("t", 1000, 0.0, t, "0")] = (float(a), float(b))
    for t, (a, b) in enumerate([(0, 1)] * 5 + [(1, 0)]):
        pairs[("t", 2000, 0.0, t, "0")] = (float(a), float(b))
    rows = S.paired_rows(pairs)
    assert [r.target_length for r in rows] == [1000, 2000, "all"]
    assert [r.discordant for r in rows] == [(0, 2), (1, 5), (1, 7)]
    assert [r.p_value for r in rows] == [0.5, 0.21875, 0.0703125]
    assert rows[-1].pairs == 10 and rows[-1].mean_a == pytest.approx(30.0) and rows[-1].diff == pytest.approx(60.0)
    assert {r.test for r in rows} == {"mcnemar"}
    pairs[("t", 2000, 0.0, 0, "0")] = (0.5, 1.0)  # one fractional score: bootstrap at 2000 and overall
    rows = S.paired_rows(pairs, n_boot=500)
    assert [r.test for r in rows] == ["mcnemar", "bootstrap", "bootstrap"] and rows[1].discordant is None


# --------------------------------------------------------------------------- cells and lengths
def test_cell_stats_and_summary_table_intervals():
    records = [rec(1000, 0.0, s, trial=t) for t, s in enumerate([1.0, 0.0, 1.0, 1.0, 0.0])]  # 3/5
    records += [rec(1000, 50.0, 1.0, trial=t, actual=43.5) for t in range(5)]  # 5/5, needle 6.5 points off
    records += [rec(1000, 100.0, None, error="boom"), rec(2000, 0.0, 0.5, actual=1.0)]
    cells = S.cell_stats(records)
    assert [(c.target_length, c.target_depth, c.n, c.records, c.errors) for c in cells] == [
        (1000, 0.0, 5, 5, 0), (1000, 50.0, 5, 5, 0), (1000, 100.0, 0, 1, 1), (2000, 0.0, 1, 1, 0)]
    assert cells[0].mean == pytest.approx(60.0) and (cells[0].ci_low, cells[0].ci_high) == pytest.approx(
        (23.0724, 88.2379), abs=1e-4)
    assert cells[1].depth_offset == pytest.approx(6.5) and cells[1].actual_depth == pytest.approx(43.5)
    assert cells[2].mean is None and cells[2].ci_low is None
    rows = S.summary_table(records)
    first, second, total = rows
    # length 1000: mean of the two cell means (60, 100) = 80 over n = 10 trials -> Wilson(8, 10)
    assert first["mean"] == pytest.approx(80.0) and first["n"] == 10 == first["valid"]
    assert (first["ci_low"], first["ci_high"]) == pytest.approx(tuple(100 * x for x in S.wilson_interval(8, 10)))
    assert first["cells"] == 2 and first["missing_cells"] == 1 and first["errors"] == 1
    assert second["n"] == 1 and second["mean"] == pytest.approx(50.0)
    assert (second["ci_low"], second["ci_high"]) == pytest.approx(tuple(100 * x for x in S.wilson_interval(0.5, 1)))
    assert total["n"] == 11 and total["mean"] == pytest.approx((60 + 100 + 50) / 3)
    lines = S.summary_lines(rows)
    assert lines[0].split() == ["length", "score", "95%", "CI", "n", "records", "errors", "missing", "cells"]
    assert lines[1].split() == ["1K", "80.0", "49.0-94.3", "10", "11", "1", "1"]


def test_summarize_fields():
    records = [rec(1000, 0.0, 1.0, trial=t) for t in range(3)] + [rec(1000, 50.0, 0.0, actual=40.0)]
    s = S.summarize(records)
    assert set(s) == {"scale", "interval", "lengths", "overall", "cells"}
    assert [r["target_length"] for r in s["lengths"]] == [1000] and s["overall"]["target_length"] == "all"
    assert set(s["lengths"][0]) == {"target_length", "label", "mean", "ci_low", "ci_high", "n", "records", "valid",
                                    "errors", "cells", "missing_cells"}
    cell = s["cells"][0]
    assert set(cell) == {"target_length", "target_depth", "n", "mean", "ci_low", "ci_high", "records", "errors",
                         "actual_depth", "depth_offset"}
    assert cell["n"] == 3 and cell["mean"] == 100.0 and cell["ci_low"] == round(100 * S.wilson_interval(3, 3)[0], 4)
    assert s["cells"][1]["depth_offset"] == 10.0
    assert S.summarize([]) == {"scale": s["scale"], "interval": s["interval"], "lengths": [], "overall": None,
                               "cells": []}


def test_score_grid_takes_extra_lengths_and_depths():
    recs = [rec(1000, 50.0, 1.0), rec(4000, 50.0, 0.0)]
    g = S.score_grid(recs, lengths=[2000, 4000], depths=[10.0])
    assert g.lengths == [1000, 2000, 4000] and g.depths == [10.0, 50.0]
    assert g.n.tolist() == [[0, 0, 0], [1, 0, 1]]
    assert math.isnan(g.mean[0, 0]) and math.isnan(g.mean[1, 1]) and g.mean[1, 0] == 100.0 and g.mean[1, 2] == 0.0
    assert S.score_grid(recs).lengths == [1000, 4000]  # by default only what the records have
