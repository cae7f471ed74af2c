"""``longctx needle --random-weights PRESET`` (timing sweeps on a model shape without weights) and the
naive transformers loop over the same dumped prompts (longctx.bench.naive)."""
from __future__ import annotations

import json

import torch

from typer.testing import CliRunner

from longctx.bench.naive import dumped_prompt_ids, random_weights_shape, transformers_loop
from longctx.checkpoints.resolve import resolve
from longctx.cli import app
from longctx.engine.config import get_preset


def test_random_weights_sweep_and_naive_loop(tmp_path):
    out, dump = tmp_path / "r.jsonl", tmp_path / "prompts"
    r = CliRunner().invoke(app, ["needle", "--random-weights", "tiny", "--lengths", "120,200", "--depths", "0,100",
                                 "--answer-budget", "3", "--out", str(out), "--dump-prompts", str(dump), "--no-plot"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 4 and {x["model"] for x in recs} == {"random:tiny"}
    assert {x["tokenizer"] for x in recs} == {"smollm2-135m-instruct (gguf)"}
    # the dumped prompts re-encode to prompts of the recorded lengths (the ids the engine saw)
    tok = resolve(None).load_tokenizer()
    prompts = dumped_prompt_ids(dump, tok)
    assert sorted(len(ids) for _, ids in prompts) == sorted(x["length"] for x in recs)
    cfg = random_weights_shape("tiny", tok)  # the shape the sweep ran: tiny's vocabulary grown to the tokenizer's
    assert cfg.vocab_size == tok.vocab_size > get_preset("tiny").vocab_size
    assert random_weights_shape("internlm2-chat-7b", tok) == get_preset("internlm2-chat-7b")
    seen = []
    res = transformers_loop(cfg, [ids for _, ids in prompts], 2, device="cpu", dtype=torch.float32,
                            on_prompt=lambda i, n, s: seen.append((i, n)))
    assert res["prompts"] == 4 and res["prompt_tokens"] == sum(x["length"] for x in recs)
    assert res["seconds"] > 0 and len(res["per_prompt_s"]) == 4 and [i for i, _ in seen] == [0, 1, 2, 3]


def test_random_weights_refusals():
    runner = CliRunner()
    r = runner.invoke(app, ["needle", "--random-weights", "nope", "--lengths", "100", "--dry-run"])
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1] == (
        "error: unknown preset 'nope'; known presets: internlm2-chat-20b, internlm2-chat-7b, tiny")
    r = runner.invoke(app, ["needle", "--random-weights", "tiny", "--model", "x", "--lengths", "100"])
    assert r.exit_code == 2 and "leave out --model and --backend" in r.output
