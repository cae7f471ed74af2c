"""Every NIAH prompt re-encodes to exactly the ids the model saw, and every needle follows a
sentence end (longctx.niah.seams, longctx.niah.prompt).

Cells only (no model): every task, the built-in haystacks, ``--haystack`` folders with BOM/CRLF
files and haystacks that end on paragraph breaks, with the default model's tokenizer (SmolLM2,
byte-level BPE) and the SentencePiece test tokenizer.
"""
from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
import pytest

from longctx.data import load_haystack_text, read_haystack_path
from longctx.niah.grid import make_grid
from longctx.niah.haystack import TokenizedHaystack, find_sentence_ends
from longctx.niah.prompt import PromptBuilder, prompt_sha256
from longctx.niah.runner import prompt_file_name, run_sweep
from longctx.niah.seams import reencode, seams_canonical
from longctx.niah.tasks import make_task

from . import austen_sample, default_tokenizer, haystack, sp_haystack, sp_tokenizer
from .test_runner import FakeBackend

TASKS = ["passkey", "single", "single:word", "single:uuid", "multikey", "multivalue", "multiquery", "custom"]
DEPTHS = [0.0, 10.0, 25.0, 50.0, 75.0, 99.0, 100.0]


def _task(spec: str):
    if spec == "custom":
        return make_task("custom", needle="The secret ingredient is saffron.",
                         question="What is the secret ingredient?", answers=["saffron"])
    return make_task(spec)


def _paragraphs(text: str, n: int) -> list[str]:
    return [p.strip() for p in text.split("\n\n") if p.strip()][:n]


@lru_cache(maxsize=None)
def _folder(root: str) -> str:
    """A ``--haystack`` folder: UTF-8 files with a BOM and CRLF line ends, one ending on a paragraph
    break, one of one-sentence paragraphs (cuts often land inside a break), curly quotes and accents."""
    import pathlib

    d = pathlib.Path(root) / "hay"
    d.mkdir(parents=True, exist_ok=True)
    bible = load_haystack_text("web_bible")
    austen = _paragraphs(austen_sample(), 120)
    (d / "a.txt").write_bytes(("\ufeff" + "\r\n\r\n".join(austen) + "\r\n\r\n").replace("\n", "\r\n")
                              .replace("\r\r\n", "\r\n").encode("utf-8"))
    (d / "b.txt").write_bytes(("\ufeff" + "\r\n\r\n".join(_sentences(300)[150:]) + "\r\n\r\n\r\n").encode("utf-8"))
    (d / "c.txt").write_text("\n\n".join(_paragraphs(bible[200_000:], 150)) + "\n\n", encoding="utf-8")
    (d / "d.txt").write_text("Café “déjà vu” — naïve façade. Ünïcödé!\n\nÀ bientôt. Ça va?\n\n", encoding="utf-8")
    return str(d)


@lru_cache(maxsize=None)
def _breaks_text() -> str:
    """One-sentence paragraphs (cuts often land inside a break), the text ending on a paragraph
    break: repeated in longer cells."""
    return "\n\n".join(_sentences(150)) + "\n\n\n"


def _sentences(n: int) -> list[str]:
    text = " ".join(_paragraphs(austen_sample(), 200)).replace("\n", " ")
    return [s.rstrip(".") + "." for s in text.split(". ") if len(s) > 20][:n]


def _haystack(tok_kind: str, name: str, tmp: str) -> TokenizedHaystack:
    tok = default_tokenizer() if tok_kind == "default" else sp_tokenizer()
    if name == "folder":
        return TokenizedHaystack.from_text(read_haystack_path(_folder(tmp)), tok, name="folder", cache=False)
    if name == "breaks":
        return TokenizedHaystack.from_text(_breaks_text(), tok, name="breaks", cache=False)
    if tok_kind == "default":
        return haystack(name)
    if name == "austen":
        return sp_haystack()
    text = load_haystack_text(name)[:150_000]
    return TokenizedHaystack.from_text(text[: text.rfind("\n\n") + 2], tok, name=name, cache=False)


def _check_sentence_ends(cell, tok) -> None:
    """Every needle starts the haystack or follows a complete sentence; at depth 100 no sentence
    of the haystack ends after the needle (it follows the last one that ends in the cell)."""
    ids = cell.ids
    for nd in cell.needles:
        start = nd["token_start"]
        if start == cell.prefix_tokens:
            continue  # before the first sentence (its own paragraph)
        before = tok.decode(ids[cell.prefix_tokens:start].tolist()).rstrip()
        ends = find_sentence_ends(before)
        assert ends and ends[-1] == len(before), (nd, before[-60:])
        if nd["target_depth"] == 100.0:
            others = [n for n in cell.needles if n["token_start"] > start]
            stop = others[0]["token_start"] if others else len(ids) - cell.suffix_tokens
            after = tok.decode(ids[nd["token_end"]:stop].tolist()).rstrip()
            inside = [e for e in find_sentence_ends(after) if e < len(after)]
            assert not inside, (nd, after[:80])


COMBOS = [("default", "austen"), ("default", "web_bible"), ("default", "noise"), ("default", "folder"),
          ("default", "breaks"), ("sp", "austen"), ("sp", "web_bible"), ("sp", "folder"), ("sp", "breaks")]


