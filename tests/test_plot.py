"""NIAH plotting: results loading, score matrix, figures and the ``plot`` command (no torch)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from longctx.niah import plot as P
from longctx.niah import results as R
from longctx.niah import stats as S

REPO = Path(__file__).resolve().parents[1]


def rec(length, depth, score, *, trial=0, error=None, run_id="run-a", rope=None, task="niah_single"):
    return {
        "run_id": run_id, "model": "/models/SmolLM2-135M-Instruct", "config_hash": "abc",
        "tokenizer": "smollm2-135m-instruct (gguf)", "rope_scaling": rope, "rope_base": 10000.0,
        "task": task, "target_length": length, "length": length - 5, "target_depth": depth,
        "depth": depth, "trial": trial, "seed": 1, "needles": [], "expected": ["1234567"],
        "response": "", "score": score, "error": error, "version": 1,
    }


def write_jsonl(path: Path, records, tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")
    return path


def grid_records(run_id="run-a", rope=None):
    """lengths 1000/4000, depths 0/50/100, with errors, null scores and one absent cell."""
    return [
        # (0%, 1000): mean of 1, 0, 1 -> 66.67
        rec(1000, 0.0, 1.0, trial=0, run_id=run_id, rope=rope),
        rec(1000, 0.0, 0.0, trial=1, run_id=run_id, rope=rope),
        rec(1000, 0.0, 1.0, trial=2, run_id=run_id, rope=rope),
        # (50%, 1000): an error with score 0 must not count -> 100
        rec(1000, 50.0, 1.0, trial=0, run_id=run_id, rope=rope),
        rec(1000, 50.0, 0.0, trial=1, error="CUDA out of memory", run_id=run_id, rope=rope),
        # (100%, 1000): partial score 0.5 and a null score (not counted) -> 50
        rec(1000, 100.0, 0.5, trial=0, run_id=run_id, rope=rope),
        rec(1000, 100.0, None, trial=1, run_id=run_id, rope=rope),
        # (0%, 4000): 0 is a real zero, not missing
        rec(4000, 0.0, 0.0, trial=0, run_id=run_id, rope=rope),
        # (50%, 4000): only errors -> missing
        rec(4000, 50.0, None, trial=0, error="timeout", run_id=run_id, rope=rope),
        # (100%, 4000): no record at all -> missing
    ]


# --------------------------------------------------------------------------- matrix
def test_score_matrix_means_missing_and_errors(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", grid_records())
    lengths, depths, m = S.score_matrix(R.load_results([path]))
    assert lengths == [1000, 4000]
    assert depths == [0.0, 50.0, 100.0]
    assert m.shape == (3, 2)
    np.testing.assert_allclose(m[:, 0], [200 / 3, 100.0, 50.0])
    assert m[0, 1] == 0.0
    assert math.isnan(m[1, 1]) and math.isnan(m[2, 1])


def test_summary_table_counts(tmp_path):
    records = R.load_results([write_jsonl(tmp_path / "r.jsonl", grid_records())])
    rows = S.summary_table(records)
    assert [r["target_length"] for r in rows] == [1000, 4000, "all"]
    first, second, total = rows
    assert first["label"] == "1K" and first["records"] == 7 and first["valid"] == 5 and first["errors"] == 1
    assert first["mean"] == pytest.approx((200 / 3 + 100 + 50) / 3)
    assert second["mean"] == 0.0 and second["cells"] == 1 and second["missing_cells"] == 2
    assert second["errors"] == 1
    assert total["records"] == 9 and total["errors"] == 2 and total["missing_cells"] == 2
    assert total["mean"] == pytest.approx((200 / 3 + 100 + 50 + 0) / 4)


def test_summary_table_all_missing():
    rows = S.summary_table([rec(1000, 0.0, None, error="boom")])
    assert rows[0]["mean"] is None and rows[-1]["mean"] is None


# --------------------------------------------------------------------------- loading
def test_torn_last_line_is_skipped_with_warning(tmp_path):
    records = grid_records()
    path = write_jsonl(tmp_path / "r.jsonl", records, tail='{"run_id": "run-a", "target_len')
    with pytest.warns(R.ResultsWarning, match="torn last line"):
        loaded = R.load_results([path])
    assert len(loaded) == len(records)


def test_torn_line_in_the_middle_is_an_error(tmp_path):
    good = [json.dumps(r) for r in grid_records()]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(good[:2] + ['{"broken'] + good[2:]) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:3"):
        R.load_results([path])


@pytest.mark.parametrize("content", ["", "\n\n", '{"run_id": "x", "tar'])
def test_file_without_records_is_an_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", R.ResultsWarning)
        with pytest.raises(ValueError, match="no records") as info:
            R.load_results([path])
    assert "\n" not in str(info.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="not found") as info:
        R.load_results([tmp_path / "nope.jsonl"])
    assert "\n" not in str(info.value)


def test_not_a_results_file_is_an_error(tmp_path):
    path = tmp_path / "x.config.json"
    path.write_text(json.dumps({"model": "m", "lengths": [1000]}) + "\n")
    with pytest.raises(ValueError, match="target_length"):
        R.load_results([path])


def test_shards_merge_and_dedupe_keeping_the_last(tmp_path):
    records = grid_records()
    shard0 = write_jsonl(tmp_path / "r.shard0.jsonl", [r for r in records if r["target_length"] == 1000])
    # shard 1 re-ran (0%, 1000, trial 0) with another score: the later copy wins
    rerun = rec(1000, 0.0, 0.0, trial=0)
    shard1 = write_jsonl(tmp_path / "r.shard1.jsonl", [r for r in records if r["target_length"] == 4000] + [rerun])
    merged = R.load_results([shard0, shard1])
    assert len(merged) == len(records)
    _, _, m = S.score_matrix(merged)
    assert m[0, 0] == pytest.approx(100 / 3)
    # deterministic order whatever the argument order, sorted by length, depth, trial
    again = R.load_results([shard1, shard0])
    keys = [(r["target_length"], r["target_depth"], r["trial"]) for r in merged]
    assert keys == sorted(keys)
    assert keys == [(r["target_length"], r["target_depth"], r["trial"]) for r in again]


# --------------------------------------------------------------------------- labels
def test_run_label_and_token_format():
    assert P.run_label([rec(1000, 0.0, 1.0, rope="dynamic:2.0")]) == "SmolLM2-135M-Instruct · dynamic×2"
    assert P.run_label([rec(1000, 0.0, 1.0, rope={"type": "dynamic", "factor": 4.0})]).endswith("dynamic×4")
    assert P.run_label([rec(1000, 0.0, 1.0)]).endswith("no scaling")
    assert [S.format_tokens(n) for n in (512, 1000, 1024, 8192, 128000, 131072, 200000, 1500, 1_048_576)] == [
        "512", "1K", "1K", "8K", "128K", "128K", "200K", "1.5K", "1M"]


# --------------------------------------------------------------------------- figures
def _assert_images(paths, stem_dir: Path, stem: str):
    assert sorted(p.name for p in paths) == [f"{stem}.png", f"{stem}.svg"]
    png, svg = stem_dir / f"{stem}.png", stem_dir / f"{stem}.svg"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = svg.read_text()
    assert svg.stat().st_size > 1000 and "<svg" in text
    return text


def test_heatmaps_and_length_chart_are_written(tmp_path):
    a = grid_records("run-a")
    b = grid_records("run-b", rope="dynamic:2.0")
    runs = [(P.run_label(a), a), (P.run_label(b), b)]
    out_dir = tmp_path / "plots"
    paths = P.plot_heatmaps(runs, out_dir / "cmp.png", title="test")
    svg = _assert_images(paths, out_dir, "cmp")
    assert "dynamic×2" in svg and "SmolLM2-135M-Instruct" in svg  # panel labels and title are text
    paths = P.plot_accuracy_vs_length(runs, out_dir / "cmp_by_length")  # no suffix given
    _assert_images(paths, out_dir, "cmp_by_length")


def test_length_chart_breaks_lines_at_gaps_and_compares_shared_lengths():
    """A run without 2K/4K must not draw a line from 1K to 8K, and the legend's means must be over
    the lengths both runs have (here 1K and 8K), named in the subtitle."""
    full = [rec(n, d, s, run_id="full") for n, s in ((1000, 1.0), (2000, 1.0), (4000, 0.0), (8000, 0.0))
            for d in (0.0, 100.0)]
    gappy = [rec(n, d, s, run_id="gappy") for n, s in ((1000, 0.0), (8000, 1.0)) for d in (0.0, 100.0)]
    fig = P.length_figure([("full", full), ("gappy", gappy)])
    ax = fig.axes[0]
    lines = {c.get_label(): c.lines[0] for c in ax.containers}  # errorbar: (data line, caps, bars)
    assert sorted(lines) == ["full (shared lengths 50.0)", "gappy (shared lengths 50.0)"]
    y = np.asarray(lines["gappy (shared lengths 50.0)"].get_ydata(), dtype=float)
    assert np.isnan(y[1]) and np.isnan(y[2]) and y[0] == 0.0 and y[3] == 100.0  # 2K and 4K: gaps
    np.testing.assert_array_equal(lines["full (shared lengths 50.0)"].get_ydata(), [100.0, 100.0, 0.0, 0.0])
    assert "legend means over 1K, 8K (the lengths every run has)" in fig._suptitle.get_text()
    # the same lengths for every run: the plain overall mean and no note
    fig = P.length_figure([("full", full), ("again", [dict(r, run_id="again") for r in full])])
    labels = sorted(c.get_label() for c in fig.axes[0].containers)
    assert labels == ["again (overall 50.0)", "full (overall 50.0)"]
    assert "legend means" not in fig._suptitle.get_text()
    # no length in common: no mean in the legend at all
    fig = P.length_figure([("a", full[:2]), ("b", gappy[2:])])
    labels = sorted(c.get_label() for c in fig.axes[0].containers)
    assert labels == ["a", "b"] and "legend means: no length every run has" in fig._suptitle.get_text()


def test_heatmap_panels_share_columns_when_runs_differ_in_lengths():
    """Panels side by side line up length by length: a run without 2K/4K gets missing columns there
    (not its 8K column drawn under the other's 2K), and panel means are over the shared lengths."""
    full = [rec(n, d, s, run_id="full") for n, s in ((1000, 1.0), (2000, 1.0), (4000, 0.0), (8000, 0.0))
            for d in (0.0, 100.0)]
    gappy = [rec(n, d, s, run_id="gappy") for n, s in ((1000, 0.0), (8000, 1.0)) for d in (0.0, 100.0)]
    fig = P.heatmap_figure([("full", full), ("gappy", gappy)])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["full\nshared lengths 50.0", "gappy\nshared lengths 50.0"]
    for ax in panels:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1K", "2K", "4K", "8K"]
    texts = [(round(t.get_position()[0], 1), t.get_text()) for t in panels[1].texts]
    assert (3.5, "100") in texts and (1.5, "–") in texts and (2.5, "–") in texts  # 8K in the 8K column
    assert "panel means over 1K, 8K (the lengths every run has)" in fig._suptitle.get_text()
    fig = P.heatmap_figure([("full", full), ("again", [dict(r, run_id="again") for r in full])])
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["full\noverall 50.0", "again\noverall 50.0"]
    assert "panel means" not in fig._suptitle.get_text()


def test_plot_rejects_empty_input(tmp_path):
    with pytest.raises(ValueError):
        P.plot_heatmaps([], tmp_path / "x.png")
    with pytest.raises(ValueError):
        P.plot_heatmaps([("empty", [])], tmp_path / "x.png")


# --------------------------------------------------------------------------- no torch
def _run_python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_module_does_not_import_torch():
    proc = _run_python("import longctx.cli.plot_cmd, sys; assert 'torch' not in sys.modules")
    assert proc.returncode == 0, proc.stderr


def test_plotting_works_with_torch_unavailable(tmp_path):
    records = tmp_path / "r.jsonl"
    write_jsonl(records, grid_records())
    code = textwrap.dedent(f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        from longctx.niah import plot as P
        from longctx.niah import results as R
        recs = R.load_results([{str(records)!r}])
        P.plot_heatmaps([("a", recs)], {str(tmp_path / "h.png")!r})
        P.plot_accuracy_vs_length([("a", recs)], {str(tmp_path / "l.png")!r})
        assert "torch" not in sys.modules
    """)
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "h.png").stat().st_size > 0 and (tmp_path / "l.svg").stat().st_size > 0


# --------------------------------------------------------------------------- CLI
def _cli():
    import typer
    from typer.testing import CliRunner

    from longctx.cli import plot_cmd

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test app"""

    plot_cmd.register(app)
    return app, CliRunner()


def test_cli_missing_file_exits_2(tmp_path):
    app, runner = _cli()
    result = runner.invoke(app, ["plot", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert "not found" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_cli_unparsable_file_exits_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\nstill not json\n")
    app, runner = _cli()
    result = runner.invoke(app, ["plot", str(bad), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "bad.jsonl:1" in result.stderr


def test_cli_merges_shards_and_writes_all_files(tmp_path):
    records = grid_records("run-a")
    shard0 = write_jsonl(tmp_path / "a.shard0.jsonl", records[:4])
    shard1 = write_jsonl(tmp_path / "a.shard1.jsonl", records[4:], tail='{"torn')
    other = write_jsonl(tmp_path / "b.jsonl", grid_records("run-b", rope="dynamic:2.0"))
    app, runner = _cli()
    out = tmp_path / "plots" / "cmp.png"
    result = runner.invoke(app, ["plot", str(shard0), str(shard1), str(other), "-o", str(out),
                                 "--labels", "no scaling,dynamic NTK ×2", "--title", "t"])
    assert result.exit_code == 0, result.output
    assert "torn last line" in result.stderr
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == ["cmp.png", "cmp.svg", "cmp_by_length.png", "cmp_by_length.svg"]
    assert all(p.stat().st_size > 0 for p in out.parent.iterdir())
    # two panels (two run_ids), the shards of run-a merged into the first one
    assert result.stdout.count("\n       all ") == 2
    assert result.stdout.index("no scaling") < result.stdout.index("dynamic NTK ×2")


def test_cli_label_count_mismatch_exits_2(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", grid_records())
    app, runner = _cli()
    result = runner.invoke(app, ["plot", str(path), "-o", str(tmp_path / "x.png"), "--labels", "a,b"])
    assert result.exit_code == 2 and "--labels" in result.stderr


# --------------------------------------------------------------------------- intervals, n, depth marker
def trials_records(n_trials=5, run_id="run-a"):
    """1000: 3/5 at 0%, 5/5 at 50% (needle placed at 40%: 10 points off); 2000: 0/5 at 0%, 5/5 at 50%."""
    out = []
    for length, depth, scores, actual in [(1000, 0.0, [1, 0, 1, 1, 0], 0.0), (1000, 50.0, [1] * 5, 40.0),
                                          (2000, 0.0, [0] * 5, 0.0), (2000, 50.0, [1] * 5, 49.0)]:
        for t, s in enumerate(scores[:n_trials]):
            r = rec(length, depth, float(s), trial=t, run_id=run_id)
            r["depth"] = actual
            out.append(r)
    return out


def test_length_chart_draws_wilson_error_bars():
    from matplotlib.container import ErrorbarContainer

    fig = P.length_figure([("a", trials_records())])
    (bars,) = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    line, _, (vertical,) = bars.lines
    np.testing.assert_allclose(line.get_ydata(), [80.0, 50.0])  # mean over the two depth cells
    lo8, hi8 = S.wilson_interval(8, 10)  # 1000: mean 80 over n = 10 trials
    lo5, hi5 = S.wilson_interval(5, 10)
    ends = [tuple(seg[:, 1]) for seg in vertical.get_segments()]
    np.testing.assert_allclose(ends, [(100 * lo8, 100 * hi8), (100 * lo5, 100 * hi5)])
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "error bars: 95% Wilson interval" in texts and "n = 5 trials per cell" in texts
    fig.clear()


def test_heatmap_shows_trial_counts_and_marks_far_needles(tmp_path):
    fig = P.heatmap_figure([("a", trials_records())])
    ax = fig.axes[0]
    cell_texts = [t.get_text() for t in ax.texts]
    assert cell_texts.count(P.DEPTH_MARK) == 1  # only (1000, 50%): 10 > 5 points off
    title = fig._suptitle.get_text()
    assert "n = 5 trials per cell" in title
    assert f"{P.DEPTH_MARK} needle >5 pts from requested depth (max 10.0)" in title
    fig.clear()
    # cells with different trial counts carry their own n where it is above 1
    mixed = trials_records() + [dict(rec(4000, 0.0, 1.0), depth=0.0)]
    fig = P.heatmap_figure([("a", mixed)])
    cell_texts = [t.get_text() for t in fig.axes[0].texts]
    assert "60\nn=5" in cell_texts and "100" in cell_texts and "n = 1-5 trials per cell" in fig._suptitle.get_text()
    fig.clear()
    # single-trial figures say so; the saved SVG carries the note as text
    paths = P.plot_heatmaps([("a", trials_records(1))], tmp_path / "one.png", formats=("svg",))
    assert "1 trial per cell" in paths[0].read_text()


def test_many_runs_wrap_into_rows():
    """Nine runs: three rows of at most four panels (the 9th alone), the depth label on each row's first."""
    runs = [(f"t{i}", trials_records(run_id=f"run-{i}")) for i in range(9)]
    fig = P.heatmap_figure(runs)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title().split("\n")[0] for ax in panels] == [f"t{i}" for i in range(9)]
    rows = sorted({round(ax.get_position().y0, 3) for ax in panels}, reverse=True)
    assert len(rows) == 3
    assert [sum(round(ax.get_position().y0, 3) == y for ax in panels) for y in rows] == [4, 4, 1]
    assert [ax.get_ylabel() != "" for ax in panels] == [i % 4 == 0 for i in range(9)]
    w, _ = fig.get_size_inches()
    fig.clear()
    one_row = P.heatmap_figure(runs, max_cols=9)
    assert one_row.get_size_inches()[0] > 2 * w  # the old layout: one row, more than twice as wide
    one_row.clear()


def test_plot_cli_prints_intervals(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", trials_records())
    app, runner = _cli()
    result = runner.invoke(app, ["plot", str(path), "-o", str(tmp_path / "t.png")])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith("    ")}
    assert rows["1K"][:4] == ["1K", "80.0", "49.0-94.3", "10"] and rows["all"][3] == "20"
