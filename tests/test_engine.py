"""Engine parity: official-layout InternLM2 checkpoints vs transformers' LlamaForCausalLM on the unpacked weights."""
from __future__ import annotations

import pytest
import torch

from helpers import tiny_llama, write_internlm2_checkpoint
from longctx.engine.runtime import load_model
from longctx.engine.config import parse_rope_scaling
from longctx.checkpoints.keys import pack_wqkv, unpack_wqkv
from longctx.engine.rope import dynamic_ntk_base

torch.set_num_threads(2)


def ref_logits(ref, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ref(ids[None]).logits[0].float()


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (8, 2)])  # G = 1, 2, 4
def test_logits_match_transformers_llama(tmp_path, fmt, heads, kv_heads):
    ref = tiny_llama(heads, kv_heads)
    path = write_internlm2_checkpoint(ref, tmp_path / "ckpt", fmt=fmt, shards=3)
    m = load_model(path, device="cpu", dtype="float32", attn="eager")
    assert m.config.source_layout == "internlm2" and m.config.num_groups == heads // kv_heads
    ids = torch.randint(0, 300, (48,), generator=torch.Generator().manual_seed(1))
    diff = (m.logits(ids) - ref_logits(ref, ids)).abs().max().item()
    assert diff <= 1e-4


def test_dynamic_ntk_matches_transformers_above_max_positions(tmp_path):
    scaling = {"type": "dynamic", "factor": 2.0}
    ref = tiny_llama(4, 2, max_pos=32, rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    path = write_internlm2_checkpoint(ref, tmp_path / "ckpt", rope_scaling=scaling)
    m = load_model(path, device="cpu", dtype="float32", attn="eager")
    n = 80  # > max_position_embeddings = 32: the base is scaled
    ids = torch.randint(0, 300, (n,), generator=torch.Generator().manual_seed(2))
    base = m.rope_base_for(n)
    d = m.config.head_dim
    assert base == pytest.approx(10000.0 * ((2.0 * n / 32) - 1.0) ** (d / (d - 2)))
    assert base > 10000.0
    diff = (m.logits(ids) - ref_logits(ref, ids)).abs().max().item()
    assert diff <= 1e-4
    # without scaling the same weights give different logits at this length
    plain = load_model(path, device="cpu", dtype="float32", attn="eager", rope_scaling=None)
    assert plain.rope_base_for(n) == 10000.0
    assert (plain.logits(ids) - ref_logits(ref, ids)).abs().max().item() > 1e-3


def test_rope_base_formula_matches_issue_example():
    # f = 2, theta = 1e6, d = 128, s = 200000 -> base ~ 1.165e7
    assert dynamic_ntk_base(1e6, 128, 32768, 2.0, 200000) == pytest.approx(1.1645e7, rel=1e-3)
    assert dynamic_ntk_base(1e6, 128, 32768, 2.0, 32768) == 1e6
    assert dynamic_ntk_base(1e6, 128, 32768, None, 200000) == 1e6


def test_user_rope_scaling_overrides_file(tmp_path):
    ref = tiny_llama(4, 2, max_pos=32)
    path = write_internlm2_checkpoint(ref, tmp_path / "ckpt", rope_scaling={"type": "dynamic", "factor": 3.0})
    assert load_model(path, device="cpu").config.rope_scaling.factor == 3.0
    assert load_model(path, device="cpu", rope_scaling={"rope_type": "dynamic", "factor": 2.0}).config.rope_scaling.factor == 2.0
    assert load_model(path, device="cpu", rope_scaling=None).config.rope_scaling is None
    assert parse_rope_scaling("dynamic:4") == parse_rope_scaling({"type": "dynamic", "factor": 4.0})


@pytest.fixture(scope="module")
def dyn_model(tmp_path_factory):
    ref = tiny_llama(8, 2, max_pos=32)
    path = write_internlm2_checkpoint(ref, tmp_path_factory.mktemp("c") / "ckpt")
    return load_model(path, device="cpu", dtype="float32", attn="eager", rope_scaling="dynamic:2.0")


@pytest.mark.parametrize("chunk", [1, 7, 16, 33, 100])
def test_chunked_prefill_equals_one_shot(dyn_model, chunk):
    m = dyn_model
    ids = torch.randint(0, 300, (90,), generator=torch.Generator().manual_seed(3))
    base = m.rope_base_for(90)
    one_shot = m.logits(ids, rope_base=base)[-1]
    cache = m.new_cache(90)
    last = m.prefill(ids, cache, base, chunk_size=chunk)
    assert cache.length == 90
    assert (last - one_shot).abs().max().item() <= 1e-5


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_cached_decode_equals_full_recompute(dyn_model, attn):
    m = dyn_model
    m.net.attn_name = attn
    try:
        ids = torch.randint(0, 300, (70,), generator=torch.Generator().manual_seed(4)).tolist()
        base = m.rope_base_for(70)  # one base for the whole request, held through decode
        cache = m.new_cache(80)
        logits = m.prefill(ids[:60], cache, base, chunk_size=16)
        for t in range(60, 70):
            full = m.logits(ids[:t], rope_base=base)[-1]
            assert (logits - full).abs().max().item() <= 1e-4
            logits = m.decode_step(ids[t], cache, base)
    finally:
        m.net.attn_name = "eager"


def test_sdpa_equals_eager(dyn_model):
    m = dyn_model
    ids = torch.randint(0, 300, (75,), generator=torch.Generator().manual_seed(5))
    base = m.rope_base_for(75)
    eager = m.logits(ids, rope_base=base)
    m.net.attn_name = "sdpa"
    try:
        sd = m.logits(ids, rope_base=base)
        cache = m.new_cache(75)
        chunked = m.prefill(ids, cache, base, chunk_size=10)
    finally:
        m.net.attn_name = "eager"
    assert (sd - eager).abs().max().item() <= 1e-4
    assert (chunked - eager[-1]).abs().max().item() <= 1e-4


def test_prefill_holds_one_base_per_cache(dyn_model):
    m = dyn_model
    cache = m.new_cache(10)
    m.prefill([1, 2, 3], cache, 10000.0)
    with pytest.raises(ValueError, match="RoPE base"):
        m.prefill([4], cache, 20000.0)


def test_wqkv_pack_roundtrip():
    from longctx.engine.config import get_preset

    cfg = get_preset("tiny")
    q = torch.randn(cfg.num_heads * cfg.head_dim, cfg.hidden_size)
    k = torch.randn(cfg.num_kv_heads * cfg.head_dim, cfg.hidden_size)
    v = torch.randn_like(k)
    packed = pack_wqkv(q, k, v, cfg)
    # rows of KV head 0: G query heads, then its key head, then its value head
    d, g = cfg.head_dim, cfg.num_groups
    assert torch.equal(packed[:d], q[:d])
    assert torch.equal(packed[g * d:(g + 1) * d], k[:d])
    assert torch.equal(packed[(g + 1) * d:(g + 2) * d], v[:d])
    for a, b in zip(unpack_wqkv(packed, cfg), (q, k, v)):
        assert torch.equal(a, b)


def test_generate_greedy_equals_argmax_loop(dyn_model):
    m = dyn_model
    ids = [5, 17, 42, 7, 99, 3]
    out = m.generate(ids, max_new_tokens=6, stop_ids=[])
    seq = list(ids)
    for _ in range(6):
        seq.append(int(torch.argmax(m.logits(seq, rope_base=m.rope_base_for(len(ids)))[-1])))
    assert out.token_ids == seq[len(ids):]
    assert out.stats.new_tokens == 6 and out.stats.prompt_tokens == 6


def test_sampling_is_seeded(dyn_model):
    a = dyn_model.generate([1, 2, 3], max_new_tokens=8, temperature=0.9, top_p=0.9, seed=7, stop_ids=[])
    b = dyn_model.generate([1, 2, 3], max_new_tokens=8, temperature=0.9, top_p=0.9, seed=7, stop_ids=[])
    assert a.token_ids == b.token_ids


def test_context_limit_enforced(tmp_path):
    from longctx.engine.runtime import ContextLengthError

    ref = tiny_llama(4, 2, max_pos=32)
    path = write_internlm2_checkpoint(ref, tmp_path / "ckpt")
    m = load_model(path, device="cpu", max_context=40)
    with pytest.raises(ContextLengthError, match="exceeds the allowed context of 40"):
        m.generate(list(range(1, 36)), max_new_tokens=10)


def test_prefill_chunk_policy():
    """CUDA with no chunk size: one shot when the working memory fits the free memory, else chunked
    (layer-wise in between: tests/test_layerwise.py)."""
    from longctx.engine.runtime import random_model

    m = random_model("tiny", device="cpu", dtype="float32")
    assert m.prefill_plan(10_000) == ("chunked", 2048)  # CPU: always the configured chunk
    m.one_shot_when_fits = True  # what a CUDA model without --chunk-size gets
    from longctx.engine.memory import estimate_memory

    need = estimate_memory(m.config, 10_000, dtype_bytes=4, chunk=10_000)["working"]
    assert m.prefill_plan(10_000, free_bytes=int(need / 0.85) + 1) == ("chunked", 10_000)
    assert m.prefill_plan(10_000, free_bytes=0) == ("chunked", 2048)
    assert m.prefill_plan(100, free_bytes=0) == ("chunked", 2048)
    assert random_model("tiny", device="cpu", chunk_size=64).one_shot_when_fits is False


def test_token_loop_contract():
    """One loop: stop ids end the answer unyielded, every yielded token but a full budget's last is fed back."""
    from longctx.engine.generation import token_loop
    from longctx.engine.results import GenerationStats

    script = [5, 7, 2, 9]  # the token each logits vector picks; 2 is the stop id
    fed: list[int] = []

    def logits_for(i):
        out = torch.zeros(10)
        out[script[i]] = 1.0
        return out

    def step(tok):
        fed.append(int(tok))
        return logits_for(len(fed))

    stats = GenerationStats()
    got = list(token_loop(lambda: logits_for(0), step, max_new_tokens=8, stop_ids=[2], stats=stats,
                          device=torch.device("cpu")))
    assert got == [5, 7] and fed == [5, 7]
    assert stats.stop_reason == "stop" and stats.new_tokens == 2 and stats.prefill_s >= 0 and stats.ttft_s > 0
    fed.clear()
    stats = GenerationStats()
    got = list(token_loop(lambda: logits_for(0), step, max_new_tokens=2, stop_ids=[2], stats=stats,
                          device=torch.device("cpu")))
    assert got == [5, 7] and fed == [5]  # the budget's last token is not fed
    assert stats.stop_reason == "length" and stats.new_tokens == 2
