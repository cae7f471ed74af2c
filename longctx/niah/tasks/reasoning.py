"""Multi-needle reasoning (NeedleBench-style) and the ancestral trace challenge.

``reasoning`` (``hops`` = N chain needles, 2-5, default 3): a chain of invented people linked by
relations, the last one's birthplace, and the birthplaces of the other people of the chain (N - 1
distractor needles, so the one birthplace sentence cannot be matched without following the chain)::

    Dessaly Coldmere's mentor is Fennick Oakhurst.      (needle 1, at the cell's depth)
    Fennick Oakhurst's neighbour is Lorwen Kettleby.    (needle 2)
    Lorwen Kettleby was born in the town of Quellmar.   (needle 3)
    Dessaly Coldmere was born in the town of Brackwold. (distractor)
    Fennick Oakhurst was born in the town of Ostermere. (distractor)
    Q: In which town was the neighbour of the mentor of Dessaly Coldmere born?  -> Quellmar

(Version 1 of the task, before 2026-12-01, had no distractors: a model could answer from the only
birthplace sentence without chaining; results files record ``version`` 2 in the task settings.)

``trace`` (``hops`` = N kinship statements, 1-20, default 4): "P1 is the father of P0.",
"P2 is the mother of P1.", ...; the question asks for P0's ancestor N generations up
(P_N).

Names, towns and relations come from the cell seed; needle 1 (the one naming the person the
question starts from) goes to the cell's depth, the others to layout-seeded depths (recorded
per needle), so the statements appear in the text in a seeded order, not in chain order.
Answers are invented names that occur nowhere else in the prompt.
"""

from __future__ import annotations

import random

from longctx.niah.tasks.base import NeedleSpec, TaskInstance, fresh, rand_depth
from longctx.niah.tasks.names import person, town

__all__ = ["DEFAULT_HOPS", "HOP_RANGE", "default_instruction", "instance"]

DEFAULT_HOPS = {"reasoning": 3, "trace": 4}
HOP_RANGE = {"reasoning": (2, 5), "trace": (1, 20)}

_REL = {
    "en": ("mentor", "neighbour", "landlord", "business partner", "childhood friend"),
    "zh": ("老师", "邻居", "房东", "合伙人", "发小"),
}
_PARENT = {"en": ("father", "mother"), "zh": ("父亲", "母亲")}

_EN = {
    "rel": "{a}'s {rel} is {b}.",
    "born": "{a} was born in the town of {town}.",
    "r_q": "In which town was {chain} born?",
    "r_p": "{Chain} was born in the town of",
    "r_instr": ("The long text below hides a few short statements about invented people and places. "
                "Combine them to answer the question that follows the text."),
    "parent": "{p} is the {rel} of {c}.",
    "t_q": "Following the parent statements in the text, who is the ancestor of {p} exactly {n} "
           "generation{s} up?",
    "t_p": "The ancestor of {p} {n} generation{s} up is",
    "t_instr": ("The long text below hides statements about the parents of invented people. Use them "
                "to trace a family line for the question that follows the text."),
}
_ZH = {
    "rel": "{a}的{rel}是{b}。",
    "born": "{a}出生在{town}。",
    "r_q": "{chain}出生在哪个镇？",
    "r_p": "{chain}出生在",
    "r_instr": "下面的长文中藏着几条关于虚构人物和地点的简短陈述。请把它们联系起来，回答文后的问题。",
    "parent": "{p}是{c}的{rel}。",
    "t_q": "根据文中关于父母的陈述，{p}往上第{n}代的祖先是谁？",
    "t_p": "{p}往上第{n}代的祖先是",
    "t_instr": "下面的长文中藏着一些关于虚构人物父母的陈述。请用它们追溯家族世系，回答文后的问题。",
}


def default_instruction(name: str, lang: str) -> str:
    """The instruction of ``reasoning`` / ``trace`` in ``lang``."""
    return (_ZH if lang == "zh" else _EN)["r_instr" if name == "reasoning" else "t_instr"]


def instance(task, cs: int, ls: int) -> TaskInstance:
    """The needles, question and answer of one cell."""
    crng, lrng = random.Random(cs), random.Random(ls)
    lang, n = task.lang, task.hops
    tp = _ZH if lang == "zh" else _EN
    taken: set[str] = set()
    people = [fresh(crng, lambda r: person(r, lang), taken) for _ in range(n + (1 if task.name == "trace" else 0))]
    needles: list[NeedleSpec] = []
    if task.name == "reasoning":
        rels = [crng.choice(_REL[lang]) for _ in range(n - 1)]
        place = fresh(crng, lambda r: town(r, lang), taken)
        for k, rel in enumerate(rels):
            needles.append(NeedleSpec(tp["rel"].format(a=people[k], rel=rel, b=people[k + 1]), people[k],
                                      people[k + 1]))
        needles.append(NeedleSpec(tp["born"].format(a=people[n - 1], town=place), people[n - 1], place))
        decoys = [fresh(crng, lambda r: town(r, lang), taken) for _ in range(n - 1)]
        if lang == "zh":
            chain = "的".join([people[0], *rels])
            q, p = tp["r_q"].format(chain=chain), tp["r_p"].format(chain=chain)
        else:
            chain = " of ".join(f"the {r}" for r in reversed(rels)) + f" of {people[0]}"
            q, p = tp["r_q"].format(chain=chain), tp["r_p"].format(Chain=chain[0].upper() + chain[1:])
        answer = place
    else:
        for k in range(n):
            rel = crng.choice(_PARENT[lang])
            needles.append(NeedleSpec(tp["parent"].format(p=people[k + 1], rel=rel, c=people[k]), people[k],
                                      people[k + 1]))
        s = "" if n == 1 else "s"
        q, p = tp["t_q"].format(p=people[0], n=n, s=s), tp["t_p"].format(p=people[0], n=n, s=s)
        answer = people[n]
    placed = [needles[0]] + [NeedleSpec(x.text, x.key, x.value, rand_depth(lrng)) for x in needles[1:]]
    if task.name == "reasoning":  # the other chain members' birthplaces, after the chain's layout draws
        placed += [NeedleSpec(tp["born"].format(a=people[k], town=t), people[k], t, rand_depth(lrng), "distractor")
                   for k, t in enumerate(decoys)]
    return TaskInstance(task.id, tuple(placed), q, (answer,), task.metric, task.answer_budget, task.instruction,
                        p, cs, ls)
