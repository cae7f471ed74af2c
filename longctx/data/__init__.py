"""Haystack texts for needle-in-a-haystack runs (no torch import here).

Built-in corpora (see ``haystacks/PROVENANCE.md`` for sources, licences, cleaning and
checksums; regenerate with ``scripts/extract_haystacks.py``):

* ``austen``: Jane Austen's six completed novels, public domain.
* ``web_bible``: the World English Bible, public domain, one paragraph per chapter.
* ``zh``: classical Chinese prose (古文观止 and the Four Books, simplified characters),
  public domain, from the MIT-licensed npm dataset ``chinese-poetry``.
* ``noise``: the classic passkey-retrieval filler, generated in code.

Corpus text is UTF-8 with paragraphs separated by one blank line.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

__all__ = [
    "BUILTIN_HAYSTACKS",
    "NOISE_SENTENCES",
    "NOISE_MIN_CHARS",
    "load_haystack_text",
    "read_haystack_path",
    "corpus_sha256",
]

BUILTIN_HAYSTACKS: dict[str, str] = {
    "austen": "Jane Austen's six novels (Sense and Sensibility ... Persuasion), public domain; "
    "about 4.0M characters",
    "web_bible": "World English Bible (with deuterocanon), public domain, one paragraph per "
    "chapter; about 4.8M characters",
    "zh": "classical Chinese prose (古文观止 and the Four Books, simplified), public domain; "
    "about 217K characters",
    "noise": "passkey filler: 'The grass is green. The sky is blue. ...' repeated; about 1M characters",
}

# The five filler sentences of the passkey-retrieval test, as one unit.
NOISE_SENTENCES = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
)
# ``noise`` repeats NOISE_SENTENCES (joined by single spaces) the fewest times that give at
# least this many characters: 11,236 repetitions, 1,000,003 characters, one line.
NOISE_MIN_CHARS = 1_000_000

_FILES = {"austen": "austen.txt.gz", "web_bible": "web_bible.txt.gz", "zh": "zh.txt.gz"}


@lru_cache(maxsize=None)
def load_haystack_text(name: str) -> str:
    """The text of a built-in haystack corpus (see ``BUILTIN_HAYSTACKS``).

    ``austen``, ``web_bible`` and ``zh`` are read from the gzip files shipped in
    ``longctx/data/haystacks``.  ``noise`` is ``NOISE_SENTENCES`` repeated, joined by
    single spaces, to at least ``NOISE_MIN_CHARS`` characters.  Raises ``ValueError``
    for an unknown name.
    """
    if name == "noise":
        unit = len(NOISE_SENTENCES) + 1
        reps = -(-(NOISE_MIN_CHARS + 1) // unit)  # ceil: reps * unit - 1 >= NOISE_MIN_CHARS
        return " ".join([NOISE_SENTENCES] * reps)
    if name not in _FILES:
        raise ValueError(
            f"unknown built-in haystack {name!r}; choose one of {', '.join(BUILTIN_HAYSTACKS)}"
        )
    res = resources.files(__name__).joinpath("haystacks", _FILES[name])
    try:
        data = res.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"built-in haystack {name!r} is missing from the installed package") from None
    return gzip.decompress(data).decode("utf-8")


def _decode(data: bytes, path: Path) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"haystack file {path} is not valid UTF-8 (bad byte at offset {exc.start})"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_haystack_path(path: str | os.PathLike) -> str:
    """Read a user haystack: a text file, or a directory of ``*.txt`` files.

    A directory's ``*.txt`` files (not recursive) are read in sorted name order, each
    stripped of surrounding whitespace, and joined with one blank line; empty files are
    skipped.  Files must be UTF-8 (a BOM is allowed; CRLF line ends become LF).

    Raises ``ValueError`` (one-line message) if the path does not exist, a directory has
    no ``.txt`` files, the text is empty or only whitespace, or a file is not UTF-8.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"haystack path not found: {p}")
    if p.is_dir():
        files = sorted(
            (f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".txt"),
            key=lambda f: f.name,
        )
        if not files:
            raise ValueError(f"no .txt files in haystack directory: {p}")
        parts = [_decode(f.read_bytes(), f).strip() for f in files]
        text = "\n\n".join(part for part in parts if part)
    elif p.is_file():
        text = _decode(p.read_bytes(), p).strip()
    else:
        raise ValueError(f"haystack path is neither a file nor a directory: {p}")
    if not text:
        raise ValueError(f"haystack text is empty: {p}")
    return text


def corpus_sha256(text: str) -> str:
    """Hex SHA-256 of ``text`` encoded as UTF-8 (identifies the haystack in results)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
