"""``longctx compare``: two small hand-written results files -> the expected table; bad input -> one error line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from longctx.cli import compare_cmd


def rec(run, length, depth, trial, score, *, seed=0, error=None):
    return {"run_id": run, "task": "single:number", "target_length": length, "target_depth": depth,
            "depth": depth, "trial": trial, "seed": seed, "score": score, "error": error}


def write(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def two_runs(tmp_path, *, b_seed=0, fractional=False):
    """1K: A 1,1,0,0 vs B 1,1,1,1 (0/2 discordant); 2K: A 0,0,0,0,0,1 vs B 1,1,1,1,1,0 (1/5): overall 1/7.

    A also has a cell B lacks (2K, 100%), and a cell B has with an error (1K, 100%).
    """
    a, b = [], []
    for i, (sa, sb) in enumerate([(1, 1), (1, 1), (0, 1), (0, 1)]):
        a.append(rec("a", 1000, [0.0, 50.0][i % 2], i // 2, float(sa)))
        b.append(rec("b", 1000, [0.0, 50.0][i % 2], i // 2, float(sb), seed=b_seed))
    for i, (sa, sb) in enumerate([(0, 1)] * 5 + [(1, 0)]):
        a.append(rec("a", 2000, [0.0, 50.0][i % 2], i // 2, 0.5 if fractional and i == 0 else float(sa)))
        b.append(rec("b", 2000, [0.0, 50.0][i % 2], i // 2, float(sb), seed=b_seed))
    a.append(rec("a", 2000, 100.0, 0, 1.0))
    a.append(rec("a", 1000, 100.0, 0, 1.0))
    b.append(rec("b", 1000, 100.0, 0, None, error="CUDA out of memory", seed=b_seed))
    return write(tmp_path / "a.jsonl", a), write(tmp_path / "b.jsonl", b)


def invoke(*args):
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test app"""

    compare_cmd.register(app)
    return CliRunner().invoke(app, ["compare", *map(str, args)])


EXPECTED = """\
A = dynamic x2 ({a})
B = dynamic x4 ({b})
length   pairs      A       B   B - A        p   test
────────────────────────────────────────────────────────────────────────
    1K       4   50.0   100.0   +50.0   0.5000   McNemar, 0/2 discordant
    2K       6   16.7    83.3   +66.7   0.2188   McNemar, 1/5 discordant

   all      10   30.0    90.0   +60.0   0.0703   McNemar, 1/7 discordant
unpaired cells: 1 only in A, 0 only in B; 1 common cell(s) without a score in A or B
"""


def test_compare_prints_the_expected_table(tmp_path):
    a, b = two_runs(tmp_path)
    res = invoke(a, b, "--labels", "dynamic x2,dynamic x4")
    assert res.exit_code == 0, res.output
    lines = [line.rstrip() for line in res.stdout.splitlines()]
    assert "\n".join(lines[:-1]) + "\n" == EXPECTED.format(a=a, b=b)
    assert lines[-1].startswith("scores: mean x 100; p: two-sided, exact McNemar")


def test_compare_fractional_scores_use_a_seeded_bootstrap(tmp_path):
    a, b = two_runs(tmp_path, fractional=True)
    first, again = invoke(a, b, "--bootstrap", "2000", "--seed", "1"), invoke(a, b, "--bootstrap", "2000", "--seed", "1")
    assert first.exit_code == 0, first.output
    assert first.stdout == again.stdout
    rows = {line.split()[0]: line for line in first.stdout.splitlines() if line.strip().startswith(("1K", "2K", "all"))}
    assert "McNemar, 0/2 discordant" in rows["1K"]
    assert rows["2K"].rstrip().endswith("paired bootstrap") and rows["all"].rstrip().endswith("paired bootstrap")
    assert rows["all"].split()[1:5] == ["10", "35.0", "90.0", "+55.0"]


def _one_error_line(res, *needles):
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in res.output
    for n in needles:
        assert n in err[0]


def test_compare_bad_input_is_one_error_line(tmp_path):
    a, b = two_runs(tmp_path)
    before = (a.read_bytes(), b.read_bytes())
    _one_error_line(invoke(a, tmp_path / "nope.jsonl"), "not found", "nope.jsonl")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    _, b7 = two_runs(seeds, b_seed=7)
    _one_error_line(invoke(a, b7), "no common cells")
    nan = tmp_path / "nan.jsonl"
    lines = b.read_text().splitlines()
    lines[1] = lines[1].replace('"score": 1.0', '"score": NaN')
    nan.write_text("\n".join(lines) + "\n")
    _one_error_line(invoke(a, nan), "nan.jsonl:2", "finite")
    _one_error_line(invoke(a, b, "--labels", "only-one"), "--labels")
    assert (a.read_bytes(), b.read_bytes()) == before  # compare never writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl", "nan.jsonl", "seeds"]


@pytest.mark.parametrize("content", ['{"run_id": "b", "task": "single:number"}\n', "not json\nnot json\n"])
def test_compare_unreadable_file(tmp_path, content):
    a, _ = two_runs(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    _one_error_line(invoke(a, bad), "bad.jsonl:1")
