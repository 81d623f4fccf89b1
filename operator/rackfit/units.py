"""Unit conversions and formatting: bytes are ints everywhere else; they become text only here."""

from __future__ import annotations

import re

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
GB = 10**9

_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbt]?)\s*$", re.IGNORECASE)
_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def parse_count(value: int | float | str) -> int:
    """'70B', '1.5T', '70e9', 7e10 -> an integer count. Raises ValueError naming what is allowed."""
    if isinstance(value, bool):
        raise ValueError("expected a number such as 70e9 or '70B'")
    if isinstance(value, (int, float)):
        return int(value)
    m = _COUNT.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a count; use a number such as 70e9 or '70B', '1.5T', '350M'")
    return int(float(m.group(1)) * _SUFFIX[m.group(2).lower()])


def fmt_bytes(n_bytes: int) -> str:
    """Binary units, as nvidia-smi and PyTorch print them."""
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n_bytes) >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes} B"


def fmt_count(n: int) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def count(n: int, noun: str, plural: str | None = None) -> str:
    """A count with its noun in the right number: count(1, "node") -> '1 node', count(8, "GPU") -> '8 GPUs'.
    Human messages use this, never 'node(s)'. `plural` for irregular nouns."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
