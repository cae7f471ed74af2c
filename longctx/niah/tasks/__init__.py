"""NIAH task definitions (no torch): one module per task family.

A :class:`Task` turns one grid cell -- ``(seed, length, depth, trial)`` -- into a
:class:`TaskInstance`: the needles (sentence text, key, value, where to put it), the
question, the expected answers, the scoring metric, the answer budget (max new tokens),
the default instruction and the answer prefix for base models.

==============  =====================================  ==================================  ======  ======
task            needles (module)                       counterpart                         metric  budget
==============  =====================================  ==================================  ======  ======
``passkey``     pass key sentence (:mod:`.retrieval`)  passkey retrieval                   part    32
``single``      "... special magic ... for K is: V."   RULER niah_single                   part    128
``multikey``    target + 3 other keys                  RULER niah_multikey                 part    128
``multivalue``  4 values for one key                   RULER niah_multivalue               all     128
``multiquery``  4 keys asked at once                   RULER niah_multiquery               all     128
``custom``      the user's needle (:mod:`.custom`)     --                                  part    64
``reasoning``   chained relations + birthplaces        NeedleBench multi-needle reasoning  part    64
``trace``       chained parent statements              NeedleBench ancestral trace         part    64
``vt``          chained VAR assignments (aggregation)  RULER vt                            all     64
``cwe``         a numbered word list                   RULER cwe                           all     128
``fwe``         a coded text                           RULER fwe                           all     64
``latent``      landmark needle (:mod:`.latent`)       NoLiMa                              part    64
``absent``      decoy needle, asked key not there      OneRuler "none" cells               absent  64
==============  =====================================  ==================================  ======  ======

``spec`` is ``NAME`` or ``NAME:VALUE_TYPE`` (value types ``number``, ``word``, ``uuid`` for
single/multi*).  ``lang`` (``en`` or ``zh``) picks English or Chinese needles, questions and
instructions.  ``hops`` sets the chain length of reasoning/trace/vt; ``near_miss``
(``--distractors K``) adds K near-miss needles to single, multi*, latent and absent.

Insertion rule: each :class:`NeedleSpec` carries ``depth``: ``None`` = at the cell's
target depth, a number = at that depth (percent).  The first needle is always placed at
the cell's depth; the others go to seeded random depths (uniform over [0, 100]).

Seeds (stable, not Python's ``hash()``): the target needle comes from the *cell seed*
``derive_seed(seed, task_id, length, depth, trial)``; the other needles' depths (and, for
the RULER tasks, their content) from the *layout seed* ``derive_seed(seed, task_id, length,
trial, "layout")`` -- the same for every depth of one length and trial.  The same seed
always gives the same instance.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from longctx.errors import TaskError
from longctx.niah.tasks import aggregation, custom, latent, reasoning, retrieval
from longctx.niah.tasks.base import (ADJECTIVES, LANGS, NOUNS, NeedleSpec, TaskInstance, derive_seed)
from longctx.niah.tasks.custom import load_custom_task_file

__all__ = [
    "ADJECTIVES", "LANGS", "NOUNS", "TASK_NAMES", "VALUE_TYPES", "NeedleSpec", "Task", "TaskInstance",
    "derive_seed", "load_custom_task_file", "make_task",
]

TASK_NAMES = ("passkey", "single", "multikey", "multivalue", "multiquery", "custom",
              "reasoning", "trace", "vt", "cwe", "fwe", "latent", "absent")
VALUE_TYPES = ("number", "word", "uuid")
METRIC_NAMES = ("all", "part", "absent")

_FAMILY = {"passkey": retrieval, "single": retrieval, "multikey": retrieval, "multivalue": retrieval,
           "multiquery": retrieval, "custom": custom, "reasoning": reasoning, "trace": reasoning,
           "vt": aggregation, "cwe": aggregation, "fwe": aggregation, "latent": latent, "absent": latent}
_VALUE_TASKS = ("single", "multikey", "multivalue", "multiquery")
_NEAR_MISS_TASKS = ("single", "multikey", "multivalue", "multiquery", "latent", "absent")
_HOP_RANGE = {**reasoning.HOP_RANGE, "vt": (1, 20)}
_DEFAULT_HOPS = {**reasoning.DEFAULT_HOPS, **aggregation.DEFAULT_HOPS}
# name -> (metric, answer budget) for the tasks after custom
_DEFAULTS = {"reasoning": ("part", 64), "trace": ("part", 64), "vt": ("all", 64), "cwe": ("all", 128),
             "fwe": ("all", 64), "latent": ("part", 64), "absent": ("absent", 64)}
# fields added after results files existed: left out of settings() at their defaults
_NEW_FIELDS = {"lang": "en", "hops": 0, "near_miss": 0, "version": 1}
# task -> generator version, bumped when a task's prompts change (recorded in the settings, so a results
# file of the old prompts is not resumed with new ones): reasoning 2 = distractor birthplaces (2026-12-01)
_VERSIONS = {"reasoning": 2}


def _depth_key(depth: float) -> float:
    return round(float(depth), 6)


@dataclass(frozen=True)
class Task:
    """A task definition; :meth:`instance` makes the needles for one cell.

    Build with :func:`make_task`.  ``id`` (e.g. ``"single:uuid"``, ``"trace:h4"``) is what
    results record.
    """

    name: str
    value_type: str = "number"
    num_distractors: int = 3
    num_values: int = 4
    num_queries: int = 4
    metric: str = "part"
    answer_budget: int = 128
    instruction: str = ""
    custom_needle: str = ""
    custom_question: str = ""
    custom_answers: tuple[str, ...] = ()
    custom_answer_prefix: str = "Answer:"
    lang: str = "en"
    hops: int = 0
    near_miss: int = 0
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        if self.name in _VALUE_TASKS:
            return f"{self.name}:{self.value_type}"
        if self.name in _HOP_RANGE:
            return f"{self.name}:h{self.hops}"
        return self.name

    @property
    def n_needles(self) -> int:
        """Needles (targets, distractors and near misses) in every instance."""
        base = {"multikey": 1 + self.num_distractors, "multivalue": self.num_values,
                "multiquery": self.num_queries, "reasoning": 2 * self.hops - 1, "trace": self.hops,
                "vt": self.hops + 1}.get(self.name, 1)
        return base + self.near_miss

    def settings(self) -> dict[str, Any]:
        """The task's fields for a run configuration (hashed into the results file): every
        field but ``extra``; ``lang``, ``hops``, ``near_miss`` and ``version`` only when not at
        their defaults, so results files written before they existed still resume."""
        d = {k: v for k, v in asdict(self).items() if k != "extra"}
        for k, default in _NEW_FIELDS.items():
            if d.get(k) == default:
                d.pop(k)
        d["id"] = self.id
        return d

    def seeds(self, *, seed: int, length: int, depth: float, trial: int) -> tuple[int, int]:
        """``(cell_seed, layout_seed)`` for one cell (see the module doc)."""
        cs = derive_seed(int(seed), self.id, int(length), _depth_key(depth), int(trial))
        ls = derive_seed(int(seed), self.id, int(length), int(trial), "layout")
        if self.lang != "en":  # English seeds stay as they were before Chinese existed
            cs, ls = derive_seed(cs, self.lang), derive_seed(ls, self.lang)
        return cs, ls

    def instance(self, *, seed: int, length: int, depth: float, trial: int) -> TaskInstance:
        """The needles, question and answers of the cell ``(seed, length, depth, trial)``."""
        cs, ls = self.seeds(seed=seed, length=length, depth=depth, trial=trial)
        return _FAMILY[self.name].instance(self, cs, ls)


def _check_range(label: str, n: int, lo: int, hi: int) -> int:
    if int(n) < lo or int(n) > hi:
        raise TaskError(f"{label} must be between {lo} and {hi} (got {n})")
    return int(n)


def make_task(
    spec: str = "single",
    *,
    value_type: str | None = None,
    num_distractors: int = 3,
    num_values: int = 4,
    num_queries: int = 4,
    answer_budget: int | None = None,
    metric: str | None = None,
    instruction: str | None = None,
    needle: str | None = None,
    question: str | None = None,
    answers: Sequence[str] | str | None = None,
    answer_prefix: str | None = None,
    custom_file: str | os.PathLike | None = None,
    lang: str = "en",
    hops: int | None = None,
    near_miss: int = 0,
) -> Task:
    """A :class:`Task` from ``spec`` = ``NAME`` or ``NAME:VALUE_TYPE`` (``"single:uuid"``).

    ``custom`` takes ``needle``, ``question`` and ``answers`` (or ``custom_file``, JSON/YAML;
    explicit arguments override the file).  ``answer_budget``, ``metric`` and
    ``instruction`` override the task defaults.  ``lang``: ``en`` or ``zh``; ``hops``: chain
    length of reasoning (2-5), trace (1-20) and vt (1-20); ``near_miss``: near-miss needles
    (0-20) for single, multi*, latent and absent.  Raises ``ValueError`` (one line;
    :class:`~longctx.errors.TaskError` for the newer options).
    """
    s = str(spec).strip().lower()
    name, _, vt = s.partition(":")
    name = {"niah": "single", "niah_single": "single", "niah_multikey": "multikey",
            "niah_multivalue": "multivalue", "niah_multiquery": "multiquery"}.get(name, name)
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {spec!r}; choose one of {', '.join(TASK_NAMES)}")
    if lang not in LANGS:
        raise TaskError(f"unknown language {lang!r}; choose one of {', '.join(LANGS)}")
    if vt and value_type and vt != value_type:
        raise ValueError(f"task {spec!r} conflicts with value type {value_type!r}")
    vt = vt or value_type or "number"
    if name not in _VALUE_TASKS:
        if ":" in s:
            raise ValueError(f"task {name} takes no value type (got {spec!r})")
        vt = "number"
    elif vt not in VALUE_TYPES:
        raise ValueError(f"unknown value type {vt!r}; choose one of {', '.join(VALUE_TYPES)}")
    for label, n in (("num_distractors", num_distractors), ("num_values", num_values),
                     ("num_queries", num_queries)):
        if int(n) < (0 if label == "num_distractors" else 1) or int(n) > 100:
            raise ValueError(f"{label} must be between {0 if label == 'num_distractors' else 1} and 100 (got {n})")
    if metric is not None and metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; choose 'all', 'part' or 'absent'")
    if hops is not None and name not in _HOP_RANGE:
        raise TaskError(f"--hops applies to {', '.join(_HOP_RANGE)} (not {name})")
    n_hops = _check_range("hops", hops, *_HOP_RANGE[name]) if hops is not None else _DEFAULT_HOPS.get(name, 0)
    if near_miss and name not in _NEAR_MISS_TASKS:
        raise TaskError(f"--distractors applies to {', '.join(_NEAR_MISS_TASKS)} (not {name})")
    near_miss = _check_range("distractors", near_miss, 0, 20)

    kw: dict[str, Any] = {}
    if name == "custom":
        data: dict[str, Any] = load_custom_task_file(custom_file) if custom_file is not None else {}
        needle = needle if needle is not None else data.get("needle")
        question = question if question is not None else data.get("question")
        answers = answers if answers is not None else data.get("answers")
        if answer_budget is None and data.get("answer_budget") is not None:
            answer_budget = data["answer_budget"]
        if metric is None and data.get("metric") is not None:
            metric = str(data["metric"])
            if metric not in METRIC_NAMES:
                raise ValueError(f"unknown metric {metric!r} in custom task; choose 'all', 'part' or 'absent'")
        if answer_prefix is None and data.get("answer_prefix") is not None:
            answer_prefix = str(data["answer_prefix"])
        if instruction is None and data.get("instruction") is not None:
            instruction = str(data["instruction"])
        if not needle or not str(needle).strip():
            raise ValueError("custom task needs a non-empty needle (--needle or the file's 'needle')")
        if not question or not str(question).strip():
            raise ValueError("custom task needs a non-empty question (--question or the file's 'question')")
        if answers is None:
            raise ValueError("custom task needs expected answers (--answers or the file's 'answers')")
        kw.update(custom_needle=str(needle).strip(), custom_question=str(question).strip(),
                  custom_answers=custom.parse_answers(answers), custom_answer_prefix=answer_prefix or "Answer:")
        default_budget, default_metric, default_instr = 64, "part", custom.default_instruction(lang)
    elif name == "passkey":
        default_budget, default_metric = 32, "part"
        default_instr = retrieval.default_instruction(name, vt, lang)
    elif name in retrieval.NIAH_NAMES:
        default_budget = 128
        default_metric = "all" if name in ("multivalue", "multiquery") else "part"
        default_instr = retrieval.default_instruction(name, vt, lang)
    else:
        default_metric, default_budget = _DEFAULTS[name]
        default_instr = _FAMILY[name].default_instruction(name, lang)
    budget = int(answer_budget) if answer_budget is not None else default_budget
    if budget < 1:
        raise ValueError(f"answer budget must be at least 1 token (got {budget})")
    return Task(
        name=name,
        value_type=vt,
        num_distractors=int(num_distractors),
        num_values=int(num_values),
        num_queries=int(num_queries),
        metric=metric or default_metric,
        answer_budget=budget,
        instruction=instruction if instruction is not None else default_instr,
        lang=lang,
        hops=n_hops,
        near_miss=near_miss,
        version=_VERSIONS.get(name, 1),
        **kw,
    )
