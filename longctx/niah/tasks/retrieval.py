"""Retrieval tasks: passkey and RULER's NIAH family (single, multikey, multivalue, multiquery).

=============  ==============================================================  ======  ======
task           needles                                                         metric  budget
=============  ==============================================================  ======  ======
``passkey``    "The pass key is N. Remember it. N is the pass key." (5 digits)  part    32
``single``     "One of the special magic {numbers|words|uuids} for K is: V."    part    128
``multikey``   the real needle + ``num_distractors`` (3) needles, other keys    part    128
``multivalue`` ``num_values`` (4) needles for one key; all values expected      all     128
``multiquery`` ``num_queries`` (4) needles, different keys, all asked at once   all     128
=============  ==============================================================  ======  ======

The first needle is the target needle at the cell's depth; multikey distractors, extra
multivalue values and extra multiquery keys go to seeded random depths (layout seed).
``near_miss`` (``--distractors K``, single and multi* tasks) adds K needles whose key
shares one half with the asked key (``amber-lantern`` -> ``amber-kettle``) and whose value
is another one, at layout-seeded depths; their keys and values come from a seed derived
from the cell seed (they depend on the asked key), so with K = 0 nothing changes.
Chinese (``lang="zh"``) uses the same keys and values in Chinese sentences.
"""

from __future__ import annotations

import random

from longctx.niah.tasks.base import (NeedleSpec, TaskInstance, derive_seed, fresh, join_keys, near_miss_key,
                                     rand_depth, random_value, random_word)

__all__ = ["NIAH_NAMES", "default_instruction", "instance"]

NIAH_NAMES = ("single", "multikey", "multivalue", "multiquery")
_PLURAL = {"number": "numbers", "word": "words", "uuid": "uuids"}
_ZH_NOUN = {"number": "数字", "word": "词", "uuid": "UUID"}

_EN = {
    "needle": "One of the special magic {plural} for {key} is: {value}.",
    "single_q": "What is the special magic {t} for {key} mentioned in the provided text?",
    "single_p": "The special magic {t} for {key} mentioned in the provided text is",
    "multi_q": "What are all the special magic {plural} for {key} mentioned in the provided text?",
    "multi_p": "The special magic {plural} for {key} mentioned in the provided text are",
    "instr": ("Hidden somewhere in the long text below are some special magic {plural}. Memorize them: "
              "after the text you will be asked about them."),
    "pk_needle": "The pass key is {v}. Remember it. {v} is the pass key.",
    "pk_q": "What is the pass key?",
    "pk_p": "The pass key is",
    "pk_instr": ("There is an important piece of information hidden inside a lot of irrelevant text. Find it "
                 "and memorize it: you will be asked about it afterwards."),
}
_ZH = {
    "needle": "{key}的特殊魔法{t}之一是：{value}。",
    "single_q": "文中提到的{key}的特殊魔法{t}是什么？",
    "single_p": "文中提到的{key}的特殊魔法{t}是",
    "multi_q": "文中提到的{key}的所有特殊魔法{t}分别是什么？",
    "multi_p": "文中提到的{key}的所有特殊魔法{t}分别是",
    "instr": "下面的长文中藏着一些特殊魔法{t}。请记住它们：读完全文后会向你提问。",
    "pk_needle": "通行密码是{v}。记住它。{v}就是通行密码。",
    "pk_q": "通行密码是多少？",
    "pk_p": "通行密码是",
    "pk_instr": "大量无关的文字中藏着一条重要信息。找到并记住它：之后会向你提问。",
}


def _tpl(lang: str) -> dict[str, str]:
    return _ZH if lang == "zh" else _EN


def default_instruction(name: str, value_type: str, lang: str) -> str:
    """The task's instruction (before the haystack)."""
    tp = _tpl(lang)
    if name == "passkey":
        return tp["pk_instr"]
    return tp["instr"].format(plural=_PLURAL[value_type], t=_ZH_NOUN[value_type])


