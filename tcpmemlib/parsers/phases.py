"""``phases.tsv`` -> one row per phase (written by the lab runner; an operator may append to it).

``<UTC ISO-8601>\\t<label>`` per line; a label marks the start of a phase, which lasts until the next
line's time. Blank lines and ``#`` comments are skipped. Rows are sorted by start.

| column | dtype | source |
|---|---|---|
| phase | string | the label (to the end of the line) |
| start | datetime64[ns, UTC] | the time (must carry a zone: ``Z`` or ``+00:00``) |
| end | datetime64[ns, UTC] | the next phase's start; ``NaT`` for the last |

A line without a tab, an empty label, or an unparseable/zone-less time raises ``ParseError``.
"""

from __future__ import annotations

import os

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.text import read_text, split_lines

__all__ = ["SCHEMA", "parse"]

SCHEMA: dict[str, str] = {
    "phase": "string",
    "start": "datetime64[ns, UTC]",
    "end": "datetime64[ns, UTC]",
}


def parse(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse phases.tsv text/path."""
    path, text = read_text(source)
    starts: list[pd.Timestamp] = []
    labels: list[str] = []
    for no, line in enumerate(split_lines(text), 1):
        if not line.strip() or line.startswith("#"):
            continue
        stamp, sep, label = line.partition("\t")
        if not sep or not label.strip():
            raise ParseError(path, no, line, "expected '<UTC time>\\t<label>'")
        try:
            when = pd.Timestamp(stamp.strip())
        except ValueError as err:
            raise ParseError(path, no, line, f"bad time {stamp!r}") from err
        if when.tzinfo is None:
            raise ParseError(path, no, line, "time has no zone (expected ...Z)")
        starts.append(when.tz_convert("UTC"))
        labels.append(label.strip())
    frame = pd.DataFrame({"phase": labels, "start": pd.to_datetime(starts, utc=True)})
    frame = frame.sort_values("start", kind="stable", ignore_index=True)
    frame["end"] = frame["start"].shift(-1)
    return frame.astype(SCHEMA)
