"""Shared input helper for the parsers: a path (``X`` or ``X.gz``) or the text itself -> text.

API (small and stable; every parser uses it)::

    read_text(source) -> (path or None, text)

- ``source`` is a ``str`` holding the file's text, a ``str`` naming a file, an ``os.PathLike``, or
  ``bytes`` holding the file's content. A ``str`` is taken as a path when it has no newline and
  names an existing file, ends in ``.gz``, or contains ``/`` and no whitespace (so a mistyped path
  raises "no such file" instead of being parsed as text); otherwise it is the text. A ``Path`` is
  always a path.
- ``X.gz`` (by name, or by the gzip magic bytes) is decompressed.
- Text is decoded as UTF-8. Bytes that are not UTF-8 never reject the file: each is kept as the
  four characters ``\\xNN`` (Python's ``backslashreplace``), so a Latin-1 process name or any name
  set with ``prctl(PR_SET_NAME)``, which ``ss`` and ``ps`` print as raw bytes, reads as ``caf\\xe9``.
- Errors are ``ParseError`` naming the path: missing/unreadable file, truncated or corrupt gzip,
  binary garbage (NUL bytes).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from tcpmemlib.errors import ParseError
from tcpmemlib.safeio import decode_text

__all__ = ["read_text", "split_lines"]

_GZIP_MAGIC = b"\x1f\x8b"


def _looks_like_path(source: str) -> bool:
    if not source or "\n" in source or "\x00" in source or len(source) > 4096:
        return False
    if source.endswith(".gz") or ("/" in source and not any(c.isspace() for c in source)):
        return True
    try:
        return os.path.isfile(source)
    except (OSError, ValueError):
        return False


def _decode(path: str | None, data: bytes) -> str:
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise ParseError(path, None, None, f"corrupt or truncated gzip data ({err})") from err
    text, nul_line = decode_text(data)  # the loader's decoding policy, one place
    if nul_line is not None:
        raise ParseError(path, nul_line, None, "binary data (NUL byte), not text")
    return text


def read_text(source: str | bytes | os.PathLike[str]) -> tuple[str | None, str]:
    """Return ``(path or None, text)`` for a path, a ``.gz`` path, bytes, or the text itself."""
    if isinstance(source, bytes):
        return None, _decode(None, source)
    if isinstance(source, str) and not _looks_like_path(source):
        if "\x00" in source:
            raise ParseError(None, None, None, "binary data (NUL byte), not text")
        return None, source
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"source must be a path, text or bytes, not {type(source).__name__}")
    path = os.fspath(source)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as err:
        raise ParseError(path, None, None, "no such file") from err
    except OSError as err:
        raise ParseError(path, None, None, f"cannot read: {err.strerror or err}") from err
    if path.endswith(".gz") and data[:2] != _GZIP_MAGIC and data:
        raise ParseError(path, None, None, "named .gz but not gzip data")
    return path, _decode(path, data)


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` without their line ends (``\\n`` or ``\\r\\n``); no empty last line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
