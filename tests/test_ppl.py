"""``longctx ppl``: chunked per-token NLL equals transformers' loss; no [T x vocab] logits; CLI and plot."""
from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close
from typer.testing import CliRunner

from helpers import tiny_llama
from longctx.cli import app
from longctx.engine.runtime import load_model
from longctx.ppl.compute import bucket_means, perplexity, token_nll
from longctx.ppl.plot import plot_loss_vs_position, read_ppl_records


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    ref = tiny_llama(4, 2, max_pos=64, seed=5)
    path = tmp_path_factory.mktemp("ppl") / "llama"
    ref.save_pretrained(path, safe_serialization=True)
    return ref, load_model(path, device="cpu", dtype="float32", attn="sdpa")


@pytest.mark.parametrize("chunk", [7, 32, 60])
def test_mean_nll_equals_transformers_loss(pair, chunk):
    ref, m = pair
    ids = torch.randint(0, 300, (60,), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        want = ref(ids[None], labels=ids[None]).loss.float()
        logits = ref(ids[None]).logits[0].float()
    per_token = torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="none")
    nll = token_nll(m, ids.tolist(), chunk_size=chunk)
    assert nll.shape == (59,)
    assert_close(nll, per_token, atol=1e-4, rtol=0)
    assert abs(float(nll.mean()) - float(want)) <= 1e-4


def test_live_logits_never_exceed_one_chunk(pair, monkeypatch):
    _, m = pair
    rows = []
    real = m.net.forward

    def spy(ids, cache, rope_base, *, last_only=True):
        out = real(ids, cache, rope_base, last_only=last_only)
        rows.append(out.shape[0])
        return out

    monkeypatch.setattr(m.net, "forward", spy)
    token_nll(m, list(range(1, 61)), chunk_size=16)
    assert rows == [16, 16, 16, 12]


def test_buckets_and_result(pair):
    _, m = pair
    nll = torch.arange(10, dtype=torch.float32)
    starts, means, counts = bucket_means(nll, 4)
    assert starts == [1, 5, 9] and counts == [4, 4, 2]
    assert means == [1.5, 5.5, 8.5]
    res = perplexity(m, list(range(1, 41)), chunk_size=8, bucket_size=16)
    assert res.tokens == 40 and sum(res.bucket_counts) == 39
    assert res.perplexity == pytest.approx(torch.tensor(res.mean_nll).exp().item())


def test_too_long_and_too_short_are_errors(pair):
    from longctx.errors import ContextLengthError

    _, m = pair
    with pytest.raises(ContextLengthError, match="exceed the allowed context"):
        token_nll(m, list(range(m.max_context + 1)))
    with pytest.raises(ValueError, match="at least 2 tokens"):
        token_nll(m, [1])


def test_cli_default_model_and_plot(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
                    "must be in want of a wife. " * 12, encoding="utf-8")
    out, png = tmp_path / "ppl.jsonl", tmp_path / "ppl.png"
    r = CliRunner().invoke(app, ["ppl", str(text), "--max-len", "200", "--bucket", "50", "--chunk-size", "64",
                                 "--rope-scaling", "none", "--rope-scaling", "yarn:2", "--out", str(out),
                                 "--plot", str(png), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    recs = read_ppl_records(out)
    assert [x["rope_scaling"] for x in recs] == [None, {"type": "yarn", "factor": 2.0}]
    assert all(x["tokens"] == 200 and x["bucket_counts"] == [50, 50, 50, 49] for x in recs)
    # repeated text: the model copies it, so the late buckets' loss is far below the first one's
    assert recs[0]["bucket_nll"][-1] < recs[0]["bucket_nll"][0]
    assert png.stat().st_size > 1000


def test_plot_refuses_non_finite(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"bucket_starts": [1], "bucket_nll": [float("nan")], "bucket_counts": [3]}) + "\n")
    with pytest.raises(ValueError, match="non-finite"):
        read_ppl_records(p)
    p.write_text(json.dumps({"bucket_starts": [1, 5], "bucket_nll": [2.0, 1.0], "bucket_counts": [4, 4],
                             "perplexity": 4.0, "rope_scaling": None}) + "\n")
    assert plot_loss_vs_position(read_ppl_records(p), tmp_path / "x.svg", window=4).is_file()


def test_cli_missing_text_is_one_error_line(tmp_path):
    r = CliRunner().invoke(app, ["ppl", str(tmp_path / "nope.txt")])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: text not found: {tmp_path / 'nope.txt'} (a file, a folder")
