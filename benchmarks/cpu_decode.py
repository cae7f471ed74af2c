"""CPU decode at long context: the grouped flash-kernel path vs SDPA's own dispatch, in one run.

One decode step attends a single query token to every cached key. SDPA's dispatch on the cache's
strided ``[B, Hkv, T, D]`` view (GQA via ``enable_gqa``) and the engine's path
(:func:`longctx.engine.attention._cpu_decode_attention`: the G query heads of a KV head as G
queries of one head in torch's CPU flash kernel) are timed

1. per layer, the attention call alone, on the model's head shape (default: 9 query / 3 KV heads x 64);
2. end to end, ``LongCtxModel.decode_step`` of the default model (SmolLM2-135M, 30 layers) after a
   cache filled with ``--length`` positions of random keys/values (decode time does not depend on
   what the cache holds, so no long prefill is needed), ``--steps`` steps per path.

    PYTHONPATH=. python benchmarks/cpu_decode.py --lengths 4096,16384,32768 [--threads 1]

Ratios are old / new measured in the same run (best of ``--repeats``); numbers from a run are in
docs/benchmarks.md. Nothing here is a test: on a shared machine single timings move by 10-20 %.
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import torch

import longctx.engine.attention as attention


@contextmanager
def sdpa_dispatch():
    """Decode through SDPA's own dispatch (the path before the grouped one) while inside."""
    saved = attention._cpu_decode_attention
    attention._cpu_decode_attention = lambda qh, kh, vh: None
    try:
        yield
    finally:
        attention._cpu_decode_attention = saved


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def per_layer(cfg, length: int, repeats: int) -> tuple[float, float]:
    """Seconds of one layer's decode attention at ``length`` keys: (SDPA dispatch, grouped)."""
    g = torch.Generator().manual_seed(0)
    k = torch.randn(1, length, cfg.num_kv_heads, cfg.head_dim, generator=g)  # [B, T, Hkv, D], as KVCache.read
    v = torch.randn(1, length, cfg.num_kv_heads, cfg.head_dim, generator=g)
    q = torch.randn(1, 1, cfg.num_heads, cfg.head_dim, generator=g)  # [B, 1, H, D]
    new = best_of(lambda: attention.sdpa_attention(q, k, v), 10 * repeats)  # one call: cheap, noisy
    with sdpa_dispatch():
        old = best_of(lambda: attention.sdpa_attention(q, k, v), 10 * repeats)
    return old, new


def end_to_end(model, length: int, steps: int, repeats: int) -> tuple[float, float]:
    """Seconds per decode step of the whole model after ``length`` cached positions: (old, new)."""
    cfg = model.config
    cache = model.new_cache(length + steps + 1)
    g = torch.Generator().manual_seed(0)
    for layer in range(cfg.num_layers):
        kv = torch.randn(2, 1, length, cfg.num_kv_heads, cfg.head_dim, generator=g)  # [k|v, B, T, Hkv, D]
        cache.write(layer, 0, kv[0].to(cache.k.dtype), kv[1].to(cache.k.dtype))
    cache.advance(length)
    base = model.rope_base_for(length + steps)

    def run() -> None:
        cache.truncate(length)
        for i in range(steps):
            model.decode_step(i + 1, cache, base)

    new = best_of(run, repeats) / steps
    with sdpa_dispatch():
        old = best_of(run, repeats) / steps
    return old, new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="4096,16384,32768")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = [int(x) for x in args.lengths.split(",")]
    from longctx.engine.runtime import load_model

    model = load_model(None, device="cpu", dtype="fp32", max_context=max(lengths) + args.steps + 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), default model, float32")
    print("| keys | layer attention: SDPA ms | grouped ms | ratio | decode step: SDPA ms | grouped ms | ratio |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in lengths:
        lo, ln = per_layer(model.config, n, args.repeats)
        eo, en = end_to_end(model, n, args.steps, args.repeats)
        print(f"| {n:,} | {lo * 1e3:.1f} | {ln * 1e3:.1f} | {lo / ln:.2f}x | {eo * 1e3:.0f} | {en * 1e3:.0f} "
              f"| {eo / en:.2f}x |")


if __name__ == "__main__":
    main()
