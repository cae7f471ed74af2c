"""Kernel-level GPU checks of ``run_all.py`` (each called in its own step process): the attention paths
for a chunk of queries after a long cached prefix, and the attention-output error of int8 / fp8 KV caches.

``OUT``, ``DRY`` and ``step_log``: ``gpu_env``.
"""
from __future__ import annotations

import json
import time

from gpu_env import DRY, GIB, OUT, step_log


def _attn_flops(tq: int, tk: int, h: int, d: int) -> float:
    # causal lower-right: every query sees the prefix (tk - tq) plus half the chunk on average
    return 4.0 * tq * ((tk - tq) + tq / 2) * h * d


def step_probe() -> None:
    """Kernel paths for one chunk of 8192 queries after a ~192K prefix (7B head shape), vs eager on small shapes."""
    import torch

    from longctx.engine.attention import eager_attention, flash_available, merge_attention, sdpa_attention

    dev = "cuda" if torch.cuda.is_available() and not DRY else "cpu"
    dt = torch.bfloat16
    h, hkv, d = 32, 8, 128
    big = (8192, 200000) if dev == "cuda" else (256, 1024)
    small = (256, 1024) if dev == "cuda" else (64, 200)
    res: dict = {"device": dev, "torch": torch.__version__, "shape": {"H": h, "Hkv": hkv, "D": d, "big": big,
                                                                       "small": small}, "paths": {}}

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    def make(tq, tk, seed=0):
        g = torch.Generator(device=dev).manual_seed(seed)
        q = torch.randn(1, tq, h, d, device=dev, dtype=dt, generator=g)
        # the engine's cache layout: [1, Tk, Hkv, D] views of a [layers, capacity, Hkv, D] buffer
        k = torch.randn(1, tk, hkv, d, device=dev, dtype=dt, generator=g)
        v = torch.randn(1, tk, hkv, d, device=dev, dtype=dt, generator=g)
        return q, k, v

    def fa_lower_right(q, k, v):  # FA2 semantics: causal=True is bottom-right aligned
        out = torch.ops.aten._scaled_dot_product_flash_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                                 v.transpose(1, 2), 0.0, True, False)[0]
        return out.transpose(1, 2)

    def split_lse(q, k, v):  # chunk x prefix (non-causal) + chunk x chunk (causal), merged by LSE
        tq, tk = q.shape[1], k.shape[1]
        p = tk - tq
        qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        fa = torch.ops.aten._scaled_dot_product_flash_attention
        o1, l1 = fa(qh, kh[:, :, :p], vh[:, :, :p], 0.0, False, False)[:2]
        o2, l2 = fa(qh, kh[:, :, p:], vh[:, :, p:], 0.0, True, False)[:2]
        return merge_attention(o1, l1[..., :tq], o2, l2[..., :tq]).transpose(1, 2)

    def repeat_mem_efficient(q, k, v):  # what the fallback would do: repeat K/V, lower-right bias
        from torch.nn.attention.bias import causal_lower_right

        g = q.shape[2] // k.shape[2]
        kh = k.transpose(1, 2).repeat_interleave(g, dim=1)
        vh = v.transpose(1, 2).repeat_interleave(g, dim=1)
        bias = causal_lower_right(q.shape[1], k.shape[1])
        return torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), kh, vh, attn_mask=bias).transpose(1, 2)

    def one_shot_causal(q, k, v):  # reference kernel speed: Tq == Tk, is_causal (flash)
        return sdpa_attention(q, k[:, -q.shape[1]:], v[:, -q.shape[1]:])

    import longctx.engine.attention as A

    def lower_right_path(q, k, v):  # the engine's chunk path before the cuDNN split
        return A._cuda_lower_right(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    def cudnn_split(q, k, v):  # the engine's chunk path on sm90+ (cuDNN prefix + flash diagonal)
        return A._cuda_split_chunk(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    def cudnn_prefix_only(q, k, v):  # just the unmasked chunk x prefix part (folded GQA), for its speed
        b_, tq, h_, d_ = q.shape
        hk, p = k.shape[2], k.shape[1] - tq
        qg = q.transpose(1, 2).reshape(b_, hk, (h_ // hk) * tq, d_)
        return A._cudnn_lse(qg, k[:, :p].transpose(1, 2), v[:, :p].transpose(1, 2))[0]

    def flex_path(q, k, v):  # FlexAttention with the offset-causal block mask (LONGCTX_CUDA_CHUNK_ATTN=flex)
        return A.flex_chunk_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    paths = {"engine sdpa_attention": sdpa_attention, "cuDNN split (prefix cuDNN + diag flash)": cudnn_split,
             "flex offset-causal (compiled)": flex_path,
             "causal_lower_right (old engine path)": lower_right_path, "aten flash lower-right": fa_lower_right,
             "split + LSE merge (flash both)": split_lse, "repeat K/V + causal_lower_right": repeat_mem_efficient,
             "cuDNN chunk x prefix only": cudnn_prefix_only, "one-shot causal (Tq == Tk)": one_shot_causal}
    if flash_available():
        from longctx.engine.attention import flash_attention

        paths["flash_attn package"] = flash_attention
    qs, ks, vs = make(*small, seed=1)
    ref_small = eager_attention(qs, ks, vs).float()
    qb, kb, vb = make(*big, seed=2)
    ref_big = None
    for name, fn in paths.items():
        r: dict = {}
        try:
            if name not in ("one-shot causal (Tq == Tk)", "cuDNN chunk x prefix only"):
                o = fn(qs, ks, vs).float()
                r["rel_err_vs_eager_small"] = float((o - ref_small).norm() / ref_small.norm())
            sync()
            fn(qb, kb, vb)  # warm-up
            sync()
            if dev == "cuda":
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                out = fn(qb, kb, vb)
                sync()
                ts.append(time.perf_counter() - t0)
            ts.sort()
            sec = ts[1]
            tq, tk = big
            if name.startswith("one-shot"):
                fl = _attn_flops(tq, tq, h, d)
            elif name.startswith("cuDNN chunk x prefix"):
                fl = 4.0 * tq * (tk - tq) * h * d
            else:
                fl = _attn_flops(tq, tk, h, d)
            r.update(seconds=sec, tflops=fl / sec / 1e12)
            if dev == "cuda":
                r["extra_mem_gib"] = (torch.cuda.max_memory_allocated() - base) / GIB
            if name == "engine sdpa_attention":
                ref_big = out.float()
            elif ref_big is not None and not name.startswith(("one-shot", "cuDNN chunk x prefix")):
                r["rel_err_vs_engine_big"] = float((out.float() - ref_big).norm() / ref_big.norm())
            del out
        except Exception as e:  # noqa: BLE001
            r["error"] = f"{e.__class__.__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
        res["paths"][name] = r
        step_log(f"{name:36s} {json.dumps(r)}")
        if dev == "cuda":
            torch.cuda.empty_cache()
    if dev == "cuda":
        res["engine_chunk_path"] = {"mode": A.cuda_chunk_mode(),
                                    "split_self_check": {str(k): v for k, v in A._SPLIT_OK.items()}}
        step_log(f"engine chunk path: {json.dumps(res['engine_chunk_path'])}")
    (OUT / "probe.json").write_text(json.dumps(res, indent=1))


def step_kvquant() -> None:
    """Attention-output error of int8 / fp8 KV caches against the bf16 cache at 200K keys (7B head shape):
    a decode query and an 8192-query chunk, through the engine's sdpa_attention."""
    import torch

    from longctx.engine.attention import sdpa_attention
    from longctx.engine.kv_cache import dequantize, quantize

    dev = "cuda" if torch.cuda.is_available() and not DRY else "cpu"
    h, hkv, d = 32, 8, 128
    tk, tq = (200000, 8192) if dev == "cuda" else (2048, 256)
    g = torch.Generator(device=dev).manual_seed(3)
    k = torch.randn(1, tk, hkv, d, device=dev, dtype=torch.bfloat16, generator=g)
    v = torch.randn(1, tk, hkv, d, device=dev, dtype=torch.bfloat16, generator=g)
    q = torch.randn(1, tq, h, d, device=dev, dtype=torch.bfloat16, generator=g)
    res: dict = {"device": dev, "keys": tk, "chunk": tq, "kinds": {}}
    ref = {"decode": sdpa_attention(q[:, -1:], k, v).float(), "chunk": sdpa_attention(q, k, v).float()}
    for kind in ("int8", "fp8"):
        kq = dequantize(*quantize(k[0], kind), torch.bfloat16)[None]  # [1, Tk, Hkv, D]
        vq = dequantize(*quantize(v[0], kind), torch.bfloat16)[None]
        r = {}
        for name, qq in (("decode", q[:, -1:]), ("chunk", q)):
            out = sdpa_attention(qq, kq, vq).float()
            r[name] = {"max_abs_err": float((out - ref[name]).abs().max()),
                       "rel_err": float((out - ref[name]).norm() / ref[name].norm())}
        res["kinds"][kind] = r
        step_log(f"kv {kind}: {json.dumps(r)}")
        del kq, vq
    (OUT / "kvquant.json").write_text(json.dumps(res, indent=1))
