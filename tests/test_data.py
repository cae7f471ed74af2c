"""Built-in haystack corpora and user haystack reading (longctx.data)."""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from longctx.data import (
    BUILTIN_HAYSTACKS,
    NOISE_MIN_CHARS,
    NOISE_SENTENCES,
    corpus_sha256,
    load_haystack_text,
    read_haystack_path,
)

HAYSTACK_DIR = Path(__file__).resolve().parent.parent / "longctx" / "data" / "haystacks"
CORPORA = ["austen", "web_bible"]
HEADING = re.compile(r"(?i)(chapter|volume|book|psalm)\s+([0-9]+|[ivxlc]+)\.?")


def _paragraphs(text: str) -> list[str]:
    return text.split("\n\n")


def test_builtin_names():
    assert set(BUILTIN_HAYSTACKS) == {"austen", "web_bible", "zh", "noise"}
    assert all(isinstance(v, str) and v for v in BUILTIN_HAYSTACKS.values())


@pytest.mark.parametrize("name", CORPORA)
def test_corpus_shape(name):
    text = load_haystack_text(name)
    assert len(text) > 3_000_000
    assert len(text.split()) > 500_000
    assert text == text.strip() + "\n"
    assert "\n\n\n" not in text
    assert "\r" not in text and "\t" not in text
    lines = text.split("\n")
    assert all(line == line.strip() for line in lines), "leading/trailing spaces on a line"
    assert not any(HEADING.fullmatch(line) for line in lines), "heading line left in"
    assert not any("CHAPTER" in line for line in lines)
    assert not re.search(r"<[a-zA-Z/][^>]*>", text), "markup left in"


