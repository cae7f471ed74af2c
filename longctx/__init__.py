"""longctx: long-context inference (InternLM2 engine) and needle-in-a-haystack evaluation."""
from __future__ import annotations

__version__ = "0.1.0"


def load_model(*args, **kwargs):
    """Loads a model with document QA (``.ask`` / ``.open``); see :func:`longctx.engine.runtime.load_model`."""
    from longctx.qa.model import load_model as _load  # lazy: torch is heavy, `import longctx` stays light

    return _load(*args, **kwargs)


__all__ = ["load_model", "__version__"]
