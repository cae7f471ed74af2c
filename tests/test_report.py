"""``longctx report`` (longctx.report) and the ``excerpt`` record field (longctx.niah.excerpt).

Results come from real sweeps (``run_sweep``) with the default tokenizer and a fake backend that
reads the needle out of the prompt, so records carry everything a real run writes. The HTML is
parsed with the standard library's ``html.parser``.
"""
from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longctx.cli import app
from longctx.cli import common as cli_common
from longctx.niah import plot as P
from longctx.niah.excerpt import cell_excerpt
from longctx.niah.grid import make_grid
from longctx.niah.prompt import PromptBuilder
from longctx.niah.runner import run_sweep
from longctx.niah.tasks import make_task
from longctx.report import build_report, write_report
from longctx.report.data import drill_record
from niah import default_tokenizer, haystack
from niah.test_runner import FakeBackend, _builder

LENGTHS, DEPTHS = [300, 600], [0, 50, 100]


class Page(HTMLParser):
    """Every start tag with its attributes, the text of each ``td.cell``, and the JSON data block."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.cells: dict[str, dict] = {}
        self._cell = None
        self._script = None
        self.data = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "td" and "cell" in (a.get("class") or "").split():
            self._cell = a["id"]
            self.cells[self._cell] = {**a, "text": ""}
        if tag == "script":
            self._script = a.get("id")

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._cell is not None:
            self.cells[self._cell]["text"] += data
        if self._script == "report-data":
            self.data = json.loads(data)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two runs of the same grid: a fake model that finds every needle, one that never does."""
    tok, hs = default_tokenizer(), haystack("austen")
    d = tmp_path_factory.mktemp("report")
    good, bad = d / "good.jsonl", d / "bad.jsonl"
    run_sweep(FakeBackend(tok, model="finder"), _builder(tok, hs), make_grid(LENGTHS, DEPTHS), good)
    run_sweep(FakeBackend(tok, model="misser", wrong=True), _builder(tok, hs), make_grid(LENGTHS, DEPTHS), bad)
    return good, bad


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# --------------------------------------------------------------------------- the excerpt field
@pytest.mark.parametrize("task", ["single", "multikey", "passkey"])
def test_cell_excerpt_is_the_prompt_text_around_each_needle(task):
    tok, hs = default_tokenizer(), haystack("austen")
    b = PromptBuilder(tok, hs, make_task(task))
    for depth in (0, 50, 100):
        cell = b.build(1500, depth, 0)
        ex = cell_excerpt(cell, chars=200)
        prompt = cell.prompt_text(skip_special=False)
        assert ex["question"] == cell.question and ex["question"] in prompt
        assert len(ex["windows"]) == len(cell.needles)
        for w, n in zip(ex["windows"], cell.needles):
            needle = w["text"][w["needle_start"]:w["needle_end"]]
            assert n["value"] in needle and needle == needle.strip()
            assert w["text"] in prompt
            assert w["needle_start"] <= 200 and len(w["text"]) - w["needle_end"] <= 200
            assert w["clipped_start"] == (not prompt.startswith(w["text"]))
            assert w["clipped_end"] == (not prompt.endswith(w["text"]))
    assert cell_excerpt(types.SimpleNamespace(ids=cell.ids, needles=cell.needles)) is None  # no tokenizer


def test_records_carry_the_excerpt(results):
    for rec in _records(results[0]):
        (w,) = rec["excerpt"]["windows"]
        n = rec["needles"][0]
        assert w["text"][w["needle_start"]:w["needle_end"]].endswith(f"{n['key']} is: {n['value']}.")
        assert rec["excerpt"]["question"].startswith("What is the special magic number for " + n["key"])


# --------------------------------------------------------------------------- the page
def test_no_external_urls(results):
    page = build_report(list(results))
    doc = Page(page)
    assert not re.search(r"(?i)(https?|ftp):|//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(", page)
    for tag, a in doc.tags:
        assert tag not in ("link", "img", "iframe", "object", "embed", "base"), tag
        assert "src" not in a and "srcset" not in a and "action" not in a
        assert a.get("href") is None or a["href"].startswith("#")


