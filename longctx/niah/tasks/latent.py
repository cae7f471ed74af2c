"""``latent`` (NoLiMa-style, one latent hop) and ``absent`` (the asked needle is not there).

``latent``: one of :data:`LATENT_PAIRS` (our own, chosen by the layout seed): a needle that
names a landmark and a question that names only the city or country it is in, so the two
share no content word and answering takes one hop of world knowledge::

    Corlith Fenwright lives right next to the Eiffel Tower.   ->  Which character lives in Paris?

The answer is the invented character's name (an English first name or a Chinese full name;
cell seed).  ``near_miss`` (``--distractors
K``) adds K lexical distractors: other characters in sentences that DO contain the
question's keyword but do not answer it ("... has a postcard of Paris on the fridge, sent by
a cousin."), at layout-seeded depths.

``absent``: the single-needle question about a key that is not in the text; the needle at
the cell's depth is a decoy with a similar key (role ``distractor``), ``near_miss`` adds
more.  The correct answer says the information is not there: the expected answers are the
accepted phrasings of :data:`longctx.niah.scoring.ABSENT_PHRASES` for the task's language,
metric ``absent``; a score of 0 is a false positive (the model answered from the text).
"""

from __future__ import annotations

import random

from longctx.niah.scoring import ABSENT_PHRASES
from longctx.niah.tasks.base import (NeedleSpec, TaskInstance, derive_seed, fresh, near_miss_key, rand_depth,
                                     random_value, random_word)
from longctx.niah.tasks.names import person

__all__ = ["LATENT_PAIRS", "default_instruction", "instance"]

# (English needle, question, keyword; Chinese needle, question, keyword); {name} = the answer.
LATENT_PAIRS = (
    ("{name} lives right next to the Eiffel Tower.", "Which character lives in Paris?", "Paris",
     "{name}就住在埃菲尔铁塔旁边。", "哪个角色住在巴黎？", "巴黎"),
    ("{name} spent the whole summer photographing the pyramids of Giza.", "Which character has been to Egypt?",
     "Egypt", "{name}整个夏天都在拍摄吉萨金字塔。", "哪个角色去过埃及？", "埃及"),
    ("{name} proposed to a long-time partner on the Golden Gate Bridge.",
     "Which character has been to San Francisco?", "San Francisco",
     "{name}在金门大桥上向相恋多年的伴侣求婚。", "哪个角色去过旧金山？", "旧金山"),
    ("{name} finally saw the Kremlin with their own eyes last winter.", "Which character has been to Moscow?",
     "Moscow", "去年冬天，{name}终于亲眼看到了克里姆林宫。", "哪个角色去过莫斯科？", "莫斯科"),
    ("{name} watched the sunrise over Angkor Wat.", "Which character has been to Cambodia?", "Cambodia",
     "{name}看过吴哥窟的日出。", "哪个角色去过柬埔寨？", "柬埔寨"),
    ("{name} has a studio with a view of the Sydney Opera House.", "Which character has been to Australia?",
     "Australia", "{name}的画室正对着悉尼歌剧院。", "哪个角色去过澳大利亚？", "澳大利亚"),
    ("{name} has climbed Kilimanjaro twice.", "Which character has been to Tanzania?", "Tanzania",
     "{name}登上过乞力马扎罗山两次。", "哪个角色去过坦桑尼亚？", "坦桑尼亚"),
    ("{name} took a gondola under the Rialto Bridge.", "Which character has been to Venice?", "Venice",
     "{name}乘贡多拉从里亚托桥下穿过。", "哪个角色去过威尼斯？", "威尼斯"),
)

_DISTRACT = {
    "en": ("{name} has a postcard of {kw} on the fridge, sent by a cousin.",
           "{name} once read a magazine article about {kw} on a train.",
           "{name} keeps meaning to learn more about {kw} some day."),
    "zh": ("{name}的冰箱上贴着一张{kw}的明信片，是表亲寄来的。",
           "{name}曾在火车上读过一篇关于{kw}的杂志文章。",
           "{name}一直想找时间多了解一些{kw}。"),
}
_INSTR = {
    "en": {"latent": ("The long text below mentions a few characters. Read it carefully: after the text you "
                      "will be asked about one of them."),
           "absent": ("Hidden somewhere in the long text below are some special magic numbers. After the text "
                      "you will be asked about one of them. If the text does not contain it, say that it is "
                      "not in the text.")},
    "zh": {"latent": "下面的长文中提到了几个角色。请仔细阅读：读完全文后会问你其中一个。",
           "absent": "下面的长文中藏着一些特殊魔法数字。读完全文后会问你其中一个。如果文中没有，请回答文中没有提到。"},
}
_ABSENT = {
    "en": ("One of the special magic numbers for {key} is: {value}.",
           "What is the special magic number for {key} mentioned in the provided text?",
           "The special magic number for {key} mentioned in the provided text is"),
    "zh": ("{key}的特殊魔法数字之一是：{value}。", "文中提到的{key}的特殊魔法数字是什么？", "文中提到的{key}的特殊魔法数字是"),
}
_LATENT_PREFIX = {"en": "The character is", "zh": "这个角色是"}


def _character(rng: random.Random, lang: str) -> str:
    """A character's name: an invented first name (English) or full name (Chinese)."""
    name = person(rng, lang)
    return name if lang == "zh" else name.split()[0]


def default_instruction(name: str, lang: str) -> str:
    """The instruction of ``latent`` / ``absent`` in ``lang``."""
    return _INSTR["zh" if lang == "zh" else "en"][name]


def instance(task, cs: int, ls: int) -> TaskInstance:
    """The needles, question and expected answers of one cell."""
    crng, lrng = random.Random(cs), random.Random(ls)
    zh = task.lang == "zh"
    taken: set[str] = set()
    if task.name == "latent":
        pair = LATENT_PAIRS[lrng.randrange(len(LATENT_PAIRS))]
        needle, q, kw = pair[3:6] if zh else pair[0:3]
        name = fresh(crng, lambda r: _character(r, task.lang), taken)
        needles = [NeedleSpec(needle.format(name=name), kw, name)]
        nrng = random.Random(derive_seed(cs, "near-miss"))
        templates = _DISTRACT[task.lang]
        for k in range(task.near_miss):
            other = fresh(nrng, lambda r: _character(r, task.lang), taken)
            text = templates[k % len(templates)].format(name=other, kw=kw)
            needles.append(NeedleSpec(text, kw, other, rand_depth(lrng), "near-miss"))
        return TaskInstance(task.id, tuple(needles), q, (name,), task.metric, task.answer_budget,
                            task.instruction, _LATENT_PREFIX[task.lang], cs, ls)
    if task.name == "absent":
        nt, qt, pt = _ABSENT[task.lang]
        key = fresh(crng, random_word, taken)
        decoy = near_miss_key(crng, key, taken)
        val = fresh(crng, lambda r: random_value(r, "number"), taken)
        needles = [NeedleSpec(nt.format(key=decoy, value=val), decoy, val, None, "distractor")]
        nrng = random.Random(derive_seed(cs, "near-miss"))
        for _ in range(task.near_miss):
            k = near_miss_key(nrng, key, taken)
            v = fresh(nrng, lambda r: random_value(r, "number"), taken)
            needles.append(NeedleSpec(nt.format(key=k, value=v), k, v, rand_depth(lrng), "near-miss"))
        return TaskInstance(task.id, tuple(needles), qt.format(key=key), ABSENT_PHRASES[task.lang], "absent",
                            task.answer_budget, task.instruction, pt.format(key=key), cs, ls)
    raise ValueError(f"unknown task {task.name!r}")  # pragma: no cover
