"""Layer-wise prefill (each layer over the whole prompt: attention in one call, projections and MLP in
chunks): same logits and cache as one shot / chunked, the runtime's mode choice, the planner, the CLI."""
from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close
from typer.testing import CliRunner

from longctx.cli import app
from longctx.engine.config import ModelConfig, get_preset
from longctx.engine.memory import estimate_memory, plan_prefill
from longctx.engine.runtime import load_model, random_model
from longctx.errors import ConfigError
from tests.helpers import tiny_llama, write_internlm2_checkpoint

GB = 10 ** 9


def _gqa_model(kv_dtype: str = "auto"):
    # 3 layers, 6 query heads over 2 KV heads (G = 3), dynamic NTK past 64 positions
    cfg = ModelConfig(name="lw", vocab_size=211, hidden_size=48, intermediate_size=80, num_layers=3, num_heads=6,
                      num_kv_heads=2, max_position_embeddings=64, rope_theta=10000.0).with_rope_scaling("dynamic:4")
    m = random_model(cfg, device="cpu", dtype="float32", seed=3, chunk_size=16, kv_dtype=kv_dtype)
    return m


def _prefill(m, ids, mode, chunk, prefix=0):
    m.prefill_mode = mode
    cache = m.new_cache(len(ids) + 4)
    base = m.rope_base_for(len(ids))
    if prefix:
        m.prefill(ids[:prefix], cache, base, chunk_size=chunk)
    out = m.prefill(ids[prefix:], cache, base, chunk_size=chunk)
    return out, cache


