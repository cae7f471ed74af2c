"""Crash-safe NIAH results files (longctx.niah.results): append + fsync, torn-line repair, resume,
configuration checks, --force backups, atomic config."""
from __future__ import annotations

import json
import os

import pytest

from longctx.niah.results import (ConfigMismatchError, ResultsError, ResultsFile, cell_key, config_hash, config_path,
                                  read_records, write_json_atomic)

SETTINGS = {"model": "m", "task": {"id": "single:number", "answer_budget": 32}, "seed": 0, "chat": True}


def rec(length, depth, trial=0, task="single:number", **kw):
    return {"task": task, "target_length": length, "target_depth": depth, "trial": trial, "score": 1.0, **kw}


def open_rf(path, settings=SETTINGS, **kw):
    warnings: list[str] = []
    rf = ResultsFile(path, settings, warn=warnings.append, **kw)
    return rf, warnings


def test_append_is_one_line_flushed_and_fsynced(tmp_path, monkeypatch):
    out = tmp_path / "sub" / "r.jsonl"
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    rf, _ = open_rf(out)
    n0 = len(synced)
    rf.append(rec(100, 50.0, response="line\nbreak ünïcode"))
    assert len(synced) == n0 + 1
    # readable by another reader before close: flushed
    text = out.read_text(encoding="utf-8")
    assert text.count("\n") == 1 and text.endswith("\n")
    r = json.loads(text)
    assert r["response"] == "line\nbreak ünïcode" and r["run_config_hash"] == rf.config_hash
    assert r["run_id"] == rf.run_id
    rf.append(rec(100, 100.0, score=float("nan")))  # strict JSON: NaN written as null
    rf.close()
    assert read_records(out)[1]["score"] is None


def test_resume_keys_and_run_id(tmp_path):
    out = tmp_path / "r.jsonl"
    rf, _ = open_rf(out)
    rf.append(rec(100, 50.0))
    rf.append(rec(100, 50, trial=1))
    run_id = rf.run_id
    rf.close()
    rf, w = open_rf(out)
    assert w == [] and rf.run_id == run_id
    assert rf.is_done("single:number", 100, 50, 0) and rf.is_done("single:number", 100, 50.0000001, 1)
    assert not rf.is_done("single:number", 100, 50, 2) and not rf.is_done("single:word", 100, 50, 0)
    assert len(rf.records) == 2
    rf.close()
    cfg = json.loads(config_path(out).read_text())
    assert cfg["config_hash"] == config_hash(SETTINGS) and len(cfg["runs"]) == 2
    assert cell_key("t", 5, 12.5, 0) == ("t", 5, 12.5, 0)


@pytest.mark.parametrize("tail", [b'{"task": "single:number", "target_len', b"\x00\x00\x00\x00", b'{"broken\n',
                                  b"\x00\x00\n"])
def test_torn_last_line_repaired(tmp_path, tail):
    out = tmp_path / "r.jsonl"
    rf, _ = open_rf(out)
    for d in (0.0, 50.0, 100.0):
        rf.append(rec(100, d))
    rf.close()
    good = out.read_bytes()
    out.write_bytes(good + tail)
    rf, w = open_rf(out)
    assert len(w) == 1 and "torn last line" in w[0] and f"({len(tail)} bytes)" in w[0]
    assert out.read_bytes() == good and len(rf.records) == 3
    rf.append(rec(200, 0.0))
    rf.close()
    assert [r["target_length"] for r in read_records(out)] == [100, 100, 100, 200]


