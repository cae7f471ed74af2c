"""The public model: the engine's :class:`~longctx.engine.runtime.LongCtxModel` plus document QA.

``longctx.load_model`` returns a :class:`Model`, so ``model.ask(...)`` and ``model.open(...)``
work as documented in docs/qa.md while the engine itself knows nothing about QA (imports run
qa -> engine only).
"""
from __future__ import annotations

from typing import Any

from longctx.engine.runtime import LongCtxModel
from longctx.engine.runtime import load_model as _load_engine
from longctx.qa.session import Answer, AnswerStream, DocumentSession, ask, open_document

__all__ = ["Model", "load_model"]


class Model(LongCtxModel):
    """A :class:`LongCtxModel` that also answers questions about documents."""

    def ask(self, document: Any, question: str, **kw: Any) -> Answer | AnswerStream:
        """Answers a question about a document; see :func:`longctx.qa.session.ask`."""
        return ask(self, document, question, **kw)

    def open(self, document: Any, **kw: Any) -> DocumentSession:
        """Prefills a document once for many questions; see :func:`longctx.qa.session.open_document`."""
        return open_document(self, document, **kw)


def load_model(*args: Any, **kwargs: Any) -> Model:
    """:func:`longctx.engine.runtime.load_model` returning a :class:`Model` (same arguments)."""
    return _load_engine(*args, model_class=Model, **kwargs)