@pytest.mark.parametrize("n,chunk,prefix", [(150, 16, 0), (150, 7, 0), (150, 1000, 0), (150, 16, 41), (33, 64, 0)])
def test_layerwise_equals_one_shot(n, chunk, prefix):
    """Logits of the last position and every cached key/value equal a one-shot prefill (float32),
    past max_position_embeddings (dynamic NTK), with chunk sizes that do not divide T and after a
    cached prefix (then attention takes the chunk-after-prefix path)."""
    m = _gqa_model()
    ids = torch.randint(0, 211, (n,), generator=torch.Generator().manual_seed(n)).tolist()
    ref, ref_cache = _prefill(m, ids, "chunked", n)  # one shot
    out, cache = _prefill(m, ids, "layerwise", chunk, prefix)
    assert cache.length == n
    assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert_close(cache.k[:, :n], ref_cache.k[:, :n], rtol=1e-5, atol=1e-5)
    assert_close(cache.v[:, :n], ref_cache.v[:, :n], rtol=1e-5, atol=1e-5)
    # decoding on from a layer-wise cache continues the same sequence
    base = m.rope_base_for(n)
    assert_close(m.decode_step(5, cache, base), m.decode_step(5, ref_cache, base), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kv", ["int8", "fp8"])
def test_layerwise_quantized_cache_equals_chunked(kv):
    """With a quantized cache, layer-wise stores the same codes and scales as chunked prefill, and its
    logits agree to float rounding (both attend to the dequantized cache)."""
    m = _gqa_model(kv)
    ids = torch.randint(0, 211, (120,), generator=torch.Generator().manual_seed(1)).tolist()
    ref, ref_cache = _prefill(m, ids, "chunked", 16)
    out, cache = _prefill(m, ids, "layerwise", 16)
    assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(cache.k[:, :120].float(), ref_cache.k[:, :120].float())
    assert_close(cache.k_scale[:, :120], ref_cache.k_scale[:, :120], rtol=1e-6, atol=0)


def test_prefill_plan_modes():
    m = random_model("tiny", device="cpu", dtype="float32")
    assert m.prefill_plan(10_000) == ("chunked", 2048)  # CPU auto: the configured chunk
    m.prefill_mode = "layerwise"
    assert m.prefill_plan(10_000) == ("layerwise", 2048)
    m.prefill_mode = "auto"
    m.one_shot_when_fits = True  # what a CUDA model without --chunk-size gets
    one = estimate_memory(m.config, 10_000, dtype_bytes=4, chunk=10_000)["working"]
    lw = estimate_memory(m.config, 10_000, dtype_bytes=4, chunk=2048, mode="layerwise")["working"]
    assert lw < one
    assert m.prefill_plan(10_000, free_bytes=int(one / 0.85) + 1) == ("chunked", 10_000)  # one shot
    assert m.prefill_plan(10_000, free_bytes=int(lw / 0.85) + 1) == ("layerwise", 2048)
    assert m.prefill_plan(10_000, free_bytes=lw) == ("chunked", 2048)
    assert m.prefill_plan(100, free_bytes=0) == ("chunked", 2048)
    m.prefill_mode = "chunked"
    assert m.prefill_plan(10_000, free_bytes=10 ** 15) == ("chunked", 2048)
    with pytest.raises(ConfigError, match="unknown prefill mode 'bogus': expected one of auto, chunked, layerwise"):
        random_model("tiny", device="cpu", prefill="bogus")


def test_records_carry_a_non_default_prefill_mode():
    from longctx.backends.native import NativeBackend
    from longctx.niah.runner import _non_auto

    info = NativeBackend(random_model("tiny", device="cpu", prefill="layerwise")).model_info()
    assert info["prefill"] == "layerwise"
    assert _non_auto(info, "kv_dtype", "prefill") == {"prefill": "layerwise"}  # recorded per cell
    assert _non_auto(info, "kv_dtype") == {}  # the results' configuration (hash) is unchanged


def test_layerwise_working_memory_formula():
    cfg = get_preset("internlm2-chat-7b")  # hidden 4096, 32 x 128 query heads, 8 KV heads, intermediate 14336
    c, t = 8192, 200_000
    chunked = c * 2 * (3 * 4096 + (32 + 16) * 128 + 3 * 14336) + cfg.vocab_size * 4
    assert estimate_memory(cfg, t, chunk=c)["working"] == chunked
    assert estimate_memory(cfg, t, chunk=c, mode="layerwise")["working"] == chunked + t * 2 * (4096 + 2 * 4096)
    with pytest.raises(ValueError, match="unknown prefill mode"):
        estimate_memory(cfg, t, mode="paged")


def test_planner_picks_layerwise_between_one_shot_and_chunked():
    cfg = get_preset("internlm2-chat-7b")
    assert plan_prefill(cfg, 200_000, free_bytes=141 * GB).mode == "one-shot"
    p = plan_prefill(cfg, 200_000, free_bytes=60 * GB)  # one shot's [T, intermediate] activations do not fit
    assert (p.mode, p.chunk, p.fits) == ("layerwise", 8192, True) and p.total <= 0.85 * 60 * GB
    assert plan_prefill(cfg, 200_000, free_bytes=60 * GB, layerwise=False).mode == "chunked"
    p = plan_prefill(cfg, 200_000, free_bytes=50 * GB)  # layer-wise's three [T, hidden] buffers do not fit
    assert p.mode == "chunked" and p.fits
    # 1M tokens with an fp8 cache on a 141 GB card: layer-wise fits
    p = plan_prefill(cfg, 1_000_000, free_bytes=141 * GB, kv_dtype="fp8")
    assert p.mode == "layerwise" and p.fits


def test_load_model_layerwise_generates_the_same(tmp_path):
    path = write_internlm2_checkpoint(tiny_llama(4, 2, max_pos=256), tmp_path / "ckpt")
    ids = list(range(3, 140))
    a = list(load_model(path, device="cpu", chunk_size=32).generate_ids(ids, max_new_tokens=6, stop_ids=()))
    lw = load_model(path, device="cpu", chunk_size=32, prefill="layerwise")
    assert lw.prefill_mode == "layerwise"
    b = list(lw.generate_ids(ids, max_new_tokens=6, stop_ids=()))
    assert a == b and len(a) == 6


def test_cli_prefill_option(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["generate", "hi", "--prefill", "paged"])
    assert r.exit_code == 2 and r.output.strip() == "error: unknown --prefill 'paged': expected one of auto, chunked, layerwise"
    r = runner.invoke(app, ["needle", "--prefill", "paged", "--dry-run"])
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1].startswith("error: unknown --prefill 'paged'")
    r = runner.invoke(app, ["info", "--preset", "internlm2-chat-7b", "--context", "200000", "--rope-scaling", "dynamic:8",
                            "--free-gb", "60"])
    assert r.exit_code == 0, r.output
    assert "layer-wise (attention in one shot; projections and MLP in chunks of 8192 tokens)" in r.output


def test_bench_records_the_mode(tmp_path):
    out = tmp_path / "r.json"
    r = CliRunner().invoke(app, ["bench", "prefill", "--preset", "tiny", "--random-weights", "--lengths", "200",
                                 "--chunk", "64", "--prefill", "layerwise", "--baseline", "none", "--no-isolate",
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    (p,) = json.loads(out.read_text())["results"]
    assert p["status"] == "ok" and p["prefill"] == "layerwise" and p["chunk"] == 64
    assert "prefill layerwise" in r.output
    r = CliRunner().invoke(app, ["bench", "prefill", "--preset", "tiny", "--random-weights", "--lengths", "64",
                                 "--prefill", "x"])
    assert r.exit_code == 2 and "unknown --prefill 'x'" in r.output
