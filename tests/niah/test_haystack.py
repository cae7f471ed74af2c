"""Tokenized haystacks: sentence boundaries, piecewise tokenization, repetition, disk cache."""
from __future__ import annotations

import bisect
import subprocess
import sys

import numpy as np
import pytest

from longctx.niah import haystack as hmod
from longctx.niah.haystack import (
    TokenizedHaystack,
    clear_memory_cache,
    find_sentence_ends,
    get_haystack,
    split_pieces,
)

from . import austen_sample, haystack, sp_haystack, sp_tokenizer

CLOSERS = "\"'\u201d\u2019\u00bb)]"


def test_no_torch_import():
    code = ("import sys; import longctx.niah.haystack, longctx.niah.tasks, longctx.niah.prompt, "
            "longctx.niah.scoring, longctx.niah.grid, longctx.paths; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("text, want", [
    ("One. Two! Three? Four", [4, 9, 16]),
    ('He said "Go." Then left.', [13, 24]),
    ("Mr. Darcy came. J. Smith too.", [15, 29]),
    ("It is 3.5 long. Next", [15]),
    ("Wait... what?! Yes.", [7, 14, 19]),
    ("第一句。第二句！第三句？", [4, 8, 12]),
    ("No terminator here", []),
    ("End with etc.\n\nNew paragraph.", [13, 29]),
])
def test_find_sentence_ends(text, want):
    assert find_sentence_ends(text) == want


