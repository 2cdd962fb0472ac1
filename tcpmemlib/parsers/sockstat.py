"""``/proc/net/sockstat`` and ``/proc/net/sockstat6`` -> one row (the two files share this parser).

Each line is ``PROTO: key value key value ...`` (``sockstat_seq_show()``, net/ipv4/proc.c;
``sockstat6_seq_show()``, net/ipv6/proc.c). A column whose line or key the file does not print is
``<NA>`` (sockstat6 fills only the ``*6`` columns; kernels before 2.6.x print no ``UDPLITE`` line, some
configurations no ``FRAG`` line). ``*_mem_bytes`` need the page size: ``parse(source,
page_size_bytes=...)`` fills them, else they are ``<NA>``.

| column | dtype | unit | source token | note |
|---|---|---|---|---|
| sockets_used | Int64 | sockets | ``sockets: used`` | per netns, every family |
| tcp_inuse | Int64 | sockets | ``TCP: inuse`` | IPv4 only, per netns |
| tcp_orphan | Int64 | sockets | ``TCP: orphan`` | global |
| tcp_tw | Int64 | sockets | ``TCP: tw`` | per netns, v4+v6 |
| tcp_alloc | Int64 | sockets | ``TCP: alloc`` | global, v4+v6 |
| tcp_mem_pages | Int64 | pages | ``TCP: mem`` | global, v4+v6 |
| tcp_mem_bytes | Int64 | bytes | tcp_mem_pages × page size | |
| udp_inuse | Int64 | sockets | ``UDP: inuse`` | |
| udp_mem_pages | Int64 | pages | ``UDP: mem`` | |
| udp_mem_bytes | Int64 | bytes | udp_mem_pages × page size | |
| udplite_inuse | Int64 | sockets | ``UDPLITE: inuse`` | since 2.6.20 |
| raw_inuse | Int64 | sockets | ``RAW: inuse`` | |
| frag_inuse | Int64 | queues | ``FRAG: inuse`` | |
| frag_memory_bytes | Int64 | bytes | ``FRAG: memory`` | already bytes |
| tcp6_inuse, udp6_inuse, udplite6_inuse, raw6_inuse, frag6_inuse | Int64 | | ``TCP6: inuse`` ... | sockstat6 |
| frag6_memory_bytes | Int64 | bytes | ``FRAG6: memory`` | |
| tcp_inuse_after | Int64 | sockets | ``TCP: inuse`` of ``sockstat_after.txt`` | read right after ss |
| tcp_mem_after_pages | Int64 | pages | ``TCP: mem`` of ``sockstat_after.txt`` | read right after ss |
| tcp_mem_after_bytes | Int64 | bytes | tcp_mem_after_pages × page size | |

collect.sh reads sockstat just before ``ss`` (``sockstat.txt``) and, since collector 0.3, just after
it (``sockstat_after.txt``, parsed by ``after_records``): the two bracket the moment ss read the
sockets, so a gap between Σ skmem and sockstat can be judged against how much sockstat itself
moved meanwhile. Older captures have no after-read: those columns are ``<NA>``.

Unknown lines or keys (a future kernel) are skipped with one ``warnings.warn`` per file. A line that is
not ``PROTO: key int ...`` raises ``ParseError`` naming the line.
"""

from __future__ import annotations

import os
import warnings

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import INT64_MAX, INT64_MIN, int64
from tcpmemlib.parsers.text import read_text, split_lines, typed_frame
from tcpmemlib.units import pages_to_bytes

__all__ = [
    "SCHEMA",
    "after_records",
    "frame",
    "merge",
    "parse",
    "records",
    "records_by_line",
    "records_fast",
    "with_bytes",
]

SCHEMA: dict[str, str] = {
    c: "Int64"
    for c in (
        "sockets_used",
        "tcp_inuse",
        "tcp_orphan",
        "tcp_tw",
        "tcp_alloc",
        "tcp_mem_pages",
        "tcp_mem_bytes",
        "udp_inuse",
        "udp_mem_pages",
        "udp_mem_bytes",
        "udplite_inuse",
        "raw_inuse",
        "frag_inuse",
        "frag_memory_bytes",
        "tcp6_inuse",
        "udp6_inuse",
        "udplite6_inuse",
        "raw6_inuse",
        "frag6_inuse",
        "frag6_memory_bytes",
        "tcp_inuse_after",
        "tcp_mem_after_pages",
        "tcp_mem_after_bytes",
    )
}
# The columns of the after-read (sockstat_after.txt) and the columns they repeat.
_AFTER = {"tcp_inuse": "tcp_inuse_after", "tcp_mem_pages": "tcp_mem_after_pages"}

# (line label, key) -> column
_COLUMNS: dict[tuple[str, str], str] = {("sockets", "used"): "sockets_used"}
for _proto in ("TCP", "UDP", "UDPLITE", "RAW", "FRAG", "TCP6", "UDP6", "UDPLITE6", "RAW6", "FRAG6"):
    _COLUMNS[(_proto, "inuse")] = f"{_proto.lower()}_inuse"
