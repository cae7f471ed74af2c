"""``longctx bench prefill`` and its driver (CPU)."""
from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from longctx.bench import flops, spec
from longctx.bench import runner as bench_runner
from longctx.bench.report import report_to_markdown
from longctx.cli import bench_cmd
from longctx.engine.config import get_preset

POINT_FIELDS = {"impl", "length", "status", "seconds", "tokens_per_s", "flops", "flops_linear", "flops_attention",
                "tflops", "pct_peak", "peak_mem_bytes", "weights_bytes", "kv_cache_bytes", "rest_bytes"}


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # a group, so `bench prefill` resolves as on the real app
        pass

    bench_cmd.register(app)
    return app


def test_flops_hand_computed():
    cfg = get_preset("tiny")  # hidden 64, intermediate 160, 2 layers, 4 heads / 2 KV heads, head_dim 16, vocab 512
    # per layer: wqkv 64*(4+2*2)*16 = 8192, wo 4*16*64 = 4096, mlp 3*64*160 = 30720 -> 43008; x 2 layers
    assert cfg.nonembedding_parameters() == 86016
    fl = flops.prefill_flops(cfg, 100)
    assert fl["linear"] == 2 * 86016 * 100 + 2 * 64 * 512 == 17_268_736
    assert fl["attention"] == 2 * 2 * (100 ** 2 // 2) * 4 * 16 * 2 == 2_560_000
    assert fl["total"] == 19_828_736


def test_flops_7b_200k_order_of_magnitude():
    fl = flops.prefill_flops(get_preset("internlm2-chat-7b"), 200_000)
    # attention 2 * L^2 * 32 * 128 * 32 ~ 1.05e16; linear ~ 2 * 6.98e9 * 2e5 ~ 2.8e15
    assert 1.0e16 < fl["attention"] < 1.1e16
    assert 2.7e15 < fl["linear"] < 2.9e15


def test_parse_lengths():
    assert spec.parse_lengths("512, 256,256") == [256, 512]
    assert spec.parse_lengths("8K,2k,8Ki") == [2000, 8000, 8192]  # K = 1000, Ki = 1024 (longctx.units)
    for bad in ("", "abc", "12,-3", "0", "1.5"):
        with pytest.raises(ValueError):
            spec.parse_lengths(bad)


def test_kv_cache_bytes_matches_engine():
    import torch

    from longctx.engine.runtime import random_model

    m = random_model("tiny", device="cpu", dtype="float32")
    assert flops.kv_cache_bytes(m.config, 300, torch.float32) == m.new_cache(300).nbytes


@pytest.mark.parametrize("argv", [["--lengths", "12,abc"], ["--lengths", ""], ["--lengths", "0"], ["--lengths", "-5"]])
def test_cli_bad_lengths_exit_2(argv):
    r = CliRunner().invoke(_app(), ["bench", "prefill", "--preset", "tiny", "--random-weights", *argv])
    assert r.exit_code == 2, r.output
    assert "error" in r.output.lower()


def test_cli_bad_options_exit_2():
    runner = CliRunner()
    for argv in (["--preset", "tiny"],  # no --random-weights
                 ["--random-weights"],  # no --preset
                 ["--preset", "nope", "--random-weights"],
                 ["--preset", "tiny", "--random-weights", "--baseline", "vllm"],
                 ["--preset", "tiny", "--random-weights", "--dtype", "int3"]):
        r = runner.invoke(_app(), ["bench", "prefill", "--lengths", "64", *argv])
        assert r.exit_code == 2, (argv, r.output)


def test_tiny_random_in_process(tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    r = CliRunner().invoke(_app(), ["bench", "prefill", "--preset", "tiny", "--random-weights", "--lengths", "64,200",
                                    "--no-isolate", "--repeats", "2", "--json", str(out), "--markdown", str(md)])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["model"]["name"] == "tiny" and rep["device"] == "cpu" and rep["dtype"] == "float32"
    assert rep["matmul_peak"]["tflops"] > 0
    assert [(p["impl"], p["length"]) for p in rep["results"]] == [("longctx", 64), ("longctx", 200),
                                                                   ("transformers", 64), ("transformers", 200)]
    for p in rep["results"]:
        assert POINT_FIELDS <= set(p)
        assert p["status"] == "ok", p
        assert p["seconds"] > 0 and len(p["seconds_all"]) == 2
        assert p["tokens_per_s"] == pytest.approx(p["length"] / p["seconds"])
        assert p["flops"] == flops.prefill_flops(get_preset("tiny"), p["length"])["total"]
        assert p["kv_cache_bytes"] == 2 * 2 * 2 * 16 * p["length"] * 4
        assert p["weights_bytes"] > 0 and p["peak_mem_bytes"] > 0
        assert p["cpu_seconds"] > 0 and p["chunk_path" if p["impl"] == "longctx" else "attn"]
    assert [c["length"] for c in rep["comparison"]] == [64, 200]
    assert all(c["cpu_time_ratio"] > 0 for c in rep["comparison"])
    assert all(c["speed_ratio"] > 0 for c in rep["comparison"])
    assert rep["baseline_max_length"] == 200
    text = md.read_text()
    assert "| impl |" in text and "speed ratio" in text and "longctx" in text
    assert "speed ratio" in r.output  # the on-screen table


def test_tiny_random_isolated_and_budget():
    rep = bench_runner.run_prefill_bench(spec.BenchOptions(lengths=[96], preset="tiny", random_weights=True,
                                                     baseline="none", isolate=True, rounds=2), log=lambda s: None)
    (p,) = rep.results
    assert p["status"] == "ok", p
    assert p["rounds"] == 2 and len(p["seconds_rounds"]) == 2 and len(rep.rounds_raw) == 2
    assert min(p["seconds_rounds"]) <= p["seconds"] <= max(p["seconds_rounds"])
    assert p["runtime_bytes"] > 0 and p["net_peak_bytes"] == p["peak_mem_bytes"] - p["runtime_bytes"]
    assert p["mem_method"] in ("VmHWM", "ru_maxrss")
    rep = bench_runner.run_prefill_bench(spec.BenchOptions(lengths=[64, 128], preset="tiny", random_weights=True,
                                                     baseline="none", isolate=False, time_budget=1e-6),
                                  log=lambda s: None)
    assert [p["status"] for p in rep.results] == [bench_runner.SKIP_BUDGET] * 2
    assert "skipped (time budget)" in report_to_markdown(rep)


@pytest.mark.slow
def test_default_model_with_transformers_baseline(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "d.json"
    r = CliRunner().invoke(_app(), ["bench", "prefill", "--lengths", "48,96", "--baseline", "transformers",
                                    "--json", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["model"]["source"] == "default" and rep["options"]["isolate"] is True
    assert {(p["impl"], p["length"]) for p in rep["results"]} == {(i, n) for i in ("longctx", "transformers")
                                                                   for n in (48, 96)}
    for p in rep["results"]:
        assert p["status"] == "ok", p
        assert p["mem_method"] in ("VmHWM", "ru_maxrss") and p["runtime_bytes"] > 0
    # SmolLM2-135M: 30 layers, 3 KV heads x 64, float32
    assert rep["results"][0]["kv_cache_bytes"] == 2 * 30 * 3 * 64 * rep["results"][0]["length"] * 4
    assert len(rep["comparison"]) == 2 and all(c["speed_ratio"] and c["mem_ratio"] for c in rep["comparison"])
