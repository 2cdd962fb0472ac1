"""``ps.txt`` (``ps -eo pid,ppid,rss,vsz,uid,comm``) and ``ps_args.txt`` (``ps -eo pid,args``).

``comm`` is the LAST column because it may contain spaces (and anything else a process sets as its
name: quotes, commas, ``<img src=x>``): everything after the fifth number is the name, kept as-is
(only the separating blanks are removed). rss and vsz are KiB in procps and busybox; converted to bytes.

``parse(ps.txt)``:

| column | dtype | unit | source |
|---|---|---|---|
| pid | Int64 | | ``PID`` |
| ppid | Int64 | | ``PPID`` |
| uid | Int64 | | ``UID`` |
| rss_bytes | Int64 | bytes | ``RSS`` (KiB) × 1024 |
| vsz_bytes | Int64 | bytes | ``VSZ`` (KiB) × 1024 |
| comm | string | | ``COMMAND`` (comm), to the end of the line |
| args | string | | always ``<NA>`` here; filled by ``Capture`` from ``ps_args.txt`` when collected |

``parse_args(ps_args.txt)`` gives ``pid`` (Int64) and ``args`` (string, to the end of the line).
A header line (first token ``PID``) is skipped; a row whose first five tokens are not integers raises
``ParseError`` naming the line.

``records`` reads a whole file with one regex (``records_fast``: plain ASCII, an optional header
line first, then only ``pid ppid rss vsz uid [comm]`` lines of unsigned integers inside int64
separated by spaces) and gives int64 arrays; any other text (blank or odd lines, tabs, signed or
huge numbers, non-ASCII names, ``\\r``) is read by the line-by-line parser (``records_by_line``),
which gives the same columns as lists and names a bad line.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import INT64_MAX, digits_array, int64, int64s
from tcpmemlib.parsers.text import plain, read_text, split_lines, typed_frame
from tcpmemlib.units import KIB, kib_to_bytes

__all__ = [
    "ARGS_SCHEMA",
    "SCHEMA",
    "args_records",
    "frame",
    "parse",
    "parse_args",
    "records",
    "records_by_line",
    "records_fast",
]

SCHEMA: dict[str, str] = {
    "pid": "Int64",
    "ppid": "Int64",
    "uid": "Int64",
    "rss_bytes": "Int64",
    "vsz_bytes": "Int64",
    "comm": "string",
    "args": "string",
}
ARGS_SCHEMA: dict[str, str] = {"pid": "Int64", "args": "string"}


# pid ppid rss vsz uid, then comm (which may hold blanks) to the end of the line
_LINE = re.compile(r"[ \t]*(\S+)[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)(?:[ \t]+(.*))?$")
# The fast path's rows, each after its line's newline: five unsigned numbers separated by spaces
# (one group), then comm to the line end.
_ROWS = re.compile(
    r"\n *+([0-9]++ ++[0-9]++ ++[0-9]++ ++[0-9]++ ++[0-9]++)(?: ++([^\n]*+))?+(?=\n|\Z)"
)
_NUMBER_COLUMNS = ["pid", "ppid", "rss_bytes", "vsz_bytes", "uid"]  # in the file's order


def records(text: str, path: str | None = None) -> dict[str, list[object] | np.ndarray]:
    """Columns of one ps.txt (see ``frame``): ``records_fast``, else ``records_by_line``."""
    fast = records_fast(text)
    return fast if fast is not None else records_by_line(text, path)


def records_fast(text: str) -> dict[str, list[object] | np.ndarray] | None:
    """Columns of one ps.txt read with one regex (int64 arrays), or None when the text is not
    plainly well-formed (then ``records_by_line`` reads it and names any bad line)."""
    if not plain(text):
        return None
    end = text.find("\n")
    first = _LINE.match(text if end < 0 else text[:end])
    if first is not None and first[1] == "PID":  # rows after the header
        if end < 0:
            text, end = "", 0
    else:
        text, end = "\n" + text, 0
    rows = _ROWS.findall(text, end)
    if len(rows) != text.count("\n", end) - text.endswith("\n"):
        return None
    try:
        numbers = digits_array(" ".join([r[0] for r in rows]), 5 * len(rows))
    except ValueError:
        return None
    by_column = numbers.reshape(-1, 5).T.copy()  # one contiguous row per column
    kib = by_column[2:4]  # rss and vsz in KiB (unsigned); in bytes they must stay inside int64
    if len(rows) and kib.max() > INT64_MAX // KIB:
        return None
    by_column[2:4] = kib_to_bytes(kib)
    columns: dict[str, list[object] | np.ndarray] = dict(
        zip(_NUMBER_COLUMNS, by_column, strict=True)
    )
    columns["comm"] = [r[1] for r in rows]
    columns["args"] = [pd.NA] * len(rows)
    return {c: columns[c] for c in ["pid", "ppid", "uid", "rss_bytes", "vsz_bytes", "comm", "args"]}


def records_by_line(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one ps.txt, line by line (the reference parser; names a bad line)."""
    numbers: list[list[int]] = []
    comms: list[str] = []
    for no, line in enumerate(split_lines(text), 1):
        match = _LINE.match(line)
        if match is None:
            if not line.strip():
                continue
            raise ParseError(path, no, line, "expected 'pid ppid rss vsz uid comm'")
        if match[1] == "PID":
            continue
        try:
            pid, ppid, rss, vsz, uid = int64s(list(match.groups()[:5]))
            rss_bytes, vsz_bytes = int64s([str(kib_to_bytes(rss)), str(kib_to_bytes(vsz))])
        except ValueError as err:
            raise ParseError(path, no, line, "expected 'pid ppid rss vsz uid comm'") from err
        numbers.append([pid, ppid, uid, rss_bytes, vsz_bytes])
        comms.append(match[6] or "")
    columns: dict[str, list[object]] = {
        c: [row[i] for row in numbers]
        for i, c in enumerate(["pid", "ppid", "uid", "rss_bytes", "vsz_bytes"])
    }
    columns["comm"] = list(comms)
    columns["args"] = [pd.NA] * len(comms)
    return columns


def frame(columns: dict[str, list[object] | np.ndarray]) -> pd.DataFrame:
    """Columns (from ``records``, possibly of many files chained) -> the typed frame."""
    return typed_frame(columns, SCHEMA)


def parse(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse ``ps -eo pid,ppid,rss,vsz,uid,comm`` output."""
    path, text = read_text(source)
    return frame(records(text, path))


def args_records(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one ps_args.txt: ``pid``, ``args``."""
    pids: list[int] = []
    args: list[str] = []
    for no, line in enumerate(split_lines(text), 1):
        tokens = line.split(None, 1)
        if not tokens or tokens[0] == "PID":
            continue
        try:
            pids.append(int64(tokens[0]))
        except ValueError as err:
            raise ParseError(path, no, line, "expected 'pid args'") from err
        args.append(tokens[1].lstrip(" \t") if len(tokens) == 2 else "")
    return {"pid": pids, "args": args}


def parse_args(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse ``ps -eo pid,args`` output."""
    path, text = read_text(source)
    return pd.DataFrame(args_records(text, path), columns=list(ARGS_SCHEMA)).astype(ARGS_SCHEMA)
