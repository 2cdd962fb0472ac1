"""``meta.txt`` (written by collect.sh) -> one row describing the snapshot, plus its recorded problems.

``key=value`` lines, value to the end of the line (docs/design.md §1). Unknown keys are ignored (a newer
collector); ``missing=<file>: <reason>`` and ``failed=<command>: <reason>`` may repeat.

``parse(source)``:

| column | dtype | unit | key |
|---|---|---|---|
| collector_version | string | | ``collector_version`` |
| hostname | string | | ``hostname`` (``Capture`` turns it into ``host``) |
| kernel | string | | ``kernel`` (``uname -r``) |
| ss_version | string | | ``ss_version`` (``ss -V`` text) |
| page_size_bytes | Int64 | bytes | ``page_size`` (``getconf PAGESIZE``) |
| cpus | Int64 | | ``cpus`` (online CPUs) |
| start | datetime64[ns, UTC] | | ``start`` (ISO-8601 UTC, nanoseconds) |
| end | datetime64[ns, UTC] | | ``end`` |
| user | string | | ``user`` |
| uid | Int64 | | ``uid`` |
| ss_oneline | boolean | | ``ss_oneline`` (``1`` if ``ss -O`` was used) |
| args_collected | boolean | | ``args`` (``1`` if ps_args.txt was collected) |
| interval_s | Float64 | seconds | ``interval_s`` |
| cgroup_version | category | | ``cgroup_version``: ``1``, ``2``, ``hybrid``, ``none`` |

``parse_problems(source)``: ``kind`` (``missing``/``failed``), ``item`` (file or command), ``reason``.

``file_sizes(text)``: the ``file=<name>\t<stored bytes>\t<newlines>`` lines collect.sh (version 2
and later) writes (``-`` for newlines the writer could not count) for every other file of the snapshot: its size on disk and the newline count of its
(uncompressed) text, so a reader can tell a file cut at a line end from a whole one.
A line without ``=``, or a bad number/timestamp, raises ``ParseError`` naming the line.
"""

from __future__ import annotations

import os
import re

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import int64
from tcpmemlib.parsers.text import read_text, split_lines

__all__ = [
    "PROBLEMS_SCHEMA",
    "SCHEMA",
    "file_sizes",
    "frame",
    "parse",
    "parse_both",
    "parse_problems",
    "records",
]

SCHEMA: dict[str, str] = {
    "collector_version": "string",
    "hostname": "string",
    "kernel": "string",
    "ss_version": "string",
    "page_size_bytes": "Int64",
    "cpus": "Int64",
    "start": "datetime64[ns, UTC]",
    "end": "datetime64[ns, UTC]",
    "user": "string",
    "uid": "Int64",
    "ss_oneline": "boolean",
    "args_collected": "boolean",
    "interval_s": "Float64",
    "cgroup_version": "category",
}
PROBLEMS_SCHEMA: dict[str, str] = {"kind": "category", "item": "string", "reason": "string"}
_KEYS = {"page_size": "page_size_bytes", "args": "args_collected"}
_SPACE = re.compile(r"\s")  # (the same characters as str.isspace)
_INT = {"page_size_bytes", "cpus", "uid"}
_BOOL = {"ss_oneline", "args_collected"}
_TIME = {"start", "end"}


def _convert(column: str, raw: str) -> object:
    if raw == "":
        return pd.NA
    if column in _INT:
        return int64(raw)
    if column in _BOOL:
        if raw not in ("0", "1"):
            raise ValueError(f"expected 0 or 1, not {raw!r}")
        return raw == "1"
    if column == "interval_s":
        return float(raw)
    if column in _TIME:
        return pd.Timestamp(raw).tz_convert("UTC") if raw.endswith("Z") else _utc(raw)
    return raw


def _utc(raw: str) -> pd.Timestamp:
    stamp = pd.Timestamp(raw)
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp {raw!r} has no time zone (expected ...Z)")
    return stamp.tz_convert("UTC")


def records(
    text: str, path: str | None = None
) -> tuple[dict[str, object], list[tuple[str, str, str]]]:
    """One file -> ``(values by column, [(kind, item, reason), ...])``."""
    values: dict[str, object] = {}
    problems: list[tuple[str, str, str]] = []
    for no, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        key, sep, raw = line.partition("=")
        if not sep or not key or _SPACE.search(key):
            raise ParseError(path, no, line, "expected 'key=value'")
        if key == "file":
            continue  # file_sizes() reads these
        if key in ("missing", "failed"):
            item, _, reason = raw.partition(": ")
            problems.append((key, item.strip(), reason.strip()))
            continue
        column = _KEYS.get(key, key)
        if column not in SCHEMA:
            continue
        try:
            values[column] = _convert(column, raw.strip())
        except ValueError as err:
            raise ParseError(path, no, line, f"bad value for {key!r}: {err}") from err
    return values, problems


TRAILER = "meta_bytes="
# The first collector version that ends meta.txt with its own size (``meta_bytes=``).
TRAILER_SINCE = 3


def self_check(text: str, collector_version: object = None) -> str | None:
    """Why meta.txt is not as collect.sh wrote it, or None. collect.sh (version 3 and later) ends
    it with ``meta_bytes=<N>``: the bytes before that line. A file cut, emptied in part, or with
    bytes inserted or removed disagrees with it; an older capture has no such line."""
    body, _, last = text.rstrip("\n").rpartition("\n")
    if not last.startswith(TRAILER):
        try:
            version = int(str(collector_version))
        except ValueError:
            return None
        return f"no {TRAILER} line at its end: cut" if version >= TRAILER_SINCE else None
    want = last[len(TRAILER) :].strip()
    have = len((body + "\n").encode("utf-8", "surrogateescape")) if body else 0
    if want != str(have):
        return f"{have:,} bytes before its {TRAILER} line, collect.sh wrote {want}: changed"
    return None


def file_sizes(text: str, path: str | None = None) -> dict[str, tuple[int, int | None]]:
    """``{stored file name: (bytes, newline count or None)}`` from the ``file=`` lines."""
    sizes: dict[str, tuple[int, int | None]] = {}
    for no, line in enumerate(split_lines(text), 1):
        if not line.startswith("file="):
            continue
        fields = line[5:].split("\t")
        try:
            if len(fields) not in (2, 3) or not fields[0] or "/" in fields[0]:
                raise ValueError("expected 'file=<name>\\t<bytes>[\\t<lines>]'")
            lines = int64(fields[2]) if len(fields) == 3 and fields[2] not in ("", "-") else None
            sizes[fields[0]] = (int64(fields[1]), lines)
        except ValueError as err:
            raise ParseError(path, no, line, str(err)) from err
    return sizes


def frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Value dicts (from ``records``, one per file) -> the typed frame, one row each."""
    out = pd.DataFrame({c: [row.get(c, pd.NA) for row in rows] for c in SCHEMA})
    for column in _TIME:
        out[column] = pd.to_datetime(out[column], utc=True)
    return out.astype({"cgroup_version": "str"}).astype(SCHEMA)


def parse_both(source: str | bytes | os.PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse meta.txt once -> ``(one-row frame, problems frame)``; empty text -> empty frames."""
    path, text = read_text(source)
    values, problems = records(text, path)
    problem_frame = pd.DataFrame(problems, columns=list(PROBLEMS_SCHEMA)).astype(PROBLEMS_SCHEMA)
    return frame([values] if values else []), problem_frame


def parse(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """The one-row snapshot description (see the schema above)."""
    return parse_both(source)[0]


def parse_problems(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """The ``missing=`` / ``failed=`` lines."""
    return parse_both(source)[1]