def test_split_pieces_cover_text_at_paragraph_breaks():
    text = austen_sample()
    ranges = split_pieces(text, 20_000)
    assert len(ranges) > 5
    assert ranges[0][0] == 0 and ranges[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(text[a:a + 2] == "\n\n" for a, _ in ranges[1:])  # each later piece starts with its break
    assert all(b - a <= 20_000 for a, b in ranges)


def test_piecewise_tokenization_is_lossless(tok):
    text = austen_sample()
    hs = TokenizedHaystack.from_text(text, tok, name="sample", cache=False, piece_chars=20_000)
    assert hs.ids.dtype == np.int32 and hs.boundaries.dtype == np.int64
    assert tok.decode(hs.ids.tolist()) == text
    # pieces change nothing at paragraph-aligned cuts for byte-level BPE
    whole = TokenizedHaystack.from_text(text, tok, name="sample", cache=False, piece_chars=10**9)
    clear_memory_cache()
    assert len(whole.ids) == len(hs.ids)


def _check_boundaries(tok, hs, n_check=300, seed=0):
    ids = hs.ids
    b = hs.boundaries
    assert b[0] == 0 and b[-1] == len(ids) and np.all(np.diff(b) > 0)
    rng = np.random.default_rng(seed)
    inner = b[1:-1]
    for x in rng.choice(inner, size=min(n_check, len(inner)), replace=False):
        before = tok.decode(ids[max(0, x - 6):x].tolist())
        after = tok.decode(ids[x:x + 3].tolist(), )
        stripped = before.rstrip(CLOSERS)
        assert stripped and stripped[-1] in ".!?\u3002\uff01\uff1f", (before, after)
        # the next token starts with whitespace (byte-level BPE keeps the space on " The")
        full = tok.decode(ids[max(0, x - 6):x + 3].tolist())
        assert full.startswith(before) and full[len(before)].isspace(), (before, after)


def test_boundaries_fall_between_tokens_noise(tok):
    hs = haystack("noise")
    _check_boundaries(tok, hs)
    # every sentence of the filler is found: 5 per repetition of the unit
    from longctx.data import load_haystack_text

    assert len(hs.boundaries) - 1 == load_haystack_text("noise").count(". ") + 1


def test_boundaries_fall_between_tokens_austen(tok):
    hs = haystack("austen")
    _check_boundaries(tok, hs)
    assert len(hs.boundaries) > 30_000  # ~32K sentences in the six novels
    assert hs.meta["tokens"] == len(hs.ids)


def test_boundaries_sentencepiece():
    tok, hs = sp_tokenizer(), sp_haystack()
    assert hs.tokenizer_fingerprint == tok.fingerprint
    assert len(hs.boundaries) > 1000
    ids = hs.ids
    for x in hs.boundaries[1:-1][::97]:
        prev_piece = tok.id_to_token(int(ids[x - 1]))
        piece = tok.id_to_token(int(ids[x]))
        ends_sentence = prev_piece.rstrip(CLOSERS + "\u2581").endswith((".", "!", "?"))
        assert ends_sentence or prev_piece.endswith(tuple(CLOSERS)), prev_piece
        assert piece.startswith("\u2581") or piece.startswith("<0x0A>"), piece


def test_take_and_repetition(tok):
    hs = TokenizedHaystack.from_text("Alpha beta gamma. Delta epsilon! Zeta eta theta? Iota kappa.", tok,
                                     name="tiny", cache=False)
    n, s = len(hs.ids), len(hs.sep_ids)
    assert s > 0 and tok.decode(hs.sep_ids.tolist()) == "\n\n"
    ids, rep = hs.take(n - 3)
    assert not rep and ids.tolist() == hs.ids[: n - 3].tolist()
    ids, rep = hs.take(n)
    assert not rep and len(ids) == n
    ids, rep = hs.take(3 * n + 5)
    assert rep and len(ids) == 3 * n + 5
    unit = hs.ids.tolist() + hs.sep_ids.tolist()
    assert ids.tolist() == (unit * 4)[: 3 * n + 5]
    with pytest.raises(ValueError, match="repetition not allowed"):
        hs.take(n + 1, repeat_ok=False)


def test_boundary_lookup_matches_brute_force(tok):
    hs = TokenizedHaystack.from_text("Alpha beta gamma. Delta epsilon! Zeta eta theta? Iota kappa.", tok,
                                     name="tiny", cache=False)
    total = 5 * hs.period + 7
    allb = hs.boundaries_upto(total).tolist()
    # the start of a repeated copy is not a boundary; the end of the previous copy is
    for k in range(1, 5):
        assert k * hs.period not in allb and k * hs.period - len(hs.sep_ids) in allb
    for pos in range(total + 1):
        want = allb[bisect.bisect_right(allb, pos) - 1]
        assert hs.boundary_at_or_before(pos) == want
        j = bisect.bisect_right(allb, pos)
        if j < len(allb):
            assert hs.boundary_after(pos) == allb[j]
    text = tok.decode(hs.take(total)[0].tolist())
    assert text.count("Alpha") == 6


def test_disk_cache_roundtrip(tok, tmp_path):
    text = austen_sample()[:30_000]
    clear_memory_cache()
    a = TokenizedHaystack.from_text(text, tok, name="s", cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and tok.fingerprint[:24] in files[0].name
    assert "from_cache" not in a.meta
    clear_memory_cache()
    b = TokenizedHaystack.from_text(text, tok, name="s", cache_dir=tmp_path)
    assert b.meta.get("from_cache") is True
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.boundaries, b.boundaries)
    assert np.array_equal(a.sep_ids, b.sep_ids) and b.corpus_sha256 == a.corpus_sha256
    # a torn cache file is rebuilt, not a crash
    files[0].write_bytes(b"not a zip")
    clear_memory_cache()
    c = TokenizedHaystack.from_text(text, tok, name="s", cache_dir=tmp_path)
    assert np.array_equal(a.ids, c.ids) and "from_cache" not in c.meta
    # another tokenizer gets its own file
    clear_memory_cache()
    TokenizedHaystack.from_text(text, sp_tokenizer(), name="s", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    clear_memory_cache()


def test_cache_root_env(monkeypatch, tmp_path):
    from longctx.paths import cache_root

    monkeypatch.setenv("LONGCTX_CACHE", str(tmp_path / "c"))
    assert hmod.haystack_cache_dir() == tmp_path / "c" / "haystacks"
    monkeypatch.delenv("LONGCTX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x" / "longctx"


def test_get_haystack_errors(tok, tmp_path):
    with pytest.raises(ValueError, match="unknown haystack 'nosuch'"):
        get_haystack("nosuch", tok)
    with pytest.raises(ValueError, match="not found"):
        get_haystack(str(tmp_path / "missing.txt"), tok)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n ")
    with pytest.raises(ValueError, match="empty"):
        get_haystack(str(empty), tok)
    with pytest.raises(ValueError, match="empty"):
        TokenizedHaystack.from_text("   ", tok, cache=False)


def test_get_haystack_path_and_builtin(tok, tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "b.txt").write_text("Second file. It has two sentences.")
    (d / "a.txt").write_text("First file here.")
    hs = get_haystack(str(d), tok, cache_dir=tmp_path / "cache")
    assert tok.decode(hs.ids.tolist()) == "First file here.\n\nSecond file. It has two sentences."
    a = get_haystack("noise", tok)
    assert get_haystack("noise", tok) is a  # in-memory reuse
    assert a.corpus_sha256 == haystack("noise").corpus_sha256


@pytest.mark.parametrize("kind", ["default", "sp"])
def test_surrounding_whitespace_stripped_and_joins_canonical(tok, kind):
    from longctx.niah.seams import reencode

    t = tok if kind == "default" else sp_tokenizer()
    text = "\n\nThe cat sat. The dog ran!\n\nBirds fly? Fish swim.\n\n\n"
    hs = TokenizedHaystack.from_text(text, t, name="ws", cache=False)
    assert hs.corpus_sha256 == hmod.corpus_sha256(text)  # identifies the text as given
    assert t.decode(hs.ids.tolist()) == text.strip()
    ids, repeated = hs.take(4 * hs.period + 3)
    assert repeated and reencode(t, t.decode(ids.tolist())) == ids.tolist()  # copies join canonically
    joined = t.decode(ids.tolist())
    assert joined.count("Fish swim.") == 4 and joined.count("The cat") == 5 and "\n\n\n" not in joined
