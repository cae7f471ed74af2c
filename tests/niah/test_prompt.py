"""Exact-length NIAH prompts and tasks (longctx.niah.prompt, longctx.niah.tasks)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from longctx.niah.haystack import TokenizedHaystack
from longctx.niah.prompt import AUTO, Cell, PromptBuilder, find_subsequence, prompt_sha256, time_build
from longctx.niah.tasks import TASK_NAMES, derive_seed, load_custom_task_file, make_task

from . import haystack, sp_haystack, sp_tokenizer

TASK_SPECS = ["passkey", "single", "single:word", "single:uuid", "multikey", "multivalue", "multiquery"]
DEPTHS = [0.0, 3.0, 25.0, 50.0, 61.8, 99.0, 100.0]


@pytest.fixture(scope="module")
def noise():
    return haystack("noise")


def _check_cell(cell: Cell, L: int, decode: bool = True) -> None:
    assert isinstance(cell.ids, np.ndarray) and cell.ids.dtype == np.int32
    assert len(cell.ids) == L == cell.length == cell.target_length
    cell.verify(decode=decode)
    for nd in cell.needles:
        assert cell.prefix_tokens <= nd["token_start"] < nd["token_end"] <= L - cell.suffix_tokens
        assert 0.0 <= nd["depth"] <= 100.0
    spans = sorted((nd["token_start"], nd["token_end"]) for nd in cell.needles)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no needle cuts another


# -- exact length, intact needles ------------------------------------------------------------------
@pytest.mark.parametrize("spec", TASK_SPECS)
@pytest.mark.parametrize("chat", [True, False])
def test_exact_length_default_tokenizer(tok, austen, noise, spec, chat):
    task = make_task(spec)
    for hs in (austen, noise):
        b = PromptBuilder(tok, hs, task, chat=chat)
        for L in (400, 777, 1500, 4096, 20_000):
            for d in DEPTHS:
                cell = b.build(L, d, trial=1, seed=7)
                _check_cell(cell, L, decode=L <= 4096)


@pytest.mark.parametrize("spec", TASK_SPECS)
def test_exact_length_sentencepiece(spec):
    tok, hs = sp_tokenizer(), sp_haystack()
    b = PromptBuilder(tok, hs, make_task(spec))
    for L in (700, 1200, 3000, 9000):
        for d in DEPTHS:
            cell = b.build(L, d, trial=0, seed=3)
            _check_cell(cell, L, decode=L <= 3000)
            assert cell.ids[0] == tok.bos_id and int(np.sum(cell.ids == tok.bos_id)) == 1
            assert cell.ids[1] == tok.token_to_id("<|im_start|>")
    text = b.build(1200, 50).prompt_text()
    assert text.startswith("<s><|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")


def test_base_model_prompt_sentencepiece():
    tok, hs = sp_tokenizer(), sp_haystack()
    cell = PromptBuilder(tok, hs, make_task("passkey"), chat=False).build(800, 40)
    _check_cell(cell, 800)
    assert cell.ids[0] == tok.bos_id
    assert cell.prompt_text().endswith("What is the pass key? The pass key is")


# -- the same ids as the tokenizer's chat template on the decoded text ----------------------------
@pytest.mark.parametrize("chat", [True, False])
def test_equals_chat_ids_of_decoded_text(tok, austen, noise, chat):
    checked = 0
    for hs in (noise, austen):
        for spec in TASK_SPECS:
            task = make_task(spec)
            b = PromptBuilder(tok, hs, task, chat=chat, answer_prefix=AUTO)
            for L in (300, 650, 1000):
                for d in (0.0, 10.0, 50.0, 87.5, 100.0):
                    try:
                        cell = b.build(L, d, trial=0, seed=11)
                    except ValueError:
                        continue  # multi-needle tasks need more than 300 tokens
                    inst = task.instance(seed=11, length=L, depth=d, trial=0)
                    hay = tok.decode(cell.ids[cell.prefix_tokens: L - cell.suffix_tokens].tolist())
                    content = f"{inst.instruction}\n\n{hay}\n\n{inst.question}"
                    if chat:
                        ref = tok.chat_ids([{"role": "user", "content": content}])
                    else:
                        ref = tok.encode(f"{content} {inst.answer_prefix}")
                    assert ref == cell.tolist(), (spec, L, d, hs.name)
                    checked += 1
    assert checked > 100


def test_system_and_answer_prefix_options(tok, noise):
    task = make_task("single")
    default = PromptBuilder(tok, noise, task).build(500, 50).prompt_text()
    assert default.startswith(f"<|im_start|>system\n{tok.default_system}<|im_end|>\n<|im_start|>user\n")
    assert default.endswith("<|im_end|>\n<|im_start|>assistant\n")
    nosys = PromptBuilder(tok, noise, task, system=None).build(500, 50).prompt_text()
    assert nosys.startswith("<|im_start|>user\nHidden somewhere")
    custom = PromptBuilder(tok, noise, task, system="Be brief.").build(500, 50).prompt_text()
    assert custom.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    cell = PromptBuilder(tok, noise, task, answer_prefix="Answer:").build(500, 50)
    assert cell.prompt_text().endswith("<|im_start|>assistant\nAnswer:") and cell.answer_prefix == "Answer:"
    base = PromptBuilder(tok, noise, task, chat=False).build(500, 50)
    assert base.prompt_text().endswith("mentioned in the provided text? The special magic number for "
                                       f"{base.needles[0]['key']} mentioned in the provided text is")
    assert "<|im_start|>" not in base.prompt_text()
    plain = PromptBuilder(tok, noise, task, chat=False, answer_prefix=None, instruction=None).build(500, 50)
    text = plain.prompt_text()
    assert text.startswith("The grass is green.") and text.endswith("mentioned in the provided text?")


# -- depth ---------------------------------------------------------------------------------------
def test_actual_depth_within_one_sentence(tok, austen):
    b = PromptBuilder(tok, austen, make_task("single"))
    for L in (1000, 5000, 30_000):
        for d in np.arange(0.0, 100.01, 2.5):
            cell = b.build(L, float(d), trial=0)
            H = cell.haystack_tokens
            nd = cell.needles[0]
            pos = nd["token_start"] - cell.prefix_tokens  # haystack tokens before the needle
            assert cell.depth == nd["depth"] == pytest.approx(100.0 * pos / H, abs=1e-3)
            s = cell.haystack_start
            target = int(d * H // 100)  # depth 100: H, the haystack's end, same rule
            assert pos <= target
            # the target position lies inside the sentence that starts at the needle position
            assert target - pos < austen.boundary_after(s + pos) - s - pos
            assert pos == 0 or s + pos in set(austen.boundaries_upto(s + H).tolist())
            assert cell.target_depth == d and cell.depth <= d


def test_multi_needle_positions(tok, austen):
    for spec in ("multikey", "multivalue", "multiquery"):
        b = PromptBuilder(tok, austen, make_task(spec))
        cell = b.build(8000, 40.0, trial=2)
        H = cell.haystack_tokens
        inserted = 0
        for nd in cell.needles:  # in prompt order
            pos = nd["token_start"] - cell.prefix_tokens - inserted
            inserted += nd["token_end"] - nd["token_start"]
            assert nd["depth"] == pytest.approx(100.0 * pos / H, abs=1e-3)
            target = int(nd["target_depth"] * H // 100)
            assert pos <= target < austen.boundary_after(pos)
        targets = [nd for nd in cell.needles if nd["target_depth"] == 40.0]
        assert targets and cell.depth == targets[0]["depth"]
        assert len(cell.needles) == make_task(spec).n_needles


# -- determinism -----------------------------------------------------------------------------------
def test_same_seed_same_prompt(tok, austen):
    for spec in TASK_SPECS:
        task = make_task(spec)
        a = PromptBuilder(tok, austen, task).build(3000, 33.0, trial=1, seed=5)
        b = PromptBuilder(tok, austen, make_task(spec)).build(3000, 33.0, trial=1, seed=5)
        assert np.array_equal(a.ids, b.ids) and a.prompt_sha256 == b.prompt_sha256
        assert a.needles == b.needles and a.expected == b.expected
        other_seed = PromptBuilder(tok, austen, task).build(3000, 33.0, trial=1, seed=6)
        other_trial = PromptBuilder(tok, austen, task).build(3000, 33.0, trial=2, seed=5)
        assert other_seed.expected != a.expected and other_trial.expected != a.expected
        assert other_seed.prompt_sha256 != a.prompt_sha256


def test_values_do_not_depend_on_python_hash():
    code = ("from longctx.niah.tasks import make_task; import json; "
            "print(json.dumps([make_task(s).instance(seed=1, length=4096, depth=25.0, trial=3).expected "
            "for s in ['passkey', 'single:word', 'single:uuid', 'multikey', 'multiquery']]))")
    outs = set()
    for hs in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hs)
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout)
    assert len(outs) == 1
    t = make_task("single")
    assert t.seeds(seed=0, length=1000, depth=50, trial=0) == t.seeds(seed=0, length=1000, depth=50.0, trial=0)
    assert derive_seed(0, "single:number", 1000, 50.0, 0) == 6361138265222971321  # pinned: stable across runs
    assert derive_seed(1, "a") != derive_seed(2, "a")


def test_depth_sweep_shares_prefix_and_layout(tok, austen):
    b = PromptBuilder(tok, austen, make_task("multikey"))
    cells = [b.build(6000, d, trial=0) for d in (10.0, 50.0, 90.0)]
    dis = [[(n["key"], n["value"], n["target_depth"]) for n in c.needles if n["role"] == "distractor"]
           for c in cells]
    assert dis[0] == dis[1] == dis[2]  # same distractors at every depth of one length/trial
    keys = [next(n["key"] for n in c.needles if n["role"] == "target") for c in cells]
    assert len(set(keys)) == 3  # each cell its own target
    s = PromptBuilder(tok, austen, make_task("single"))
    a, c = s.build(6000, 30.0), s.build(6000, 70.0)
    assert np.array_equal(a.ids[: a.first_needle_start], c.ids[: a.first_needle_start])
    assert a.first_needle_start < c.first_needle_start


# -- repetition, errors -----------------------------------------------------------------------------
def test_repeated_corpus_flagged(tok, austen):
    tiny = TokenizedHaystack.from_text("The cat sat. The dog ran! Birds fly? Fish swim.", tok, name="tiny",
                                       cache=False)
    cell = PromptBuilder(tok, tiny, make_task("single")).build(1000, 50.0)
    _check_cell(cell, 1000)
    assert cell.haystack_repeated and cell.haystack_tokens > len(tiny.ids)
    assert not PromptBuilder(tok, austen, make_task("single")).build(1000, 50.0).haystack_repeated
    with pytest.raises(ValueError, match="repetition not allowed"):
        PromptBuilder(tok, tiny, make_task("single"), repeat_ok=False).build(1000, 50.0)


def test_too_small_and_context_errors(tok, noise):
    b = PromptBuilder(tok, noise, make_task("single"), max_context=2048)
    need = b.min_length()
    with pytest.raises(ValueError, match=r"^length 60 is too small: template \+ instruction \+ needle \+ "
                                         r"question take \d+ tokens") as ei:
        b.build(60, 50.0)
    assert "\n" not in str(ei.value)
    assert 60 < need < 200
    b.build(need + 5, 50.0)
    with pytest.raises(ValueError, match=r"length 2000 \+ answer budget 128 = 2128 tokens exceeds the "
                                         r"model's context of 2048"):
        b.build(2000, 50.0)
    b.build(2048 - 128, 50.0)
    with pytest.raises(ValueError, match="depth 101 is outside"):
        b.build(1000, 101.0)
    with pytest.raises(ValueError, match="too small"):
        b.validate([60, 1000], [0.0, 50.0], trials=2)
    b.validate([500, 1000], [0.0, 100.0], trials=2)


def test_cell_fields(tok, austen):
    cell = PromptBuilder(tok, austen, make_task("multivalue")).build(2500, 20.0, trial=4, seed=9)
    assert cell.prompt_sha256 == hashlib.sha256(cell.ids.astype("<i4").tobytes()).hexdigest()
    assert cell.prompt_sha256 == prompt_sha256(cell.tolist())
    assert cell.tolist() == cell.ids.tolist()
    assert cell.metric == "all" and cell.answer_budget == 128 and cell.task == "multivalue:number"
    assert sorted(cell.expected) == sorted(n["value"] for n in cell.needles) and len(cell.expected) == 4
    assert (cell.trial, cell.seed, cell.target_depth) == (4, 9, 20.0)
    rec = cell.record()
    json.dumps(rec)
    for k in ("task", "target_length", "length", "target_depth", "depth", "trial", "seed", "needles",
              "expected", "prompt_sha256", "haystack_repeated"):
        assert k in rec
    for nd in rec["needles"]:
        assert set(nd) >= {"key", "value", "token_start", "token_end", "depth"}
    text = cell.prompt_text()
    assert text.count(cell.question) == 1
    p = make_task("passkey")
    pc = PromptBuilder(tok, austen, p).build(1000, 50.0)
    assert pc.metric == "part" and pc.answer_budget == 32 and len(pc.expected[0]) == 5
    assert f"The pass key is {pc.expected[0]}. Remember it. {pc.expected[0]} is the pass key." in pc.prompt_text()


def test_200k_cell(tok, austen, capsys):
    b = PromptBuilder(tok, austen, make_task("single"), max_context=300_000)
    cell = b.build(200_000, 37.0)
    _check_cell(cell, 200_000, decode=False)
    assert not cell.haystack_repeated
    t = time_build(b, 200_000, repeats=5)
    assert set(t) >= {"median_ms", "min_ms", "max_ms", "length", "repeats"}
    with capsys.disabled():
        print(f"\n[benchmark] 200K-token cell build: median {t['median_ms']:.2f} ms (5 repeats)")


def test_find_subsequence():
    ids = np.array([1, 2, 3, 1, 2, 3, 1, 2], dtype=np.int32)
    assert find_subsequence(ids, np.array([1, 2, 3])).tolist() == [0, 3]
    assert find_subsequence(ids, np.array([2])).tolist() == [1, 4, 7]
    assert find_subsequence(ids, np.array([3, 2])).tolist() == []


# -- tasks -----------------------------------------------------------------------------------------
def test_task_definitions():
    assert set(TASK_NAMES) >= {"passkey", "single", "multikey", "multivalue", "multiquery", "custom"}
    inst = make_task("single:uuid").instance(seed=0, length=1000, depth=50.0, trial=0)
    (n,) = inst.needles
    assert n.text == f"One of the special magic uuids for {n.key} is: {n.value}."
    assert len(n.value) == 36 and n.value[14] == "4"
    assert inst.question == f"What is the special magic uuid for {n.key} mentioned in the provided text?"
    assert inst.expected == (n.value,) and inst.metric == "part" and inst.answer_budget == 128
    num = make_task("single").instance(seed=0, length=1000, depth=50.0, trial=0)
    assert len(num.expected[0]) == 7 and num.expected[0].isdigit()
    word = make_task("single", value_type="word").instance(seed=0, length=1000, depth=50.0, trial=0)
    assert "-" in word.expected[0] and word.needles[0].key != word.expected[0]
    mk = make_task("multikey:word", num_distractors=5).instance(seed=0, length=1000, depth=50.0, trial=0)
    assert len(mk.needles) == 6 and len({x.key for x in mk.needles}) == 6
    assert [x.role for x in mk.needles] == ["target"] + ["distractor"] * 5
    assert mk.needles[0].depth is None and all(0 <= x.depth <= 100 for x in mk.needles[1:])
    mv = make_task("multivalue", num_values=3).instance(seed=0, length=1000, depth=50.0, trial=0)
    assert len({x.key for x in mv.needles}) == 1 and len(set(mv.expected)) == 3 and mv.metric == "all"
    mq = make_task("multiquery").instance(seed=0, length=1000, depth=50.0, trial=0)
    assert all(x.key in mq.question for x in mq.needles) and len(mq.expected) == 4 and mq.metric == "all"
    pk = make_task("passkey").instance(seed=0, length=1000, depth=50.0, trial=0)
    assert pk.question == "What is the pass key?" and pk.answer_prefix == "The pass key is"


def test_custom_task(tmp_path):
    t = make_task("custom", needle="The secret ingredient is saffron.", question="What is the secret ingredient?",
                  answers=["saffron"])
    inst = t.instance(seed=0, length=1000, depth=10.0, trial=0)
    assert inst.needles[0].text == "The secret ingredient is saffron." and inst.expected == ("saffron",)
    assert inst.metric == "part" and t.id == "custom"
    j = tmp_path / "task.json"
    j.write_text(json.dumps({"needle": "Bob lives in Oslo.", "question": "Where does Bob live?",
                             "answers": ["Oslo"], "answer_budget": 16, "metric": "all"}))
    tj = make_task("custom", custom_file=j)
    assert tj.answer_budget == 16 and tj.metric == "all" and tj.custom_answers == ("Oslo",)
    y = tmp_path / "task.yaml"
    y.write_text("needle: Ann keeps a red kite.\nquestion: What does Ann keep?\nanswers: red kite\n")
    ty = make_task("custom", custom_file=y, question="What colour is Ann's kite?")
    assert ty.custom_question == "What colour is Ann's kite?" and ty.custom_answers == ("red kite",)
    assert load_custom_task_file(y)["needle"] == "Ann keeps a red kite."


@pytest.mark.parametrize("kwargs, msg", [
    ({"spec": "nosuch"}, "unknown task"),
    ({"spec": "single:color"}, "unknown value type"),
    ({"spec": "passkey:word"}, "takes no value type"),
    ({"spec": "custom", "question": "q?", "answers": ["a"]}, "non-empty needle"),
    ({"spec": "custom", "needle": "n.", "answers": ["a"]}, "non-empty question"),
    ({"spec": "custom", "needle": "n.", "question": "q?"}, "expected answers"),
    ({"spec": "custom", "needle": "n.", "question": "q?", "answers": ["  "]}, "at least one"),
    ({"spec": "single", "answer_budget": 0}, "at least 1"),
    ({"spec": "single", "metric": "exact"}, "unknown metric"),
    ({"spec": "multikey", "num_distractors": -1}, "num_distractors"),
])
def test_task_errors(kwargs, msg):
    spec = kwargs.pop("spec")
    with pytest.raises(ValueError, match=msg) as ei:
        make_task(spec, **kwargs)
    assert "\n" not in str(ei.value)


def test_custom_file_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        make_task("custom", custom_file=tmp_path / "nope.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot parse"):
        make_task("custom", custom_file=bad)
    extra = tmp_path / "extra.yaml"
    extra.write_text("needle: a.\nquestion: b?\nanswers: [c]\nhint: d\n")
    with pytest.raises(ValueError, match="unknown key"):
        make_task("custom", custom_file=extra)
    missing = tmp_path / "missing.yaml"
    missing.write_text("needle: a.\n")
    with pytest.raises(ValueError, match="missing key"):
        make_task("custom", custom_file=missing)


def test_custom_task_prompt(tok, austen):
    t = make_task("custom", needle="The secret ingredient is saffron.", question="What is the secret ingredient?",
                  answers="saffron")
    for d in (0.0, 50.0, 100.0):
        cell = PromptBuilder(tok, austen, t).build(1200, d)
        _check_cell(cell, 1200)
        assert cell.expected == ["saffron"] and cell.answer_budget == 64
