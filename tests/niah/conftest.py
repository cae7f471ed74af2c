"""Fixtures shared by the NIAH tests (the helpers they wrap are cached per test session)."""
from __future__ import annotations

import pytest

from . import default_tokenizer, haystack


@pytest.fixture(scope="module")
def tok():
    """The embedded default model's tokenizer."""
    return default_tokenizer()


@pytest.fixture(scope="module")
def austen():
    """The Austen haystack tokenized with the default tokenizer."""
    return haystack("austen")
