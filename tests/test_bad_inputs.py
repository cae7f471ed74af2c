"""Bad input to every command: exit code 2, exactly one ``error:`` line, no traceback, and every file
involved byte-identical afterwards (a hash of the whole working folder before and after).

Table-driven and in process (CliRunner); a few cases also run as real subprocesses. No case loads
model weights: everything here is refused before (the plan's calibration is a stored fake).
"""
from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longctx.cli import app
from longctx.cli.common import one_line
from longctx.errors import ConfigError, GridError, OutputError, PlanLimitError

RECORD = {"task": "single:number", "target_length": 1000, "target_depth": 50.0, "trial": 0, "score": 1.0,
          "error": None, "run_id": "niah-x", "response": "1"}


def _files(tmp: Path) -> None:
    """The working folder every case starts from."""
    (tmp / "notes.txt").write_text("my notes\nnot results\n")
    (tmp / "notes.png").write_text("not an image")
    (tmp / "folder").mkdir()
    (tmp / "doc.txt").write_text("The capital of Freedonia is Fredville. " * 20)
    for name, cfg in {"list_cfg": [1, 2], "zero_heads": {"model_type": "llama", "hidden_size": 64,
                                                        "intermediate_size": 128, "num_hidden_layers": 2,
                                                        "num_attention_heads": 0, "vocab_size": 100},
                      "neg_hidden": {"model_type": "llama", "hidden_size": -64, "intermediate_size": 128,
                                     "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100},
                      "zero_layers": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                                      "num_hidden_layers": 0, "num_attention_heads": 4, "vocab_size": 100}}.items():
        (tmp / name).mkdir()
        (tmp / name / "config.json").write_text(json.dumps(cfg))
        (tmp / name / "model.safetensors").write_bytes(b"")  # weights are found; the config is what is wrong
    for name, (key, value) in {"len_inf": ("target_length", "Infinity"), "depth_nan": ("target_depth", "NaN"),
                               "score_inf": ("score", "-Infinity")}.items():
        line = json.dumps(RECORD).replace(f'"{key}": {json.dumps(RECORD[key])}', f'"{key}": {value}')
        (tmp / f"{name}.jsonl").write_text(line + "\n")
    (tmp / "good.jsonl").write_text(json.dumps(RECORD) + "\n")


