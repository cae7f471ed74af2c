"""The sweep runner and the native backend's prefix-shared prefill (longctx.niah.runner,
longctx.backends)."""
from __future__ import annotations

import json
import re
from functools import lru_cache

import numpy as np
import pytest

from longctx.backends.base import BaseBackend, GenRequest, GenResult, common_prefix_len
from longctx.niah.grid import make_grid
from longctx.niah.prompt import PromptBuilder
from longctx.niah.results import config_path
from longctx.niah.runner import ContextLimitError, LogProgress, prompt_file_name, run_sweep
from longctx.niah.tasks import make_task

from . import default_tokenizer


# --------------------------------------------------------------------------- shared fixtures
@lru_cache(maxsize=None)
def tiny_chat_model():
    """A tiny random model (2 layers, width 64) with the default model's tokenizer, vocabulary and
    8192-token window: real NIAH prompts through the engine in milliseconds (mechanics, not answers;
    shared by the NIAH test files)."""
    import dataclasses

    from longctx.engine.config import get_preset
    from longctx.engine.runtime import random_model

    tok = default_tokenizer()
    cfg = dataclasses.replace(get_preset("tiny"), vocab_size=tok.vocab_size, max_position_embeddings=8192,
                              name="tiny-smollm2-vocab")
    m = random_model(cfg, device="cpu", seed=0)
    m.tokenizer = tok
    return m


class FakeBackend(BaseBackend):
    """Answers by reading the needle out of the decoded prompt (no model): fast runner tests.

    ``fail_lengths``: prompts of these lengths raise inside generate (an error cell).
    ``wrong``: answer a wrong value instead.
    """

    name = "fake"

    def __init__(self, tokenizer, *, max_context: int = 1_000_000, fail_lengths=(), wrong: bool = False,
                 model: str = "fake-model") -> None:
        self.tokenizer = tokenizer
        self.max_context = max_context
        self.fail_lengths = set(fail_lengths)
        self.wrong = wrong
        self.model = model
        self.calls: list[int] = []

    def model_info(self) -> dict:
        return {"backend": "fake", "model": self.model, "model_name": self.model, "config_hash": "0" * 16,
                "tokenizer": self.tokenizer.name, "tokenizer_fingerprint": self.tokenizer.fingerprint,
                "rope_scaling": None, "dtype": "float32", "device": "cpu", "max_context": self.max_context}

    def rope_base_for(self, total_len: int) -> float:
        return 10000.0

    def generate(self, ids, max_new_tokens: int) -> GenResult:
        self.calls.append(len(ids))
        if len(ids) in self.fail_lengths:
            raise RuntimeError("simulated generation failure")
        text = self.tokenizer.decode(np.asarray(ids).tolist())
        key = re.search(r"for ([\w-]+) mentioned in the provided text\?", text).group(1)
        value = re.search(rf"for {re.escape(key)} is: ([\w-]+)\.", text).group(1)
        answer = "0000000" if self.wrong else value
        return GenResult(text=f"The special magic number for {key} is {answer}.", prompt_tokens=len(ids),
                         prefilled_tokens=len(ids), rope_base=10000.0, stop_reason="stop")


def _builder(tok, hs, **kw):
    return PromptBuilder(tok, hs, make_task("single", answer_budget=kw.pop("answer_budget", 32)), **kw)


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


# --------------------------------------------------------------------------- prefix sharing
def _fresh_logits(model, ids):
    cache = model.new_cache(len(ids) + 1)
    return model.prefill(np.asarray(ids, dtype=np.int64), cache, model.rope_base_for(len(ids))).cpu()


