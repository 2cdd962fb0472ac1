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

For the parsers' whole-text fast paths and their frames (the other end of the same texts)::

    plain(text) -> bool
    join_columns(parts) -> columns
    typed_frame(columns, schema) -> DataFrame

- ``plain``: the text is ASCII and its only blanks are space, tab and newline. A fast path's regex
  (``[ \\t]``, ``[^ \\t\\n]``) then splits exactly where ``str.split()`` and ``str.strip()`` of
  the line-by-line parser would; any other text is left to the line-by-line parser.
- ``join_columns``: the columns of several files' ``records`` as one set of columns (the chunk
  accumulator's job): a column whose every non-empty part is an int64 array becomes one array
  (``np.concatenate``), any other column one list (arrays as ``tolist()``: Python ints, never a
  float array from an empty list).
- ``typed_frame``: the column lists of ``records`` (of one file or many files chained; a column may
  be a list or a 1-D numpy array: int64, or object for text) -> the frame with ``schema``'s dtypes,
  equal to ``DataFrame(columns, columns=list(schema)).astype(schema)`` (a missing column is all NA)
  but built one column at a time from arrays, without pandas' inference over Python objects.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Mapping, Sequence
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np
import pandas as pd

try:  # the storage of pandas' "string" dtype when pyarrow is installed
    import pyarrow as pa
except ImportError:  # pragma: no cover - pandas then stores "string" as Python objects
    pa = None

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import int64_column
from tcpmemlib.safeio import decode_text

__all__ = [
    "Column",
    "category_column",
    "join_columns",
    "plain",
    "read_text",
    "split_lines",
    "string_column",
    "typed_frame",
]

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


# str.split()'s blanks in ASCII other than space, tab and newline
_ODD_BLANKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")


def plain(text: str) -> bool:
    """ASCII text whose only blanks are space, tab and newline (see the module docstring)."""
    return text.isascii() and not any(c in text for c in _ODD_BLANKS)


Column = Sequence[object] | np.ndarray


def join_columns(parts: Sequence[Mapping[str, Column]]) -> dict[str, Column]:
    """Several files' columns as one (see the module docstring); columns in first-seen order."""
    names: dict[str, None] = {}
    for part in parts:
        names.update(dict.fromkeys(part))
    every = all(len(part) == len(names) for part in parts)  # every part has every column
    out: dict[str, Column] = {}
    for name in names:
        if every:
            pieces = list(map(itemgetter(name), parts))
        else:
            pieces = [part[name] for part in parts if name in part]
        if np.ndarray not in set(map(type, pieces)):
            out[name] = list(chain.from_iterable(pieces))
            continue
        pieces = [piece for piece in pieces if len(piece)]
        if not pieces:
            out[name] = []
        elif all(isinstance(p, np.ndarray) and p.dtype == np.int64 for p in pieces):
            out[name] = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        else:
            out[name] = list(
                chain.from_iterable(p.tolist() if isinstance(p, np.ndarray) else p for p in pieces)
            )
    return out


_ARROW_STRINGS = pa is not None and pd.StringDtype().storage == "pyarrow"


def string_column(values: Column) -> pd.api.extensions.ExtensionArray:
    """Text values (``str``, or ``pd.NA`` for none) -> the frames' ``string`` array (the same as
    ``pd.array(values, dtype="string")``; built by pyarrow directly when that is its storage)."""
    if _ARROW_STRINGS:
        strings = pa.array(values, type=pa.large_string(), from_pandas=True)
        return pd.arrays.ArrowStringArray(pa.chunked_array([strings]))
    return pd.array(values, dtype="string")


def category_column(values: Column) -> pd.Categorical:
    """Repeated labels -> a category whose categories are ``str``, sorted (``astype("str")`` then
    ``astype("category")``: the categories the line-by-line frames always had)."""
    labels = dict.fromkeys(values)  # few labels, each repeated (hashes cached): cheap
    if all(type(label) is str for label in labels):
        ordered = sorted(labels)
        if len(ordered) == 1:  # one label (netstat's ``file``)
            codes = np.zeros(len(values), dtype=np.int8)
        else:
            position = {label: i for i, label in enumerate(ordered)}
            codes = np.fromiter(map(position.__getitem__, values), np.int64, count=len(values))
        uniques: Sequence[object] | np.ndarray = ordered
    else:  # NA among them
        codes, uniques = pd.factorize(np.asarray(values, dtype=object), sort=True)
    dtype = pd.CategoricalDtype(pd.Index(uniques, dtype="str"))
    return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)


_BUILDERS = {
    "Int64": int64_column,
    "string": string_column,
    "category": category_column,
    "boolean": lambda values: pd.array(values, dtype="boolean"),
}


def typed_frame(columns: Mapping[str, Column], schema: Mapping[str, str]) -> pd.DataFrame:
    """Column lists or arrays -> the frame with ``schema``'s dtypes (see the module docstring)."""
    present = [columns[c] for c in schema if c in columns]
    n = len(present[0]) if present else 0
    out = {}
    for name, dtype in schema.items():
        values = columns.get(name)
        if values is None:
            values = [pd.NA] * n
        out[name] = _BUILDERS[dtype](values)
    return pd.DataFrame(out, columns=list(schema), copy=False)
