"""``/proc/slabinfo`` (format 2.x) -> one row per slab cache.

Root only (mode 0400). When the collector could not read it, the file is absent and ``meta.txt`` says
``missing=slabinfo.txt: ...``: the capture records that, it is not fatal. Layout (``slabinfo_show()``,
mm/slab_common.c): a ``slabinfo - version: 2.1`` line, a ``# name ...`` header, then
``name active_objs num_objs objsize objperslab pagesperslab : tunables l b s : slabdata active_slabs
num_slabs sharedavail``. With SLUB, merged caches appear under one name only (see ``slab_aliases``);
large kmalloc (> 8 KiB) is in meminfo ``SUnreclaim`` but in no row here.

| column | dtype | unit | source |
|---|---|---|---|
| name | string | | cache name as printed |
| active_objs | Int64 | objects | ``<active_objs>`` |
| num_objs | Int64 | objects | ``<num_objs>`` |
| objsize_bytes | Int64 | bytes | ``<objsize>`` |
| objperslab | Int64 | objects | ``<objperslab>`` |
| pagesperslab | Int64 | pages | ``<pagesperslab>`` |
| active_slabs | Int64 | slabs | ``slabdata <active_slabs>`` (SLUB prints num_slabs here too) |
| num_slabs | Int64 | slabs | ``slabdata <num_slabs>`` |
| active_bytes | Int64 | bytes | active_objs × objsize |
| slab_bytes | Int64 | bytes | num_slabs × pagesperslab × page size (``<NA>`` without a page size) |

Versions other than 2.x raise ``ParseError`` (1.x had other columns); so does a malformed row.

``records`` reads a whole file with one regex (``records_fast``: plain ASCII, the version line, an
optional ``#`` header, then only well-formed rows of unsigned integers inside int64, blanks being
spaces) and gives int64 arrays; any other text is read by the line-by-line parser
(``records_by_line``), which gives the same columns as lists and names a bad line.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import digits_array, int64_column, int64s
from tcpmemlib.parsers.text import plain, read_text, split_lines, string_column
from tcpmemlib.units import pages_to_bytes

__all__ = ["SCHEMA", "frame", "parse", "records", "records_by_line", "records_fast"]

SCHEMA: dict[str, str] = {
    "name": "string",
    "active_objs": "Int64",
    "num_objs": "Int64",
    "objsize_bytes": "Int64",
    "objperslab": "Int64",
    "pagesperslab": "Int64",
    "active_slabs": "Int64",
    "num_slabs": "Int64",
    "active_bytes": "Int64",
    "slab_bytes": "Int64",
}
_INTS = list(SCHEMA)[1:8]

# The whole-text fast path (plain text only): the head, then rows of name (not a number), five
# numbers (one group), the tunables and the slabdata numbers (the first two as one group).
_HEAD = re.compile(r"slabinfo - version:[ \t]*+2\.[^\n]*+\n(?:#[^\n]*+\n)?")
_ROWS = re.compile(  # each row after its line's newline (the head ends with one)
    r"\n([^ \t\n:#0-9-][^ \t\n:]*+)"  # name: not a number, no blank or ':'
    r"( ++[0-9]++ ++[0-9]++ ++[0-9]++ ++[0-9]++ ++[0-9]++)"  # the five counts
    r" ++: tunables ++[0-9]++ ++[0-9]++ ++[0-9]++"
    r" : slabdata ++([0-9]++ ++[0-9]++) ++[0-9]++ *+(?=\n|\Z)"
)


def records(text: str, path: str | None = None) -> dict[str, list[object] | np.ndarray]:
    """Columns of one file (``name`` and the seven counts; see ``frame``): ``records_fast``, else
    ``records_by_line``."""
    fast = records_fast(text)
    return fast if fast is not None else records_by_line(text, path)


def records_fast(text: str) -> dict[str, list[object] | np.ndarray] | None:
    """Columns of one file read with one regex (int64 arrays), or None when the text is not
    plainly well-formed (then ``records_by_line`` reads it and names any bad line)."""
    head = _HEAD.match(text)
    if head is None or not plain(text):
        return None
    start = head.end()
    rows = _ROWS.findall(text, start - 1)
    if len(rows) != text.count("\n", start) + (not text.endswith("\n") and len(text) > start):
        return None
    n = len(rows)
    names, five, two = zip(*rows, strict=True) if rows else ((), (), ())
    try:  # the five counts of every row, then the two slabdata counts of every row
        numbers = digits_array(f"{' '.join(five)} {' '.join(two)}", 7 * n)
    except ValueError:
        return None
    head_numbers = numbers[: 5 * n].reshape(n, 5).T.copy()
    slab_numbers = numbers[5 * n :].reshape(n, 2).T.copy()
    # one contiguous row per column
    columns: dict[str, list[object] | np.ndarray] = {"name": list(names)}
    columns.update(zip(_INTS[:5], head_numbers, strict=True))
    columns.update(zip(_INTS[5:], slab_numbers, strict=True))
    return columns


def records_by_line(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one file, line by line (the reference parser; names a bad line)."""
    rows: list[list[object]] = []
    seen_version = False
    for no, line in enumerate(split_lines(text), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("slabinfo - version:"):
            version = line.split(":", 1)[1].strip()
            if not version.startswith("2."):
                raise ParseError(path, no, line, f"unsupported slabinfo version {version!r}")
            seen_version = True
            continue
        if not seen_version:
            raise ParseError(path, no, line, "no 'slabinfo - version: 2.x' line before the data")
        head, _, rest = line.partition(":")
        tokens = head.split()
        slabdata = rest.rpartition("slabdata")[2].split()
        if len(tokens) != 6 or len(slabdata) != 3:
            raise ParseError(
                path, no, line, "expected 'name 5 numbers : tunables ... : slabdata 3 numbers'"
            )
        try:
            numbers = int64s([*tokens[1:], *slabdata[:2]])
        except ValueError as err:
            raise ParseError(path, no, line, "a count is not an integer") from err
        rows.append([tokens[0], *numbers])
    columns = ["name", *_INTS]
    return {c: [row[i] for row in rows] for i, c in enumerate(columns)}


def frame(
    columns: dict[str, list[object]], page_size_bytes: int | pd.Series | None = None
) -> pd.DataFrame:
    """Column lists (from ``records``, possibly of many files) -> the typed frame.

    ``page_size_bytes``: one size, or a Series with one size per row; ``slab_bytes`` is NA without.
    """
    data = {"name": string_column(columns.get("name", []))}
    for c in _INTS:
        data[c] = int64_column(columns.get(c, []))
    n = len(data["name"])
    data["active_bytes"] = data["active_objs"] * data["objsize_bytes"]
    data["slab_bytes"] = pd.arrays.IntegerArray(np.zeros(n, np.int64), np.ones(n, dtype=bool))
    out = pd.DataFrame(data, columns=list(SCHEMA), copy=False)
    if page_size_bytes is not None:
        if isinstance(page_size_bytes, pd.Series):
            page_size_bytes = page_size_bytes.set_axis(out.index)
        out["slab_bytes"] = pages_to_bytes(out["num_slabs"] * out["pagesperslab"], page_size_bytes)
        out = out.astype(SCHEMA)
    return out


def parse(
    source: str | bytes | os.PathLike[str], page_size_bytes: int | None = None
) -> pd.DataFrame:
    """Parse slabinfo text/path; ``slab_bytes`` is filled when ``page_size_bytes`` is given."""
    path, text = read_text(source)
    return frame(records(text, path), page_size_bytes)
