"""CUDA checks: attention backends against the float32 eager reference, chunked prefill, decode,
CPU float32 vs CUDA half logits, and the memory of the chunk attention path.

Every test is skipped cleanly without a CUDA GPU (marker ``cuda``).
"""
from __future__ import annotations

import pytest
import torch

from longctx.engine.runtime import random_model
from longctx.engine.attention import ATTENTION_BACKENDS, eager_attention, flash_available, sdpa_attention
from longctx.engine.config import ModelConfig

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

DEV = "cuda"


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float32."""
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def small_cfg(head_dim: int = 64, kv_heads: int = 2) -> ModelConfig:
    # head_dim a multiple of 8 so the flash kernels are eligible
    return ModelConfig(hidden_size=4 * head_dim, intermediate_size=512, num_layers=3, num_heads=4, num_kv_heads=kv_heads,
                       vocab_size=512, max_position_embeddings=4096, rope_theta=10000.0, torch_dtype="bfloat16",
                       name="cuda-test")


def qkv(b, tq, tk, h, hkv, d, dtype, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    q = torch.randn(b, tq, h, d, device=DEV, dtype=dtype, generator=g)
    k = torch.randn(b, tk, hkv, d, device=DEV, dtype=dtype, generator=g)
    v = torch.randn(b, tk, hkv, d, device=DEV, dtype=dtype, generator=g)
    return q, k, v


# (Tq, Tk, H, Hkv, D): one-shot causal, chunk after a prefix (Tq < Tk), decode, MHA, GQA, head dims 64/128
SHAPES = [
    (256, 256, 8, 2, 128),
    (64, 300, 8, 2, 128),
    (1, 300, 8, 2, 128),
    (128, 128, 4, 4, 64),
    (128, 1000, 4, 4, 64),
    (1024, 4096, 32, 8, 128),
    (77, 77 + 513, 12, 4, 64),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_sdpa_matches_eager(shape, dtype):
    tq, tk, h, hkv, d = shape
    q, k, v = qkv(1, tq, tk, h, hkv, d, dtype)
    ref = eager_attention(q, k, v)
    out = sdpa_attention(q, k, v)
    assert out.shape == (1, tq, h, d) and out.dtype == dtype
    assert rel_err(out, ref) <= 1e-2


@pytest.mark.skipif(not flash_available(), reason="flash_attn is not installed")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_flash_matches_eager_and_sdpa(shape):
    tq, tk, h, hkv, d = shape
    q, k, v = qkv(1, tq, tk, h, hkv, d, torch.bfloat16, seed=1)
    ref = eager_attention(q, k, v)
    out = ATTENTION_BACKENDS["flash"](q, k, v)
    assert rel_err(out, ref) <= 1e-2
    assert rel_err(out, sdpa_attention(q, k, v)) <= 1e-2


CHUNK_SHAPES = [s for s in SHAPES if 1 < s[0] < s[1]]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", CHUNK_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cuda_split_chunk_matches_eager(shape, dtype):
    """cuDNN (chunk x prefix) + flash (diagonal) merged by log-sum-exp == lower-right causal attention."""
    from longctx.engine.attention import _cuda_split_chunk

    tq, tk, h, hkv, d = shape
    q, k, v = qkv(1, tq, tk, h, hkv, d, dtype, seed=8)
    try:
        out = _cuda_split_chunk(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    except RuntimeError as e:  # no cuDNN attention in this build / on this card
        pytest.skip(f"cuDNN attention unavailable: {str(e).splitlines()[0][:120]}")
    assert out.shape == (1, tq, h, d) and out.dtype == dtype
    assert rel_err(out, eager_attention(q, k, v)) <= 1e-2


@pytest.mark.parametrize("mode", ["lower_right", "split", "auto", "flex"])
def test_chunk_modes_match_eager(mode, monkeypatch):
    import longctx.engine.attention as A

    monkeypatch.setenv("LONGCTX_CUDA_CHUNK_ATTN", mode)
    monkeypatch.setattr(A, "_SPLIT_OK", {})
    q, k, v = qkv(1, 300, 1000, 32, 8, 128, torch.bfloat16, seed=9)
    assert rel_err(sdpa_attention(q, k, v), eager_attention(q, k, v)) <= 1e-2


def test_split_path_selected_on_hopper():
    """On sm90+ the engine's chunk path is the cuDNN split (its self-check passed)."""
    import longctx.engine.attention as A

    if torch.cuda.get_device_capability()[0] < 9 or A.cuda_chunk_mode() == "lower_right":
        pytest.skip("the split is only used on sm90+")
    q, k, _ = qkv(1, 64, 256, 32, 8, 128, torch.bfloat16)
    assert A._split_usable(q.transpose(1, 2), k.transpose(1, 2)), "cuDNN split self-check failed (see warnings)"


