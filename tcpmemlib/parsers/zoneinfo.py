"""``/proc/zoneinfo`` -> per-CPU page list rows plus one free-pages row per zone.

Freed pages can sit on per-CPU page lists ("pcp"), which are not in ``MemFree`` (docs/kernel.md
§9). ``zoneinfo_show_print()`` (mm/vmstat.c) prints, per ``Node N, zone NAME`` block, a ``pagesets`` list of ``cpu: i`` entries with ``count:``, ``high:``, ``batch:`` (and since 6.7
``high_min:``/``high_max:``, not kept). Zones with no present pages print no pagesets.

| column | dtype | unit | source |
|---|---|---|---|
| node | Int64 | | ``Node N,`` |
| zone | category | | ``zone NAME`` (``DMA``, ``DMA32``, ``Normal``, ``Movable``...) |
| cpu | Int64 | | ``cpu: i``; ``<NA>`` on the zone's free-pages row |
| count_pages | Int64 | pages | pcp ``count:``; on the zone row: ``nr_free_pages`` (else ``pages free``) |
| high_pages | Int64 | pages | pcp ``high:``; NA on the zone row |
| batch_pages | Int64 | pages | pcp ``batch:``; NA on the zone row |

A ``cpu:`` or count line outside a zone, or a non-integer value, raises ``ParseError``.

Most of the file (the zone and node counters) makes no row. ``records`` finds the lines that make
or fill rows with one regex (``records_fast``: plain ASCII text whose per-CPU entries are the
kernel's four lines in order and whose every line the line-by-line reader would act on is one of
them); any other text is read line by line (``records_by_line``), which names a bad line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import int64
from tcpmemlib.parsers.text import plain, read_text, split_lines, typed_frame

__all__ = ["SCHEMA", "frame", "parse", "records", "records_by_line", "records_fast"]

SCHEMA: dict[str, str] = {
    "node": "Int64",
    "zone": "category",
    "cpu": "Int64",
    "count_pages": "Int64",
    "high_pages": "Int64",
    "batch_pages": "Int64",
}
_ZONE = re.compile(r"^Node\s+(\d+),\s+zone\s+(\S+)\s*$")
_PCP = {"count": "count_pages", "high": "high_pages", "batch": "batch_pages"}
_ENDS_PCP = ("vm", "pagesets", "node_unreclaimable", "start_pfn", "per-node")

# The fast path (plain text, a newline put before the first line and after the last): the lines
# that make or fill a row, as events. A per-CPU entry is one event of four lines in the kernel's
# order (cpu, count, high, batch). The last group is any other line the line-by-line reader could
# act on (and a few more): when one is found, the fast path leaves the text to that reader.
_B = r"[ \t]*+"
_EVENTS = re.compile(
    r"\n(?:(Node[^\n]*+)|[ \t]*+(?:"
    rf"cpu{_B}:{_B}([0-9]++){_B}\n{_B}count{_B}:{_B}([0-9]++){_B}"
    rf"\n{_B}high{_B}:{_B}([0-9]++){_B}\n{_B}batch{_B}:{_B}([0-9]++){_B}(?=\n)"
    rf"|nr_free_pages[ \t]++([0-9]++){_B}(?=\n)"
    rf"|pages[ \t]++free[ \t]++([0-9]++){_B}(?=\n)|(?=Node)"
    rf"|((?:cpu|count|high|batch){_B}:|(?:nr_free_pages|pages[ \t]++free)(?=[ \t:\n]))))"
)


def records(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one file (see ``frame``): ``records_fast``, else ``records_by_line``."""
    fast = records_fast(text)
    return fast if fast is not None else records_by_line(text, path)


