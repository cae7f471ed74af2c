"""``longctx needle``: bad inputs -> one line + exit 2, a tiny end-to-end sweep (results + heatmap),
resume, configuration mismatch and --force.

In-process runs (CliRunner) load ``test_runner.tiny_chat_model`` (a tiny random model with the
default model's tokenizer and window: the mechanics, not the answers); one subprocess run checks the
real exit code and stderr of the installed command.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from longctx.cli import app, needle_cmd
from longctx.cli import common as cli_common
from longctx.niah.results import config_path

from .test_runner import tiny_chat_model


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """Runs ``longctx needle ...`` in process with the shared tiny model (model options applied to a copy)."""
    loads = []

    def fake_load(model, device, dtype, rope_scaling, attn="auto", max_context=None, chunk_size=None, kv_dtype="auto",
                  prefill="auto"):
        loads.append(model)
        base = tiny_chat_model()
        m = copy.copy(base)
        m.max_context = max_context or base.max_context
        m.chunk_size = chunk_size or base.chunk_size
        m.prefill_mode = prefill
        return m

    monkeypatch.setattr(cli_common, "load_from_cli", fake_load)
    from longctx.niah import plan as P

    monkeypatch.setattr(P, "calibrate", lambda cfg, device, dtype, refresh=False: P.CostModel(
        num_layers=cfg.num_layers, a=1e-4, b=5e-8, s=0.01, h=0.05))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args):
        res = runner.invoke(app, ["needle", *map(str, args)])
        res.loads = list(loads)
        return res

    return run


def _err_line(res) -> str:
    lines = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.mark.parametrize("args, needle", [
    (["--depths", "0,50,150"], "depth 150 is outside [0, 100]"),
    (["--depths", "-5"], "outside [0, 100]"),
    (["--shard", "3/3"], "bad --shard"),
    (["--shard", "x"], "bad --shard"),
    (["--haystack", "no/such/file.txt"], "haystack path not found"),
    (["--trials", "0"], "--trials must be at least 1"),
    (["--task", "bogus"], "unknown task"),
    (["--length-spacing", "log"], "bad --length-spacing"),
    (["--rope-scaling", "longrope:2"], "unsupported rope scaling method"),
])
def test_bad_inputs_before_model_load(cli, args, needle):
    res = cli(*args)
    assert res.exit_code == 2, res.output
    assert needle in _err_line(res)
    assert res.loads == []  # refused before loading the model


def test_empty_haystack_file(cli, tmp_path):
    (tmp_path / "empty.txt").write_text("  \n\n ")
    res = cli("--haystack", tmp_path / "empty.txt", "--lengths", "300,")
    assert res.exit_code == 2 and "haystack text is empty" in _err_line(res)
    (tmp_path / "hay").mkdir()
    res = cli("--haystack", tmp_path / "hay", "--lengths", "300,")
    assert res.exit_code == 2 and "no .txt files" in _err_line(res)


def test_max_len_too_small(cli):
    res = cli("--max-len", "40", "--num-lengths", "2", "--min-len", "20")
    assert res.exit_code == 2
    line = _err_line(res)
    assert "too small" in line and "template" in line


def test_lengths_beyond_model(cli, tmp_path):
    res = cli("--lengths", "4000,9000,40000", "--out", tmp_path / "r.jsonl")
    assert res.exit_code == 2
    line = _err_line(res)
    assert "length 9000 + answer budget 128" in line and "8192" in line
    # the hint covers the LONGEST length: (40000 + 128) / 8192 = 4.9 -> 5
    assert "--rope-scaling dynamic:5 " in line and "--max-context 40128" in line and "auto" in line
    assert not (tmp_path / "r.jsonl").exists() and res.loads == []


def test_dry_run_prints_the_plan_and_loads_nothing(cli, tmp_path):
    res = cli("--lengths", "300,600", "--depths", "0,50,100", "--dry-run", "--out", tmp_path / "r.jsonl")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert "plan: 6 cells to run: 2 lengths [300,600] x 3 depths [0,50,100] x 1 trial(s)" in out
    tokens = int(out.split("tokens to prefill: ")[1].split()[0].replace(",", ""))
    assert 600 < tokens < 2700  # prefix sharing: less than the 2700 prompt tokens, more than the longest prompt
    assert "prompts total 2,700" in out and "largest context: 728 tokens" in out
    assert "estimated time: 0:0" in out and "memory: weights 0.50 GiB" in out and "free " in out
    assert res.loads == [] and not (tmp_path / "r.jsonl").exists()


def test_dry_run_200k_default_model_hint_and_estimate(cli):
    res = cli("--max-len", "200000", "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "8 lengths [1K," in res.stdout and "200K]" in res.stdout
    assert "--rope-scaling dynamic:25 " in res.stdout  # ceil(200128 / 8192) = 25, the longest length's factor
    assert "estimated time: " in res.stdout and "largest context: 200,128 tokens" in res.stdout
    assert res.loads == []


def test_yes_gate(cli, tmp_path, monkeypatch):
    from longctx.niah import plan as P

    monkeypatch.setattr(P, "calibrate", lambda cfg, device, dtype, refresh=False: P.CostModel(
        num_layers=cfg.num_layers, a=1.0, b=0.0, s=0.0, h=0.0))  # 30 s per token: hours for one cell
    res = cli("--lengths", "300", "--depths", "50", "--out", tmp_path / "r.jsonl", "--no-plot")
    assert res.exit_code == 2 and res.loads == []
    assert "over 2:00:00" in _err_line(res) and "--yes" in _err_line(res)
    assert "plan: 1 cells to run" in res.stdout and "estimated time: 2:30:00" in res.stdout
    monkeypatch.setattr(P, "available_memory", lambda device: 1000)
    monkeypatch.setattr(P, "calibrate", lambda cfg, device, dtype, refresh=False: P.CostModel(
        num_layers=cfg.num_layers, a=1e-6, b=0.0, s=0.0, h=0.0))
    res = cli("--lengths", "300", "--depths", "50", "--out", tmp_path / "r.jsonl", "--no-plot")
    assert res.exit_code == 2 and "GiB of memory and 0.00 GiB is free" in _err_line(res)
    res = cli("--lengths", "300", "--depths", "50", "--out", tmp_path / "r.jsonl", "--no-plot", "--yes",
              "--answer-budget", "8")
    assert res.exit_code == 0, res.stderr
    assert res.loads and len((tmp_path / "r.jsonl").read_text().splitlines()) == 1


def test_rope_scaling_auto_picks_the_longest_lengths_factor(cli, tmp_path, monkeypatch):
    seen = {}

    def fake_load(model, device, dtype, rope_scaling, *a, **k):
        seen["rope"] = rope_scaling
        raise needle_cmd.CliError("stop here")

    monkeypatch.setattr(cli_common, "load_from_cli", fake_load)
    res = cli("--lengths", "1K,20K", "--depths", "50", "--rope-scaling", "auto", "--dry-run")
    assert res.exit_code == 0 and "--rope-scaling auto: dynamic:3" in res.stdout  # ceil(20128 / 8192) = 3
    res = cli("--lengths", "1K,20K", "--depths", "50", "--rope-scaling", "auto", "--yes")
    assert seen["rope"] == "dynamic:3"
    res = cli("--lengths", "1K", "--depths", "50", "--rope-scaling", "auto", "--dry-run")
    assert "--rope-scaling auto: none" in res.stdout


def test_end_to_end_resume_mismatch_force(cli, tmp_path):
    out = tmp_path / "res" / "n.jsonl"
    plot = tmp_path / "plots" / "n.png"
    args = ["--lengths", "300,600", "--depths", "0,50,100", "--answer-budget", "32", "--out", out, "--plot", plot,
            "--dump-prompts", tmp_path / "prompts"]
    res = cli(*args)
    assert res.exit_code == 0, res.output + res.stderr
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 6
    assert {(r["target_length"], r["target_depth"]) for r in recs} == {(L, d) for L in (300, 600) for d in (0.0, 50.0, 100.0)}
    assert all(r["error"] is None and r["score"] in (0.0, 1.0) for r in recs)
    assert all(r["new_tokens"] >= 1 and r["stop_reason"] for r in recs)  # each cell generated (random answers)
    assert sum(r["prefilled_tokens"] for r in recs) < 3 * 900  # prefix sharing
    for name in ("n.png", "n.svg", "n_by_length.png", "n_by_length.svg"):
        assert (plot.parent / name).stat().st_size > 1000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((tmp_path / "prompts").iterdir())) == 6
    assert "tokens prefilled" in res.stdout and "all" in res.stdout
    assert "[6/6]" in res.stderr  # progress lines (stderr is not a terminal here)

    # rerun: resumes, nothing recomputed
    res = cli(*args)
    assert res.exit_code == 0, res.stderr
    assert "0 run now, 6 already" in res.stdout
    assert len(out.read_text().splitlines()) == 6

    # another configuration into the same file: refused, file untouched
    before = out.read_bytes()
    res = cli(*args, "--seed", "5")
    assert res.exit_code == 2 and "another configuration" in _err_line(res) and "--force" in _err_line(res)
    assert out.read_bytes() == before

    # --force: old results kept as a backup, fresh run
    res = cli("--lengths", "300,", "--depths", "50,", "--answer-budget", "24", "--out", out, "--no-plot",
              "--seed", "5", "--force")
    assert res.exit_code == 0, res.stderr
    baks = list(out.parent.glob("n.jsonl.bak-*"))
    assert len(baks) == 1 and baks[0].read_bytes() == before
    assert "moved the previous results aside" in res.stderr
    assert len(out.read_text().splitlines()) == 1
    assert json.loads(config_path(out).read_text())["settings"]["seed"] == 5


def test_subprocess_exit_code_and_one_line():
    proc = subprocess.run([sys.executable, "-m", "longctx", "needle", "--depths", "0,101"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    err = [x for x in proc.stderr.splitlines() if x.strip()]
    assert err == ["error: depth 101 is outside [0, 100]"]
