"""Shared helpers for the NIAH prompt/task/scoring/grid tests (cached per test session)."""
from __future__ import annotations

import io
import json
import random
import tempfile
from functools import lru_cache
from pathlib import Path

AUSTEN_SAMPLE_CHARS = 200_000


@lru_cache(maxsize=None)
def default_tokenizer():
    """The embedded default model's tokenizer (SmolLM2, byte-level BPE, ChatML)."""
    from longctx.checkpoints.default_model import default_model_dir
    from longctx.tokenizer import load_tokenizer

    return load_tokenizer(default_model_dir())


@lru_cache(maxsize=None)
def haystack(name: str, tok_kind: str = "default"):
    """A built-in haystack tokenized with the default (or the test SentencePiece) tokenizer;
    tokenized once and cached on disk under the longctx cache."""
    from longctx.niah.haystack import get_haystack

    tok = default_tokenizer() if tok_kind == "default" else sp_tokenizer()
    return get_haystack(name, tok)


@lru_cache(maxsize=None)
def austen_sample() -> str:
    from longctx.data import load_haystack_text

    text = load_haystack_text("austen")[:AUSTEN_SAMPLE_CHARS]
    return text[: text.rfind("\n\n")]


def _sp_training_lines() -> list[str]:
    from longctx.niah.tasks import ADJECTIVES, NOUNS

    lines = [ln for ln in austen_sample().split("\n") if ln.strip()]
    rng = random.Random(0)
    for _ in range(300):
        key = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"
        lines.append(f"One of the special magic numbers for {key} is: {rng.randint(10**6, 10**7 - 1)}.")
        lines.append(f"The pass key is {rng.randint(10**4, 10**5 - 1)}. Remember it.")
    return lines


@lru_cache(maxsize=None)
def sp_tokenizer():
    """A SentencePiece BPE tokenizer trained here (InternLM2-style: BOS, <|im_start|>/<|im_end|>,
    internlm2 chat format, byte fallback), loaded through ``longctx.tokenizer.load_tokenizer``."""
    import sentencepiece as spm

    from longctx.tokenizer import load_tokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_sp_training_lines()), model_writer=buf, vocab_size=1500, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, user_defined_symbols=["<|im_start|>", "<|im_end|>"],
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2, num_threads=1, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
    )
    d = Path(tempfile.mkdtemp(prefix="longctx_niah_sp_"))
    (d / "tokenizer.model").write_bytes(buf.getvalue())
    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    (d / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
        "added_tokens_decoder": {str(i): {"content": c, "special": True} for i, c in enumerate(specials)},
    }))
    (d / "config.json").write_text(json.dumps({"model_type": "internlm2", "bos_token_id": 1, "eos_token_id": 2}))
    return load_tokenizer(d)


@lru_cache(maxsize=None)
def sp_haystack():
    """The Austen sample tokenized with the SentencePiece test tokenizer (memory only)."""
    from longctx.niah.haystack import TokenizedHaystack

    return TokenizedHaystack.from_text(austen_sample(), sp_tokenizer(), name="austen-sample", cache=False)