def records_fast(text: str) -> dict[str, list[object]] | None:
    """Column lists from the lines that make rows (one regex), or None when the text is not plain
    or has a line the events do not account for or a bad value (``records_by_line`` then)."""
    if not plain(text):
        return None
    framed = f"\n{text}\n"
    columns: dict[str, list[object]] = {c: [] for c in SCHEMA}
    node, zone, cpus, counts = (
        columns["node"],
        columns["zone"],
        columns["cpu"],
        columns["count_pages"],
    )
    highs, batches = columns["high_pages"], columns["batch_pages"]
    zone_at = -1  # the row of the current zone
    try:
        for node_line, cpu, count, high, batch, nr_free, pages_free, stray in _EVENTS.findall(
            framed
        ):
            if node_line:
                match = _ZONE.match(node_line)
                if match is None:
                    return None
                zone_at = len(node)
                node.append(int64(match[1]))
                zone.append(match[2])
                cpus.append(pd.NA)
                counts.append(pd.NA)
                highs.append(pd.NA)
                batches.append(pd.NA)
            elif cpu:
                if zone_at < 0:
                    return None
                node.append(node[zone_at])
                zone.append(zone[zone_at])
                cpus.append(int64(cpu))
                counts.append(int64(count))
                highs.append(int64(high))
                batches.append(int64(batch))
            elif nr_free:
                if zone_at >= 0:
                    counts[zone_at] = int64(nr_free)
            elif pages_free:
                if zone_at >= 0 and counts[zone_at] is pd.NA:
                    counts[zone_at] = int64(pages_free)
            elif stray:
                return None
    except ValueError:
        return None
    return columns


def records_by_line(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one file, every line read (the reference parser; names a bad line)."""
    return _rows(enumerate(split_lines(text), 1), path)


def _rows(numbered: Iterable[tuple[int, str]], path: str | None) -> dict[str, list[object]]:
    rows: list[dict[str, object]] = []
    zone_row: dict[str, object] | None = None
    cpu_row: dict[str, object] | None = None
    for no, line in numbered:
        stripped = line.strip()
        if not stripped:
            continue
        match = _ZONE.match(line)
        if match:
            try:
                node = int64(match[1])
            except ValueError as err:
                raise ParseError(path, no, line, f"bad node number: {err}") from err
            zone_row = {"node": node, "zone": match[2], "cpu": pd.NA, "count_pages": pd.NA}
            rows.append(zone_row)
            cpu_row = None
            continue
        if line.startswith("Node"):
            raise ParseError(path, no, line, "expected 'Node N, zone NAME'")
        tokens = stripped.replace(":", " : ", 1).split()
        key = tokens[0]
        try:
            if key == "cpu" and len(tokens) == 3 and tokens[1] == ":":
                if zone_row is None:
                    raise ParseError(path, no, line, "per-CPU entry before any 'Node N, zone' line")
                cpu_row = {
                    "node": zone_row["node"],
                    "zone": zone_row["zone"],
                    "cpu": int64(tokens[2]),
                }
                rows.append(cpu_row)
            elif key in _PCP and len(tokens) == 3 and tokens[1] == ":" and cpu_row is not None:
                cpu_row[_PCP[key]] = int64(tokens[2])
            elif zone_row is not None and key == "nr_free_pages" and len(tokens) == 2:
                zone_row["count_pages"] = int64(tokens[1])
            elif (
                zone_row is not None
                and tokens[:2] == ["pages", "free"]
                and zone_row["count_pages"] is pd.NA
            ):
                zone_row["count_pages"] = int64(tokens[2])
            elif key in _ENDS_PCP:
                cpu_row = None
        except (ValueError, IndexError) as err:
            raise ParseError(path, no, line, "value is not an integer") from err
    return {c: [row.get(c, pd.NA) for row in rows] for c in SCHEMA}


def frame(columns: dict[str, list[object]]) -> pd.DataFrame:
    """Column lists (from ``records``, possibly of many files) -> the typed frame."""
    return typed_frame(columns, SCHEMA)


def parse(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse zoneinfo text/path."""
    path, text = read_text(source)
    return frame(records(text, path))