def instance(task, cs: int, ls: int) -> TaskInstance:
    """The needles, question and answers of one cell (``cs`` / ``ls``: cell / layout seed)."""
    crng, lrng = random.Random(cs), random.Random(ls)
    t, lang = task.value_type, task.lang
    tp = _tpl(lang)
    noun = _PLURAL.get(t, "values") if lang == "en" else _ZH_NOUN.get(t, "值")
    budget, metric, instr = task.answer_budget, task.metric, task.instruction

    def text(key: str, value: str) -> str:
        return tp["needle"].format(plural=noun, t=noun, key=key, value=value)

    def one(t_: str = t) -> dict[str, str]:
        return {"t": t_ if lang == "en" else noun, "plural": noun}

    def done(needles, q, p, expected) -> TaskInstance:
        needles = (*needles, *_near_misses(task, cs, lrng, needles[0].key, taken, text))
        return TaskInstance(task.id, needles, q, expected, metric, budget, instr, p, cs, ls)

    if task.name == "passkey":
        v = str(crng.randint(10_000, 99_999))
        needles = (NeedleSpec(tp["pk_needle"].format(v=v), "pass key", v),)
        return TaskInstance(task.id, needles, tp["pk_q"], (v,), metric, budget, instr, tp["pk_p"], cs, ls)

    taken: set[str] = set()
    if task.name == "single":
        key = fresh(crng, random_word, taken)
        val = fresh(crng, lambda r: random_value(r, t), taken)
        return done((NeedleSpec(text(key, val), key, val),), tp["single_q"].format(key=key, **one()),
                    tp["single_p"].format(key=key, **one()), (val,))

    if task.name == "multikey":
        dis = []
        for _ in range(task.num_distractors):
            k = fresh(lrng, random_word, taken)
            v = fresh(lrng, lambda r: random_value(r, t), taken)
            dis.append(NeedleSpec(text(k, v), k, v, rand_depth(lrng), "distractor"))
        key = fresh(crng, random_word, taken)
        val = fresh(crng, lambda r: random_value(r, t), taken)
        return done((NeedleSpec(text(key, val), key, val), *dis), tp["single_q"].format(key=key, **one()),
                    tp["single_p"].format(key=key, **one()), (val,))

    if task.name == "multivalue":
        key = fresh(lrng, random_word, taken)
        extra = []
        for _ in range(task.num_values - 1):
            v = fresh(lrng, lambda r: random_value(r, t), taken)
            extra.append(NeedleSpec(text(key, v), key, v, rand_depth(lrng), "target"))
        val = fresh(crng, lambda r: random_value(r, t), taken)
        needles = (NeedleSpec(text(key, val), key, val), *extra)
        return done(needles, tp["multi_q"].format(key=key, **one()), tp["multi_p"].format(key=key, **one()),
                    tuple(n.value for n in needles))

    if task.name == "multiquery":
        extra = []
        for _ in range(task.num_queries - 1):
            k = fresh(lrng, random_word, taken)
            v = fresh(lrng, lambda r: random_value(r, t), taken)
            extra.append(NeedleSpec(text(k, v), k, v, rand_depth(lrng), "target"))
        key = fresh(crng, random_word, taken)
        val = fresh(crng, lambda r: random_value(r, t), taken)
        needles = (NeedleSpec(text(key, val), key, val), *extra)
        keys = join_keys([n.key for n in needles], lang)
        return done(needles, tp["multi_q"].format(key=keys, **one()), tp["multi_p"].format(key=keys, **one()),
                    tuple(n.value for n in needles))

    raise ValueError(f"unknown retrieval task {task.name!r}")  # pragma: no cover


def _near_misses(task, cs: int, lrng: random.Random, key: str, taken: set[str], text) -> list[NeedleSpec]:
    """``task.near_miss`` needles: keys similar to ``key``, other values, layout depths."""
    if not task.near_miss:
        return []
    nrng = random.Random(derive_seed(cs, "near-miss"))
    out = []
    for _ in range(task.near_miss):
        k = near_miss_key(nrng, key, taken)
        v = fresh(nrng, lambda r: random_value(r, task.value_type), taken)
        out.append(NeedleSpec(text(k, v), k, v, rand_depth(lrng), "near-miss"))
    return out
