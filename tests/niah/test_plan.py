"""The sweep plan (longctx.niah.plan): prefix-shared token counts equal the native backend's schedule,
the cost model is quadratic in length, calibration is probed once and stored, the --yes gate, and the
running ETA uses the same cost model."""
from __future__ import annotations

import functools
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest

from longctx.errors import PlanLimitError
from longctx.niah import plan as P
from longctx.niah.grid import make_grid


def _cells(tok, austen, lengths, depths, ctx=100_000):
    from longctx.niah.prompt import PromptBuilder
    from longctx.niah.tasks import make_task

    builder = PromptBuilder(tok, austen, make_task("single"), max_context=ctx)
    grid = make_grid(lengths, depths, 1)
    return grid, [builder.build(c.length, c.depth, c.trial) for c in grid]


def test_prefill_tokens_equal_the_native_backends_schedule(tok, austen, one_thread):
    from longctx.backends.base import GenRequest
    from longctx.backends.native import NativeBackend
    from longctx.engine.config import get_preset
    from longctx.engine.rope import base_for
    from longctx.engine.runtime import random_model

    cfg = get_preset("tiny").with_rope_scaling("dynamic:8")  # M = 256: every length below has its own base
    backend = NativeBackend(random_model(cfg, device="cpu"), prefix_sharing=True)
    grid, built = _cells(tok, austen, [300, 600], [0, 50, 100])
    sched = backend.schedule([GenRequest(c.ids, 16, c) for c in built])
    plan = P.make_plan(grid, built, answer_budget=16, group_key=functools.partial(base_for, cfg),
                       prefix_sharing=True, cost=None)
    assert plan.prefill_tokens == sum(p for _, p in sched)
    assert plan.prompt_tokens == 3 * 300 + 3 * 600
    assert 600 < plan.prefill_tokens < plan.prompt_tokens  # shared prefixes are counted once
    assert plan.largest_context == 616 and plan.cells == 6 and plan.seconds is None
    flat = P.make_plan(grid, built, answer_budget=16, group_key=lambda n: 0, prefix_sharing=False, cost=None)
    assert flat.prefill_tokens == flat.prompt_tokens


def test_cost_model_is_quadratic_in_length():
    cm = P.CostModel(num_layers=10, a=1e-4, b=1e-8, s=0.0, h=0.0)
    t1, t2 = cm.cell_seconds(10_000, 10_000, 0), cm.cell_seconds(20_000, 20_000, 0)
    assert t2 > 2 * t1  # superlinear: attention grows with the square of the length
    lin = 10 * 1e-4 * 20_000
    quad = 10 * 1e-8 * 20_000 ** 2 / 2
    assert t2 == pytest.approx(lin + quad)
    # a cell with a 15K cached prefix pays only for its 5K tail (and the tail's attention to everything)
    tail = cm.cell_seconds(20_000, 5_000, 0)
    assert tail == pytest.approx(10 * (1e-4 * 5_000 + 1e-8 * (20_000 ** 2 - 15_000 ** 2) / 2))
    # decode: per token, layers + attention over the context + head
    cm2 = P.CostModel(num_layers=2, a=0, b=1e-6, s=0.01, h=0.1)
    assert cm2.cell_seconds(1000, 1, 10) == pytest.approx(2 * 1e-6 * (1000 ** 2 - 999 ** 2) / 2
                                                           + 10 * (2 * (0.01 + 1e-6 * 1000) + 0.1))


def test_calibration_is_probed_once_and_stored(tmp_path, monkeypatch, one_thread):
    from longctx.engine.config import get_preset

    monkeypatch.setenv("LONGCTX_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(P, "_probe", lambda cfg, device, dtype: calls.append(1) or
                        {"a": 1e-4, "b": 1e-8, "c": 1e-7, "s": 1e-3, "h": 1e-3, "measured": "now", "clock": "cpu",
                         "probe": P.PROBE_VERSION})
    cfg = get_preset("tiny")
    c1 = P.calibrate(cfg, "cpu", "float32")
    c2 = P.calibrate(cfg, "cpu", "float32")
    assert calls == [1] and (c1.a, c1.b, c1.s, c1.h) == (c2.a, c2.b, c2.s, c2.h) == (1e-4, 1e-8, 1e-3, 1e-3)
    assert c1.num_layers == cfg.num_layers and 0 < c1.cores <= 1  # torch has 1 thread here (one_thread)
    stored = json.loads((tmp_path / "calibration.json").read_text())
    assert list(stored) == [c1.key] and "h64-i160-H4-kv2-d16-V512" in c1.key
    P.calibrate(cfg, "cpu", "float32", refresh=True)
    assert calls == [1, 1]
    # a calibration stored by the first probe (no "probe" version: its prefill coefficients were 5-6x
    # low) is measured again, not used
    stored[c1.key].pop("probe")
    (tmp_path / "calibration.json").write_text(json.dumps(stored))
    P.calibrate(cfg, "cpu", "float32")
    assert calls == [1, 1, 1]


