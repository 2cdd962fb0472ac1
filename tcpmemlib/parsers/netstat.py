"""``/proc/net/netstat`` and ``/proc/net/snmp`` -> one row per counter.

Both files are pairs of lines: ``Group: Name1 Name2 ...`` then ``Group: v1 v2 ...``
(``netstat_seq_show()`` / ``snmp_seq_show()``, net/ipv4/proc.c). Counters come and go between kernels
(e.g. ``TcpExt: TCPMemoryPressuresChrono`` since 4.13); a counter the kernel does not print has no row.

| column | dtype | source |
|---|---|---|
| file | category | ``netstat`` or ``snmp`` (``parse(source, file=...)``; else from the path name) |
| group | category | the line label: ``TcpExt``, ``IpExt``, ``MPTcpExt``, ``Ip``, ``Tcp``, ``Udp``... |
| counter | string | the name from the header line |
| value | Int64 | the value line's number (may be negative: ``Tcp: MaxConn -1``) |

A header without its value line, a value line whose label or count differs from its header, or a
non-integer value raises ``ParseError`` naming the line.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers.numbers import digits_array, int64_array
from tcpmemlib.parsers.text import read_text, split_lines, typed_frame

__all__ = ["SCHEMA", "frame", "parse", "records", "records_by_line", "records_fast"]

SCHEMA: dict[str, str] = {
    "file": "category",
    "group": "category",
    "counter": "string",
    "value": "Int64",
}


def records(
    text: str, path: str | None = None, file: str | None = None
) -> dict[str, list[object] | np.ndarray]:
    """Columns of one file (see ``frame``); ``value`` is an int64 array: ``records_fast``, else
    ``records_by_line``."""
    if file is None:
        file = "snmp" if path is not None and "snmp" in os.path.basename(path) else "netstat"
    fast = records_fast(text, file)
    return fast if fast is not None else records_by_line(text, path, file)


def records_fast(text: str, file: str = "netstat") -> dict[str, list[object] | np.ndarray] | None:
    """Columns of a file as the kernel writes it, its values read in one C call, else None.

    The kernel's form: ASCII, no blank line, pairs of ``Group: Name Name ...`` and ``Group: v v
    ...`` where every value is one space then ``-?[0-9]+`` (so the space count is the value count).
    """
    if not text.isascii() or "\r" in text:
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(lines) % 2:
        return None
    groups: list[str] = []
    counters: list[str] = []
    numbers: list[str] = []
    for head, value_line in zip(lines[0::2], lines[1::2], strict=True):
        label, sep, names = head.partition(":")
        vlabel, vsep, values = value_line.partition(":")
        if not sep or not label or " " in label or not vsep or vlabel != label:
            return None
        name_list = names.split()
        if not _kernel_values(values, len(name_list)):
            return None
        numbers.append(values)
        groups.extend([label] * len(name_list))
        counters.extend(name_list)
    try:
        value = digits_array(" ".join(numbers), len(counters))
    except ValueError:
        return None
    return {"file": [file] * len(value), "group": groups, "counter": counters, "value": value}


def _kernel_values(values: str, count: int) -> bool:
    """``values`` (ASCII) is ``count`` times one space then ``-?[0-9]+``: then the space count is
    the value count, and numpy reads the values exactly as ``int()`` does."""
    if count == 0:
        return values == ""
    return (
        values.count(" ") == count
        and values.startswith(" ")
        and "  " not in values
        and not values.endswith((" ", "-"))
        and values.count("-") == values.count(" -")  # a sign only at a value's start
        and "- " not in values
        and values.replace(" ", "").replace("-", "").isdigit()
    )


def records_by_line(
    text: str, path: str | None = None, file: str | None = None
) -> dict[str, list[object] | np.ndarray]:
    """Columns of one file, pair by pair (the reference parser; names the first bad line)."""
    if file is None:
        file = "snmp" if path is not None and "snmp" in os.path.basename(path) else "netstat"
    lines = [(no, ln) for no, ln in enumerate(split_lines(text), 1) if ln.strip()]
    groups: list[str] = []
    counters: list[str] = []
    values: list[np.ndarray] = []
    for i in range(0, len(lines), 2):
        head_no, head = lines[i]
        if i + 1 >= len(lines):
            raise ParseError(path, head_no, head, "header line without its value line")
        value_no, value_line = lines[i + 1]
        label, sep, names = head.partition(":")
        vlabel, vsep, numbers = value_line.partition(":")
        if not sep or not label or " " in label:
            raise ParseError(path, head_no, head, "expected 'Group: Name Name ...'")
        if not vsep or vlabel != label:
            raise ParseError(
                path, value_no, value_line, f"value line does not follow header {label!r}"
            )
        name_list, number_list = names.split(), numbers.split()
        if len(name_list) != len(number_list):
            raise ParseError(
                path,
                value_no,
                value_line,
                f"{len(number_list)} values for {len(name_list)} names in {label!r}",
            )
        try:
            values.append(_values(numbers, number_list))
        except ValueError as err:
            raise ParseError(path, value_no, value_line, "a value is not an integer") from err
        groups.extend([label] * len(name_list))
        counters.extend(name_list)
    value = np.concatenate(values) if values else np.zeros(0, dtype=np.int64)
    return {"file": [file] * len(value), "group": groups, "counter": counters, "value": value}


def _values(numbers: str, tokens: list[str]) -> np.ndarray:
    """A value line's integers (its text after the label, and that text split); ``ValueError``
    as ``int64`` raises it."""
    digits = numbers.replace(" ", "")
    if digits.isascii() and digits.isdigit():  # unsigned, space-separated: numpy reads them in C
        try:
            return digits_array(numbers, len(tokens))
        except ValueError:  # a value at an int64 limit: int() decides
            pass
    return int64_array(tokens)


def frame(columns: dict[str, list[object] | np.ndarray]) -> pd.DataFrame:
    """Columns (from ``records``, possibly of many files chained) -> the typed frame."""
    return typed_frame(columns, SCHEMA)


def parse(source: str | bytes | os.PathLike[str], file: str | None = None) -> pd.DataFrame:
    """Parse netstat/snmp text/path into (file, group, counter, value) rows."""
    path, text = read_text(source)
    return frame(records(text, path, file))
