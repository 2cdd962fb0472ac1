"""The exception family. Every error names the file (and line) it is about.

``TcpmemError`` is the base; ``ParseError`` is one malformed line or file; ``CaptureError`` is a capture
(directory or bundle) that cannot be read at all; ``WorkerError`` is a worker process (or the thread
talking to it) that failed. Expected races (a process that exited between ``ss`` and ``ps``) are data,
not errors.

Every ``TcpmemError`` pickles with all its fields, whatever its constructor takes: a worker process
sends the error back to the process that asked, which raises it again with the same type and fields.
"""

from __future__ import annotations

import os
from typing import Any


def _restore(cls: type[TcpmemError], args: tuple[Any, ...]) -> TcpmemError:
    """Rebuild a pickled ``TcpmemError`` without calling its ``__init__`` (whose signature varies);
    pickle then puts the fields back from ``__dict__``."""
    return cls.__new__(cls, *args)


class TcpmemError(Exception):
    """Base class of every error tcpmem raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own __reduce__ calls ``type(self)(*self.args)``: that fails for a subclass whose
        # __init__ takes other arguments than its message (ParseError, CaptureError).
        return (_restore, (type(self), self.args), self.__dict__)


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


class WorkerError(TcpmemError):
    """A worker process died, could not be started or failed in a way that is not a ``TcpmemError``
    of the task (see ``tcpmemlib.workers``).

    Attributes: ``reason`` (what happened, in words), ``pid`` (the worker's, or None), ``task`` (the
    index of the task it was running, or None) and ``remote_traceback`` (the traceback text of an
    exception raised in the worker, or None).
    """

    def __init__(
        self,
        reason: str,
        *,
        pid: int | None = None,
        task: int | None = None,
        remote_traceback: str | None = None,
    ) -> None:
        self.reason = reason
        self.pid = pid
        self.task = task
        self.remote_traceback = remote_traceback
        super().__init__(reason)


class ResourceError(TcpmemError):
    """A file the package should ship (a notebook directory, collect.sh) is not where it should be."""


class ScratchError(CaptureError):
    """The socket rows of a load could not be written where the load puts them (a cache entry, or a
    temporary directory): ``path`` is that directory, ``errno`` the error number (e.g. ENOSPC)."""

    def __init__(self, path: str | os.PathLike[str], errno: int | None, reason: str) -> None:
        self.errno = errno
        super().__init__(path, reason)