def test_probe_times_full_layers_not_the_last_position_only_layer(monkeypatch):
    """A prefill's last layer computes attention and MLP for the last position only, so the probe
    must take the per-layer prefill cost from the 3-layer minus the 1-layer model. Here a fake model
    on a fake clock costs A n + B n^2 / 2 per full layer plus E n for everything else (embedding, the
    last layer's K/V, the head), and a decode step S + C x cached keys per layer plus H: the probe
    recovers A, B, C, S and H."""
    import longctx.engine.runtime as runtime
    from longctx.engine.config import get_preset

    A, B, C, E, S, H = 2e-4, 3e-7, 2e-6, 5e-5, 1e-3, 4e-3
    now = [0.0]

    class FakeCache:
        length = 0

        def truncate(self, n):
            self.length = n

    class FakeModel:
        def __init__(self, layers):
            self.layers = layers

        def rope_base_for(self, n):
            return 10_000.0

        def new_cache(self, capacity):
            return FakeCache()

        def prefill(self, ids, cache, base):
            n = len(ids)
            cache.length = n
            now[0] += (self.layers - 1) * (A * n + B * n * n / 2) + E * n

        def decode_step(self, token, cache, base):
            now[0] += self.layers * (S + C * cache.length) + H
            cache.length += 1

    monkeypatch.setattr(runtime, "random_model", lambda shape, device, dtype: FakeModel(shape.num_layers))
    monkeypatch.setattr(P.time, "process_time", lambda: now[0])
    out = P._probe(get_preset("tiny"), "cpu", "float32")
    assert out["a"] == pytest.approx(A) and out["b"] == pytest.approx(B)
    # decode: a query reading N cached keys costs C N per layer, separately from prefill's B
    assert out["c"] == pytest.approx(C, rel=1e-3) and out["s"] == pytest.approx(S, rel=1e-2)
    assert out["h"] == pytest.approx(H, rel=1e-2) and out["probe"] == P.PROBE_VERSION
    cm = P.CostModel(num_layers=30, a=out["a"], b=out["b"], s=0.0, h=0.0)
    full = 29 * (A * 32_000 + B * 32_000 ** 2 / 2) + E * 32_000  # the fake 30-layer model's 32K prefill
    assert 1.0 <= cm.cell_seconds(32_000, 32_000, 0) / full <= 1 + 1 / 29  # the last layer counted in full


def test_real_probe_on_a_tiny_shape(tmp_path, monkeypatch, one_thread):
    from longctx.engine.config import get_preset

    monkeypatch.setenv("LONGCTX_CACHE", str(tmp_path))
    cm = P.calibrate(get_preset("tiny"), "cpu", "float32")
    assert cm.a > 0 and cm.b > 0 and cm.s > 0 and cm.h >= 0
    assert cm.cell_seconds(4000, 4000) > cm.cell_seconds(1000, 1000) > 0


def _plan(seconds=10.0, total=100, free=1000):
    return P.Plan(cells=2, skipped=1, lengths=[1000, 2000], depths=[0.0, 50.0], trials=1, prompt_tokens=3000,
                  prefill_tokens=2500, largest_context=2128, seconds=seconds,
                  memory={"weights": 60, "kv_cache": 30, "working": 10, "total": total, "free": free})


def test_cores_now_is_the_fair_share(monkeypatch):
    monkeypatch.setattr(P.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(P.os, "getloadavg", lambda: (13.0, 0.0, 0.0))
    assert P.cpu_cores_now(1) == pytest.approx(2 / 14)  # 13 other jobs on 2 CPUs
    monkeypatch.setattr(P.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert P.cpu_cores_now(1) == 1.0 and P.cpu_cores_now(2) == 2.0 and P.cpu_cores_now(8) == 2.0
    cm = P.CostModel(num_layers=1, a=1.0, b=0.0, s=0.0, h=0.0, cores=0.5)
    assert cm.cell_seconds(10, 10, 0) == pytest.approx(20.0)


def test_format_and_gate():
    lines = P.format_plan(_plan())
    assert lines[0] == "plan: 2 cells to run (1 already in the results file): 2 lengths [1K,2K] x 2 depths [0,50] x 1 trial(s)"
    assert "tokens to prefill: 2,500 (prompts total 3,000; 1.20x fewer" in lines[1]
    assert "largest context: 2,128 tokens" in lines[2] and "estimated time: 0:00:10" in lines[3]
    assert lines[4].startswith("  memory: weights") and lines[4].endswith("free 0.00 GiB")
    P.check_plan(_plan(), yes=False)
    with pytest.raises(PlanLimitError, match=r"estimated time 3:00:00 is over 2:00:00.*--yes"):
        P.check_plan(_plan(seconds=3 * 3600), yes=False)
    with pytest.raises(PlanLimitError, match="of memory and"):
        P.check_plan(_plan(total=2000), yes=False)
    P.check_plan(_plan(seconds=3 * 3600, total=2000), yes=True)


def test_running_eta_uses_the_cost_model():
    from longctx.niah.runner import LogProgress

    cell = SimpleNamespace(ids=np.zeros(1000, dtype=np.int32), target_length=1000, target_depth=50.0, trial=0)
    prog = LogProgress(stream=io.StringIO(), cost=lambda n, p: n / 100.0)  # 10 s predicted per cell
    prog.schedule([(cell, 1000, 1000)] * 4)
    prog.start(4, 0, 4000)
    assert prog.eta == "0:40"  # before any cell: the prediction itself
    prog.cell_started(cell, 1000)
    prog.cell_done(cell, {"score": 1.0, "prefill_s": 15.0, "decode_s": 5.0, "prefilled_tokens": 1000})
    assert prog.eta == "1:00"  # 3 cells x 10 s predicted x (20 s measured / 10 s predicted)
