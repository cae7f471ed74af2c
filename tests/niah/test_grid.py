"""Sweep grids: lengths, depths, cells and shards (longctx.niah.grid)."""
from __future__ import annotations

import math

import pytest

from longctx.errors import GridError
from longctx.niah.grid import GridCell, make_grid, parse_depths, parse_lengths, parse_size, shard


# -- lengths ---------------------------------------------------------------------------------------
def test_bare_number_is_one_length():
    assert parse_lengths("400") == [400]
    assert parse_lengths(400) == [400]
    assert parse_lengths("5", 1000, 5000) == [5]  # never a count, even with --min-len/--max-len
    assert parse_lengths("16K") == [16000]


def test_counts_only_through_range_or_count():
    assert parse_lengths("5@1K..5K") == [1000, 2000, 3000, 4000, 5000]
    assert parse_lengths(None, 1000, 5000, count=5) == [1000, 2000, 3000, 4000, 5000]
    assert parse_lengths("4@1000..8000", scale="geometric") == [1000, 2000, 4000, 8000]
    assert parse_lengths("4@1000..2000") == [1000, 1333, 1667, 2000]
    assert parse_lengths("1@1K..16K") == [16000]
    assert parse_lengths(None, None, 16000) == [16000]
    assert parse_lengths("10@5..8") == [5, 6, 7, 8]  # rounding collisions deduplicated
    assert parse_lengths(None, None, 2000, count=3) == [1000, 1500, 2000]  # default --min-len 1000
    assert len(parse_lengths("10@1K..200K")) == 10


def test_explicit_lists_and_suffixes():
    assert parse_lengths("1000,2000,4K") == [1000, 2000, 4000]
    assert parse_lengths("4Ki, 4k") == [4000, 4096]
    assert parse_lengths("16000,") == [16000]
    assert parse_lengths("2000,1000,2000") == [1000, 2000]
    assert parse_lengths("1.5K,200k,1M,1Mi") == [1500, 200_000, 1_000_000, 1_048_576]
    assert parse_lengths("200_000") == [200_000]
    assert parse_lengths([3000, 1000]) == [1000, 3000]
    assert parse_size("128Ki") == 131072 and parse_size("8K") == 8000


@pytest.mark.parametrize("spec, lo, hi, kw, msg", [
    ("0", None, None, {}, "at least 1"),
    ("5@3000..2000", None, None, {}, "greater than --max-len"),
    (None, None, None, {"count": 5}, "needs --max-len"),
    ("abc,1000", None, None, {}, "invalid length 'abc'"),
    ("1.2345K,", None, None, {}, "not a whole number"),
    ("4K,0", None, None, {}, "at least 1 token"),
    ("8K,32K", None, 16000, {}, "exceeds --max-len 16000"),
    ("2000@1..5000", None, None, {}, "too many"),
    ("10@1K", None, None, {}, "N@FROM..TO"),
    ("0@1K..2K", None, None, {}, "at least 1"),
    ("8K", None, None, {"count": 3}, "not both"),
    ("", None, None, {}, "empty --lengths"),
])
def test_length_errors(spec, lo, hi, kw, msg):
    with pytest.raises(GridError, match=msg) as ei:
        parse_lengths(spec, lo, hi, **kw)
    assert "\n" not in str(ei.value)


def test_unknown_scale():
    with pytest.raises(ValueError, match="scale"):
        parse_lengths("3@1..10", scale="log")


# -- depths ----------------------------------------------------------------------------------------
def test_bare_number_is_one_depth():
    assert parse_depths("5") == [5.0]
    assert parse_depths(11) == [11.0]
    assert parse_depths("35") == [35.0]
    assert parse_depths("0") == [0.0]


def test_depth_ranges():
    assert parse_depths("5@0..100") == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert parse_depths("11@0..100") == [float(x) for x in range(0, 101, 10)]
    assert parse_depths(None) == [float(x) for x in range(0, 101, 10)]
    assert parse_depths("1@0..100") == [50.0]
    assert parse_depths("3@20..40") == [20.0, 30.0, 40.0]
    d35 = parse_depths("35@0..100")
    assert len(d35) == 35 and d35[0] == 0.0 and d35[-1] == 100.0 and d35 == sorted(d35)


def test_sigmoid_ascending_dense_at_ends():
    d = parse_depths("sigmoid:11")
    assert d[0] == 0.0 and d[-1] == 100.0
    assert d == sorted(d) and len(set(d)) == 11
    gaps = [b - a for a, b in zip(d, d[1:])]
    assert gaps[0] < gaps[len(gaps) // 2] and gaps[-1] < gaps[len(gaps) // 2]  # denser at the ends
    assert all(math.isclose(a + b, 100.0, abs_tol=0.011) for a, b in zip(d, reversed(d)))  # symmetric
    assert parse_depths("sigmoid") == d
    assert parse_depths("SIGMOID:3") == [0.0, 50.0, 100.0]


def test_explicit_depths():
    assert parse_depths("0,50,100") == [0.0, 50.0, 100.0]
    assert parse_depths("100, 12.5, 0") == [0.0, 12.5, 100.0]
    assert parse_depths("12.5") == [12.5]
    assert parse_depths("50,") == [50.0]
    assert parse_depths("25%,75%") == [25.0, 75.0]
    assert parse_depths([10, 20.0]) == [10.0, 20.0]


@pytest.mark.parametrize("spec, msg", [
    ("0,50,120", "depth 120 is outside"),
    ("-5,50", "depth -5 is outside"),
    ("150", "depth 150 is outside"),
    ("101", "outside \\[0, 100\\]"),
    ("3@0..150", "depth 150 is outside"),
    ("3@80..20", "FROM is greater"),
    ("0@0..100", "at least 1"),
    ("0,abc", "invalid depth 'abc'"),
    ("sigmoid:0", "at least 1"),
    ("sigmoid:x", "sigmoid:K"),
    ("nan,", "not a number|outside"),
    ("", "empty --depths"),
])
def test_depth_errors(spec, msg):
    with pytest.raises(GridError, match=msg) as ei:
        parse_depths(spec)
    assert "\n" not in str(ei.value)


# -- cells and shards ------------------------------------------------------------------------------
def test_make_grid_order():
    cells = make_grid([2000, 1000], [50.0, 0.0], trials=2)
    assert cells == [GridCell(1000, 0.0, 0), GridCell(1000, 0.0, 1), GridCell(1000, 50.0, 0),
                     GridCell(1000, 50.0, 1), GridCell(2000, 0.0, 0), GridCell(2000, 0.0, 1),
                     GridCell(2000, 50.0, 0), GridCell(2000, 50.0, 1)]
    with pytest.raises(ValueError, match="trials"):
        make_grid([1000], [0.0], trials=0)


def test_shard_partition_deterministic():
    cells = make_grid([1000, 2000, 3000], parse_depths("5@0..100"), trials=3)
    shards = [shard(cells, i, 4) for i in range(4)]
    flat = [c for s in shards for c in s]
    assert sorted(flat) == sorted(cells) and len(flat) == len(cells)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shard(list(reversed(cells)), 1, 4) == shards[1]  # independent of input order
    assert shard(cells, 0, 1) == sorted(cells)
    for bad in [(4, 4), (-1, 4), (0, 0)]:
        with pytest.raises(ValueError):
            shard(cells, *bad)
