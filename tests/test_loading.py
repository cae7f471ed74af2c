"""Loading errors: each bad checkpoint gives one clear error naming the file or tensor (API and CLI)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from helpers import internlm2_state_dict, tiny_llama, write_internlm2_checkpoint
from longctx.engine.runtime import load_model
from longctx.cli import app
from longctx.engine.config import ConfigError
from longctx.errors import WeightError


@pytest.fixture()
def ckpt(tmp_path):
    return write_internlm2_checkpoint(tiny_llama(4, 2), tmp_path / "ckpt", shards=2)


def _cli(*args):
    return CliRunner().invoke(app, list(args))


def _one_line_exit2(result, needle):
    assert result.exit_code == 2, result.output
    err = result.stderr if hasattr(result, "stderr") else result.output
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0]
    assert "Traceback" not in result.output


def test_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_model(tmp_path / "nope")
    _one_line_exit2(_cli("generate", "hi", "--model", str(tmp_path / "nope")), "not found")


def test_missing_weight_shard(ckpt):
    (ckpt / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(WeightError, match="model-00002-of-00002.safetensors"):
        load_model(ckpt)
    _one_line_exit2(_cli("generate", "hi", "--model", str(ckpt)), "missing")


def test_no_weights_at_all(tmp_path, ckpt):
    for f in ckpt.glob("model*"):
        f.unlink()
    with pytest.raises(WeightError, match="no weights"):
        load_model(ckpt)


def test_corrupt_weight_file(ckpt):
    (ckpt / "model-00001-of-00002.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightError, match="cannot read weight file model-00001"):
        load_model(ckpt)
    _one_line_exit2(_cli("generate", "hi", "--model", str(ckpt)), "cannot read weight file")


def test_corrupt_bin_file(tmp_path):
    path = write_internlm2_checkpoint(tiny_llama(4, 2), tmp_path / "b", fmt="bin")
    (path / "pytorch_model-00001-of-00002.bin").write_bytes(b"not a zip")
    with pytest.raises(WeightError, match="cannot read weight file pytorch_model-00001"):
        load_model(path)


def _rewrite_single(ckpt, sd):
    from safetensors.torch import save_file

    for f in ckpt.glob("model*"):
        f.unlink()
    save_file(sd, str(ckpt / "model.safetensors"))


def test_missing_tensor(ckpt):
    sd = internlm2_state_dict(tiny_llama(4, 2))
    del sd["model.layers.1.feed_forward.w2.weight"]
    _rewrite_single(ckpt, sd)
    with pytest.raises(WeightError, match="missing tensor 'model.layers.1.feed_forward.w2.weight'"):
        load_model(ckpt)
    _one_line_exit2(_cli("generate", "hi", "--model", str(ckpt)), "model.layers.1.feed_forward.w2.weight")


def test_shape_mismatch(ckpt):
    sd = internlm2_state_dict(tiny_llama(4, 2))
    sd["model.layers.0.attention.wo.weight"] = torch.zeros(3, 3)
    _rewrite_single(ckpt, sd)
    with pytest.raises(WeightError, match=r"'model.layers.0.attention.wo.weight' has shape \(3, 3\)"):
        load_model(ckpt)
    _one_line_exit2(_cli("generate", "hi", "--model", str(ckpt)), "has shape (3, 3)")


def test_unexpected_tensor(ckpt):
    sd = internlm2_state_dict(tiny_llama(4, 2))
    sd["model.layers.0.attention.extra.weight"] = torch.zeros(2)
    _rewrite_single(ckpt, sd)
    with pytest.raises(WeightError, match="unexpected tensor 'model.layers.0.attention.extra.weight'"):
        load_model(ckpt)


def test_unsupported_model_type(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model_type"] = "gpt_neox"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="unsupported model_type 'gpt_neox'"):
        load_model(ckpt)
    _one_line_exit2(_cli("info", "--model", str(ckpt)), "unsupported model_type")


def test_bad_config_json(ckpt):
    (ckpt / "config.json").write_text("{not json")
    _one_line_exit2(_cli("generate", "hi", "--model", str(ckpt)), "not valid JSON")


def test_llama_layout_checkpoint_loads(tmp_path):
    """A Hugging Face Llama checkpoint (q/k/v_proj) runs in the same engine after packing."""
    ref = tiny_llama(8, 2)
    ref.save_pretrained(tmp_path / "llama", safe_serialization=True)
    m = load_model(tmp_path / "llama", device="cpu", attn="eager")
    assert m.config.source_layout == "llama"
    ids = torch.arange(1, 40)
    with torch.no_grad():
        want = ref(ids[None]).logits[0]
    assert (m.logits(ids) - want).abs().max().item() <= 1e-4


def test_prompt_longer_than_allowed_context_cli(ckpt):
    from longctx.engine.runtime import ContextLengthError

    m = load_model(ckpt, max_context=20)
    with pytest.raises(ContextLengthError):
        m.generate(list(range(1, 30)), max_new_tokens=1)
    # CLI on the default model with a tiny allowed context
    r = subprocess.run([sys.executable, "-m", "longctx", "generate", "word " * 50, "--max-context", "16"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: prompt of") and "allowed context of 16" in r.stderr
    assert "Traceback" not in r.stderr


def test_weights_allocated_in_target_dtype_only(ckpt, monkeypatch):
    """A bf16 load allocates bf16 parameters directly: never a float32 copy of the whole model."""
    allocated = []
    real_to_empty = torch.nn.Module.to_empty

    def spy(self, *args, **kwargs):
        allocated.extend({p.dtype for p in self.parameters()})
        return real_to_empty(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to_empty", spy)
    m = load_model(ckpt, device="cpu", dtype="bf16", attn="eager")
    assert set(allocated) == {torch.bfloat16}
    assert {p.dtype for p in m.net.parameters()} == {torch.bfloat16}
    ref = load_model(ckpt, device="cpu", dtype="fp32", attn="eager")
    for (name, p), (_, q) in zip(m.net.named_parameters(), ref.net.named_parameters()):
        assert torch.equal(p, q.to(torch.bfloat16)), name


def _write_tiny_gguf(path, *, layers: int, seed: int, name: str):
    """A tiny random Llama GGUF (float32 tensors, byte-level BPE tokenizer with no merges)."""
    import numpy as np

    gguf = pytest.importorskip("gguf")
    from tokenizers.pre_tokenizers import ByteLevel

    tokens = sorted(ByteLevel.alphabet()) + ["<|im_start|>", "<|im_end|>"]
    vocab, hidden, heads, kv_heads, ffn = len(tokens), 32, 4, 2, 48
    d = hidden // heads
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_block_count(layers)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([1] * 256 + [3, 3])
    w.add_token_merges([])
    w.add_bos_token_id(vocab - 2)
    w.add_eos_token_id(vocab - 1)

    def t(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    w.add_tensor("token_embd.weight", t(vocab, hidden))
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    for i in range(layers):
        for n, shape in (("attn_q", (heads * d, hidden)), ("attn_k", (kv_heads * d, hidden)),
                         ("attn_v", (kv_heads * d, hidden)), ("attn_output", (hidden, heads * d)),
                         ("ffn_gate", (ffn, hidden)), ("ffn_up", (ffn, hidden)), ("ffn_down", (hidden, ffn))):
            w.add_tensor(f"blk.{i}.{n}.weight", t(*shape))
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_file_path_loads_that_file(tmp_path):
    """`load_model("dir/b.gguf")` loads b.gguf even when an `a.gguf` sorts first in the same folder."""
    import numpy as np
    from gguf import GGUFReader

    a = _write_tiny_gguf(tmp_path / "a.gguf", layers=1, seed=1, name="tiny-a")
    b = _write_tiny_gguf(tmp_path / "b.gguf", layers=1, seed=2, name="tiny-b")
    m = load_model(b, device="cpu", attn="eager")
    assert m.config.name == "tiny-b" and m.path == str(b)
    want = {t.name: np.array(t.data) for t in GGUFReader(str(b)).tensors}["token_embd.weight"]
    torch.testing.assert_close(m.net.model.tok_embeddings.weight, torch.from_numpy(want))
    m_a = load_model(a, device="cpu", attn="eager")
    assert not torch.equal(m_a.net.model.tok_embeddings.weight, m.net.model.tok_embeddings.weight)
    # the folder itself (no config.json) still means its first GGUF
    torch.testing.assert_close(load_model(tmp_path, device="cpu").net.model.tok_embeddings.weight,
                               m_a.net.model.tok_embeddings.weight)


def test_key_tables_round_trip():
    """llama_to_internlm2 and internlm2_to_llama are inverses; the InternLM2 side matches the helper's packing."""
    from longctx.checkpoints.keys import internlm2_to_llama, llama_to_internlm2
    from longctx.engine.config import from_hf_dict

    ref = tiny_llama(4, 2)
    cfg = from_hf_dict(ref.config.to_dict())
    sd = {k: v for k, v in ref.state_dict().items() if "rotary_emb" not in k}
    internlm2 = dict(llama_to_internlm2(sd.items(), cfg))
    want = internlm2_state_dict(ref)
    assert internlm2.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(internlm2[k], want[k])
    back = dict(internlm2_to_llama(internlm2.items(), cfg))
    assert back.keys() == sd.keys()
    for k in sd:
        torch.testing.assert_close(back[k], sd[k])


def test_engine_and_cli_import_without_gguf():
    """The GPU machine has no gguf package: only reading a GGUF file may need it."""
    import subprocess
    import sys

    code = ("import sys, importlib.abc\n"
            "class B(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'gguf' or name.startswith('gguf.'):\n"
            "            raise ImportError('gguf blocked')\n"
            "sys.meta_path.insert(0, B())\n"
            "import longctx.engine.runtime, longctx.bench.runner, longctx.checkpoints.resolve, longctx.cli\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
