"""Inference backends behind one small interface (see :mod:`longctx.backends.base`).

``base`` has no torch import; ``native`` (the in-process engine with prefix-shared prefill) is
imported lazily by :func:`native_backend`.
"""
from __future__ import annotations

from longctx.backends.base import Backend, BaseBackend, GenRequest, GenResult, common_prefix_len, total_tokens

__all__ = ["Backend", "BaseBackend", "GenRequest", "GenResult", "common_prefix_len", "total_tokens",
           "native_backend"]


def native_backend(model, **kwargs):
    """A :class:`~longctx.backends.native.NativeBackend` on a loaded model."""
    from longctx.backends.native import NativeBackend

    return NativeBackend(model, **kwargs)
