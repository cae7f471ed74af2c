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


def test_kv_dtype_through_load_options_and_records():
    from longctx.backends.native import NativeBackend
    from longctx.errors import ConfigError
    from longctx.niah.runner import _non_auto

    m = random_model("tiny", device="cpu", dtype="float32", kv_dtype="fp8")
    assert isinstance(m.new_cache(8), QuantizedKVCache) and m.new_cache(8).kind == "fp8"
    info = NativeBackend(m).model_info()
    assert info["kv_dtype"] == "fp8" and _non_auto(info, "kv_dtype") == {"kv_dtype": "fp8"}
    assert _non_auto({"kv_dtype": "auto"}, "kv_dtype") == {}  # full-precision runs keep their earlier config hash
    with pytest.raises(ConfigError, match="unknown KV cache dtype 'int4'"):
        random_model("tiny", device="cpu", kv_dtype="int4")
