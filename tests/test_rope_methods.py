"""RoPE scaling methods (none, linear, dynamic NTK, YaRN, Llama 3): engine logits vs transformers'
LlamaForCausalLM on tiny random checkpoints, in both config spellings, below and past the trained window."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch.testing import assert_close
from typer.testing import CliRunner

from helpers import tiny_llama
from longctx.cli import app
from longctx.engine.config import ConfigError, ModelConfig, RopeScaling, from_hf_dict, parse_rope_scaling
from longctx.engine.rope import base_for, rope_frequencies
from longctx.engine.runtime import load_model

MAX_POS = 32
METHODS = {
    "none": None,
    "linear": {"rope_type": "linear", "factor": 4.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0},
    "yarn-params": {"rope_type": "yarn", "factor": 4.0, "beta_fast": 16.0, "beta_slow": 2.0,
                    "original_max_position_embeddings": 16, "mscale": 1.0, "mscale_all_dim": 0.5},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16},
}


def _write(ref, path, spelling: str, scaling: dict | None):
    """Saves ``ref`` with transformers, then rewrites the RoPE fields in the requested spelling."""
    ref.save_pretrained(path, safe_serialization=True)
    cfg = json.loads((path / "config.json").read_text())
    theta = float((cfg.get("rope_parameters") or {}).get("rope_theta") or cfg.get("rope_theta"))
    for key in ("rope_parameters", "rope_scaling", "rope_theta"):
        cfg.pop(key, None)
    if spelling == "v5":  # transformers 5: one dict with the base, "rope_type": "default" when unscaled
        cfg["rope_parameters"] = dict(scaling or {"rope_type": "default"}, rope_theta=theta)
    else:  # transformers 4: rope_theta beside a rope_scaling dict spelled with "type"
        cfg["rope_theta"] = theta
        cfg["rope_scaling"] = None if scaling is None else {("type" if k == "rope_type" else k): v
                                                             for k, v in scaling.items()}
    (path / "config.json").write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="module", params=list(METHODS))
def pair(request, tmp_path_factory):
    name = request.param
    ref = tiny_llama(4, 2, max_pos=MAX_POS, theta=500.0, rope_scaling=METHODS[name], seed=3)
    return name, ref


@pytest.mark.parametrize("spelling", ["v4", "v5"])
def test_logits_match_transformers(pair, spelling, tmp_path):
    name, ref = pair
    path = _write(ref, tmp_path / "ckpt", spelling, METHODS[name])
    m = load_model(path, device="cpu", dtype="float32", attn="eager")
    want_type = None if METHODS[name] is None else METHODS[name]["rope_type"]
    assert (m.config.rope_scaling.type if m.config.rope_scaling else None) == want_type
    assert m.config.rope_theta == 500.0
    for n in (20, 90):  # below and past max_position_embeddings = 32
        ids = torch.randint(0, 300, (n,), generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            want = ref(ids[None]).logits[0].float()
        assert_close(m.logits(ids), want, atol=1e-4, rtol=0)


def test_chunked_prefill_equals_one_shot(pair, tmp_path):
    name, ref = pair
    m = load_model(_write(ref, tmp_path / "ckpt", "v5", METHODS[name]), device="cpu", dtype="float32", attn="eager")
    ids = torch.randint(0, 300, (90,), generator=torch.Generator().manual_seed(7))
    base = m.rope_base_for(90)
    one_shot = m.logits(ids, rope_base=base)[-1]
    for chunk in (1, 13, 40):
        cache = m.new_cache(90)
        assert_close(m.prefill(ids, cache, base, chunk_size=chunk), one_shot, atol=1e-5, rtol=0)


def test_scaling_changes_the_logits_past_the_window(tmp_path):
    """Every method gives logits different from plain RoPE past the trained window (the test is not vacuous)."""
    ref = tiny_llama(4, 2, max_pos=MAX_POS, theta=500.0, seed=3)
    path = _write(ref, tmp_path / "ckpt", "v5", None)
    ids = torch.arange(1, 91)
    plain = load_model(path, device="cpu", dtype="float32", attn="eager").logits(ids)
    for spec in ("linear:4", "dynamic:2", "yarn:4", "llama3:8"):
        scaled = load_model(path, device="cpu", dtype="float32", attn="eager", rope_scaling=spec).logits(ids)
        assert (scaled - plain).abs().max().item() > 1e-3, spec


def test_fixed_methods_keep_the_base_and_extend_the_limit():
    cfg = ModelConfig(hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=96, num_layers=1,
                      vocab_size=10, max_position_embeddings=8192, rope_theta=1e5)
    for spec, limit in (("linear:4", 32768), ("yarn:4", 32768), ("llama3:8", 65536), ("dynamic:2", 262144)):
        c = cfg.with_rope_scaling(spec)
        assert c.context_limit == limit, spec
        if not spec.startswith("dynamic"):
            assert base_for(c, 30000) == 1e5
    assert base_for(cfg.with_rope_scaling("dynamic:2"), 30000) > 1e5
    # a llama3 config whose window already is the extended one keeps it
    c = cfg.with_rope_scaling({"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 1024})
    assert c.context_limit == 8192


def test_yarn_attention_factor_and_ramp():
    cfg = ModelConfig(hidden_size=128, num_heads=2, num_kv_heads=2, intermediate_size=96, num_layers=1,
                      vocab_size=10, max_position_embeddings=4096, rope_theta=10000.0)
    inv, scale = rope_frequencies(cfg.with_rope_scaling("yarn:4"), 10000.0)
    assert scale == pytest.approx(0.1 * math.log(4) + 1)
    plain, _ = rope_frequencies(cfg, 10000.0)
    assert_close(inv[0], plain[0])  # fastest dimension: extrapolated (unchanged)
    assert_close(inv[-1], plain[-1] / 4)  # slowest: interpolated by the factor


def test_parse_and_record_form():
    assert parse_rope_scaling("none") is None
    assert parse_rope_scaling({"rope_type": "default", "rope_theta": 1e4}) is None
    r = parse_rope_scaling("yarn:4")
    assert r == RopeScaling("yarn", 4.0) and str(r) == "yarn:4"
    assert r.as_dict() == {"type": "yarn", "factor": 4.0}
    r = parse_rope_scaling({"type": "llama3", "factor": 8, "original_max_position_embeddings": 8192})
    assert r.as_dict() == {"type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}


@pytest.mark.parametrize("bad,match", [
    ("longrope:4", "unsupported rope scaling method 'longrope': supported are none, linear, dynamic, yarn, llama3"),
    ({"rope_type": "su", "factor": 2}, "unsupported rope scaling method 'su'"),
    ("yarn:0.5", "factor must be >= 1"),
    ("linear:x", "bad rope scaling"),
    ({"rope_type": "yarn", "factor": 2, "beta_fast": "fast"}, "bad rope scaling parameter beta_fast"),
])
def test_unknown_or_bad_method_is_a_clear_error(bad, match):
    with pytest.raises(ConfigError, match=match):
        parse_rope_scaling(bad)


def test_config_json_with_unknown_method_is_refused():
    cfg = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 1,
           "num_attention_heads": 4, "vocab_size": 10, "rope_parameters": {"rope_type": "longrope", "factor": 4.0,
                                                                            "rope_theta": 1e4}}
    with pytest.raises(ConfigError, match="unsupported rope scaling method 'longrope'"):
        from_hf_dict(cfg)
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 12345.0}
    assert from_hf_dict(cfg).rope_theta == 12345.0


def test_cli_unknown_method_exit_2():
    r = CliRunner().invoke(app, ["info", "--preset", "tiny", "--rope-scaling", "longrope:4"])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: unsupported rope scaling method 'longrope'")
