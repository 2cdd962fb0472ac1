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

Module and method flag columns are not kept. A malformed line raises ``ParseError``.
"""

from __future__ import annotations

import os

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import int64
from tcpmemlib.parsers.text import read_text, split_lines

__all__ = ["SCHEMA", "frame", "parse", "records"]

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


def _int(value: str) -> object:
    number = int64(value)
    return pd.NA if number == -1 else number


def records(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one file (see ``frame``)."""
    rows: list[list[object]] = []
    for no, line in enumerate(split_lines(text), 1):
        tokens = line.split()
        if not tokens or (tokens[0] == "protocol" and "size" in tokens):
            continue
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
    out = pd.DataFrame(columns, columns=list(SCHEMA))
    return out.astype({"press": "str"}).astype(SCHEMA)


def parse(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse /proc/net/protocols text/path."""
    path, text = read_text(source)
    return frame(records(text, path))
