"""The prefill memory planner and `longctx info --kv-dtype`."""
from __future__ import annotations

# --------------------------------------------------------------------------- memory planner
from longctx.engine.config import get_preset
from longctx.engine.memory import estimate_memory, kv_cache_bytes, plan_prefill

GB = 10 ** 9


def test_kv_bytes_by_dtype():
    cfg = get_preset("internlm2-chat-7b")  # 32 layers, 8 KV heads, D 128
    assert kv_cache_bytes(cfg, 1000, dtype_bytes=2) == 2 * 32 * 8 * 128 * 2 * 1000
    assert kv_cache_bytes(cfg, 1000, kv_dtype="fp8") == 2 * 32 * 8 * (128 + 4) * 1000
    assert kv_cache_bytes(cfg, 1000, kv_dtype="int8") == kv_cache_bytes(cfg, 1000, kv_dtype="fp8")


def test_planner_choices_for_given_memory():
    cfg = get_preset("internlm2-chat-7b")
    # 200K on a 141 GB card: one shot fits
    p = plan_prefill(cfg, 200_000, free_bytes=141 * GB)
    assert p.mode == "one-shot" and p.chunk == 200_000 and p.fits
    # the same with 60 GB free: weights 15.5 GB + KV 26.2 GB leave room for chunks only
    p = plan_prefill(cfg, 200_000, free_bytes=60 * GB, layerwise=False)
    assert p.mode == "chunked" and p.fits and p.total <= 0.85 * 60 * GB
    assert estimate_memory(cfg, 200_000, chunk=p.chunk * 2)["total"] > 0.85 * 60 * GB  # the largest that fits
    assert plan_prefill(cfg, 200_000, free_bytes=46 * GB).chunk < p.chunk
    # 1M tokens: the bf16 cache alone (131 GB) does not fit 141 GB with the weights; fp8 does
    assert not plan_prefill(cfg, 1_000_000, free_bytes=141 * GB).fits
    p = plan_prefill(cfg, 1_000_000, free_bytes=141 * GB, kv_dtype="fp8", layerwise=False)
    assert p.fits and p.mode == "chunked"
    # free memory measured after loading: weights are not charged twice
    a = plan_prefill(cfg, 200_000, free_bytes=70 * GB, weights_loaded=True)
    b = plan_prefill(cfg, 200_000, free_bytes=70 * GB)
    assert a.chunk >= b.chunk


def test_info_shows_the_plan():
    from typer.testing import CliRunner

    from longctx.cli import app

    r = CliRunner().invoke(app, ["info", "--preset", "internlm2-chat-7b", "--kv-dtype", "fp8", "--context", "1000000",
                                 "--free-gb", "141"])
    assert r.exit_code == 0, r.output
    assert "KV cache (fp8)" in r.output and "62.9 GiB" in r.output
    assert "layer-wise (attention in one shot; projections and MLP in chunks of 8192 tokens)" in r.output
    assert "does NOT fit" not in r.output
    r = CliRunner().invoke(app, ["info", "--preset", "internlm2-chat-7b", "--context", "1000000", "--free-gb", "141"])
    assert "does NOT fit" in r.output
    r = CliRunner().invoke(app, ["info", "--preset", "tiny", "--kv-dtype", "int4"])
    assert r.exit_code == 2 and r.output.strip() == "error: unknown --kv-dtype 'int4': expected one of auto, int8, fp8"
