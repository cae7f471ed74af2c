"""longctx: long-context inference (InternLM2 engine) and needle-in-a-haystack evaluation."""
from __future__ import annotations

__version__ = "0.1.0"


def load_model(*args, **kwargs):
    """Loads a model; see :func:`longctx.engine.runtime.load_model` (imported lazily: torch is heavy)."""
    from longctx.engine.runtime import load_model as _load

    return _load(*args, **kwargs)


__all__ = ["load_model", "__version__"]