def _snapshot(tmp: Path) -> dict[str, str]:
    return {str(p.relative_to(tmp)): ("dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(tmp.rglob("*"))}


CASES = [
    # -- needle: grid grammar -----------------------------------------------------------------------
    (["needle", "--depths", "150"], "depth 150 is outside [0, 100]"),
    (["needle", "--depths", "-5"], "outside [0, 100]"),
    (["needle", "--depths", "0,50,101"], "depth 101 is outside"),
    (["needle", "--depths", "3@0..150"], "depth 150 is outside"),
    (["needle", "--lengths", "0"], "at least 1 token"),
    (["needle", "--lengths", "abc"], "invalid length 'abc'"),
    (["needle", "--lengths", "10@1K"], "N@FROM..TO"),
    (["needle", "--lengths", "1K", "--num-lengths", "3"], "not both"),
    (["needle", "--max-len", "0"], "at least 1 token"),
    (["needle", "--lengths", "9000"], "--rope-scaling dynamic:2"),
    (["needle", "--trials", "0"], "--trials must be at least 1"),
    (["needle", "--shard", "3/3"], "bad --shard"),
    (["needle", "--task", "bogus"], "unknown task"),
    # -- needle: files that are not ours ------------------------------------------------------------
    (["needle", "--lengths", "1K", "--out", "notes.txt"], "not a longctx results file"),
    (["needle", "--lengths", "1K", "--out", "folder"], "is a folder"),
    (["needle", "--lengths", "1K", "--dump-prompts", "notes.txt"], "is a file, not a folder"),
    (["needle", "--lengths", "1K", "--plot", "notes.png"], "is not a PNG image"),
    # -- needle: engine options ---------------------------------------------------------------------
    (["needle", "--device", "tpu"], "invalid device 'tpu'"),
    (["needle", "--device", "cuda:abc"], "invalid device 'cuda:abc'"),
    (["needle", "--chunk-size", "0"], "--chunk-size must be positive"),
    (["needle", "--chunk-size", "-5"], "--chunk-size must be positive"),
    (["needle", "--max-context", "0"], "--max-context must be positive"),
    (["needle", "--max-context", "-1"], "--max-context must be positive"),
    (["needle", "--rope-scaling", "longrope:2"], "unsupported rope scaling method 'longrope'"),
    (["needle", "--model", "list_cfg"], "must hold a JSON object"),
    (["needle", "--model", "zero_heads"], "num_attention_heads must be a positive integer"),
    (["needle", "--model", "neg_hidden"], "hidden_size must be a positive integer"),
    (["needle", "--lengths", "4K", "--depths", "50"], "rerun with --yes"),  # the fake calibration: > 2 h
    # -- click usage / type errors as one line ------------------------------------------------------
    (["needle", "--trials", "abc"], "Invalid value for '--trials'"),
    (["needle", "--bogus"], "No such option: --bogus"),
    (["nosuchcommand"], "No such command"),
    # -- generate -----------------------------------------------------------------------------------
    (["generate", "hi", "--top-p", "0"], "top-p must be in (0, 1]"),
    (["generate", "hi", "--top-p", "1.5"], "top-p must be in (0, 1]"),
    (["generate", "hi", "--temperature", "-1"], "temperature must be >= 0"),
    (["generate", "hi", "--device", "tpu"], "invalid device"),
    (["generate", "hi", "--chunk-size", "0"], "--chunk-size must be positive"),
    (["generate", "hi", "--prefill", "paged"], "unknown --prefill 'paged': expected one of auto, chunked, layerwise"),
    (["needle", "--prefill", "paged"], "unknown --prefill 'paged'"),
    (["generate", "hi", "--max-context", "-3"], "--max-context must be positive"),
    (["generate", "hi", "--model", "zero_layers"], "num_layers must be a positive integer"),
    (["generate", "hi", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["generate", "hi", "--top-p", "abc"], "Invalid value for '--top-p'"),
    (["generate"], "Missing argument"),
    # -- info ---------------------------------------------------------------------------------------
    (["info", "--context", "0"], "at least 1 token"),
    (["info", "--context", "abc"], "invalid --context 'abc'"),
    (["info", "--chunk-size", "0"], "--chunk-size must be positive"),
    (["info", "--preset", "bogus"], "unknown preset"),
    (["info", "--model", "list_cfg"], "must hold a JSON object"),
    (["info", "--model", "zero_heads"], "num_attention_heads must be a positive integer"),
    # -- ask / chat -----------------------------------------------------------------------------------
    (["ask", "doc.txt", "capital?", "--device", "cuda:abc"], "invalid device"),
    (["ask", "doc.txt", "capital?", "--chunk-size", "0"], "--chunk-size must be positive"),
    (["ask", "doc.txt", "capital?", "--model", "list_cfg"], "must hold a JSON object"),
    (["chat", "doc.txt", "--max-context", "0"], "--max-context must be positive"),
    (["chat", "doc.txt", "--device", "tpu"], "invalid device"),
    # -- plot ---------------------------------------------------------------------------------------
    (["plot", "len_inf.jsonl"], "target_length is not a finite number"),
    (["plot", "depth_nan.jsonl"], "target_depth is not a finite number"),
    (["plot", "score_inf.jsonl"], "score is not a finite number"),
    (["plot", "good.jsonl", "--out", "notes.png"], "is not a PNG image"),
    (["plot", "missing.jsonl"], "missing.jsonl"),
    # -- bench --------------------------------------------------------------------------------------
    (["bench", "prefill", "--lengths", "abc"], "invalid length 'abc'"),
    (["bench", "prefill", "--lengths", "0"], "at least 1 token"),
    (["bench", "prefill", "--device", "tpu"], "invalid device"),
    # -- serve (argument errors before the model loads) ---------------------------------------------
    (["serve", "--device", "tpu"], "invalid device"),
    (["serve", "--chunk-size", "0"], "--chunk-size must be positive"),
    (["serve", "--port", "70000"], "--port must be in 1..65535"),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    from longctx.niah import plan as P

    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    # A stored-calibration stand-in: a slow device, so a single 4K cell is over the 2-hour limit.
    monkeypatch.setattr(P, "calibrate", lambda cfg, device, dtype, refresh=False: P.CostModel(
        num_layers=cfg.num_layers, a=0.1, b=1e-6, s=0.01, h=0.01))
    return tmp_path


@pytest.mark.parametrize("argv, needle", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_one_line_exit_2_files_untouched(workdir, argv, needle):
    before = _snapshot(workdir)
    res = CliRunner().invoke(app, argv)
    after = _snapshot(workdir)
    errors = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr, res.exception)
    assert len(errors) == 1, res.stderr
    assert needle in errors[0], errors[0]
    assert "Traceback" not in res.stderr + res.stdout
    assert before == after  # every file byte-identical, nothing created


def test_at_least_40_cases_over_every_command():
    assert len(CASES) >= 40
    assert {a[0] for a, _ in CASES} >= {"needle", "generate", "info", "ask", "chat", "plot", "bench", "serve"}


@pytest.mark.parametrize("argv, needle", [
    (["needle", "--depths", "150"], "error: depth 150 is outside [0, 100]"),
    (["generate", "hi", "--top-p", "2"], "error: top-p must be in (0, 1] (got 2)"),
    (["needle", "--lengths", "1K", "--out", "notes.txt"], "not a longctx results file"),
    (["info", "--context", "12x"], "error: invalid --context '12x'"),
])
def test_subprocess_real_exit_code(tmp_path, argv, needle):
    _files(tmp_path)
    before = _snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "longctx", *argv], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert _snapshot(tmp_path) == before


def test_typed_exceptions_carry_the_same_messages():
    from longctx.engine.config import check_sampling, from_hf_dict, parse_device
    from longctx.niah.grid import parse_depths
    from longctx.niah.results import check_results_file

    with pytest.raises(GridError, match=r"depth 150 is outside \[0, 100\]"):
        parse_depths("150")
    with pytest.raises(ConfigError, match="invalid device 'tpu'"):
        parse_device("tpu")
    with pytest.raises(ConfigError, match=r"top-p must be in \(0, 1\]"):
        check_sampling(0.0, 0.0)
    with pytest.raises(ConfigError, match="JSON object"):
        from_hf_dict([1, 2])  # type: ignore[arg-type]
    assert issubclass(OutputError, OSError) and issubclass(PlanLimitError, ValueError)
    with pytest.raises(OSError, match="not a longctx results file"):
        p = Path(__file__)
        check_results_file(p)


def test_device_strings_rejected_by_the_engine_too():
    from longctx.engine.runtime import resolve_device

    for bad in ("tpu", "cuda:abc", "", "cuda:-1"):
        with pytest.raises(ConfigError, match="invalid device"):
            resolve_device(bad)
    assert str(resolve_device("cpu")) == "cpu"


def test_read_only_output_folder_is_one_line(tmp_path):
    """A folder we may not write (simulated: tests run as root, where chmod does not stop writes)."""
    from longctx.niah.results import ResultsFile

    err = PermissionError(errno.EROFS, "Read-only file system", str(tmp_path / "ro" / "r.jsonl"))
    assert one_line(err) == f"Read-only file system: {tmp_path / 'ro' / 'r.jsonl'}"
    ro = tmp_path / "ro"
    ro.mkdir()
    import builtins

    real_open = builtins.open

    def guarded(file, mode="r", *a, **k):
        if str(file).startswith(str(ro)) and any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *a, **k)

    builtins.open = guarded
    try:
        with pytest.raises(OSError) as ei:
            ResultsFile(ro / "r.jsonl", {"a": 1})
    finally:
        builtins.open = real_open
    assert one_line(ei.value).startswith("Read-only file system: ")
    assert list(ro.iterdir()) == []


def test_disk_full_leaves_a_file_resume_repairs(tmp_path, monkeypatch):
    """ENOSPC in the middle of a record: the error surfaces as OSError (one CLI line); the torn line
    is cut on the next open and the run resumes with every complete record intact."""
    from longctx.niah.results import ResultsFile

    out = tmp_path / "r.jsonl"
    rf = ResultsFile(out, {"a": 1})
    rf.append(dict(RECORD))
    real = rf._fh

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device", str(out))

        def __getattr__(self, name):
            return getattr(self.fh, name)

    rf._fh = Full(real)
    with pytest.raises(OSError) as ei:
        rf.append({**RECORD, "target_length": 2000})
    assert one_line(ei.value) == f"No space left on device: {out}"
    rf._fh = real
    rf.close()
    assert not out.read_bytes().endswith(b"\n")  # torn tail on disk
    warned = []
    rf2 = ResultsFile(out, {"a": 1}, warn=warned.append)
    assert [r["target_length"] for r in rf2.records] == [1000] and "torn last line" in warned[0]
    rf2.append({**RECORD, "target_length": 2000})
    rf2.close()
    assert [json.loads(x)["target_length"] for x in out.read_text().splitlines()] == [1000, 2000]
