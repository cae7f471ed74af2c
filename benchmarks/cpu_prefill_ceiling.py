"""How much faster than transformers can the engine's CPU prefill be? Kernel time vs everything else.

Two parts, both on the default model's shape (SmolLM2-135M: 30 layers, 9 query / 3 KV heads x 64):

1. **Profiles** (``torch.profiler``) of one prefill of L random tokens by the engine
   (``LongCtxModel.prefill``, its default CPU chunk) and by transformers (``LlamaForCausalLM``, sdpa,
   ``logits_to_keep=1``, one forward), each after a warm-up. Self CPU time is split into torch's CPU
   flash-attention kernel, ``aten::mm`` and everything else. The ceiling printed at the end is
   ``transformers total / engine kernel time``: the speed ratio the engine would reach if it spent
   no time at all outside those two kernels.
2. **Attention alone**, per layer at L tokens, for the ways of splitting causal attention into
   calls of torch's CPU kernels: the engine's chunked split (chunk x prefix unmasked, chunk x itself
   causal, log-sum-exp merge), one causal call over the whole sequence (what transformers does), a
   "staircase" (query blocks of 256 / 512, each one unmasked call over everything before it plus a
   small causal block), and a blocked GEMM + softmax attention written with plain torch ops. Ratios
   are against the engine's split.

    PYTHONPATH=. python benchmarks/cpu_prefill_ceiling.py --length 8192 [--threads 2] [--skip-profile]

Numbers from a run are in docs/benchmarks.md (CPU prefill section). Nothing here is a test: on a
shared machine single timings move by 10-20 %, so each attention variant reports its best of
``--repeats`` runs.
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from longctx.engine.attention import ATTENTION_BACKENDS, _cpu_flash_lse, merge_attention

FLASH = "aten::_scaled_dot_product_flash_attention_for_cpu"


def _split_profile(prof) -> dict[str, float]:
    """Self CPU seconds: flash attention kernel, mm, everything else, total."""
    flash = mm = total = 0.0
    for ev in prof.key_averages():
        s = ev.self_cpu_time_total / 1e6
        total += s
        if ev.key == FLASH:
            flash += s
        elif ev.key == "aten::mm":
            mm += s
    return {"flash": flash, "mm": mm, "other": total - flash - mm, "total": total}


def profile_engine(length: int) -> tuple[float, dict[str, float]]:
    from longctx.engine.runtime import load_model

    m = load_model(None, device="cpu", dtype="fp32")
    ids = torch.randint(0, m.config.vocab_size, (length,))

    def run() -> None:
        cache = m.net.new_cache(length)
        m.prefill(ids, cache, m.config.rope_theta)

    small = ids[:512]
    m.prefill(small, m.net.new_cache(512), m.config.rope_theta)  # warm-up
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        run()
        wall = time.perf_counter() - t0
    return wall, _split_profile(prof)


def profile_transformers(length: int) -> tuple[float, dict[str, float]]:
    from transformers import LlamaForCausalLM

    from longctx.checkpoints.default_model import default_model_dir

    model = LlamaForCausalLM.from_pretrained(default_model_dir(), attn_implementation="sdpa",
                                             dtype=torch.float32).eval()
    ids = torch.randint(0, model.config.vocab_size, (1, length))
    with torch.inference_mode():
        model(ids[:, :512], use_cache=True, logits_to_keep=1)  # warm-up
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            model(ids, use_cache=True, logits_to_keep=1)
            wall = time.perf_counter() - t0
    return wall, _split_profile(prof)


# ---------------------------------------------------------------------------------------------
# Attention alone
# ---------------------------------------------------------------------------------------------

def _staircase(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int) -> torch.Tensor:
    """Causal attention as, per query block, one unmasked call over all earlier keys + a causal block.

    q: ``[1, H, L, D]``; k, v: ``[1, Hkv, L, D]``. Returns ``[1, H, L, D]``.
    """
    _, h, length, d = q.shape
    hkv = k.shape[1]
    out = torch.empty_like(q)
    for s in range(0, length, block):
        e = min(s + block, length)
        o2, l2 = _cpu_flash_lse(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], True)
        if s == 0:
            out[:, :, s:e] = o2
            continue
        qg = q[:, :, s:e].reshape(1, hkv, (h // hkv) * (e - s), d)  # [1, Hkv, G*b, D]
        o1, l1 = _cpu_flash_lse(qg, k[:, :, :s], v[:, :, :s], False)
        out[:, :, s:e] = merge_attention(o1.reshape(1, h, e - s, d), l1.reshape(1, h, e - s), o2, l2)
    return out


def _gemm_softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int) -> torch.Tensor:
    """Causal attention from bmm + in-place softmax per query block (scores materialized).

    q: ``[1, H, L, D]``; k, v: ``[1, Hkv, L, D]``. Returns ``[1, H, L, D]``.
    """
    _, h, length, d = q.shape
    hkv = k.shape[1]
    g = h // hkv
    out = torch.empty_like(q)
    qg = q.view(1, hkv, g, length, d)  # [1, Hkv, G, L, D]
    for s in range(0, length, block):
        e = min(s + block, length)
        b = e - s
        qb = qg[0, :, :, s:e].reshape(hkv, g * b, d)  # [Hkv, G*b, D]
        sc = torch.bmm(qb, k[0, :, :e].transpose(1, 2)).mul_(1 / math.sqrt(d))  # [Hkv, G*b, e]
        sc.view(hkv, g, b, e)[..., s:].masked_fill_(torch.ones(b, b, dtype=torch.bool).triu_(1), float("-inf"))
        sc.sub_(sc.amax(-1, keepdim=True)).exp_()
        o = torch.bmm(sc, v[0, :, :e]).div_(sc.sum(-1, keepdim=True))  # [Hkv, G*b, D]
        out[0, :, s:e] = o.view(hkv, g, b, d).reshape(h, b, d)
    return out


def attention_variants(length: int, chunk: int, repeats: int) -> list[tuple[str, float]]:
    torch.manual_seed(0)
    h, hkv, d = 9, 3, 64
    q = torch.randn(1, length, h, d)  # [1, L, H, D] (the engine's layout)
    k = torch.randn(1, length, hkv, d)
    v = torch.randn(1, length, hkv, d)
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [1, H*, L, D]
    sdpa = ATTENTION_BACKENDS["sdpa"]

    def engine_split():
        for s in range(0, length, chunk):
            sdpa(q[:, s:s + chunk], k[:, :s + chunk], v[:, :s + chunk])

    variants = [
        (f"engine: chunked split (chunk {chunk})", engine_split),
        ("one causal call (transformers)", lambda: F.scaled_dot_product_attention(
            qh, kh, vh, is_causal=True, enable_gqa=True)),
        ("staircase, blocks of 256", lambda: _staircase(qh, kh, vh, 256)),
        ("staircase, blocks of 512", lambda: _staircase(qh, kh, vh, 512)),
        ("bmm + softmax, blocks of 256", lambda: _gemm_softmax(qh, kh, vh, 256)),
    ]
    ref = F.scaled_dot_product_attention(qh[:, :, :1024], kh[:, :, :1024], vh[:, :, :1024], is_causal=True,
                                         enable_gqa=True)
    for name, fn in (("staircase", lambda: _staircase(qh[:, :, :1024], kh[:, :, :1024], vh[:, :, :1024], 256)),
                     ("bmm + softmax", lambda: _gemm_softmax(qh[:, :, :1024], kh[:, :, :1024], vh[:, :, :1024], 256))):
        err = (fn() - ref).abs().max().item()
        assert err < 1e-4, (name, err)
    out = []
    for name, fn in variants:
        fn()
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        out.append((name, best))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--chunk", type=int, default=2048, help="the engine's CPU chunk (attention part)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-profile", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    length = args.length
    print(f"L = {length}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    flops_attn = 2 * length * length * 9 * 64  # one layer, causal half
    print("\nattention alone, one layer (best of %d):" % args.repeats)
    rows = attention_variants(length, args.chunk, args.repeats)
    base = rows[0][1]
    for name, s in rows:
        print(f"  {name:38s} {s * 1e3:8.1f} ms  {flops_attn / s / 1e9:6.1f} GFLOP/s  engine/this {base / s:5.2f}x")
    if args.skip_profile:
        return
    print("\nprofiles of one full prefill (self CPU seconds):")
    ew, ep = profile_engine(length)
    tw, tp = profile_transformers(length)
    for name, wall, p in (("engine", ew, ep), ("transformers", tw, tp)):
        print(f"  {name:13s} wall {wall:7.2f} s | flash attention {p['flash']:6.2f} | mm {p['mm']:6.2f} | "
              f"other {p['other']:5.2f} | total {p['total']:6.2f}")
    kernels = ep["flash"] + ep["mm"]
    print(f"\nspeed ratio now (wall): {tw / ew:.2f}x; kernel time: engine {kernels:.2f} s vs transformers "
          f"{tp['flash'] + tp['mm']:.2f} s")
    print(f"ceiling with zero time outside the kernels: transformers wall / engine kernel time = {tw / kernels:.2f}x")


if __name__ == "__main__":
    main()
