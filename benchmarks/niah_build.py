"""Benchmark: one-time haystack tokenization and exact-length NIAH cell building.

    python benchmarks/niah_build.py [--length 200000] [--repeats 30] [--haystack austen]

Prints the time to tokenize the haystack with the default model's tokenizer (uncached), the
cached reload time, and the median/min/max time of ``PromptBuilder.build`` for a cell of
``--length`` tokens per task (target from the issue: <= 50 ms per 200K-token cell).
"""
from __future__ import annotations

import argparse
import time

from longctx.data import load_haystack_text
from longctx.checkpoints.default_model import default_model_dir
from longctx.niah.haystack import TokenizedHaystack, clear_memory_cache, get_haystack
from longctx.niah.prompt import PromptBuilder, time_build
from longctx.niah.tasks import make_task
from longctx.tokenizer import load_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--haystack", default="austen")
    ap.add_argument("--tasks", default="passkey,single,single:uuid,multikey,multivalue,multiquery")
    args = ap.parse_args()

    tok = load_tokenizer(default_model_dir())
    text = load_haystack_text(args.haystack) if not args.haystack.startswith(("/", ".")) else None
    if text is not None:
        t0 = time.perf_counter()
        hs = TokenizedHaystack.from_text(text, tok, name=args.haystack, cache=False)
        t_tok = time.perf_counter() - t0
        print(f"tokenize {args.haystack}: {len(text):,} chars -> {len(hs.ids):,} tokens, "
              f"{len(hs.boundaries):,} sentence boundaries in {t_tok:.2f} s (uncached)")
    clear_memory_cache()
    get_haystack(args.haystack, tok)  # make sure the disk cache exists
    clear_memory_cache()
    t0 = time.perf_counter()
    hs = get_haystack(args.haystack, tok)
    print(f"reload {args.haystack} from the disk cache: {(time.perf_counter() - t0) * 1000:.1f} ms")

    for spec in args.tasks.split(","):
        b = PromptBuilder(tok, hs, make_task(spec))
        r = time_build(b, args.length, args.repeats)
        print(f"build {spec:<14} {args.length:,}-token cell: median {r['median_ms']:.2f} ms, "
              f"min {r['min_ms']:.2f} ms, max {r['max_ms']:.2f} ms ({r['repeats']} builds)")


if __name__ == "__main__":
    main()
