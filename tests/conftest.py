"""Shared test set-up: make tests/helpers.py importable and keep torch to the 2 cores CI has."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module that asks for it (restored after): on the shared 2-core
    machine two threads spin against other jobs and ran the QA tests 4x slower (measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