def test_prefix_shared_cells_equal_fresh_cells(tok, austen):
    from longctx.backends.native import NativeBackend

    m = tiny_chat_model()
    old_chunk = m.chunk_size
    m.chunk_size = 96  # several chunk boundaries, placed differently in shared and fresh runs
    try:
        b = _builder(tok, austen)
        cells = [b.build(L, d, 0) for L in (160, 320) for d in (0, 50, 100)]
        backend = NativeBackend(m, keep_logits=True)
        reqs = [GenRequest(c.ids, 2, c) for c in cells]
        got: dict[int, GenResult] = {}
        backend.run(reqs, on_result=lambda r, res: got.__setitem__(id(r), res))
        assert len(got) == len(reqs)
        prefilled = sum(res.prefilled_tokens for res in got.values())
        assert prefilled < sum(len(c.ids) for c in cells)
        assert any(res.cached_tokens > 0 for res in got.values())
        for r in reqs:
            res = got[id(r)]
            assert res.error is None
            assert res.prefilled_tokens + res.cached_tokens == len(r.ids)
            fresh = _fresh_logits(m, r.ids)
            assert float((res.logits - fresh).abs().max()) <= 1e-4
            # the greedy answer starts like a from-scratch one
            assert int(fresh.argmax()) == (res.token_ids[0] if res.token_ids else int(res.logits.argmax()))
    finally:
        m.chunk_size = old_chunk


def _trie_nodes(seqs) -> int:
    """Distinct non-empty prefixes over all sequences."""
    return len({tuple(s[:i]) for s in seqs for i in range(1, len(s) + 1)})


def test_prefix_sharing_random_tiny_model():
    import torch

    from longctx.engine.runtime import random_model
    from longctx.backends.native import NativeBackend

    m = random_model("tiny", device="cpu", seed=3, chunk_size=7)
    rng = np.random.RandomState(0)
    trunk = rng.randint(0, 512, size=120)
    prompts = []
    for cut in (100, 10, 60, 60, 0, 119):  # branch points, a repeated one, a prompt from scratch
        tail = rng.randint(0, 512, size=rng.randint(1, 40))
        prompts.append(np.concatenate([trunk[:cut], tail]))
    prompts.append(trunk[:50].copy())  # a prefix of other prompts
    prompts.append(prompts[1].copy())  # an identical prompt: lcp == len -> one token re-prefilled
    reqs = [GenRequest(p, 5, i) for i, p in enumerate(prompts)]
    backend = NativeBackend(m, keep_logits=True)
    plan = backend.schedule(reqs)
    got: dict[int, GenResult] = {}
    started = []
    backend.run(reqs, on_result=lambda r, res: got.__setitem__(r.tag, res),
                on_start=lambda r, planned: started.append((r.tag, planned)))
    assert [(r.tag, p) for r, p in plan] == started
    total = sum(res.prefilled_tokens for res in got.values())
    assert total == sum(p for _, p in plan)
    # a depth-first walk of the prompt trie: every distinct prefix once (+1 for the duplicate)
    assert total == _trie_nodes(prompts) + 1
    for r in reqs:
        res = got[r.tag]
        assert res.error is None, res.error
        fresh = _fresh_logits(m, r.ids)
        assert float((res.logits - fresh).abs().max()) <= 1e-4
        ref = list(m.generate_ids(r.ids.tolist(), max_new_tokens=5, stop_ids=[]))
        assert res.token_ids == ref
        assert res.stop_reason == "length"
    # every request's cache ended at the prompt: generated positions never leak into the next one
    order = [tag for tag, _ in started]
    for prev, cur in zip(order, order[1:]):
        lcp = min(common_prefix_len(prompts[prev], prompts[cur]), len(prompts[cur]) - 1)
        assert got[cur].cached_tokens == lcp
    assert isinstance(got[0].logits, torch.Tensor)


def test_prefix_sharing_groups_by_rope_base():
    from longctx.engine.runtime import random_model
    from longctx.backends.native import NativeBackend
    from longctx.engine.config import get_preset

    cfg = get_preset("tiny").with_rope_scaling("dynamic:4")  # M = 256: longer prompts get their own base
    m = random_model(cfg, device="cpu", seed=1)
    rng = np.random.RandomState(1)
    trunk = rng.randint(0, 512, size=400)
    prompts = [np.concatenate([trunk[:n - 3], [1, 2, 3]]) for n in (100, 200, 300, 300, 350)]
    prompts[3] = np.concatenate([trunk[:290], rng.randint(0, 512, size=10)])
    reqs = [GenRequest(p, 2, i) for i, p in enumerate(prompts)]
    backend = NativeBackend(m, keep_logits=True)
    got = {}
    backend.run(reqs, on_result=lambda r, res: got.__setitem__(r.tag, res))
    bases = {i: got[i].rope_base for i in got}
    assert bases[0] == bases[1] == 10000.0
    assert bases[2] == bases[3] != bases[4]
    assert bases[2] > 10000.0
    # the 350-token prompt shares no cache with the 300-token ones (other base): prefilled in full
    assert got[4].cached_tokens == 0
    assert got[2].cached_tokens + got[3].cached_tokens > 0
    for i, p in enumerate(prompts):
        assert float((got[i].logits - _fresh_logits(m, p)).abs().max()) <= 1e-4


