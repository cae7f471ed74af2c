"""Token-count grammar shared by every command (no torch).

One convention everywhere (``needle``, ``bench``, ``info``, ...): ``K`` = 1,000 and ``M`` =
1,000,000 (decimal, as the long-context literature counts: "4K" = 4000, "200K" = 200000);
``Ki`` = 1,024 and ``Mi`` = 1,048,576 (binary: "4Ki" = 4096, "128Ki" = 131072). Suffixes are
case-insensitive; fractions are allowed when the product is whole ("1.5K" = 1500); ``_``
separates digits ("200_000").

A range ``N@A..B`` means N values from A to B inclusive (``10@1K..200K``); it is the only way
to ask for a count of values -- a bare number is always one value.
"""
from __future__ import annotations

import re

from longctx.errors import GridError

__all__ = ["SUFFIXES", "parse_size", "parse_size_list", "parse_range", "format_size", "is_range"]

SUFFIXES = {"": 1, "k": 1000, "m": 1_000_000, "ki": 1024, "mi": 1024 * 1024}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ki|mi|k|m)?\s*$", re.IGNORECASE)


def parse_size(text: str | int, what: str = "length") -> int:
    """One token count: ``"4000"``, ``"4K"`` (4000), ``"4Ki"`` (4096), ``"1.5K"`` (1500), ``"1M"``.

    Args:
        text: the size (an int passes through after the positivity check).
        what: the name used in error messages (``"length"``, ``"--max-len"`` ...).

    Raises:
        GridError: not a number with an optional K/M/Ki/Mi suffix, not whole, or below 1.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        val = int(text)
    else:
        m = _SIZE_RE.match(str(text).replace("_", ""))
        if not m:
            raise GridError(f"invalid {what} {str(text)!r}: expected an integer with optional K/M/Ki/Mi suffix "
                            f"(K = 1000, Ki = 1024)")
        num, suf = m.group(1), (m.group(2) or "").lower()
        mult = SUFFIXES[suf]
        if "." in num:
            f = float(num) * mult
            if abs(f - round(f)) > 1e-6:
                raise GridError(f"invalid {what} {str(text)!r}: not a whole number of tokens")
            val = int(round(f))
        else:
            val = int(num) * mult
    if val < 1:
        raise GridError(f"invalid {what} {str(text)!r}: must be at least 1 token")
    return val


def parse_size_list(text: str, what: str = "--lengths") -> list[int]:
    """A comma list of sizes (one size is a list of one): ``"1K,2K,4Ki"`` -> ``[1000, 2000, 4096]``.

    Returns the sizes sorted ascending, without duplicates.

    Raises:
        GridError: an empty list or a bad size.
    """
    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise GridError(f"empty {what}: give a size (16K) or a comma list (1K,2K,4K)")
    return sorted({parse_size(p, "length") for p in parts})


def is_range(text: str) -> bool:
    """Whether ``text`` is spelled as a count range ``N@A..B``."""
    return "@" in str(text)


def parse_range(text: str, what: str = "--lengths") -> tuple[int, str, str]:
    """``"10@1K..200K"`` -> ``(10, "1K", "200K")`` (the ends still as text, for the caller to parse).

    Raises:
        GridError: not of the form ``N@A..B`` or N < 1.
    """
    m = re.fullmatch(r"\s*([0-9]+)\s*@\s*(\S+?)\s*\.\.\s*(\S+?)\s*", str(text))
    if not m:
        raise GridError(f"invalid {what} {str(text)!r}: a count is written N@FROM..TO, e.g. 10@1K..200K")
    n = int(m.group(1))
    if n < 1:
        raise GridError(f"invalid {what} {str(text)!r}: the count must be at least 1")
    return n, m.group(2), m.group(3)


def format_size(n: int) -> str:
    """The shortest exact spelling: 4000 -> ``4K``, 4096 -> ``4Ki``, 1500 -> ``1500``."""
    n = int(n)
    for suf, mult in (("M", 1_000_000), ("Mi", 1 << 20), ("K", 1000), ("Ki", 1024)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{suf}"
    return str(n)
