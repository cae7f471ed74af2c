"""Documents for question answering: text, ``.txt`` / ``.md`` files (UTF-8) and PDFs (via pypdf).

A str names a file when such a file exists; otherwise it is the document text. Several documents
are joined into one block by :func:`document_block`. Torch-free.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

from longctx.errors import DocumentError

__all__ = ["Document", "DocumentInput", "PDF_SUFFIX", "TEXT_SUFFIXES", "document_block", "load_documents",
           "read_document_file"]

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text", ".rst")
PDF_SUFFIX = ".pdf"
_PATH_MAX = 4096

DocumentInput = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


@dataclass
class Document:
    """One loaded document.

    Attributes:
        text: the document text (newlines normalized to ``\\n``, surrounding whitespace stripped).
        title: file name for files, None for text given directly.
        source: the path read, or None.
    """

    text: str
    title: str | None = None
    source: str | None = None


def _looks_like_path(s: str) -> bool:
    return 0 < len(s) < _PATH_MAX and "\n" not in s and "\r" not in s


def _read_text_file(p: Path) -> str:
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DocumentError(f"{p}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                            "convert it to UTF-8 first") from None
    return text


def _read_pdf(p: Path) -> str:
    try:
        import pypdf
    except ImportError:
        raise DocumentError(f"{p}: reading PDF files needs the optional package pypdf "
                            "(pip install pypdf, or pip install 'longctx[pdf]')") from None
    try:
        reader = pypdf.PdfReader(str(p))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception:  # noqa: BLE001
                raise DocumentError(f"{p}: the PDF is encrypted") from None
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except DocumentError:
        raise
    except Exception as e:  # noqa: BLE001 - pypdf raises many types for damaged files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DocumentError(f"{p}: cannot read PDF: {msg}") from None
    text = "\n\n".join(t for t in pages if t)
    if not text.strip():
        raise DocumentError(f"{p}: the PDF has no extractable text (a scanned PDF needs OCR first)")
    return text


def read_document_file(path: str | os.PathLike) -> Document:
    """Reads a ``.txt`` / ``.md`` (UTF-8) or ``.pdf`` (via pypdf) file.

    Files without a suffix are read as UTF-8 text; other suffixes are refused.

    Raises:
        FileNotFoundError: the file does not exist.
        DocumentError: a directory, an unsupported type, undecodable or empty text, a PDF
            without text or without pypdf installed.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"document not found: {p}")
    if p.is_dir():
        raise DocumentError(f"{p} is a directory, not a document file")
    suffix = p.suffix.lower()
    if suffix == PDF_SUFFIX:
        text = _read_pdf(p)
    elif suffix in TEXT_SUFFIXES or suffix == "":
        text = _read_text_file(p)
    else:
        raise DocumentError(f"{p}: unsupported document type {p.suffix!r} "
                            f"(supported: {', '.join(TEXT_SUFFIXES[:2])}, .pdf, or text without a suffix)")
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise DocumentError(f"{p}: the document is empty")
    return Document(text=text, title=p.name, source=str(p))


def _load_one(item: Any) -> Document:
    if isinstance(item, Document):
        if not item.text.strip():
            raise DocumentError("the document is empty")
        return item
    if isinstance(item, os.PathLike):
        return read_document_file(item)
    if isinstance(item, bytes):
        raise DocumentError("pass document text as str (decode the bytes first) or a file path")
    if not isinstance(item, str):
        raise DocumentError(f"a document must be text, a path or a list of them, not {type(item).__name__}")
    if _looks_like_path(item):
        try:
            is_file = os.path.isfile(item)
        except (OSError, ValueError):
            is_file = False
        if is_file or os.path.isdir(item):
            return read_document_file(item)
        # A one-word string ending in a document suffix is a mistyped path, not a document.
        suffix = os.path.splitext(item)[1].lower()
        if not any(c.isspace() for c in item) and suffix in (*TEXT_SUFFIXES, PDF_SUFFIX):
            raise FileNotFoundError(f"document not found: {item}")
    text = item.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise DocumentError("the document is empty")
    return Document(text=text)


def load_documents(document: Any) -> list[Document]:
    """Loads a document: text, a path (``pathlib.Path`` or an existing path as str), or a list.

    A str names a file when such a file exists; otherwise it is the document text.

    Raises:
        FileNotFoundError, DocumentError: see :func:`read_document_file`; an empty list.
    """
    if isinstance(document, (list, tuple)):
        if not document:
            raise DocumentError("the list of documents is empty")
        docs = []
        for i, item in enumerate(document, 1):
            if isinstance(item, (list, tuple)):
                raise DocumentError(f"document {i} is a nested list; pass a flat list of texts or paths")
            docs.append(_load_one(item))
        return docs
    return [_load_one(document)]


def document_block(docs: Sequence[Document]) -> str:
    """The document text of the user turn.

    One document is its text as is. Several are each introduced by a title line
    ``### Document i: <file name>`` (``### Document i`` for text given directly) and separated
    by blank lines.
    """
    if len(docs) == 1:
        return docs[0].text
    parts = []
    for i, d in enumerate(docs, 1):
        head = f"### Document {i}: {d.title}" if d.title else f"### Document {i}"
        parts.append(f"{head}\n\n{d.text}")
    return "\n\n".join(parts)