def test_every_cell_present_with_its_score(results):
    doc = Page(build_report(list(results)))
    for k, path in enumerate(results):
        recs = _records(path)
        for i, depth in enumerate(DEPTHS):
            for j, length in enumerate(LENGTHS):
                cell = doc.cells[f"c{k}-{i}-{j}"]
                (rec,) = [r for r in recs if r["target_length"] == length and r["target_depth"] == depth]
                assert cell["text"] == P.cell_text(100 * rec["score"])
                assert float(cell["data-score"]) == pytest.approx(100 * rec["score"])
                assert f"{P.format_tokens(length)} tokens, depth {depth}%" in cell["aria-label"]
    assert len(doc.cells) == 2 * len(LENGTHS) * len(DEPTHS)
    assert {c["text"] for c in doc.cells.values() if c["data-run"] == "0"} == {"100"}
    assert {c["text"] for c in doc.cells.values() if c["data-run"] == "1"} == {"0"}
    tabbable = [c for c in doc.cells.values() if c["tabindex"] == "0"]
    assert len(tabbable) == 2  # one tab stop per heatmap; arrow keys move inside it


def test_drill_down_matches_the_jsonl(results):
    doc = Page(build_report([results[0]]))
    recs = _records(results[0])
    i, j = DEPTHS.index(50), LENGTHS.index(600)
    cell = doc.cells[f"c0-{i}-{j}"]
    (k,) = [int(x) for x in cell["data-recs"].split()]
    shown = doc.data["runs"][0]["drill"][k]
    (rec,) = [r for r in recs if r["target_length"] == 600 and r["target_depth"] == 50]
    for field in ("response", "expected", "target_depth", "depth", "needles", "excerpt", "prefill_s", "decode_s",
                  "prefilled_tokens", "stop_reason", "score"):
        assert shown[field] == rec[field], field
    (m,) = shown["matches"]
    assert m["found"] and m["ref"] == rec["expected"][0]
    (s, e), = m["spans"]
    assert rec["response"][s:e] == rec["expected"][0]


def test_runs_side_by_side(results):
    doc = Page(build_report(list(results)))
    grids = [a for t, a in doc.tags if t == "table" and a.get("role") == "grid"]
    assert [g["id"] for g in grids] == ["grid0", "grid1"]
    labels = [r["label"] for r in doc.data["runs"]]
    assert labels == ["finder · no scaling", "misser · no scaling"]
    sections = [a for t, a in doc.tags if t == "section" and (a.get("class") == "run")]
    assert len(sections) == 3  # one per run + the comparison table
    page = build_report(list(results), labels=["A", "B"], title="two models")
    assert "<title>two models</title>" in page and '"label":"A"' in page


def test_shards_of_one_run_merge(results, tmp_path):
    lines = results[0].read_text().splitlines(keepends=True)
    a, b = tmp_path / "s0.jsonl", tmp_path / "s1.jsonl"
    a.write_text("".join(lines[:3]))
    b.write_text("".join(lines[2:]))  # one record in both shards: kept once
    doc = Page(build_report([a, b]))
    assert len(doc.data["runs"]) == 1 and len(doc.data["runs"][0]["drill"]) == len(lines)


def test_drill_record_highlights_matched_and_missed():
    rec = {"response": "The number is 4242, yes 4242.", "expected": ["4242", "777"], "metric": "all"}
    m1, m2 = drill_record(rec)["matches"]
    assert m1 == {"ref": "4242", "found": True, "spans": [[14, 18], [24, 28]]}
    assert m2 == {"ref": "777", "found": False, "spans": []}


def test_html_escapes_record_text(tmp_path, results):
    rec = _records(results[0])[0]
    rec["response"] = "</script><script>alert(1)</script> <b>x</b>"
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    page = build_report([p])
    assert page.count("<script") == 2 and "alert(1)" in Page(page).data["runs"][0]["drill"][0]["response"]


# --------------------------------------------------------------------------- command line
def test_cli_report_and_errors(results, tmp_path):
    runner = CliRunner()
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", *map(str, results), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("<!DOCTYPE html>") and "wrote" in res.stdout
    before = out.read_bytes()
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "other.jsonl").write_text('{"a": 1}\n')
    for args, msg in ((["nope.jsonl"], "results file not found"), ([str(tmp_path)], "is a directory"),
                      ([str(tmp_path / "empty.jsonl")], "no results records"),
                      ([str(tmp_path / "other.jsonl")], "is this a NIAH results file?"),
                      ([str(results[0]), "--labels", "a,b"], "--labels gives 2 name(s)")):
        res = runner.invoke(app, ["report", *args, "-o", str(out)])
        assert res.exit_code == 2, res.output
        assert res.stderr.strip().count("\n") == 0 and msg in res.stderr, res.stderr
        assert out.read_bytes() == before  # a failed command leaves the old report alone
    kept = results[0].read_bytes()
    res = runner.invoke(app, ["report", str(results[0]), "-o", str(results[0])])
    assert res.exit_code == 2 and "is one of the results files" in res.stderr
    assert results[0].read_bytes() == kept


