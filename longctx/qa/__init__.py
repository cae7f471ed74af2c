"""Long-document question answering: documents, spliced prompts and prefilled document sessions.

``documents`` (reading text / PDF files) and ``prompt`` (token-id prompts, overflow policies) are
torch-free; ``session`` runs answers on a model; ``model`` adds ``ask`` / ``open`` to the engine's
model class (imported on its own: it loads torch).
"""
from __future__ import annotations

from longctx.errors import DocumentError, DocumentTruncatedWarning, QAError
from longctx.qa.documents import TEXT_SUFFIXES, Document, document_block, load_documents, read_document_file
from longctx.qa.prompt import OVERFLOW_POLICIES, split_prompt
from longctx.qa.session import Answer, AnswerStream, DocumentSession, ask, open_document

__all__ = ["Answer", "AnswerStream", "Document", "DocumentError", "DocumentSession", "DocumentTruncatedWarning",
           "OVERFLOW_POLICIES", "QAError", "TEXT_SUFFIXES", "ask", "document_block", "load_documents",
           "open_document", "read_document_file", "split_prompt"]
