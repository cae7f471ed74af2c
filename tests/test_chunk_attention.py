"""Chunk-after-prefix attention paths that run on the CPU too."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close


@pytest.mark.slow
def test_flex_chunk_attention_equals_reference_on_cpu():
    """The FlexAttention offset-causal path (opt-in on CUDA: LONGCTX_CUDA_CHUNK_ATTN=flex) equals the eager
    lower-right reference; on CPU torch.compile builds a C++ kernel (about 20-100 s the first time)."""
    from longctx.engine.attention import eager_attention, flex_chunk_attention

    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except ImportError:
        pytest.skip("this torch has no FlexAttention")
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(1, 256, 8, 64, generator=g), torch.randn(1, 1024, 2, 64, generator=g), \
        torch.randn(1, 1024, 2, 64, generator=g)  # [B, T, H*, D]
    out = flex_chunk_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    assert_close(out, eager_attention(q, k, v), atol=1e-5, rtol=0)


@pytest.mark.parametrize("heads,kv_heads,dtype", [(9, 3, torch.float32), (4, 4, torch.float32),
                                                   (8, 2, torch.bfloat16)])
def test_cpu_decode_attention_equals_reference(heads, kv_heads, dtype):
    """One query token on CPU (the grouped flash-kernel path) equals the eager reference and SDPA's own
    dispatch, on a strided view of a [B, T, Hkv, D] cache as the engine passes it."""
    from longctx.engine.attention import _cpu_decode_attention, _sdpa_gqa, eager_attention, sdpa_attention

    g = torch.Generator().manual_seed(1)
    cache_k = torch.randn(2, 700, kv_heads, 32, generator=g).to(dtype)  # [B, T, Hkv, D]
    cache_v = torch.randn(2, 700, kv_heads, 32, generator=g).to(dtype)
    q = torch.randn(2, 1, heads, 32, generator=g).to(dtype)  # [B, 1, H, D]
    k, v = cache_k[:, :513], cache_v[:, :513]  # the first 513 positions, as KVCache.read returns them
    tol = dict(atol=1e-5, rtol=0) if dtype == torch.float32 else dict(atol=2e-2, rtol=0)
    out = sdpa_attention(q, k, v)
    assert out.shape == (2, 1, heads, 32) and out.dtype == dtype
    assert_close(out.float(), eager_attention(q, k, v).float(), **tol)
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H*, T*, D]
    grouped = _cpu_decode_attention(qh, kh, vh)
    assert grouped is not None  # this torch has the CPU flash kernel; the path must not fall back silently
    assert_close(grouped.float(), _sdpa_gqa(qh, kh, vh).float(), **tol)
