"""What every NIAH task family shares: seeds, needle and instance records, word pools.

Seeds (stable, not Python's ``hash()``): :func:`derive_seed` hashes its parts with
SHA-256.  A family draws the target needle from the *cell seed* and everything else
(other needles, their depths) from the *layout seed*, the same for every depth of one
length and trial (see :meth:`longctx.niah.tasks.Task.seeds`).
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from longctx.errors import TaskError

__all__ = ["ADJECTIVES", "LANGS", "NOUNS", "NeedleSpec", "TaskInstance", "derive_seed", "fresh",
           "join_keys", "near_miss_key", "rand_depth", "random_value", "random_word"]

LANGS = ("en", "zh")

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

_SEP = "\x1f"


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from ``parts``: the first 8 bytes of the SHA-256 of their text
    joined by U+001F (floats written with 6 decimals).  :meth:`Task.seeds` passes depths as
    floats, so depth 50 and 50.0 give the same cell."""
    txt = [format(p, ".6f") if isinstance(p, float) else str(p) for p in parts]
    h = hashlib.sha256(_SEP.join(txt).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") >> 1


@dataclass(frozen=True)
class NeedleSpec:
    """One needle: its sentence, key and value, and where it goes.

    ``depth`` None = at the cell's target depth; else a depth in percent.  ``role`` is
    ``"target"`` (asked about or needed for the answer), ``"distractor"`` (multikey's other
    keys, the decoy of ``absent``) or ``"near-miss"`` (``--distractors``: a similar key with
    another value)."""

    text: str
    key: str
    value: str
    depth: float | None = None
    role: str = "target"


@dataclass(frozen=True)
class TaskInstance:
    """A task for one cell: needles, question, expected answers and scoring settings.

    The first needle is the one placed at the cell's target depth (its depth is the cell's
    recorded ``depth``)."""

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


def random_word(rng: random.Random) -> str:
    """An adjective-noun key such as ``"amber-lantern"``."""
    return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"


def random_value(rng: random.Random, value_type: str) -> str:
    """A needle value: 7 digits, an adjective-noun word or a uuid4."""
    if value_type == "number":
        return str(rng.randint(1_000_000, 9_999_999))
    if value_type == "word":
        return random_word(rng)
    if value_type == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise TaskError(f"unknown value type {value_type!r}; choose one of number, word, uuid")


def fresh(rng: random.Random, make: Callable[[random.Random], str], taken: set[str]) -> str:
    """A value from ``make(rng)`` that neither contains nor is contained in any of ``taken``
    (so no answer string occurs inside another needle's key or value); added to ``taken``."""
    for _ in range(10_000):
        v = make(rng)
        if v not in taken and not any(v in t or t in v for t in taken):
            taken.add(v)
            return v
    raise RuntimeError("could not draw a fresh key/value")  # pragma: no cover


def near_miss_key(rng: random.Random, key: str, taken: set[str]) -> str:
    """A key sharing one half with ``key`` (``amber-lantern`` -> ``amber-kettle`` or
    ``misty-lantern``), fresh with respect to ``taken``."""
    adj, _, noun = key.partition("-")

    def make(r: random.Random) -> str:
        return f"{adj}-{r.choice(NOUNS)}" if r.random() < 0.5 else f"{r.choice(ADJECTIVES)}-{noun}"

    return fresh(rng, make, taken)


def join_keys(keys: Sequence[str], lang: str = "en") -> str:
    """``"a, b and c"`` (``"a、b和c"`` in Chinese)."""
    if len(keys) == 1:
        return keys[0]
    if lang == "zh":
        return "、".join(keys[:-1]) + "和" + keys[-1]
    return ", ".join(keys[:-1]) + " and " + keys[-1]


def rand_depth(rng: random.Random) -> float:
    """A seeded depth, uniform over [0, 100], 4 decimals."""
    return round(rng.uniform(0.0, 100.0), 4)
