"""The Chinese haystack: shipped corpus, >= 300K default-model tokens, sentence boundaries on 。！？…"""
from __future__ import annotations

import hashlib
import re

from longctx.data import BUILTIN_HAYSTACKS, load_haystack_text
from longctx.niah.haystack import find_sentence_ends

from . import haystack


def test_find_sentence_ends_chinese():
    text = "子曰：“学而时习之。”有朋自远方来！何如？吾不知也……然「善」。"
    ends = find_sentence_ends(text)
    assert [text[:e][-2:] for e in ends] == ["。”", "来！", "如？", "……", "」。"]


def test_corpus_shape_and_provenance():
    assert "zh" in BUILTIN_HAYSTACKS
    text = load_haystack_text("zh")
    assert text == text.strip() + "\n" and "\n\n\n" not in text
    paras = text.rstrip("\n").split("\n\n")
    assert len(paras) > 2000 and all(p and "\n" not in p and p == p.strip() for p in paras)
    assert not re.search(r"[A-Za-z0-9()\[\]（）]", text)  # notes, footnotes and stray Latin removed
    han = sum("\u4e00" <= c <= "\u9fff" for c in text)
    assert han > 0.7 * len(text)  # the rest is punctuation and paragraph breaks
    assert "學" not in text and "國" not in text  # simplified characters
    prov = (__import__("pathlib").Path(__file__).parents[2] / "longctx/data/haystacks/PROVENANCE.md").read_text()
    assert hashlib.sha256(text.encode()).hexdigest() in prov and "chinese-poetry" in prov


def test_tokens_and_boundaries(tok):
    hs = haystack("zh")
    assert hs.n_tokens >= 300_000  # the floor, counted with the default model's tokenizer
    gaps = hs.boundaries[1:] - hs.boundaries[:-1]
    assert len(hs.boundaries) > 8000 and int(gaps.max()) < 1000  # sentences everywhere, none huge
