"""NIAH task definitions: RULER's NIAH family, passkey and custom (no torch).

A :class:`Task` turns one grid cell -- ``(seed, length, depth, trial)`` -- into a
:class:`TaskInstance`: the needles (sentence text, key, value, where to put it), the
question, the expected answers, the scoring metric, the answer budget (max new tokens),
the default instruction and the answer prefix for base models.

Tasks (``make_task(spec)``; ``spec`` is ``NAME`` or ``NAME:VALUE_TYPE``):

=============  ==============================================================  ======  ======
task           needles                                                         metric  budget
=============  ==============================================================  ======  ======
``passkey``    "The pass key is N. Remember it. N is the pass key." (5 digits)  part    32
``single``     "One of the special magic {numbers|words|uuids} for K is: V."    part    128
``multikey``   the real needle + ``num_distractors`` (3) needles, other keys    part    128
``multivalue`` ``num_values`` (4) needles for one key; all values expected      all     128
``multiquery`` ``num_queries`` (4) needles, different keys, all asked at once   all     128
``custom``     needle / question / answers given (flags or a JSON/YAML file)   part    64
=============  ==============================================================  ======  ======

Value types: ``number`` (7 digits, the default), ``word`` (adjective-noun, e.g.
``"amber-lantern"``) and ``uuid`` (uuid4 format).  Keys are adjective-noun words.

Insertion rule: each :class:`NeedleSpec` carries ``depth``: ``None`` = at the cell's
target depth, a number = at that depth (percent).  The first needle is always the target
needle at the cell's depth; multikey distractors, extra multivalue values and extra
multiquery keys go to seeded random depths (uniform over [0, 100]).

Seeds (stable, not Python's ``hash()``): :func:`derive_seed` hashes its parts with
SHA-256.  The target needle's value (and key) come from the *cell seed*
``derive_seed(seed, task_id, length, depth, trial)``; the other needles (content and
depths) from the *layout seed* ``derive_seed(seed, task_id, length, trial, "layout")`` --
the same for every depth of one length and trial, so cells of a depth sweep differ only
at the target needle (which keeps the common prompt prefix long for prefix-shared
prefill).  The same seed always gives the same instance.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "ADJECTIVES",
    "NOUNS",
    "TASK_NAMES",
    "VALUE_TYPES",
    "NeedleSpec",
    "Task",
    "TaskInstance",
    "derive_seed",
    "load_custom_task_file",
    "make_task",
]

TASK_NAMES = ("passkey", "single", "multikey", "multivalue", "multiquery", "custom")
VALUE_TYPES = ("number", "word", "uuid")
METRIC_NAMES = ("all", "part")

ADJECTIVES = tuple(
    """
    amber ancient arctic autumn bitter blazing bold brave breezy bright brisk bronze calm
    careful cheerful clever cloudy coastal cobalt copper crimson crisp curious daring dusty
    eager early earnest electric elegant emerald fancy fearless fierce flat fluffy foggy
    fragrant frosty gentle giant gilded glossy golden graceful grand green hidden hollow
    humble icy idle jolly keen kind lively lonely lucky lunar marble mellow merry misty
    modest muddy narrow noble olive orange pale patient plain polite proud purple quick
    quiet rapid rare restless rocky rosy rough royal rusty sandy scarlet secret shady shiny
    silent silver simple sleepy slow smooth snowy solar solid sparkling spicy steady stormy
    sturdy sunny swift tame tender thirsty tidy tiny velvet vivid wandering warm wild windy
    wise wooden young zealous
    """.split()
)
NOUNS = tuple(
    """
    anchor apple arrow badger balloon banjo barrel basket beacon beetle bell bicycle blanket
    bottle bridge bucket button cabin camel candle canyon carpet castle cellar chimney
    clock cloud comet compass cottage crayon cricket crown cushion dolphin dragon drum eagle
    engine falcon feather fiddle flute forest fountain garden glacier goblet harbor hammer
    helmet heron island jacket kettle kite ladder lantern lemon lighthouse lizard magnet
    maple meadow mirror mountain needle oak orchard otter owl paddle parrot pebble pepper
    piano pigeon pillow pine planet pocket puzzle quill rabbit raven ribbon river rocket
    saddle sailboat scarf shell shovel spoon squirrel statue storm teapot thistle tiger
    tower trumpet tulip turtle umbrella valley violin wagon walnut whistle willow window
    wolf
    """.split()
)

_TYPE_PLURAL = {"number": "numbers", "word": "words", "uuid": "uuids"}
_SEP = "\x1f"


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from ``parts``: the first 8 bytes of the SHA-256 of their text
    joined by U+001F (floats written with 6 decimals).  :meth:`Task.seeds` passes depths as
    floats, so depth 50 and 50.0 give the same cell."""
    txt = [format(p, ".6f") if isinstance(p, float) else str(p) for p in parts]
    h = hashlib.sha256(_SEP.join(txt).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") >> 1


def _depth_key(depth: float) -> float:
    return round(float(depth), 6)


@dataclass(frozen=True)
class NeedleSpec:
    """One needle: its sentence, key and value, and where it goes.

    ``depth`` None = at the cell's target depth; else a depth in percent.  ``role`` is
    ``"target"`` (asked about) or ``"distractor"``."""

    text: str
    key: str
    value: str
    depth: float | None = None
    role: str = "target"


@dataclass(frozen=True)
class TaskInstance:
    """A task for one cell: needles, question, expected answers and scoring settings."""

    task: str
    needles: tuple[NeedleSpec, ...]
    question: str
    expected: tuple[str, ...]
    metric: str
    answer_budget: int
    instruction: str
    answer_prefix: str
    cell_seed: int
    layout_seed: int


def _random_word(rng: random.Random) -> str:
    return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"


def _random_value(rng: random.Random, value_type: str) -> str:
    if value_type == "number":
        return str(rng.randint(1_000_000, 9_999_999))
    if value_type == "word":
        return _random_word(rng)
    if value_type == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(f"unknown value type {value_type!r}; choose one of {', '.join(VALUE_TYPES)}")


def _fresh(rng: random.Random, make, taken: set[str]) -> str:
    for _ in range(10_000):
        v = make(rng)
        if v not in taken and not any(v in t or t in v for t in taken):
            taken.add(v)
            return v
    raise RuntimeError("could not draw a fresh key/value")  # pragma: no cover


def _join_keys(keys: Sequence[str]) -> str:
    if len(keys) == 1:
        return keys[0]
    return ", ".join(keys[:-1]) + " and " + keys[-1]


@dataclass(frozen=True)
class Task:
    """A task definition; :meth:`instance` makes the needles for one cell.

    Build with :func:`make_task`.  ``id`` (e.g. ``"single:uuid"``) is what results record.
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
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        if self.name in ("passkey", "custom"):
            return self.name
        return f"{self.name}:{self.value_type}"

    @property
    def n_needles(self) -> int:
        return {"multikey": 1 + self.num_distractors, "multivalue": self.num_values,
                "multiquery": self.num_queries}.get(self.name, 1)

    def seeds(self, *, seed: int, length: int, depth: float, trial: int) -> tuple[int, int]:
        """``(cell_seed, layout_seed)`` for one cell (see the module doc)."""
        cs = derive_seed(int(seed), self.id, int(length), _depth_key(depth), int(trial))
        ls = derive_seed(int(seed), self.id, int(length), int(trial), "layout")
        return cs, ls

    def instance(self, *, seed: int, length: int, depth: float, trial: int) -> TaskInstance:
        """The needles, question and answers of the cell ``(seed, length, depth, trial)``."""
        cs, ls = self.seeds(seed=seed, length=length, depth=depth, trial=trial)
        crng, lrng = random.Random(cs), random.Random(ls)
        t = self.value_type
        plural = _TYPE_PLURAL.get(t, "values")
        budget, metric, instr = self.answer_budget, self.metric, self.instruction

        def needle_text(key: str, value: str) -> str:
            return f"One of the special magic {plural} for {key} is: {value}."

        def rand_depth() -> float:
            return round(lrng.uniform(0.0, 100.0), 4)

        if self.name == "passkey":
            v = str(crng.randint(10_000, 99_999))
            needles = (NeedleSpec(f"The pass key is {v}. Remember it. {v} is the pass key.", "pass key", v),)
            return TaskInstance(self.id, needles, "What is the pass key?", (v,), metric, budget,
                                instr, "The pass key is", cs, ls)

        if self.name == "custom":
            value = "; ".join(self.custom_answers)
            needles = (NeedleSpec(self.custom_needle, "", value),)
            return TaskInstance(self.id, needles, self.custom_question, tuple(self.custom_answers), metric,
                                budget, instr, self.custom_answer_prefix, cs, ls)

        taken: set[str] = set()
        if self.name == "single":
            key = _fresh(crng, _random_word, taken)
            val = _fresh(crng, lambda r: _random_value(r, t), taken)
            needles = (NeedleSpec(needle_text(key, val), key, val),)
            q = f"What is the special magic {t} for {key} mentioned in the provided text?"
            prefix = f"The special magic {t} for {key} mentioned in the provided text is"
            return TaskInstance(self.id, needles, q, (val,), metric, budget, instr, prefix, cs, ls)

        if self.name == "multikey":
            dis = []
            for _ in range(self.num_distractors):
                k = _fresh(lrng, _random_word, taken)
                v = _fresh(lrng, lambda r: _random_value(r, t), taken)
                dis.append(NeedleSpec(needle_text(k, v), k, v, rand_depth(), "distractor"))
            key = _fresh(crng, _random_word, taken)
            val = _fresh(crng, lambda r: _random_value(r, t), taken)
            needles = (NeedleSpec(needle_text(key, val), key, val), *dis)
            q = f"What is the special magic {t} for {key} mentioned in the provided text?"
            prefix = f"The special magic {t} for {key} mentioned in the provided text is"
            return TaskInstance(self.id, needles, q, (val,), metric, budget, instr, prefix, cs, ls)

        if self.name == "multivalue":
            key = _fresh(lrng, _random_word, taken)
            extra = []
            for _ in range(self.num_values - 1):
                v = _fresh(lrng, lambda r: _random_value(r, t), taken)
                extra.append(NeedleSpec(needle_text(key, v), key, v, rand_depth(), "target"))
            val = _fresh(crng, lambda r: _random_value(r, t), taken)
            needles = (NeedleSpec(needle_text(key, val), key, val), *extra)
            q = f"What are all the special magic {plural} for {key} mentioned in the provided text?"
            prefix = f"The special magic {plural} for {key} mentioned in the provided text are"
            return TaskInstance(self.id, needles, q, tuple(n.value for n in needles), metric, budget,
                                instr, prefix, cs, ls)

        if self.name == "multiquery":
            extra = []
            for _ in range(self.num_queries - 1):
                k = _fresh(lrng, _random_word, taken)
                v = _fresh(lrng, lambda r: _random_value(r, t), taken)
                extra.append(NeedleSpec(needle_text(k, v), k, v, rand_depth(), "target"))
            key = _fresh(crng, _random_word, taken)
            val = _fresh(crng, lambda r: _random_value(r, t), taken)
            needles = (NeedleSpec(needle_text(key, val), key, val), *extra)
            keys = _join_keys([n.key for n in needles])
            q = f"What are all the special magic {plural} for {keys} mentioned in the provided text?"
            prefix = f"The special magic {plural} for {keys} mentioned in the provided text are"
            return TaskInstance(self.id, needles, q, tuple(n.value for n in needles), metric, budget,
                                instr, prefix, cs, ls)

        raise ValueError(f"unknown task {self.name!r}")  # pragma: no cover


_NIAH_INSTRUCTION = (
    "Hidden somewhere in the long text below are some special magic {plural}. Memorize them: "
    "after the text you will be asked about them."
)
_PASSKEY_INSTRUCTION = (
    "There is an important piece of information hidden inside a lot of irrelevant text. Find it "
    "and memorize it: you will be asked about it afterwards."
)
_CUSTOM_INSTRUCTION = "Read the following text carefully. A question about it comes after the text."


def load_custom_task_file(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a custom task from JSON or YAML: keys ``needle``, ``question``, ``answers`` (a
    string or a list), optional ``metric``, ``answer_budget``, ``answer_prefix``,
    ``instruction``.  Raises ``ValueError`` (one line) on a missing/unreadable file or bad keys."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"custom task file not found: {p}")
    raw = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            import yaml

            data = yaml.safe_load(raw)
    except Exception as e:  # noqa: BLE001 -- json/yaml errors differ; report one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot parse custom task file {p}: {first}") from None
    if not isinstance(data, dict):
        raise ValueError(f"custom task file {p} must hold a mapping with needle, question, answers")
    allowed = {"needle", "question", "answers", "metric", "answer_budget", "answer_prefix", "instruction"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"custom task file {p}: unknown key(s) {', '.join(map(str, unknown))}")
    missing = [k for k in ("needle", "question", "answers") if k not in data]
    if missing:
        raise ValueError(f"custom task file {p}: missing key(s) {', '.join(missing)}")
    return data


def _answers(answers: Any) -> tuple[str, ...]:
    if isinstance(answers, (str, int, float)):
        answers = [answers]
    if not isinstance(answers, (list, tuple)):
        raise ValueError("custom task answers must be a string or a list of strings")
    out = tuple(str(a).strip() for a in answers if str(a).strip())
    if not out:
        raise ValueError("custom task needs at least one non-empty expected answer")
    return out


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
) -> Task:
    """A :class:`Task` from ``spec`` = ``NAME`` or ``NAME:VALUE_TYPE`` (``"single:uuid"``).

    ``custom`` takes ``needle``, ``question`` and ``answers`` (or ``custom_file``, JSON/YAML;
    explicit arguments override the file).  ``answer_budget``, ``metric`` and
    ``instruction`` override the task defaults.  Raises ``ValueError`` (one line).
    """
    s = str(spec).strip().lower()
    name, _, vt = s.partition(":")
    name = {"niah": "single", "niah_single": "single", "niah_multikey": "multikey",
            "niah_multivalue": "multivalue", "niah_multiquery": "multiquery"}.get(name, name)
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {spec!r}; choose one of {', '.join(TASK_NAMES)}")
    if vt and value_type and vt != value_type:
        raise ValueError(f"task {spec!r} conflicts with value type {value_type!r}")
    vt = vt or value_type or "number"
    if name in ("passkey", "custom"):
        if ":" in s:
            raise ValueError(f"task {name} takes no value type (got {spec!r})")
    elif vt not in VALUE_TYPES:
        raise ValueError(f"unknown value type {vt!r}; choose one of {', '.join(VALUE_TYPES)}")
    for label, n in (("num_distractors", num_distractors), ("num_values", num_values),
                     ("num_queries", num_queries)):
        if int(n) < (0 if label == "num_distractors" else 1) or int(n) > 100:
            raise ValueError(f"{label} must be between {0 if label == 'num_distractors' else 1} and 100 (got {n})")
    if metric is not None and metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; choose 'all' or 'part'")

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
                raise ValueError(f"unknown metric {metric!r} in custom task; choose 'all' or 'part'")
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
                  custom_answers=_answers(answers), custom_answer_prefix=answer_prefix or "Answer:")
        default_budget, default_metric, default_instr = 64, "part", _CUSTOM_INSTRUCTION
    elif name == "passkey":
        default_budget, default_metric, default_instr = 32, "part", _PASSKEY_INSTRUCTION
    else:
        plural = _TYPE_PLURAL[vt]
        default_budget = 128
        default_metric = "all" if name in ("multivalue", "multiquery") else "part"
        default_instr = _NIAH_INSTRUCTION.format(plural=plural)
    budget = int(answer_budget) if answer_budget is not None else default_budget
    if budget < 1:
        raise ValueError(f"answer budget must be at least 1 token (got {budget})")
    return Task(
        name=name,
        value_type=vt if name not in ("passkey", "custom") else "number",
        num_distractors=int(num_distractors),
        num_values=int(num_values),
        num_queries=int(num_queries),
        metric=metric or default_metric,
        answer_budget=budget,
        instruction=instruction if instruction is not None else default_instr,
        **kw,
    )
