"""Integers as the frames hold them: a value outside int64 is a bad value, never an OverflowError.

The kernel prints counters as unsigned 64-bit numbers; a damaged or hostile file can print any
number of digits. ``int64`` raises ``ValueError`` (which every parser turns into a ``ParseError``
naming the line) for a value the frames' ``Int64`` columns cannot hold.
"""

from __future__ import annotations

__all__ = ["INT64_MAX", "INT64_MIN", "int64", "int64s"]

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


def int64(raw: str) -> int:
    """``int(raw)``, refusing values outside the int64 range (``ValueError``)."""
    value = int(raw)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{raw.strip()[:40]} is outside the 64-bit integer range")
    return value


def int64s(raws: list[str]) -> list[int]:
    """``int64`` of each of ``raws`` (one range check for the list: the parsers' hot loops)."""
    values = [int(raw) for raw in raws]
    if values and (max(values) > INT64_MAX or min(values) < INT64_MIN):
        raise ValueError("a value is outside the 64-bit integer range")
    return values
