"""Byte-level pre-tokenizers for GGUF ``tokenizer.ggml.pre`` names.

Hand-written because transformers' GGUF tokenizer conversion is wrong here: it drops the
``Digits(individual_digits=True)`` step of llama.cpp's ``smollm`` / ``starcoder`` pre-tokenizers,
so SmolLM2 would split numbers like "2024" differently from the model's training
(``test_gguf_matches_transformers`` pins that this is the only difference).
"""
from __future__ import annotations

import warnings

from tokenizers import Regex, pre_tokenizers

__all__ = ["byte_level_pre_tokenizer"]

# Split regexes by ``tokenizer.ggml.pre`` name (llama.cpp's published values).
_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_PRE_GPT2 = {"gpt2", "default", "mpt", "olmo", "jais", "trillion"}
_PRE_DIGITS_GPT2 = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
_PRE_LLAMA3 = {"llama-bpe", "llama3", "falcon3", "pixtral", "dbrx", "smaug-bpe"}
_PRE_QWEN2 = {"qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan"}


def byte_level_pre_tokenizer(pre: str | None):
    """The pre-tokenizer for a GGUF ``tokenizer.ggml.pre`` name.

    Args:
        pre: the name (None / unknown: the GPT-2 split, with a warning when unknown).

    Returns:
        ``(pre_tokenizer, ignore_merges)``: ``ignore_merges`` is True for the llama3 family
        (whole-vocabulary words are taken before merges, as llama.cpp does).
    """
    pre = (pre or "default").lower()
    if pre in _PRE_DIGITS_GPT2:
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]), False
    if pre in _PRE_LLAMA3 or pre in _PRE_QWEN2:
        regex = _LLAMA3_REGEX if pre in _PRE_LLAMA3 else _QWEN2_REGEX
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]), pre in _PRE_LLAMA3
    if pre not in _PRE_GPT2:
        warnings.warn(f"GGUF pre-tokenizer {pre!r} is not known; using the GPT-2 split", stacklevel=3)
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), False