def test_native_records_context_overflow_as_error():
    from longctx.engine.runtime import random_model
    from longctx.backends.native import NativeBackend

    m = random_model("tiny", device="cpu", max_context=64)
    backend = NativeBackend(m)
    got = {}
    reqs = [GenRequest(np.arange(60), 8, "long"), GenRequest(np.arange(20), 4, "ok")]
    backend.run(reqs, on_result=lambda r, res: got.__setitem__(r.tag, res))
    assert got["long"].error and "exceeds the allowed context of 64" in got["long"].error
    assert got["ok"].error is None and len(got["ok"].token_ids) <= 4


# --------------------------------------------------------------------------- the runner
def test_run_sweep_records_and_summary(tmp_path, tok, austen):
    out = tmp_path / "r.jsonl"
    backend = FakeBackend(tok)
    cells = make_grid([200, 400], [0, 50, 100], 2)
    s = run_sweep(backend, _builder(tok, austen), cells, out, dump_prompts=tmp_path / "prompts")
    recs = _lines(out)
    assert len(recs) == 12 and s.done == 12 and s.skipped == 0 and s.errors == 0
    need = {"run_id", "model", "config_hash", "tokenizer", "rope_scaling", "rope_base", "task", "target_length",
            "length", "target_depth", "depth", "trial", "seed", "needles", "expected", "response", "score", "error",
            "prompt_sha256", "prefill_s", "decode_s", "prefilled_tokens", "peak_mem_bytes", "version"}
    for r in recs:
        assert need <= set(r)
        assert r["score"] == 1.0 and r["error"] is None
        assert r["length"] == r["target_length"]
        assert r["needles"][0]["value"] in r["response"]
    assert len({r["run_id"] for r in recs}) == 1
    assert s.overall == 100.0 and s.per_length == {200: 100.0, 400: 100.0}
    assert s.naive_tokens == 2 * 3 * (200 + 400) and s.prefilled_tokens == s.naive_tokens
    cfg = json.loads(config_path(out).read_text())
    assert cfg["run_id"] == recs[0]["run_id"] and cfg["settings"]["task"]["id"] == "single:number"
    dumped = sorted(p.name for p in (tmp_path / "prompts").iterdir())
    assert len(dumped) == 12 and prompt_file_name("single:number", 200, 50.0, 1) in dumped
    text = (tmp_path / "prompts" / prompt_file_name("single:number", 400, 100.0, 0)).read_text()
    assert "special magic number" in text


def test_error_in_one_cell_is_recorded_and_sweep_continues(tmp_path, tok, austen):
    out = tmp_path / "r.jsonl"
    backend = FakeBackend(tok, fail_lengths={400})
    s = run_sweep(backend, _builder(tok, austen), make_grid([200, 400, 600], [0, 100]), out)
    recs = _lines(out)
    assert len(recs) == 6 and s.errors == 2
    for r in recs:
        if r["target_length"] == 400:
            assert r["score"] is None and "simulated generation failure" in r["error"]
        else:
            assert r["score"] == 1.0 and r["error"] is None
    assert s.per_length[400] is None and s.per_length[600] == 100.0


def test_resume_skips_done_cells(tmp_path, tok, austen):
    out = tmp_path / "r.jsonl"
    b = _builder(tok, austen)
    run_sweep(FakeBackend(tok), b, make_grid([200], [0, 50, 100]), out)
    backend = FakeBackend(tok)
    s = run_sweep(backend, b, make_grid([200, 300], [0, 50, 100]), out)
    assert s.skipped == 3 and s.done == 3 and sorted(backend.calls) == [300, 300, 300]
    recs = _lines(out)
    keys = [(r["target_length"], r["target_depth"], r["trial"]) for r in recs]
    assert len(keys) == len(set(keys)) == 6
    runs_before = json.loads(config_path(out).read_text())["runs"]
    assert [r["cells"] for r in runs_before] == [3, 6]  # the two runs that computed cells
    backend = FakeBackend(tok)
    s = run_sweep(backend, b, make_grid([200, 300], [0, 50, 100]), out)
    assert s.done == 0 and s.skipped == 6 and backend.calls == [] and s.overall == 100.0
    # a resume with nothing left to compute leaves the run history as it was
    assert json.loads(config_path(out).read_text())["runs"] == runs_before


