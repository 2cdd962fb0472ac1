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
"""

from __future__ import annotations

import os

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import int64s
from tcpmemlib.parsers.text import read_text, split_lines
from tcpmemlib.units import pages_to_bytes

__all__ = ["SCHEMA", "frame", "parse", "records"]

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


def records(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one file (``name`` and the seven counts; see ``frame``)."""
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
    out = pd.DataFrame({c: columns.get(c, []) for c in ["name", *_INTS]}, columns=["name", *_INTS])
    out = out.astype({"name": "string", **dict.fromkeys(_INTS, "Int64")})
    out["active_bytes"] = out["active_objs"] * out["objsize_bytes"]
    out["slab_bytes"] = pd.array([pd.NA] * len(out), dtype="Int64")
    if page_size_bytes is not None:
        if isinstance(page_size_bytes, pd.Series):
            page_size_bytes = page_size_bytes.set_axis(out.index)
        out["slab_bytes"] = pages_to_bytes(out["num_slabs"] * out["pagesperslab"], page_size_bytes)
    return out.astype(SCHEMA)


def parse(
    source: str | bytes | os.PathLike[str], page_size_bytes: int | None = None
) -> pd.DataFrame:
    """Parse slabinfo text/path; ``slab_bytes`` is filled when ``page_size_bytes`` is given."""
    path, text = read_text(source)
    return frame(records(text, path), page_size_bytes)
