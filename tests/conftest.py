"""Shared test set-up: make tests/helpers.py importable and keep torch to the 2 cores CI has."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
