"""``Capture.problems``: what could not be read, as data (one row per file, line or member).

Severity ``error``: not loaded (or a line of it not loaded); ``warning``: loaded with a gap;
``collector``: collect.sh recorded it at capture time (meta.txt ``missing=``/``failed=``).
Python warnings are issued once per file name, however many snapshots it concerns.

A problem may also be *transient* (a full disk, an I/O error, too little memory): such a load is
never cached, so the next load tries again instead of serving the gap forever.
"""

from __future__ import annotations

import warnings

import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.schema import PROBLEMS_SCHEMA, SEVERITY_DTYPE

__all__ = ["Problems", "short_reason", "warn_cached"]

Row = tuple[object, object, object, str, str]


def short_reason(err: ParseError) -> str:
    """The reason of ``err`` with its line, cut to a readable length."""
    text = err.reason
    if err.line is not None:
        shown = err.line if len(err.line) <= 120 else err.line[:120] + "..."
        text += f": {shown!r}"
    return text


class Problems:
    """Accumulates problem rows (plain tuples: they cross process boundaries)."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.warned: dict[str, list[str]] = {}
        self.transient = False

    def add(
        self,
        snapshot: str | None,
        file: str | None,
        line: int | None,
        reason: str,
        severity: str,
        *,
        warn: bool = False,
    ) -> None:
        self.rows.append(
            (
                pd.NA if snapshot is None else snapshot,
                pd.NA if file is None else file,
                pd.NA if line is None else line,
                reason,
                severity,
            )
        )
        if warn:
            where = "/".join(p for p in (snapshot, file) if p is not None)
            where += f":{line}" if line is not None else ""
            self.warned.setdefault(file or "", []).append(f"{where}: {reason}" if where else reason)

    def parse_error(self, snapshot: str | None, file: str, err: ParseError) -> None:
        """A ParseError of ``file``: the file (or, with a line number, that line) not loaded."""
        self.add(
            snapshot, file, err.line_no, f"not loaded: {short_reason(err)}", "error", warn=True
        )

    def warning(self, snapshot: str | None, file: str, message: str) -> None:
        self.add(snapshot, file, None, message, "warning", warn=True)

    def extend(self, other: Problems) -> None:
        """Take the rows of ``other`` (a chunk's problems) after ours."""
        self.rows.extend(other.rows)
        for file, messages in other.warned.items():
            self.warned.setdefault(file, []).extend(messages)
        self.transient = self.transient or other.transient

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows, columns=list(PROBLEMS_SCHEMA))
        frame = frame.astype({"severity": "string"}).astype(PROBLEMS_SCHEMA)
        frame["severity"] = frame["severity"].astype("string").astype(SEVERITY_DTYPE)
        return frame

    def emit(self) -> None:
        """One Python warning per file name, however many snapshots it concerns."""
        for messages in self.warned.values():
            more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
            warnings.warn(f"tcpmem: {messages[0]}{more}", stacklevel=3)


def warn_cached(problems: pd.DataFrame) -> None:
    """The once-per-file warnings of a load, issued again from a cached ``problems`` frame."""
    shown = problems[problems["severity"].isin(["error", "warning"]).fillna(False).astype(bool)]
    for file, rows in shown.groupby("file", sort=False, dropna=False):
        first = rows.iloc[0]
        where = f"{first['snapshot']}/{file}" if pd.notna(first["snapshot"]) else str(file)
        more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
        warnings.warn(f"tcpmem: {where}: {first['reason']}{more} (cached)", stacklevel=3)