def test_sdpa_fp32_matches_eager_tightly():
    for tq, tk in ((200, 200), (50, 333), (1, 333)):
        q, k, v = qkv(1, tq, tk, 8, 2, 64, torch.float32, seed=2)
        assert rel_err(sdpa_attention(q, k, v), eager_attention(q, k, v)) <= 1e-4


def test_chunk_attention_memory_is_linear():
    """The chunk path (Tq < Tk, GQA, bf16) must not build a [Tq, Tk] mask/score matrix nor repeat K/V."""
    tq, tk, h, hkv, d = 1024, 65536, 32, 8, 128
    q, k, v = qkv(1, tq, tk, h, hkv, d, torch.bfloat16, seed=3)
    sdpa_attention(q, k, v)  # warm-up (workspace, kernels)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out = sdpa_attention(q, k, v)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    kv_repeat = 2 * tk * h * d * 2  # what expanding K/V to all query heads would cost
    assert extra < kv_repeat / 4, f"chunk attention used {extra / 2**20:.0f} MiB extra (K/V repeat = {kv_repeat / 2**20:.0f} MiB)"
    assert torch.isfinite(out.float()).all()


def _models(cfg, dtype, attn="sdpa", seed=0):
    return random_model(cfg, device=DEV, dtype=dtype, attn=attn, seed=seed)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 2e-2), (torch.float32, 1e-4)])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_chunked_prefill_equals_one_shot(dtype, tol, attn):
    m = _models(small_cfg(), dtype, attn)
    n = 700
    ids = torch.randint(0, 512, (n,), generator=torch.Generator().manual_seed(4))
    base = m.rope_base_for(n)
    c1 = m.new_cache(n)
    one = m.prefill(ids, c1, base, chunk_size=n)
    for chunk in (64, 256, 333):
        c2 = m.new_cache(n)
        got = m.prefill(ids, c2, base, chunk_size=chunk)
        assert rel_err(got, one) <= tol, chunk
        assert rel_err(c2.k[:, :n], c1.k[:, :n]) <= tol


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float32, 1e-4)])
def test_decode_equals_recompute(dtype, tol):
    m = _models(small_cfg(), dtype)
    ids = torch.randint(0, 512, (300,), generator=torch.Generator().manual_seed(5)).tolist()
    n0, steps = 280, 20
    base = m.rope_base_for(len(ids))
    cache = m.new_cache(len(ids))
    m.prefill(ids[:n0], cache, base, chunk_size=128)
    full = m.logits(ids, rope_base=base)  # [T, vocab] one-shot
    for i in range(steps):
        step = m.decode_step(ids[n0 + i], cache, base)
        assert rel_err(step.cpu(), full[n0 + i]) <= tol, i


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_fp32_reference_vs_cuda_half(dtype):
    cfg = small_cfg(head_dim=64)
    ref = random_model(cfg, device="cpu", dtype=torch.float32, attn="eager", seed=6)
    gpu = random_model(cfg, device=DEV, dtype=dtype, attn="sdpa", seed=0)
    gpu.net.load_state_dict({k: v.to(DEV, dtype) for k, v in ref.net.state_dict().items()})
    ids = torch.randint(0, 512, (400,), generator=torch.Generator().manual_seed(7))
    want = ref.logits(ids)  # float32 [T, vocab]
    got = gpu.logits(ids)
    assert rel_err(got, want) <= 2e-2
    agree = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    assert agree >= 0.8, agree
    # chunked on the GPU too (lower-right chunk path)
    cache = gpu.new_cache(len(ids))
    last = gpu.prefill(ids, cache, gpu.rope_base_for(len(ids)), chunk_size=96)
    assert rel_err(last.cpu(), want[-1]) <= 3e-2


def test_kv_cache_and_weights_live_on_cuda():
    m = _models(small_cfg(), torch.bfloat16)
    c = m.new_cache(16)
    assert c.k.is_cuda and c.k.dtype == torch.bfloat16
    assert all(p.is_cuda for p in m.net.parameters())
