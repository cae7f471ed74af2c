"""Inference backends behind one small interface (see :mod:`longctx.backends.base`).

``base`` has no torch import; ``native`` (the in-process engine with prefix-shared prefill),
``hf_backend`` and ``openai_backend`` are built by :func:`longctx.backends.factory.make_backend`.
"""
from __future__ import annotations

from longctx.backends.base import Backend, BaseBackend, GenRequest, GenResult, common_prefix_len

__all__ = ["Backend", "BaseBackend", "GenRequest", "GenResult", "common_prefix_len"]
