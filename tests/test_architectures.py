"""Architectures users evaluate, in the same engine: Qwen2/2.5 (q/k/v biases, tied or untied embeddings) and
Llama 3.x (llama3 RoPE, tied embeddings as in 3.2), against transformers on tiny random checkpoints."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from longctx.checkpoints.keys import internlm2_to_llama, llama_to_internlm2
from longctx.engine.runtime import load_model

KW = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
          vocab_size=300, rms_norm_eps=1e-6)


def _randomize_biases(model) -> None:
    with torch.no_grad():  # transformers initialises biases to zero: make them matter
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)


def _qwen2(tied: bool, rope: dict | None = None):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(4)
    extra = {"rope_parameters": dict(rope, rope_theta=10000.0)} if rope else {}
    ref = Qwen2ForCausalLM(Qwen2Config(max_position_embeddings=32, tie_word_embeddings=tied, **KW, **extra)).eval()
    _randomize_biases(ref)
    return ref


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("rope", [None, {"rope_type": "yarn", "factor": 4.0}], ids=["plain", "yarn"])
def test_qwen2_matches_transformers(tmp_path, tied, rope):
    ref = _qwen2(tied, rope)
    assert ref.model.layers[0].self_attn.q_proj.bias is not None and ref.model.layers[0].self_attn.o_proj.bias is None
    ref.save_pretrained(tmp_path / "q", safe_serialization=True)
    m = load_model(tmp_path / "q", device="cpu", dtype="float32", attn="eager")
    assert m.config.source_layout == "qwen2" and m.config.qkv_bias and not m.config.bias
    assert m.config.tie_word_embeddings == tied
    for n in (20, 70):  # below and past max_position_embeddings = 32
        ids = torch.randint(0, 300, (n,), generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            want = ref(ids[None]).logits[0].float()
        assert_close(m.logits(ids), want, atol=1e-4, rtol=0)
    ids = torch.arange(1, 71)
    base = m.rope_base_for(70)
    cache = m.new_cache(70)
    assert_close(m.prefill(ids, cache, base, chunk_size=9), m.logits(ids, rope_base=base)[-1], atol=1e-5, rtol=0)


def test_llama32_style_tied_llama3_rope(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(5)
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16, "rope_theta": 500000.0}
    ref = LlamaForCausalLM(LlamaConfig(max_position_embeddings=128, tie_word_embeddings=True, rope_parameters=rope,
                                       **KW)).eval()
    ref.save_pretrained(tmp_path / "l", safe_serialization=True)
    m = load_model(tmp_path / "l", device="cpu", dtype="float32", attn="sdpa")
    assert m.config.rope_scaling.type == "llama3" and m.config.tie_word_embeddings
    ids = torch.randint(0, 300, (100,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref(ids[None]).logits[0].float()
    assert_close(m.logits(ids), want, atol=1e-4, rtol=0)


def test_bias_key_tables_round_trip():
    ref = _qwen2(False)
    from longctx.engine.config import from_hf_dict

    cfg = from_hf_dict(ref.config.to_dict())
    sd = {k: v for k, v in ref.state_dict().items()}
    packed = dict(llama_to_internlm2(sd.items(), cfg))
    assert packed["model.layers.0.attention.wqkv.bias"].shape == ((4 + 2 * 2) * 16,)
    back = dict(internlm2_to_llama(packed.items(), cfg))
    assert back.keys() == sd.keys()
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
