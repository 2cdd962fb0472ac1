"""``netns.txt`` (collect.sh, collector version 2 and later) -> one row per network namespace.

Tab-separated, one line per namespace, the collector's own first (docs/design.md §1, "Network
namespaces"): ``<inode>\\t<pid>\\t<name>\\t<cgroup>``; ``-`` where a field is unknown.

| column | dtype | source | note |
|---|---|---|---|
| netns | Int64 | ``<inode>`` | the namespace's inode, the ``N`` of ``net:[N]`` (/proc/PID/ns/net) |
| pid | Int64 | ``<pid>`` | the lowest pid inside it; NA for one kept only by a bind mount |
| name | string | ``<name>`` | its ``ip netns`` name (/run/netns entry); NA if none |
| cgroup | string | ``<cgroup>`` | that pid's cgroup path (the memory hierarchy's); NA without a pid |
| own | boolean | the first line | the collector's own namespace (its files keep their plain names) |

``Capture.netns`` adds, per snapshot, whether the namespace's sockets were read and its own
sockstat counts (``tcpmemlib.chunks``). A line that is not four tab-separated fields, or an inode or
pid that is not a number, raises ``ParseError`` naming the line.
"""

from __future__ import annotations

import os

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import int64
from tcpmemlib.parsers.text import read_text, split_lines

__all__ = ["SCHEMA", "frame", "parse", "records"]

SCHEMA: dict[str, str] = {
    "netns": "Int64",
    "pid": "Int64",
    "name": "string",
    "cgroup": "string",
    "own": "boolean",
}


def records(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one file (see ``frame``)."""
    out: dict[str, list[object]] = {c: [] for c in SCHEMA}
    for no, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise ParseError(path, no, line, "expected '<inode>\\t<pid>\\t<name>\\t<cgroup>'")
        try:
            inode = int64(fields[0])
            pid = pd.NA if fields[1] == "-" else int64(fields[1])
        except ValueError as err:
            raise ParseError(path, no, line, f"bad number: {err}") from err
        out["own"].append(not out["netns"])  # the first line is the collector's own
        out["netns"].append(inode)
        out["pid"].append(pid)
        out["name"].append(pd.NA if fields[2] == "-" else fields[2])
        out["cgroup"].append(pd.NA if fields[3] == "-" else fields[3])
    return out


def frame(columns: dict[str, list[object]]) -> pd.DataFrame:
    """Column lists (from ``records``) -> the typed frame."""
    return pd.DataFrame(columns, columns=list(SCHEMA)).astype(SCHEMA)


def parse(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse netns.txt text or a path into one row per namespace."""
    path, text = read_text(source)
    return frame(records(text, path))
