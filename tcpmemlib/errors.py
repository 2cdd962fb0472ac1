"""The exception family. Every error names the file (and line) it is about.

``TcpmemError`` is the base; ``ParseError`` is one malformed line or file; ``CaptureError`` is a capture
(directory or bundle) that cannot be read at all. Expected races (a process that exited between ``ss``
and ``ps``) are data, not errors.
"""

from __future__ import annotations

import os


class TcpmemError(Exception):
    """Base class of every error tcpmem raises on purpose."""


class ParseError(TcpmemError):
    """A file (or one line of it) that cannot be parsed.

    Attributes: ``path`` (str or None for in-memory text), ``line_no`` (1-based, or None for the whole
    file), ``line`` (the offending text, or None) and ``reason``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        line_no: int | None,
        line: str | None,
        reason: str,
    ) -> None:
        self.path = None if path is None else os.fspath(path)
        self.line_no = line_no
        self.line = line
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.path if self.path is not None else "<text>"
        if self.line_no is not None:
            where = f"{where}:{self.line_no}"
        msg = f"{where}: {self.reason}"
        if self.line is not None:
            shown = self.line if len(self.line) <= 200 else self.line[:200] + "..."
            msg += f": {shown!r}"
        return msg


class CaptureError(TcpmemError):
    """A capture (collect.sh directory or bundle) that cannot be read as a whole."""

    def __init__(self, path: str | os.PathLike[str] | None, reason: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path if self.path is not None else '<capture>'}: {reason}")
