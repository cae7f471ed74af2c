"""Is a cell's answer the model's own, or an engine artefact? Next-token distribution after one dumped
prompt: the engine vs transformers' LlamaForCausalLM on the same weights (float32, one thread each), with
the same RoPE setting and the same dynamic base (the one for the prompt's length).

    longctx needle ... --dump-prompts DIR     # every cell's prompt text (cells already done are skipped)
    python experiments/rope_methods/crosscheck.py DIR/single-number_L16000_d90_t0.txt dynamic:4

Prints both top-5 tokens with their probabilities and the largest logit difference. A 16K prompt takes
about 4 min per model on one thread of this CPU. Needs transformers (the test extra).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from longctx.bench.spec import llama_config
from longctx.checkpoints.keys import internlm2_to_llama
from longctx.engine.config import parse_rope_scaling
from longctx.engine.rope import base_for
from longctx.engine.runtime import load_model
from longctx.niah.seams import reencode


def main(prompt_path: str, rope: str) -> None:
    torch.set_num_threads(1)
    m = load_model(None, device="cpu", dtype="float32", rope_scaling=rope, max_context=1 << 20)
    ids = reencode(m.tokenizer, Path(prompt_path).read_text(encoding="utf-8"))  # the ids the sweep used
    c = m.config
    base = base_for(c, len(ids))
    print(f"{len(ids)} tokens, RoPE {rope}, base {base:,.2f}", flush=True)
    t = time.perf_counter()
    with torch.no_grad():
        ours = m.prefill(torch.tensor(ids), m.new_cache(len(ids)), base).float().reshape(-1)  # [vocab]
    print(f"engine: {time.perf_counter() - t:.0f} s", flush=True)
    rs = parse_rope_scaling(rope)
    params = {"rope_type": "default"} if rs is None else {"rope_type": rs.type, "factor": rs.factor}
    cfg = llama_config(c)  # the same shape as the engine's (sdpa), default RoPE ...
    cfg.rope_parameters = dict(params, rope_theta=c.rope_theta)  # ... then this setting's, in transformers 5's spelling
    ref = LlamaForCausalLM(cfg).eval()
    ref.load_state_dict(dict(internlm2_to_llama(m.net.state_dict().items(), c)), strict=True)
    tok = m.tokenizer
    del m
    t = time.perf_counter()
    with torch.no_grad():
        theirs = ref(torch.tensor([ids]), logits_to_keep=1).logits[0, -1].float()  # [vocab]
    print(f"transformers: {time.perf_counter() - t:.0f} s", flush=True)
    for name, logits in (("engine", ours), ("transformers", theirs)):
        top = logits.softmax(-1).topk(5)
        print(f"{name:>12} top 5:", ", ".join(f"{tok.id_to_token(int(i))!r} {float(p):.4f}"
                                              for p, i in zip(top.values, top.indices)))
    print(f"max |engine - transformers| logit: {float((ours - theirs).abs().max()):.2e}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