_COLUMNS.update(
    {
        ("TCP", "orphan"): "tcp_orphan",
        ("TCP", "tw"): "tcp_tw",
        ("TCP", "alloc"): "tcp_alloc",
        ("TCP", "mem"): "tcp_mem_pages",
        ("UDP", "mem"): "udp_mem_pages",
        ("FRAG", "memory"): "frag_memory_bytes",
        ("FRAG6", "memory"): "frag6_memory_bytes",
    }
)


# label -> {key -> column}: the fast path's lookups
_BY_LABEL: dict[str, dict[str, str]] = {}
for (_label, _key), _column in _COLUMNS.items():
    _BY_LABEL.setdefault(_label, {})[_key] = _column


def records(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists (one row, or none for empty text); unknown fields -> one warning per file.

    ``records_fast`` reads an ASCII file of only known fields; any other text is read by
    ``records_by_line``, which warns about unknown fields and names a bad line."""
    fast = records_fast(text)
    return fast if fast is not None else records_by_line(text, path, stacklevel=3)


def records_fast(text: str) -> dict[str, list[object]] | None:
    """The row of an ASCII file without ``\\r`` whose every line is blank or ``LABEL: key value
    ...`` with known labels and keys and int64 values, else None."""
    if not text.isascii() or "\r" in text:
        return None
    values: dict[str, int] = {}
    for line in text.split("\n"):
        label, sep, rest = line.partition(":")
        by_key = _BY_LABEL.get(label)
        if by_key is None or not sep:
            if line.strip():
                return None
            continue
        tokens = rest.split()
        if len(tokens) % 2:
            return None
        for i in range(0, len(tokens), 2):
            column = by_key.get(tokens[i])
            if column is None:
                return None
            try:
                value = int(tokens[i + 1])
            except ValueError:
                return None
            if not INT64_MIN <= value <= INT64_MAX:
                return None
            values[column] = value
    if not values:
        return {c: [] for c in SCHEMA}
    return {c: [values.get(c, pd.NA)] for c in SCHEMA}


def records_by_line(
    text: str, path: str | None = None, stacklevel: int = 2
) -> dict[str, list[object]]:
    """The row of one file, line by line (the reference parser): unknown fields -> one warning
    (attributed ``stacklevel`` frames up), a bad line -> ``ParseError`` naming it."""
    values: dict[str, int] = {}
    unknown: list[str] = []
    for no, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        label, sep, rest = line.partition(":")
        tokens = rest.split()
        if not sep or not label or " " in label.strip() or len(tokens) % 2:
            raise ParseError(path, no, line, "expected 'PROTO: key value key value ...'")
        for key, raw in zip(tokens[::2], tokens[1::2], strict=True):
            try:
                value = int64(raw)
            except ValueError as err:
                raise ParseError(path, no, line, f"value of {key!r} is not an integer") from err
            column = _COLUMNS.get((label.strip(), key))
            if column is None:
                unknown.append(f"{label.strip()} {key}")
            else:
                values[column] = value
    if unknown:
        warnings.warn(
            f"{path or '<text>'}: unknown sockstat fields skipped: {', '.join(unknown)}",
            stacklevel=stacklevel,
        )
    if not values:
        return {c: [] for c in SCHEMA}
    return {c: [values.get(c, pd.NA)] for c in SCHEMA}


def after_records(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of ``sockstat_after.txt``: only the ``*_after`` columns are filled."""
    got = records(text, path)
    if not got["sockets_used"] and not any(got[c] for c in _AFTER):
        return {c: [] for c in SCHEMA}
    row = {c: [pd.NA] for c in SCHEMA}
    for column, after in _AFTER.items():
        row[after] = got[column] if got[column] else [pd.NA]
    return row


def frame(columns: dict[str, list[object]]) -> pd.DataFrame:
    """Column lists (from ``records``, possibly of many files) -> the typed frame."""
    return typed_frame(columns, SCHEMA)


def parse(
    source: str | bytes | os.PathLike[str], page_size_bytes: int | None = None
) -> pd.DataFrame:
    """Parse sockstat or sockstat6 text/path into one row (no row for empty input)."""
    path, text = read_text(source)
    out = frame(records(text, path))
    return out if page_size_bytes is None else with_bytes(out, page_size_bytes)


def with_bytes(df: pd.DataFrame, page_size_bytes: int | pd.Series) -> pd.DataFrame:
    """Fill ``tcp_mem_bytes`` / ``udp_mem_bytes`` from the page columns (page size per row or one)."""
    df = df.copy()
    if isinstance(page_size_bytes, pd.Series):
        page_size_bytes = page_size_bytes.set_axis(df.index)
    df["tcp_mem_bytes"] = pages_to_bytes(df["tcp_mem_pages"], page_size_bytes)
    df["udp_mem_bytes"] = pages_to_bytes(df["udp_mem_pages"], page_size_bytes)
    df["tcp_mem_after_bytes"] = pages_to_bytes(df["tcp_mem_after_pages"], page_size_bytes)
    return df


def merge(v4: pd.DataFrame, v6: pd.DataFrame) -> pd.DataFrame:
    """One row from a sockstat row and a sockstat6 row of the same snapshot (either may be empty)."""
    if v6.empty:
        return v4
    if v4.empty:
        return v6
    out = v4.copy()
    for column in SCHEMA:
        out[column] = out[column].fillna(v6[column].iloc[0])
    return out
