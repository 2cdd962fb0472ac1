"""``cgroups.txt`` (written by collect.sh) -> cgroup memory stats and pid -> cgroup rows.

Tab-separated records (docs/design.md §1):

- ``pid\\t<pid>\\t<cgroup path>``: from /proc/PID/cgroup (the v2 ``0::`` path, else the v1 memory
  path), for each pid that owns a socket.
- ``stat\\t<cgroup path>\\t<key>\\t<value>``: key ``sock`` (v2 memory.stat), ``memory.current`` (v2),
  ``kmem.tcp.usage_in_bytes`` / ``kmem.tcp.limit_in_bytes`` (v1); all bytes.

``parse(source)`` (the ``cgroups`` frame):

| column | dtype | unit | source |
|---|---|---|---|
| cgroup | string | | the cgroup path (may contain spaces) |
| key | category | | ``sock``, ``memory.current``, ``kmem.tcp.usage_in_bytes``... |
| value_bytes | Int64 | bytes | the value (a non-numeric value such as ``max`` -> NA) |

``parse_pids(source)`` (the ``proc_cgroups`` frame): ``pid`` (Int64), ``cgroup`` (string).
Unknown record kinds raise ``ParseError``, as do records with the wrong number of fields.
"""

from __future__ import annotations

import os

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import int64
from tcpmemlib.parsers.text import read_text, split_lines, typed_frame

__all__ = [
    "PIDS_SCHEMA",
    "SCHEMA",
    "frame",
    "parse",
    "parse_both",
    "parse_pids",
    "pids_frame",
    "records",
]

SCHEMA: dict[str, str] = {"cgroup": "string", "key": "category", "value_bytes": "Int64"}
PIDS_SCHEMA: dict[str, str] = {"pid": "Int64", "cgroup": "string"}


def records(
    text: str, path: str | None = None
) -> tuple[dict[str, list[object]], dict[str, list[object]]]:
    """Column lists of one file: ``(stat records, pid records)``."""
    stats: list[list[object]] = []
    pids: list[list[object]] = []
    for no, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if fields[0] == "pid" and len(fields) == 3:
            try:
                pids.append([int64(fields[1]), fields[2]])
            except ValueError as err:
                raise ParseError(path, no, line, "pid is not an integer") from err
        elif fields[0] == "stat" and len(fields) == 4:
            value = fields[3].strip()
            try:
                number: object = int64(value) if value.lstrip("-").isdigit() else pd.NA
            except ValueError as err:
                raise ParseError(path, no, line, f"bad value: {err}") from err
            stats.append([fields[1], fields[2], number])
        else:
            raise ParseError(
                path,
                no,
                line,
                "expected 'pid<TAB>pid<TAB>cgroup' or 'stat<TAB>cgroup<TAB>key<TAB>value'",
            )
    return (
        {c: [row[i] for row in stats] for i, c in enumerate(SCHEMA)},
        {c: [row[i] for row in pids] for i, c in enumerate(PIDS_SCHEMA)},
    )


def frame(columns: dict[str, list[object]]) -> pd.DataFrame:
    """Stat column lists (from ``records``, possibly of many files) -> the ``cgroups`` frame."""
    return typed_frame(columns, SCHEMA)


def pids_frame(columns: dict[str, list[object]]) -> pd.DataFrame:
    """Pid column lists -> the ``proc_cgroups`` frame."""
    return typed_frame(columns, PIDS_SCHEMA)


def parse_both(source: str | bytes | os.PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse cgroups.txt once -> ``(stats frame, pids frame)``."""
    path, text = read_text(source)
    stats, pids = records(text, path)
    return frame(stats), pids_frame(pids)


def parse(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """The ``stat`` records (cgroup, key, value_bytes)."""
    return parse_both(source)[0]


def parse_pids(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """The ``pid`` records (pid, cgroup)."""
    return parse_both(source)[1]
