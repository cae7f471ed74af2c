"""The invented names and words never occur in the built-in haystacks (answers come only from needles)."""
from __future__ import annotations

import itertools

import pytest

from longctx.data import load_haystack_text
from longctx.niah.tasks import names
from longctx.niah.tasks.latent import LATENT_PAIRS


@pytest.fixture(scope="module")
def corpora():
    return {n: load_haystack_text(n) for n in ("austen", "web_bible", "zh")}


def test_english_pools_absent(corpora):
    text = corpora["austen"] + corpora["web_bible"] + corpora["zh"]
    for w in names._EN_FIRST + names._EN_LAST + names._EN_TOWNS:
        assert w not in text, w


def test_chinese_pools_absent(corpora):
    zh = corpora["zh"]
    for s, a, b in itertools.product(names._ZH_SURNAMES, names._ZH_GIVEN_1, names._ZH_GIVEN_2):
        assert s + a + b not in zh
    for a, b in itertools.product(names._ZH_TOWN_1, names._ZH_TOWN_2):
        assert a + b + "镇" not in zh
    for w in names.ZH_WORDS:
        assert w not in zh, w
    for *_, zh_kw in LATENT_PAIRS:
        assert zh_kw not in zh


def test_coded_words_and_digits_absent(corpora):
    text = "".join(corpora.values()).lower()
    for a, b in itertools.permutations(names.CODED_SYLLABLES, 2):
        assert a + b not in text
    import re

    assert not re.search(r"\d{5}", "".join(corpora.values()))  # vt values have 5 digits
