"""GPU step ``niah7b`` of ``run_all.py``: a NIAH sweep on the InternLM2-7B shape with random weights (answers
are noise; the timing is the point) -- ``longctx needle --random-weights internlm2-chat-7b --max-len 200000``
(the default grid, RoPE scaled to cover it) -- then the naive baseline on the same prompts: transformers
prefilling every dumped prompt from scratch and decoding the engine's mean answer length
(``longctx.bench.naive``), as many prompts as the step's time allows (shortest first), compared with the
engine's recorded time on those same cells.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

from gpu_env import DRY, OUT, ROOT, step_log


def run(budget: float) -> None:
    import torch

    from longctx.bench.naive import dumped_prompt_ids, random_weights_shape, transformers_loop
    from longctx.checkpoints.resolve import resolve

    t_start = time.time()
    preset = "tiny" if DRY else "internlm2-chat-7b"
    grid = ["--lengths", "150,240", "--depths", "0,50,100"] if DRY else ["--max-len", "200000"]
    results, dump = OUT / "niah7b.jsonl", OUT / "niah7b_prompts"
    cmd = [sys.executable, "-m", "longctx", "needle", "--random-weights", preset, *grid, "--rope-scaling", "auto",
           "--out", str(results), "--dump-prompts", str(dump), "--no-plot", "--no-report", "--yes"]
    step_log(" ".join(cmd[2:]))
    t0 = time.time()
    p = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True)
    engine_wall = time.time() - t0
    step_log((p.stdout + p.stderr).strip()[-3000:])
    res: dict = {"preset": preset, "engine_rc": p.returncode, "engine_wall_s": engine_wall}
    recs = [json.loads(x) for x in results.read_text().splitlines() if x.strip()] if results.exists() else []
    res.update(cells=len(recs), prefilled_tokens=sum(r.get("prefilled_tokens") or 0 for r in recs),
               naive_tokens=sum(r.get("length") or 0 for r in recs))
    if recs:
        new = round(sum(r.get("new_tokens") or 0 for r in recs) / len(recs))
        tok = resolve(None).load_tokenizer()
        prompts = sorted(dumped_prompt_ids(dump, tok), key=lambda x: len(x[1]))
        by_len = {}
        for r in recs:
            by_len.setdefault(r["length"], []).append(r)
        cfg = random_weights_shape(preset, tok)  # the shape the engine's sweep ran
        dev = "cuda" if torch.cuda.is_available() and not DRY else "cpu"
        r = transformers_loop(cfg, [ids for _, ids in prompts], new, device=dev,
                              dtype=torch.bfloat16 if dev == "cuda" else torch.float32,
                              deadline=time.perf_counter() + budget - (time.time() - t_start) - 20,
                              on_prompt=lambda i, n, s: step_log(f"naive prompt {i}: {n} tokens in {s:.2f} s"))
        done, naive_s = r["prompts"], r["seconds"]
        engine_s = 0.0
        for _, ids in prompts[:done]:  # the engine's recorded time on the same cells (matched by length)
            cell = by_len[len(ids)].pop(0) if by_len.get(len(ids)) else None
            if cell is not None:
                engine_s += (cell.get("prefill_s") or 0) + (cell.get("decode_s") or 0)
        naive_tok = r["prompt_tokens"]
        res.update(naive_prompts=done, naive_new_tokens=new, naive_s=naive_s, naive_prompt_tokens=naive_tok,
                   engine_s_same_cells=engine_s, speedup_same_cells=(naive_s / engine_s) if engine_s else None)
    step_log(json.dumps(res))
    (OUT / "niah7b.json").write_text(json.dumps(res, indent=1))