def test_needle_report_flag_and_default_sweep(monkeypatch, tmp_path):
    """``--report`` writes the page beside the heatmap; the default sweep (no grid options) writes
    plots/needle.html. A fake backend answers; the CLI path is the real one."""
    from longctx.backends import native

    tok = default_tokenizer()
    model = types.SimpleNamespace(tokenizer=tok, name="fake", path="fake", config=None)
    monkeypatch.setattr(cli_common, "load_from_cli", lambda *a, **k: model)
    monkeypatch.setattr(native, "NativeBackend", lambda m, prefix_sharing=True: FakeBackend(tok, max_context=8192))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["needle", "--lengths", "300,", "--depths", "0,100", "--out", "r/a.jsonl",
                              "--plot", "p/a.png", "--report"])
    assert res.exit_code == 0, res.output + res.stderr
    doc = Page(Path("p/a.html").read_text())
    assert len(doc.cells) == 2 and "report: p/a.html" in res.stdout
    res = runner.invoke(app, ["needle", "--lengths", "300,", "--depths", "50,", "--out", "r/b.jsonl", "--no-plot"])
    assert res.exit_code == 0 and not Path("plots/b.html").exists()
    res = runner.invoke(app, ["needle", "--no-plot"])  # the default grid: 3 lengths x 5 depths
    assert res.exit_code == 0, res.output + res.stderr
    assert len(Page(Path("plots/needle.html").read_text()).cells) == 15


# --------------------------------------------------------------------------- size
def synthetic_records(n_lengths: int = 25, n_depths: int = 40, trials: int = 1, seed: int = 0) -> list[dict]:
    """A 1,000-cell run (25 lengths x 40 depths by default) shaped like a real one, excerpts included."""
    rng = random.Random(seed)
    words = "the of and to a in that was her it his she he be not had for with as you but at".split()
    out = []
    for L in (1000 * (i + 1) for i in range(n_lengths)):
        for d in (100 * i / (n_depths - 1) for i in range(n_depths)):
            for t in range(trials):
                val = str(rng.randint(10 ** 6, 10 ** 7 - 1))
                needle = f"One of the special magic numbers for calm-river-{t} is: {val}."
                side = [" ".join(rng.choice(words) for _ in range(60))[:300] for _ in range(2)]
                ok = rng.random() < 0.7
                out.append({
                    "run_id": "niah-synthetic", "model": "synthetic", "tokenizer": "tok", "rope_scaling": None,
                    "rope_base": 10000.0, "backend": "native", "dtype": "bfloat16", "device": "cuda", "task": "single:number",
                    "target_length": L, "length": L, "target_depth": d, "depth": d, "trial": t, "seed": 0,
                    "needles": [{"key": f"calm-river-{t}", "value": val, "token_start": int(L * d / 100),
                                 "token_end": int(L * d / 100) + 22, "depth": d, "target_depth": d, "role": "target"}],
                    "expected": [val], "metric": "part", "answer_budget": 128, "haystack": "austen",
                    "response": f"The special magic number for calm-river-{t} is {val if ok else '1234567'}.",
                    "excerpt": {"question": f"What is the special magic number for calm-river-{t}?", "chars": 300,
                                "windows": [{"text": side[0] + " " + needle + " " + side[1], "needle_start": 301,
                                             "needle_end": 301 + len(needle), "clipped_start": True,
                                             "clipped_end": True}]},
                    "score": 1.0 if ok else 0.0, "error": None, "prefill_s": rng.random(), "decode_s": rng.random(),
                    "prefilled_tokens": L, "cached_tokens": 0, "new_tokens": 20, "stop_reason": "stop",
                    "peak_mem_bytes": 10 ** 9, "version": "0.1.0", "time": "2026-12-01T00:00:00+0000"})
    return out


def test_size_of_a_1000_cell_report(tmp_path):
    p = tmp_path / "big.jsonl"
    recs = synthetic_records()
    assert len(recs) == 1000
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = write_report([p], tmp_path / "big.html")
    size = out.stat().st_size
    assert len(Page(out.read_text()).cells) == 1000
    assert size < 1.5 * p.stat().st_size and size < 2_000_000, size


# --------------------------------------------------------------------------- in a browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_headless_chromium_click_keyboard_palette(results, tmp_path):
    """scripts/report_screenshot.py: a real click, ArrowRight/Enter/ArrowLeft/Enter, the palette toggle."""
    page = write_report(list(results), tmp_path / "r.html")
    png = tmp_path / "shot.png"
    res = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "scripts" / "report_screenshot.py"), str(page),
                          "-o", str(png), "--cell", "c1-1-0", "--colour-blind", "--size", "1200x800"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "clicked c1-1-0" in res.stdout and "ArrowRight/Enter opened c1-1-1" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
