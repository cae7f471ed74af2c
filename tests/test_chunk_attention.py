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