def test_killed_and_rerun_sweep_loses_and_duplicates_nothing(tmp_path, tok, austen):
    out = tmp_path / "r.jsonl"
    b = _builder(tok, austen)
    grid = make_grid([200, 300, 400], [0, 50, 100])
    run_sweep(FakeBackend(tok), b, grid, out)
    full = out.read_bytes()
    lines = full.splitlines(keepends=True)
    assert len(lines) == 9
    # killed while writing the 8th record: 7 complete lines + half of the 8th
    out.write_bytes(b"".join(lines[:7]) + lines[7][: len(lines[7]) // 2])
    warnings: list[str] = []
    backend = FakeBackend(tok)
    s = run_sweep(backend, b, grid, out, warn=warnings.append)
    assert any("torn last line" in w for w in warnings)
    assert s.skipped == 7 and s.done == 2 and len(backend.calls) == 2
    after = out.read_bytes()
    assert after.startswith(b"".join(lines[:7]))  # complete lines kept byte for byte
    recs = _lines(out)
    keys = [(r["target_length"], r["target_depth"], r["trial"]) for r in recs]
    assert len(recs) == 9 and len(set(keys)) == 9
    strip = lambda r: {k: v for k, v in r.items() if k not in ("time", "prefill_s", "decode_s", "peak_mem_bytes")}  # noqa: E731
    before = {(r["target_length"], r["target_depth"]): strip(r) for r in map(json.loads, lines)}
    assert {(r["target_length"], r["target_depth"]): strip(r) for r in recs} == before


def test_context_limit_checked_before_any_compute(tmp_path, tok, austen):
    backend = FakeBackend(tok, max_context=1000)
    with pytest.raises(ContextLimitError, match=r"length 1000 \+ answer budget 32 = 1032 tokens exceeds .* 1000 tokens"):
        run_sweep(backend, _builder(tok, austen), make_grid([500, 1000, 2000], [50]), tmp_path / "r.jsonl")
    assert backend.calls == [] and not (tmp_path / "r.jsonl").exists()


def test_too_small_length_fails_before_any_compute(tmp_path, tok, austen):
    backend = FakeBackend(tok)
    with pytest.raises(ValueError, match="too small"):
        run_sweep(backend, _builder(tok, austen), make_grid([30, 500], [50]), tmp_path / "r.jsonl")
    assert backend.calls == [] and not (tmp_path / "r.jsonl").exists()


def test_config_mismatch_refused_then_forced(tmp_path, tok, austen):
    out = tmp_path / "r.jsonl"
    grid = make_grid([200], [0, 100])
    run_sweep(FakeBackend(tok), _builder(tok, austen), grid, out)
    old = out.read_bytes()
    other = _builder(tok, austen, seed=7)
    with pytest.raises(ValueError, match=r"another configuration \(differs in seed\).*--force"):
        run_sweep(FakeBackend(tok), other, grid, out)
    assert out.read_bytes() == old
    warnings: list[str] = []
    s = run_sweep(FakeBackend(tok), other, grid, out, force=True, warn=warnings.append)
    assert s.done == 2 and len(s.backups) == 2
    backup = [p for p in s.backups if not p.name.endswith(".config.json") and ".config.json" not in p.name][0]
    assert backup.name.startswith("r.jsonl.bak-") and backup.read_bytes() == old
    assert len(_lines(out)) == 2 and all(r["seed"] == 7 for r in _lines(out))
    assert any("moved the previous results aside" in w for w in warnings)


def test_log_progress_lines(tmp_path, tok, austen, capsys):
    import io

    buf = io.StringIO()
    run_sweep(FakeBackend(tok, wrong=True), _builder(tok, austen), make_grid([200], [0, 100]), tmp_path / "r.jsonl",
              progress=LogProgress(buf))
    text = buf.getvalue()
    assert "2 cells to run" in text and "[2/2]" in text and "score 0" in text and "acc 0.0%" in text