def test_only_line_torn(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_bytes(b'{"task": "single')
    rf, w = open_rf(out)
    assert rf.records == [] and out.read_bytes() == b"" and w
    rf.close()


def test_bad_middle_line_is_an_error_and_nothing_changes(tmp_path):
    # One reading policy (results.py): only a torn LAST line is skipped; a bad line elsewhere is an error
    # naming file:line (this test used to expect a skip with a warning, the old writer's own policy).
    out = tmp_path / "r.jsonl"
    rf, _ = open_rf(out)
    rf.append(rec(100, 0.0))
    rf.close()
    data = out.read_bytes()
    line = data.decode().strip()
    out.write_bytes(data + b"not json\n" + (json.dumps(json.loads(line) | {"target_depth": 100.0}) + "\n").encode())
    before, config_before = out.read_bytes(), config_path(out).read_bytes()
    with pytest.raises(ResultsError, match=r"r\.jsonl:2: not valid JSON") as e:
        open_rf(out)
    assert "\n" not in str(e.value)
    assert out.read_bytes() == before and config_path(out).read_bytes() == config_before  # nothing removed
    with pytest.raises(ResultsError, match=r"r\.jsonl:2"):
        read_records(out)
    out.write_bytes(before.replace(b"not json\n", b""))  # repaired by hand: resumes (the lock was released)
    rf, w = open_rf(out)
    assert len(rf.records) == 2 and w == []
    rf.close()


def test_config_mismatch_refused_with_one_line(tmp_path):
    out = tmp_path / "r.jsonl"
    rf, _ = open_rf(out)
    rf.append(rec(100, 0.0))
    rf.close()
    before = out.read_bytes()
    other = dict(SETTINGS, seed=1, task={"id": "single:uuid", "answer_budget": 32})
    with pytest.raises(ConfigMismatchError) as e:
        open_rf(out, other)
    msg = str(e.value)
    assert "\n" not in msg and "another configuration" in msg and "--force" in msg
    assert "seed" in msg and "task.id" in msg
    assert out.read_bytes() == before and json.loads(config_path(out).read_text())["settings"] == SETTINGS


def test_records_without_config_file_are_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    rf, _ = open_rf(out)
    rf.append(rec(100, 0.0))
    rf.close()
    config_path(out).unlink()
    rf, _ = open_rf(out)  # same configuration: the records carry its hash -> resumable
    assert len(rf.records) == 1
    rf.close()
    config_path(out).unlink()
    with pytest.raises(ConfigMismatchError, match="no matching configuration"):
        open_rf(out, dict(SETTINGS, seed=5))


def test_force_moves_old_files_aside(tmp_path):
    out = tmp_path / "r.jsonl"
    rf, _ = open_rf(out)
    rf.append(rec(100, 0.0))
    rf.close()
    old_results, old_config = out.read_bytes(), config_path(out).read_bytes()
    other = dict(SETTINGS, seed=1)
    rf, w = open_rf(out, other, force=True)
    assert rf.records == [] and out.read_bytes() == b""
    assert len(rf.backups) == 2 and any("moved the previous results aside" in x for x in w)
    res_bak = [p for p in rf.backups if ".config.json" not in p.name][0]
    cfg_bak = [p for p in rf.backups if ".config.json" in p.name][0]
    assert res_bak.name.startswith("r.jsonl.bak-") and res_bak.read_bytes() == old_results
    assert cfg_bak.name.startswith("r.jsonl.config.json.bak-") and cfg_bak.read_bytes() == old_config
    rf.append(rec(100, 0.0))
    rf.close()
    # a second forced switch the same second does not overwrite the first backup
    rf, _ = open_rf(out, SETTINGS, force=True)
    rf.close()
    assert res_bak.read_bytes() == old_results
    assert len(list(tmp_path.glob("r.jsonl.bak-*"))) == 2


def test_force_with_same_config_resumes(tmp_path):
    out = tmp_path / "r.jsonl"
    rf, _ = open_rf(out)
    rf.append(rec(100, 0.0))
    rf.close()
    rf, _ = open_rf(out, force=True)
    assert len(rf.records) == 1 and rf.backups == []
    rf.close()


def test_second_writer_is_locked_out(tmp_path):
    pytest.importorskip("fcntl")
    out = tmp_path / "r.jsonl"
    rf, _ = open_rf(out)
    with pytest.raises(ValueError, match="locked"):
        open_rf(out)
    rf.close()
    rf2, _ = open_rf(out)
    rf2.close()


def test_atomic_config_write(tmp_path):
    p = tmp_path / "c.json"
    write_json_atomic(p, {"a": 1})
    write_json_atomic(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert [x.name for x in tmp_path.iterdir()] == ["c.json"]  # no temporary file left


def test_directory_path_refused(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        ResultsFile(tmp_path, SETTINGS)


# --------------------------------------------------------------------------- one reading policy, summary file
def test_reader_policies(tmp_path):
    from longctx.niah.results import ResultsWarning, load_results

    out = tmp_path / "r.jsonl"
    lines = [json.dumps(rec(100, d, score=s, run_id="x")) for d, s in ((0.0, 1.0), (50.0, 0.0), (0.0, 0.0))]
    out.write_text("\n".join(lines) + "\n" + '{"task": "single:number", "target_le')
    with pytest.warns(ResultsWarning, match=r"r\.jsonl:4: skipping a torn last line"):
        got = read_records(out)
    # duplicates: the later copy of a cell wins (line 3 replaces line 1)
    assert [(r["target_depth"], r["score"]) for r in got] == [(50.0, 0.0), (0.0, 0.0)]
    assert len(load_results([out], warn=lambda m: None)) == 2
    for old, new, why in [('"score": 1.0', '"score": NaN', "score is not a finite number"),
                          ('"score": 1.0', '"score": 100', "score 100 is outside [0, 1]"),
                          ('"trial": 0', '"trial": "x"', "trial is not a number"),
                          ('"trial": 0', '"trial": 0.5', "target_length and trial must be whole numbers"),
                          ('"task": "single:number", ', "", "record has no task")]:
        out.write_text("\n".join([lines[0].replace(old, new)] + lines[1:]) + "\n")
        with pytest.raises(ResultsError) as e:
            read_records(out)
        assert str(e.value).startswith(f"{out}:1: {why}"), str(e.value)
    # a complete last record that only lost its newline is kept; the writer adds the newline back
    out.write_text("\n".join(lines[:2]))
    assert len(read_records(out)) == 2
    config_path(out).write_text(json.dumps({"config_hash": "x"}))  # records of another configuration
    with pytest.raises(ConfigMismatchError):
        open_rf(out)
    assert out.read_text() == "\n".join(lines[:2])  # refused: untouched


def test_summary_file_beside_the_results(tmp_path):
    from longctx.niah.results import summary_path

    out = tmp_path / "r.jsonl"
    rf, _ = open_rf(out)
    assert json.loads(summary_path(out).read_text())["overall"] is None  # written on open: never stale
    for t, s in enumerate([1.0, 0.0, 1.0]):
        rf.append(dict(rec(100, 50.0, trial=t, score=s), depth=47.0))
    rf.write_summary()
    rf.close()
    summary = json.loads(summary_path(out).read_text())
    assert summary["format"] == "longctx-niah-summary/1" and summary["run_id"] == rf.run_id
    (cell,) = summary["cells"]
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(66.6667) and cell["depth_offset"] == 3.0
    assert summary["overall"]["ci_low"] == pytest.approx(20.766, abs=1e-3)  # Wilson(2, 3) = 0.20766.., in percent
