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
"""

from __future__ import annotations

import os
import re

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import int64
from tcpmemlib.parsers.text import read_text, split_lines

__all__ = ["SCHEMA", "frame", "parse", "records"]

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


def records(text: str, path: str | None = None) -> dict[str, list[object]]:
    """Column lists of one file (see ``frame``)."""
    rows: list[dict[str, object]] = []
    zone_row: dict[str, object] | None = None
    cpu_row: dict[str, object] | None = None
    for no, line in enumerate(split_lines(text), 1):
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
            elif key in ("vm", "pagesets", "node_unreclaimable", "start_pfn", "per-node"):
                cpu_row = None
        except (ValueError, IndexError) as err:
            raise ParseError(path, no, line, "value is not an integer") from err
    return {c: [row.get(c, pd.NA) for row in rows] for c in SCHEMA}


def frame(columns: dict[str, list[object]]) -> pd.DataFrame:
    """Column lists (from ``records``, possibly of many files) -> the typed frame."""
    out = pd.DataFrame(columns, columns=list(SCHEMA))
    return out.astype({"zone": "str"}).astype(SCHEMA)


def parse(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse zoneinfo text/path."""
    path, text = read_text(source)
    return frame(records(text, path))
