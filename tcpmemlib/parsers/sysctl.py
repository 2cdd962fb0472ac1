"""``sysctl.txt`` -> one row per setting (sysctl(8) ``name = value`` format, read from /proc/sys).

| column | dtype | source |
|---|---|---|
| name | string | dotted name, e.g. ``net.ipv4.tcp_mem`` |
| value | string | the value as printed (vectors keep their tabs/spaces, e.g. ``287901\\t383869\\t575802``) |

Values stay strings: many are vectors. Blank lines and ``#`` comments are skipped. A line without
``=`` or with an empty or spaced name raises ``ParseError`` naming the line.
"""

from __future__ import annotations

import os

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.text import read_text, split_lines, typed_frame

__all__ = ["SCHEMA", "frame", "parse", "records", "values"]

SCHEMA: dict[str, str] = {"name": "string", "value": "string"}


def records(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one file (see ``frame``)."""
    names: list[str] = []
    values_: list[str] = []
    for no, line in enumerate(split_lines(text), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name or len(name.split()) != 1:  # a blank inside the name
            raise ParseError(path, no, line, "expected 'name = value'")
        names.append(name)
        values_.append(value.strip())
    return {"name": names, "value": values_}


def frame(columns: dict[str, list[object]]) -> pd.DataFrame:
    """Column lists (from ``records``, possibly of many files) -> the typed frame."""
    return typed_frame(columns, SCHEMA)


def parse(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse ``name = value`` lines."""
    path, text = read_text(source)
    return frame(records(text, path))


def values(frame: pd.DataFrame, name: str) -> list[int] | None:
    """The integers of one setting (``net.ipv4.tcp_mem`` -> ``[min, pressure, max]``), or None."""
    match = frame.loc[frame["name"] == name, "value"]
    if match.empty or match.isna().iloc[-1]:
        return None
    try:
        return [int(v) for v in str(match.iloc[-1]).split()]
    except ValueError:
        return None
