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

A line that is not ``Field: integer [kB]`` raises ``ParseError`` naming the line.
"""

from __future__ import annotations

import os

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import INT64_MAX, int64
from tcpmemlib.parsers.text import read_text, split_lines
from tcpmemlib.units import kib_to_bytes

__all__ = ["SCHEMA", "frame", "parse", "records"]

SCHEMA: dict[str, str] = {"field": "category", "value": "Int64", "unit": "category"}


def records(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one file (see ``frame``)."""
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
    out = pd.DataFrame(columns, columns=list(SCHEMA))
    return out.astype({"field": "str", "value": "Int64", "unit": "str"}).astype(SCHEMA)


def parse(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse meminfo text/path into (field, value, unit) rows."""
    path, text = read_text(source)
    return frame(records(text, path))
