"""``/proc/meminfo`` -> one row per field (tidy: fields come and go between kernels and configs).

Each line is ``Field:   value kB`` or ``Field:   value`` (``meminfo_proc_show()``, fs/proc/meminfo.c).
"kB" is KiB and is converted to bytes; fields without a unit (``HugePages_Total``, ``HugePages_Free``,
``HugePages_Rsvd``, ``HugePages_Surp``) are counts. Which fields appear depends on the kernel (e.g.
``MemAvailable`` since 3.14, ``KReclaimable`` since 4.20, ``SecPageTables`` since 6.2, ``Zswap`` since
5.19) and on its config: a field the file does not print has no row (never 0).

| column | dtype | unit | source |
|---|---|---|---|
| field | category | | the name before ``:``, as printed (e.g. ``SReclaimable``, ``Active(anon)``) |
| value | Int64 | bytes if ``unit`` is ``bytes``, else a count | the number (kB × 1024) |
| unit | category | | ``bytes`` (source said kB) or ``count`` (no unit) |

A line that is not ``Field: integer [kB]`` raises ``ParseError`` naming the line. ``records``
reads a plain ASCII file of only well-formed lines (spaces, unsigned values) with one regex
(``records_fast``; ``value`` an int64 array); any other text is read line by line
(``records_by_line``), naming a bad line.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import INT64_MAX, digits_array, int64
from tcpmemlib.parsers.text import plain, read_text, split_lines, typed_frame
from tcpmemlib.units import KIB, kib_to_bytes

__all__ = ["SCHEMA", "frame", "parse", "records", "records_by_line", "records_fast"]

SCHEMA: dict[str, str] = {"field": "category", "value": "Int64", "unit": "category"}
# each field after its line's newline: the kernel's spaces, unsigned values
_FIELDS = re.compile(r"\n([^: \t\n]++): *+([0-9]++)(?: ++(kB))?+ *+(?=\n|\Z)")


def records(text: str, path: str | None = None) -> dict[str, list[object] | np.ndarray]:
    """Columns of one file (see ``frame``): ``records_fast``, else ``records_by_line``."""
    fast = records_fast(text)
    return fast if fast is not None else records_by_line(text, path)


def records_fast(text: str) -> dict[str, list[object] | np.ndarray] | None:
    """Columns read with one regex (``value`` an int64 array), or None when the text is not
    plainly well-formed (then ``records_by_line`` reads it and names any bad line)."""
    if not plain(text):
        return None
    fields = _FIELDS.findall(f"\n{text}")
    if len(fields) != text.count("\n") + (not text.endswith("\n") and bool(text)):
        return None
    names, numbers, kib = (list(c) for c in zip(*fields, strict=True)) if fields else ([], [], [])
    try:
        values = digits_array(" ".join(numbers), len(numbers))
    except ValueError:
        return None
    if len(values) and values.max() > INT64_MAX // KIB:  # in bytes it must stay inside int64
        return None
    in_kib = np.array(kib, dtype=bool)
    values[in_kib] = kib_to_bytes(values[in_kib])
    return {"field": names, "value": values, "unit": ["bytes" if k else "count" for k in kib]}


def records_by_line(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one file, line by line (the reference parser; names a bad line)."""
    fields: list[str] = []
    values: list[int] = []
    units: list[str] = []
    for no, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        name, sep, rest = line.partition(":")
        tokens = rest.split()
        if not sep or not name or " " in name or not 1 <= len(tokens) <= 2:
            raise ParseError(path, no, line, "expected 'Field: value [kB]'")
        try:
            value = int64(tokens[0])
        except ValueError as err:
            raise ParseError(path, no, line, "value is not an integer") from err
        if len(tokens) == 2:
            if tokens[1] != "kB":
                raise ParseError(path, no, line, f"unknown unit {tokens[1]!r} (expected kB)")
            value = kib_to_bytes(value)
            if value > INT64_MAX:
                raise ParseError(
                    path, no, line, "value in bytes is outside the 64-bit integer range"
                )
            units.append("bytes")
        else:
            units.append("count")
        fields.append(name)
        values.append(value)
    return {"field": fields, "value": values, "unit": units}


def frame(columns: dict[str, list[object]]) -> pd.DataFrame:
    """Column lists (from ``records``, possibly of many files) -> the typed frame."""
    return typed_frame(columns, SCHEMA)


def parse(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse meminfo text/path into (field, value, unit) rows."""
    path, text = read_text(source)
    return frame(records(text, path))
