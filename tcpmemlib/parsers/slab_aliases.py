"""``slab_aliases.txt`` (written by collect.sh) -> one row per SLUB cache name that is a symlink.

With SLUB cache merging, ``/sys/kernel/slab/<cache>`` is a symlink to a merged cache's unique id
(``:A-0000128``, ``:0000064``...), and ``/proc/slabinfo`` prints the merged cache under one of the
names only (e.g. ``tcp_bind_bucket`` is counted in the row named ``eventpoll_epi``). collect.sh writes
``<cache> <target>`` per line, from those symlinks.

| column | dtype | source |
|---|---|---|
| cache | string | the cache name (symlink name) |
| target | string | the symlink target's base name (the merged cache's sysfs id) |
| shown_as | string | the name slabinfo prints for ``target``: the one cache of the same target that has a slabinfo row (``parse(source, slab_names=...)``), ``<NA>`` if unknown |

A line that is not two whitespace-separated names raises ``ParseError`` naming the line.
``records`` reads a plain ASCII file of only ``<cache> <target>`` lines with one ``split()`` of
the whole text (``records_fast``); any other text is read line by line (``records_by_line``),
naming a bad line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from itertools import repeat

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.text import plain, read_text, split_lines, typed_frame

__all__ = ["SCHEMA", "frame", "parse", "records", "records_by_line", "records_fast", "resolve"]

SCHEMA: dict[str, str] = {"cache": "string", "target": "string", "shown_as": "string"}


def records(
    text: str, path: str | None = None, slab_names: Iterable[str] | None = None
) -> dict[str, list[object]]:
    """Column lists of one file; ``shown_as`` resolved from that snapshot's slabinfo names if given."""
    fast = records_fast(text, slab_names)
    return fast if fast is not None else records_by_line(text, path, slab_names)


def records_fast(
    text: str, slab_names: Iterable[str] | None = None
) -> dict[str, list[object]] | None:
    """Column lists from one ``split()`` of the whole text, or None when the text is not plain or
    a line is not two words (then ``records_by_line`` reads it and names any bad line)."""
    if not plain(text) or "\x00" in text:
        return None
    lines = text.count("\n") + (not text.endswith("\n") and bool(text))
    # a NUL word ends each line (plain text has none): every line is two words when every third
    # word is one
    words = text.replace("\n", " \x00 ").split()
    if not text.endswith("\n") and text:
        words.append("\x00")
    if len(words) != 3 * lines or words[2::3] != ["\x00"] * lines:
        return None
    caches, targets = words[0::3], words[1::3]
    if "/" in text:
        targets = [t.rstrip("/").rsplit("/", 1)[-1] for t in targets]
    return {"cache": caches, "target": targets, "shown_as": resolve(caches, targets, slab_names)}


def records_by_line(
    text: str, path: str | None = None, slab_names: Iterable[str] | None = None
) -> dict[str, list[object]]:
    """Column lists of one file, line by line (the reference parser; names a bad line)."""
    caches: list[str] = []
    targets: list[str] = []
    for no, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        tokens = line.split()
        if len(tokens) != 2:
            raise ParseError(path, no, line, "expected '<cache> <target>'")
        caches.append(tokens[0])
        targets.append(tokens[1].rstrip("/").rsplit("/", 1)[-1])
    return {"cache": caches, "target": targets, "shown_as": resolve(caches, targets, slab_names)}


def resolve(
    caches: list[str], targets: list[str], slab_names: Iterable[str] | None
) -> list[object]:
    """For each alias, the name slabinfo prints for its target (the alias of it that has a row)."""
    if slab_names is None:
        return [pd.NA] * len(caches)
    names = set(slab_names)
    # the first cache of each target that has a row: the last one written, walking backwards
    shown = {t: c for c, t in zip(reversed(caches), reversed(targets), strict=True) if c in names}
    return list(map(shown.get, targets, repeat(pd.NA)))


def frame(columns: dict[str, list[object]]) -> pd.DataFrame:
    """Column lists (from ``records``, possibly of many files) -> the typed frame."""
    return typed_frame(columns, SCHEMA)


def parse(
    source: str | bytes | os.PathLike[str], slab_names: Iterable[str] | None = None
) -> pd.DataFrame:
    """Parse ``<cache> <target>`` lines; resolve ``shown_as`` from the slabinfo names if given."""
    path, text = read_text(source)
    return frame(records(text, path, slab_names))