@pytest.mark.parametrize("name", CORPORA)
def test_paragraphs_are_joined(name):
    """Hard wrapping is undone: a paragraph is one line, and long paragraphs are common."""
    paras = _paragraphs(load_haystack_text(name).rstrip("\n"))
    assert all("\n" not in p and p for p in paras)
    lengths = sorted(len(p) for p in paras)
    assert lengths[len(lengths) // 2] > 200  # median paragraph is well past a 70-column line
    # A paragraph cut in the middle by a hard wrap would end in a bare word; a handful of
    # Austen's paragraphs legitimately do (verse lead-ins, a letter's date line).
    bare = [p for p in paras if re.search(r"[A-Za-z]$", p)]
    assert len(bare) <= max(10, len(paras) // 200), bare[:10]
    # Unjoined 70-column wrapping would make most paragraphs 55-76 characters long.
    assert sum(55 <= len(p) <= 76 for p in paras) < len(paras) // 10


def test_austen_content():
    text = load_haystack_text("austen")
    paras = _paragraphs(text.rstrip("\n"))
    assert paras[0].startswith("The family of Dashwood had long been settled in Sussex.")
    assert paras[-1].endswith(".")
    assert "Mrs Smith's enjoyments" in paras[-1]
    starts = [
        "The family of Dashwood",  # Sense and Sensibility
        "It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, must be in want of a wife.",  # Pride and Prejudice
        "About thirty years ago",  # Mansfield Park
        "Emma Woodhouse, handsome, clever, and rich",  # Emma
        "No one who had ever seen Catherine Morland",  # Northanger Abbey
        "Sir Walter Elliot, of Kellynch Hall",  # Persuasion
    ]
    positions = [text.find(s) for s in starts]
    assert all(p >= 0 for p in positions)
    assert positions == sorted(positions), "novels out of order"
    for junk in ("THE END", "FINIS", "VOLUME", "Project Gutenberg", "_", "*",
                 "by Jane Austen", "By Jane Austen", "editions, Volume", "A NOTE ON THE TEXT"):
        assert junk not in text, junk
    assert "Finis" not in paras


def test_web_bible_content():
    text = load_haystack_text("web_bible")
    paras = _paragraphs(text.rstrip("\n"))
    assert paras[0].startswith("In the beginning, God created the heavens and the earth.")
    assert paras[-1].endswith("The grace of the Lord Jesus Christ be with all the saints. Amen.")
    assert "For God so loved the world, that he gave his only born Son" in text
    assert len(paras) > 1300  # one paragraph per chapter
    assert not re.search(r"\d", text), "verse numbers or footnote references left in"
    assert "Preface to the World English Bible" not in text
    assert "strong:" not in text and "&" not in text


@pytest.mark.parametrize("name", CORPORA)
def test_provenance_checksums_match(name):
    """PROVENANCE.md records the sha256 of the uncompressed text and of the .gz file."""
    prov = (HAYSTACK_DIR / "PROVENANCE.md").read_text(encoding="utf-8")
    gz_bytes = (HAYSTACK_DIR / f"{name}.txt.gz").read_bytes()
    assert len(gz_bytes) < 4 * 1024 * 1024
    assert corpus_sha256(load_haystack_text(name)) in prov
    assert hashlib.sha256(gz_bytes).hexdigest() in prov
    # deterministic gzip: mtime 0 in the header
    assert gz_bytes[4:8] == b"\0\0\0\0"
    assert gzip.decompress(gz_bytes).decode("utf-8") == load_haystack_text(name)


def test_noise():
    text = load_haystack_text("noise")
    assert len(text) >= NOISE_MIN_CHARS
    assert len(text) < NOISE_MIN_CHARS + len(NOISE_SENTENCES) + 1
    assert NOISE_SENTENCES == (
        "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
    )
    assert text.startswith(NOISE_SENTENCES + " " + NOISE_SENTENCES)
    assert text.endswith("There and back again.")
    units = text.split(" The grass")
    assert len(units) == text.count("The grass is green.")
    assert "  " not in text and "\n" not in text


def test_unknown_builtin():
    with pytest.raises(ValueError, match="unknown built-in haystack"):
        load_haystack_text("shakespeare")


def test_corpus_sha256():
    assert corpus_sha256("abc") == hashlib.sha256(b"abc").hexdigest()
    assert corpus_sha256("é") == hashlib.sha256("é".encode("utf-8")).hexdigest()


def test_no_torch_import():
    code = "import sys, longctx.data as d; d.load_haystack_text('noise'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------
# read_haystack_path
# ---------------------------------------------------------------------------


def test_read_file(tmp_path):
    f = tmp_path / "hay.txt"
    f.write_text("  First paragraph.\r\n\r\nSecond paragraph.\n\n", encoding="utf-8")
    assert read_haystack_path(f) == "First paragraph.\n\nSecond paragraph."
    assert read_haystack_path(str(f)) == "First paragraph.\n\nSecond paragraph."


def test_read_file_with_bom(tmp_path):
    f = tmp_path / "bom.txt"
    f.write_bytes("\ufeffCafé au lait.".encode("utf-8"))
    assert read_haystack_path(f) == "Café au lait."


def test_read_directory_sorted(tmp_path):
    (tmp_path / "b.txt").write_text("From b.\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("From a.\n", encoding="utf-8")
    (tmp_path / "c.md").write_text("Not a txt file.\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "0.txt").write_text("Nested, not read.\n", encoding="utf-8")
    assert read_haystack_path(tmp_path) == "From a.\n\nFrom b."


def test_missing_path(tmp_path):
    with pytest.raises(ValueError, match="not found") as exc:
        read_haystack_path(tmp_path / "nope.txt")
    assert "\n" not in str(exc.value)


def test_empty_directory(tmp_path):
    with pytest.raises(ValueError, match="no .txt files") as exc:
        read_haystack_path(tmp_path)
    assert "\n" not in str(exc.value)
    (tmp_path / "notes.md").write_text("text", encoding="utf-8")
    with pytest.raises(ValueError, match="no .txt files"):
        read_haystack_path(tmp_path)


@pytest.mark.parametrize("content", ["", "   \n\n\t \n"])
def test_empty_text(tmp_path, content):
    f = tmp_path / "blank.txt"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="empty") as exc:
        read_haystack_path(f)
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="empty"):
        read_haystack_path(tmp_path)  # a directory whose only .txt file is blank


def test_undecodable(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("Fa\u00e7ade and caf\u00e9.".encode("latin-1"))
    with pytest.raises(ValueError, match="not valid UTF-8") as exc:
        read_haystack_path(f)
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        read_haystack_path(tmp_path)
