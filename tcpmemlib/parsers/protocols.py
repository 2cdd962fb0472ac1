"""``/proc/net/protocols`` -> one row per protocol (``proto_seq_printf()``, net/core/sock.c).

Header ``protocol  size sockets  memory press maxhdr  slab module  cl co di ...`` then one line per
registered protocol. ``memory`` is the protocol's ``memory_allocated`` in pages, ``-1`` when the
protocol does no memory accounting; ``press`` is ``yes``/``no``, or ``NI`` (not implemented).

| column | dtype | unit | source |
|---|---|---|---|
| protocol | string | | ``protocol`` (e.g. ``TCP``, ``TCPv6``, ``UDP``) |
| size_bytes | Int64 | bytes | ``size``: the protocol's socket object size (``obj_size``) |
| sockets | Int64 | sockets | ``sockets``: allocated sockets, ``-1`` -> NA |
| memory_pages | Int64 | pages | ``memory``; NA where the kernel prints -1 |
| press | category | | ``press``: ``yes``, ``no`` or ``NI`` |
| maxhdr_bytes | Int64 | bytes | ``maxhdr`` |
| slab | boolean | | ``slab``: ``yes``/``no`` (own slab cache) |

Module and method flag columns are not kept. A malformed line raises ``ParseError``. ``records``
reads a plain ASCII file of a header and well-formed rows with one regex (``records_fast``); any
other text is read line by line (``records_by_line``), naming a bad line.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import digits_array, int64
from tcpmemlib.parsers.text import plain, read_text, split_lines, typed_frame

__all__ = ["SCHEMA", "frame", "parse", "records", "records_by_line", "records_fast"]

SCHEMA: dict[str, str] = {
    "protocol": "string",
    "size_bytes": "Int64",
    "sockets": "Int64",
    "memory_pages": "Int64",
    "press": "category",
    "maxhdr_bytes": "Int64",
    "slab": "boolean",
}
_BOOL = {"yes": True, "no": False}
_N = r"-?[0-9]++"
# each row after its line's newline, words separated by spaces: name (not ``protocol``), size
# sockets memory (one group), press, maxhdr, slab, the rest
_ROWS = re.compile(
    rf"\n(?!protocol )([^ \t\n]++) ++({_N} ++{_N} ++{_N}) ++([^ \t\n]++) ++({_N}) ++(yes|no)"
    r"(?: [^\n]*+)?+(?=\n|\Z)"
)


def _int(value: str) -> object:
    number = int64(value)
    return pd.NA if number == -1 else number


def _header(line: str) -> bool:
    tokens = line.split()
    return not tokens or (tokens[0] == "protocol" and "size" in tokens)


def records(text: str, path: str | None = None) -> dict[str, list[object] | np.ndarray]:
    """Columns of one file (see ``frame``): ``records_fast``, else ``records_by_line``."""
    fast = records_fast(text)
    return fast if fast is not None else records_by_line(text, path)


def records_fast(text: str) -> dict[str, list[object] | np.ndarray] | None:
    """Columns read with one regex (int64 arrays where no value is NA), or None when the text is
    not plainly well-formed (then ``records_by_line`` reads it and names any bad line)."""
    if not plain(text):
        return None
    end = text.find("\n")
    if not _header(text if end < 0 else text[:end]):
        text, end = "\n" + text, 0
    elif end < 0:  # the header alone
        text, end = "", 0
    rows = _ROWS.findall(text, end)
    if len(rows) != text.count("\n", end) - text.endswith("\n"):
        return None
    n = len(rows)
    names, numbers, press, maxhdr, slab = (
        (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [], [], [])
    )
    try:  # size sockets memory of every row, then every maxhdr
        read = digits_array(f"{' '.join(numbers)} {' '.join(maxhdr)}", 4 * n)
    except ValueError:
        return None
    counts, maxhdr_bytes = read[: 3 * n].reshape(n, 3), read[3 * n :]
    sockets, memory = ([pd.NA if v == -1 else v for v in counts[:, i].tolist()] for i in (1, 2))
    return {
        "protocol": names,
        "size_bytes": np.ascontiguousarray(counts[:, 0]),
        "sockets": sockets,
        "memory_pages": memory,
        "press": press,
        "maxhdr_bytes": maxhdr_bytes,
        "slab": [s == "yes" for s in slab],
    }


def records_by_line(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one file, line by line (the reference parser; names a bad line)."""
    rows: list[list[object]] = []
    for no, line in enumerate(split_lines(text), 1):
        if _header(line):
            continue
        tokens = line.split()
        if len(tokens) < 7 or tokens[6] not in _BOOL:
            raise ParseError(
                path, no, line, "expected 'name size sockets memory press maxhdr slab ...'"
            )
        try:
            rows.append(
                [
                    tokens[0],
                    int64(tokens[1]),
                    _int(tokens[2]),
                    _int(tokens[3]),
                    tokens[4],
                    int64(tokens[5]),
                    _BOOL[tokens[6]],
                ]
            )
        except ValueError as err:
            raise ParseError(path, no, line, "a number is not an integer") from err
    return {c: [row[i] for row in rows] for i, c in enumerate(SCHEMA)}


def frame(columns: dict[str, list[object]]) -> pd.DataFrame:
    """Column lists (from ``records``, possibly of many files) -> the typed frame."""
    return typed_frame(columns, SCHEMA)


def parse(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse /proc/net/protocols text/path."""
    path, text = read_text(source)
    return frame(records(text, path))
