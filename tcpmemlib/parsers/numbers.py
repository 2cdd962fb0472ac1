"""Integers as the frames hold them: a value outside int64 is a bad value, never an OverflowError.

The kernel prints counters as unsigned 64-bit numbers; a damaged or hostile file can print any
number of digits. ``int64`` raises ``ValueError`` (which every parser turns into a ``ParseError``
naming the line) for a value the frames' ``Int64`` columns cannot hold.

Whole columns at once (the parsers' fast paths, which read a whole file in one pass):

- ``int64_array(raws)``: the strings -> one int64 array, ``int()``'s syntax, ``ValueError`` when one
  is not an integer or is outside int64 (the caller then re-reads the file line by line to name it).
- ``digits_array(joined, count)``: blank-separated tokens that a regex already vouched for as
  ``-?[0-9]+`` -> int64 array, parsed in C (``ValueError`` for a value at an int64 limit).
- ``int64_column(values)``: a column of records (a list of ints and ``pd.NA``, or an int64 array,
  or a list an accumulator extended with int64 arrays) -> the ``Int64`` array
  ``DataFrame(...).astype("Int64")`` gives for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "digits_array",
    "int64",
    "int64_array",
    "int64_column",
    "int64s",
]

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


def int64_array(raws: Sequence[str]) -> np.ndarray:
    """``int64`` of each of ``raws`` as one int64 array (``ValueError`` as ``int64`` raises it)."""
    try:
        return np.array(raws, dtype=np.int64)
    except OverflowError as err:
        raise ValueError("a value is outside the 64-bit integer range") from err


def digits_array(joined: str, count: int) -> np.ndarray:
    """The ``count`` blank-separated integers of ``joined`` as an int64 array, parsed in C.

    Only for tokens a regex matched as ``-?[0-9]+``. numpy's text reader saturates a value outside
    int64 to a limit without a word, so a value at either limit raises ``ValueError`` (the caller
    then reads the file line by line, which keeps a real limit value and names a too large one).
    """
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    values = np.fromstring(joined, dtype=np.int64, sep=" ")
    if len(values) != count:  # cannot happen for vouched tokens; never return a short column
        raise ValueError(f"{len(values)} integers read, {count} expected")
    if values.max() == INT64_MAX or values.min() == INT64_MIN:
        raise ValueError("a value is at or beyond the 64-bit integer range")
    return values


def int64_column(values: Sequence[object] | np.ndarray) -> pd.arrays.IntegerArray:
    """A records column (ints and ``pd.NA`` in a list, or an int64 array) -> an ``Int64`` array."""
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return pd.arrays.IntegerArray(values, np.zeros(len(values), dtype=bool))
    if len(values) and type(values[0]) is np.int64:  # a list extended with int64 arrays
        array = np.array(values)
        if array.dtype == np.int64:  # no NA among them
            return pd.arrays.IntegerArray(array, np.zeros(len(array), dtype=bool))
    return pd.array(values, dtype="Int64")
