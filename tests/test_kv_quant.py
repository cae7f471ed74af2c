"""Quantized KV caches (int8, fp8 e4m3): storage, error bounds, dequantized reference, chunking invariance."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from longctx.engine.kv_cache import KVCache, QuantizedKVCache, dequantize, quantize
from longctx.engine.runtime import random_model


@pytest.mark.parametrize("kind", ["int8", "fp8"])
def test_quantize_error_bound(kind):
    x = torch.randn(50, 4, 64, generator=torch.Generator().manual_seed(0)) * 3  # [T, Hkv, D]
    codes, scale = quantize(x, kind)
    assert codes.dtype == (torch.int8 if kind == "int8" else torch.float8_e4m3fn) and scale.shape == (50, 4, 1)
    err = (dequantize(codes, scale, torch.float32) - x).abs()
    if kind == "int8":  # uniform grid of step `scale`: at most half a step
        assert (err <= scale / 2 + 1e-6).all()
    else:  # 3 mantissa bits: relative error <= 2^-4 for normal values, absolute <= half the subnormal step below
        tol = torch.maximum(x.abs() * 2.0 ** -4, scale * 2.0 ** -10)
        assert (err <= tol + 1e-6).all()
    assert err.max() > 0  # it really is lossy


@pytest.mark.parametrize("kind", ["int8", "fp8"])
def test_cache_returns_the_dequantized_reference(kind):
    c = QuantizedKVCache(2, 2, 8, 20, torch.float32, "cpu", kind)
    k1, v1 = torch.randn(1, 5, 2, 8), torch.randn(1, 5, 2, 8)
    k2, v2 = torch.randn(1, 3, 2, 8), torch.randn(1, 3, 2, 8)
    c.update(1, 0, k1, v1)
    k_all, v_all = c.update(1, 5, k2, v2)
    assert k_all.shape == (1, 8, 2, 8)
    ref_k = dequantize(*quantize(torch.cat([k1, k2], 1)[0], kind), torch.float32)
    ref_v = dequantize(*quantize(torch.cat([v1, v2], 1)[0], kind), torch.float32)
    assert torch.equal(k_all[0], ref_k) and torch.equal(v_all[0], ref_v)
    full = KVCache(2, 2, 8, 20, torch.bfloat16, "cpu")
    assert c.nbytes / full.nbytes == pytest.approx((8 + 4) / (2 * 8))  # 1-byte codes + a float32 scale per 8 values


@pytest.fixture(scope="module")
def models():
    base = random_model("tiny", device="cpu", dtype="float32", attn="sdpa")
    return {kind: base if kind == "auto" else _with_kv(base, kind) for kind in ("auto", "int8", "fp8")}


def _with_kv(m, kind):
    import copy

    q = copy.copy(m)
    q.net = copy.copy(m.net)
    q.net.kv_dtype = kind
    return q


@pytest.mark.parametrize("kind", ["int8", "fp8"])
def test_chunked_prefill_equals_one_shot_with_quantized_cache(models, kind):
    m = models[kind]
    ids = torch.randint(0, 500, (120,), generator=torch.Generator().manual_seed(1))
    base = m.rope_base_for(120)
    cache = m.new_cache(120)
    assert isinstance(cache, QuantizedKVCache)
    one = m.prefill(ids, cache, base, chunk_size=120)
    for chunk in (7, 50):
        c = m.new_cache(120)
        assert_close(m.prefill(ids, c, base, chunk_size=chunk), one, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind,tol", [("int8", 0.01), ("fp8", 0.05)])
def test_quantized_logits_close_to_full_precision(models, kind, tol):
    ids = torch.randint(0, 500, (100,), generator=torch.Generator().manual_seed(2))
    full = models["auto"].logits(ids)
    quant = models[kind].logits(ids)
    diff = (quant - full).abs().max().item()
    assert 0 < diff <= tol


def test_unknown_kv_dtype():
    from longctx.engine.model import Transformer
    from longctx.engine.config import get_preset

    with pytest.raises(ValueError, match="unknown KV cache dtype 'int4'"):
        Transformer(get_preset("tiny"), kv_dtype="int4")


# --------------------------------------------------------------------------- memory planner
from longctx.engine.config import get_preset  # noqa: E402
from longctx.engine.memory import estimate_memory, kv_cache_bytes, plan_prefill  # noqa: E402

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
    p = plan_prefill(cfg, 200_000, free_bytes=60 * GB)
    assert p.mode == "chunked" and p.fits and p.total <= 0.85 * 60 * GB
    assert estimate_memory(cfg, 200_000, chunk=p.chunk * 2)["total"] > 0.85 * 60 * GB  # the largest that fits
    assert plan_prefill(cfg, 200_000, free_bytes=46 * GB).chunk < p.chunk
    # 1M tokens: the bf16 cache alone (131 GB) does not fit 141 GB with the weights; fp8 does
    assert not plan_prefill(cfg, 1_000_000, free_bytes=141 * GB).fits
    p = plan_prefill(cfg, 1_000_000, free_bytes=141 * GB, kv_dtype="fp8")
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
    assert "chunks of 131072 tokens" in r.output and "does NOT fit" not in r.output
    r = CliRunner().invoke(app, ["info", "--preset", "internlm2-chat-7b", "--context", "1000000", "--free-gb", "141"])
    assert "does NOT fit" in r.output
    r = CliRunner().invoke(app, ["info", "--preset", "tiny", "--kv-dtype", "int4"])
    assert r.exit_code == 2 and r.output.strip() == "error: unknown --kv-dtype 'int4': expected one of auto, int8, fp8"