@pytest.mark.parametrize("tok_kind, name", COMBOS)
def test_prompts_reencode_exactly(tok_kind, name, tmp_path_factory):
    tok = default_tokenizer() if tok_kind == "default" else sp_tokenizer()
    hs = _haystack(tok_kind, name, str(tmp_path_factory.getbasetemp()))
    rng = random.Random(f"{tok_kind}-{name}")
    cells = moved = 0
    for spec in TASKS:
        for chat in (True, False):
            b = PromptBuilder(tok, hs, _task(spec), chat=chat)
            L = rng.randrange(700, 2400)  # a different cut for every (task, chat)
            for d in DEPTHS:
                cell = b.build(L, d, trial=rng.randrange(3), seed=1)
                text = cell.prompt_text()
                assert reencode(tok, text) == cell.tolist(), (spec, chat, L, d, cell.haystack_start)
                assert len(cell.ids) == L
                _check_sentence_ends(cell, tok)
                cells += 1
                moved += cell.haystack_start > 0
    assert cells == len(TASKS) * 2 * len(DEPTHS)
    assert moved <= cells // 10  # the fallback is rare


def test_paragraph_break_cuts_are_repaired():
    """Cuts inside a paragraph break (``...x.\\n`` + ``\\n\\nQuestion``) happen and come out canonical,
    from another paragraph start, deterministically."""
    tok = default_tokenizer()
    hs = TokenizedHaystack.from_text(_breaks_text(), tok, name="breaks", cache=False)
    b = PromptBuilder(tok, hs, make_task("single"))
    moved = []
    for L in range(400, 520):
        cell = b.build(L, 50.0)
        assert reencode(tok, cell.prompt_text()) == cell.tolist()
        if cell.haystack_start:
            moved.append(cell)
    assert moved  # some cells' corpus-start cut ends inside a break
    for cell in moved[:5]:
        again = PromptBuilder(tok, hs, make_task("single")).build(cell.target_length, 50.0)
        assert again.haystack_start == cell.haystack_start and np.array_equal(again.ids, cell.ids)
        assert cell.haystack_start in hs.paragraph_starts(tok.decode, 64)
        assert tok.decode(cell.ids[cell.prefix_tokens:cell.prefix_tokens + 3].tolist())[:1].isalpha()


def test_no_canonical_start_is_a_one_line_error(monkeypatch):
    import longctx.niah.prompt as P

    tok = default_tokenizer()
    hs = TokenizedHaystack.from_text(_breaks_text(), tok, name="breaks", cache=False)
    L = next(L for L in range(400, 520) if PromptBuilder(tok, hs, make_task("single")).build(L, 50.0).haystack_start)
    monkeypatch.setattr(P, "MAX_STARTS", 0)
    with pytest.raises(ValueError, match=rf"^cannot build a re-encodable {L}-token prompt at depth 50 .*breaks") as ei:
        PromptBuilder(tok, hs, make_task("single")).build(L, 50.0)
    assert "\n" not in str(ei.value)


def test_depth_100_follows_the_last_sentence_end(tok, austen):
    b = PromptBuilder(tok, austen, make_task("single"))
    for L in range(300, 4000, 37):
        cell = b.build(L, 100.0)
        _check_sentence_ends(cell, tok)
        nd = cell.needles[0]
        pos = nd["token_start"] - cell.prefix_tokens
        s, H = cell.haystack_start, cell.haystack_tokens
        assert austen.boundary_after(s + pos) > s + H  # no sentence boundary between the needle and the cut
        assert cell.depth == pytest.approx(100.0 * pos / H, abs=1e-3) and cell.depth <= 100.0


def test_seam_check_catches_a_split_newline_run(tok):
    """The audit's case: a haystack ending inside a paragraph break before ``\\n\\n`` + question."""
    hay = tok.encode("He left. She stayed.\n\nThe end")
    cut = next(i for i in range(1, len(hay)) if tok.decode(hay[:i]).endswith(".\n"))
    post = tok.encode("Done.\n\nWhat is it?")[len(tok.encode("Done.")):]
    ids = np.asarray(hay[:cut] + post, dtype=np.int32)
    assert reencode(tok, tok.decode(ids.tolist())) != ids.tolist()
    assert not seams_canonical(tok, ids, [cut], np.asarray([3], dtype=np.int64), (0, len(ids)))
    good = np.asarray(hay[:cut - 1] + post, dtype=np.int32)  # cut before the break: canonical
    assert reencode(tok, tok.decode(good.tolist())) == good.tolist()
    assert seams_canonical(tok, good, [cut - 1], np.asarray([3], dtype=np.int64), (0, len(good)))


def test_reencode_reads_control_tokens():
    tok = sp_tokenizer()
    ids = tok.chat_ids([{"role": "user", "content": "Hello there.\n\nWhat?"}])
    text = tok.decode(ids, skip_special=False)
    assert text.startswith("<s><|im_start|>") and reencode(tok, text) == ids


def test_dumped_prompts_reencode_to_the_recorded_ids(tmp_path, tok):
    hs = TokenizedHaystack.from_text(_breaks_text(), tok, name="breaks", cache=False)
    b = PromptBuilder(tok, hs, make_task("single", answer_budget=16))
    grid = make_grid([413, 500, 587, 731], [0, 33, 50, 100], 2)
    run_sweep(FakeBackend(tok), b, grid, tmp_path / "r.jsonl", dump_prompts=tmp_path / "prompts")
    import json

    recs = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(recs) == 32
    for r in recs:
        name = prompt_file_name(r["task"], r["target_length"], r["target_depth"], r["trial"])
        text = (tmp_path / "prompts" / name).read_bytes().decode("utf-8")
        again = reencode(tok, text)
        assert len(again) == r["length"] and prompt_sha256(again) == r["prompt_sha256"], name
