"""RULER's tracking and aggregation tasks: variable tracking, common and frequent words.

``vt`` (``hops`` re-assignments, 1-20, default 4): ``VAR QJXKT = 48213.`` at the cell's
depth, then ``VAR BNMRD = VAR QJXKT.``, ... at layout-seeded depths; every one of the
``hops + 1`` variables holds the value and all are expected (metric ``all``).  Names are
five consonants (never an English word); the value has five digits.

``cwe`` (common words extraction): one numbered word list at the cell's depth in which
``CWE_COMMON`` (5) words appear ``CWE_COMMON_REPEAT`` (5) times each and ``CWE_RARE`` (15)
others twice; the 5 common words are expected (metric ``all``).  Words are adjective-noun
pairs (``amber-lantern``) in English and modern nouns (``咖啡``) in Chinese.

``fwe`` (frequent words extraction): one "coded text" of coded words (two invented
syllables each, ``zorbquix``) at the cell's depth with fixed counts ``FWE_COUNTS``
(10, 8, 6, 3, 2, 2, 1, 1) in a seeded order; the 3 most frequent are expected.

The words and their order come from the cell seed.  The list or text is one needle, so it is
placed (and verified) as a whole; its words occur nowhere else in the prompt.
"""

from __future__ import annotations

import random

from longctx.niah.tasks.base import NeedleSpec, TaskInstance, fresh, rand_depth, random_word
from longctx.niah.tasks.names import CODED_SYLLABLES, VAR_LETTERS, ZH_WORDS

__all__ = ["CWE_COMMON", "CWE_COMMON_REPEAT", "CWE_RARE", "DEFAULT_HOPS", "FWE_COUNTS", "FWE_TOP",
           "default_instruction", "instance"]

DEFAULT_HOPS = {"vt": 4}
CWE_COMMON, CWE_COMMON_REPEAT, CWE_RARE = 5, 5, 15
FWE_COUNTS = (10, 8, 6, 3, 2, 2, 1, 1)
FWE_TOP = 3

_EN = {
    "vt_instr": ("The long text below hides a chain of variable assignments. Memorize them: after the text "
                 "you will be asked which variables hold a value."),
    "vt_q": "Find all variables that are assigned the value {v} in the text, directly or through other variables.",
    "vt_p": "The variables assigned the value {v} are:",
    "cwe_instr": ("The long text below hides a numbered list of words. Count how often each word appears in "
                  "the list: after the text you will be asked about the most common ones."),
    "cwe_needle": "Numbered word list: {items}.",
    "cwe_q": "What are the {k} most common words in the numbered word list in the text?",
    "cwe_p": "The {k} most common words in the numbered word list are:",
    "fwe_instr": ("The long text below hides a short coded text. Count how often each coded word appears in "
                  "it: after the text you will be asked about the most frequent ones."),
    "fwe_needle": "Coded text: {items}.",
    "fwe_q": "What are the {k} most frequent coded words in the coded text?",
    "fwe_p": "The {k} most frequent coded words are:",
}
_ZH = {
    "vt_instr": "下面的长文中藏着一串变量赋值语句。请记住它们：读完全文后会问你哪些变量持有某个值。",
    "vt_q": "找出文中所有被赋值为{v}的变量（直接赋值或经由其他变量赋值）。",
    "vt_p": "被赋值为{v}的变量有：",
    "cwe_instr": "下面的长文中藏着一份编号词表。请数一数每个词在词表中出现的次数：读完全文后会问你出现最多的词。",
    "cwe_needle": "编号词表：{items}。",
    "cwe_q": "文中那份编号词表里出现次数最多的{k}个词是什么？",
    "cwe_p": "编号词表中出现次数最多的{k}个词是：",
    "fwe_instr": "下面的长文中藏着一段密文。请数一数每个编码词在其中出现的次数：读完全文后会问你出现最多的词。",
    "fwe_needle": "密文：{items}。",
    "fwe_q": "密文中出现次数最多的{k}个编码词是什么？",
    "fwe_p": "出现次数最多的{k}个编码词是：",
}


def default_instruction(name: str, lang: str) -> str:
    """The instruction of ``vt`` / ``cwe`` / ``fwe`` in ``lang``."""
    return (_ZH if lang == "zh" else _EN)[f"{name}_instr"]


def _var(rng: random.Random) -> str:
    return "".join(rng.choice(VAR_LETTERS) for _ in range(5))


def instance(task, cs: int, ls: int) -> TaskInstance:
    """The needles, question and answers of one cell."""
    crng, lrng = random.Random(cs), random.Random(ls)
    tp = _ZH if task.lang == "zh" else _EN
    taken: set[str] = set()
    if task.name == "vt":
        value = str(crng.randint(10_000, 99_999))
        taken.add(value)
        names = [fresh(crng, _var, taken) for _ in range(task.hops + 1)]
        needles = [NeedleSpec(f"VAR {names[0]} = {value}.", names[0], value)]
        for a, b in zip(names, names[1:]):
            needles.append(NeedleSpec(f"VAR {b} = VAR {a}.", b, value, rand_depth(lrng)))
        return TaskInstance(task.id, tuple(needles), tp["vt_q"].format(v=value), tuple(names), task.metric,
                            task.answer_budget, task.instruction, tp["vt_p"].format(v=value), cs, ls)
    if task.name == "cwe":
        make = (lambda r: r.choice(ZH_WORDS)) if task.lang == "zh" else random_word
        words = [fresh(crng, make, taken) for _ in range(CWE_COMMON + CWE_RARE)]
        common = words[:CWE_COMMON]
        seq = common * CWE_COMMON_REPEAT + words[CWE_COMMON:] * 2
        crng.shuffle(seq)
        items = " ".join(f"{i}. {w}" for i, w in enumerate(seq, 1))
        text = tp["cwe_needle"].format(items=items)
        q, p = tp["cwe_q"].format(k=CWE_COMMON), tp["cwe_p"].format(k=CWE_COMMON)
        return TaskInstance(task.id, (NeedleSpec(text, "word list", ", ".join(common)),), q, tuple(common),
                            task.metric, task.answer_budget, task.instruction, p, cs, ls)
    if task.name == "fwe":
        def coded(r: random.Random) -> str:
            a, b = r.sample(CODED_SYLLABLES, 2)
            return a + b

        words = [fresh(crng, coded, taken) for _ in FWE_COUNTS]
        seq = [w for w, c in zip(words, FWE_COUNTS) for _ in range(c)]
        crng.shuffle(seq)
        text = tp["fwe_needle"].format(items=" ".join(seq))
        q, p = tp["fwe_q"].format(k=FWE_TOP), tp["fwe_p"].format(k=FWE_TOP)
        top = tuple(words[:FWE_TOP])
        return TaskInstance(task.id, (NeedleSpec(text, "coded text", ", ".join(top)),), q, top, task.metric,
                            task.answer_budget, task.instruction, p, cs, ls)
    raise ValueError(f"unknown aggregation task {task.name!r}")  # pragma: no cover
