"""``ss`` output (TCP/UDP, ``ss -tanmieOpH`` and its variants) -> one row per socket.

``read_ss(source)`` (alias ``parse``): ``source`` is a path (``X`` or ``X.gz``), bytes, or the text.
Reads what iproute2 ``ss`` prints with or without ``-O`` (without it the ``-m``/``-i`` text is on a
continuation line starting with a TAB), with or without the header (``-H``), with or without the
``Netid`` column (``ss -t`` omits it, ``ss -tu`` prints it), with or without ``-n`` (service names such
as ``127.0.0.1:http`` are kept as printed), skmem with 7, 8 (``bl``) or 9 (``d``) fields and the
pre-2012 ``mem:(r,w,f,t)``.

Schema (one row per socket; a value this ss/kernel did not print is ``<NA>``, never 0). "since"
comes from the reference doc (kernel-accounting.md §1.3-1.4) where it gives one; "(unverified)"
marks versions not checked against iproute2/kernel history here:

| column | dtype | unit | source token | since |
|---|---|---|---|---|
| ``netid`` | category | | ``Netid`` column (tcp, udp, ...); NA when ss did not print it | always |
| ``state`` | category | | ``State`` column (ESTAB, LISTEN, TIME-WAIT, UNCONN, ...) | always |
| ``recv_q`` | UInt32 | bytes | ``Recv-Q``: unread in-order payload; LISTEN: accept queue | always |
| ``send_q`` | UInt32 | bytes | ``Send-Q``: unacked payload; LISTEN: backlog | always |
| ``local_address`` | string | | ``Local Address`` without brackets, IPv6 scope kept (``fe80::1%eth0``) | always |
| ``local_port`` | string | | port after the last ``:`` (``80``, ``*``, ``http`` without ``-n``) | always |
| ``peer_address`` | string | | as ``local_address`` (``*``, ``0.0.0.0``, ``::`` for listeners) | always |
| ``peer_port`` | string | | as ``local_port`` | always |
| ``inode`` | UInt32 | | ``ino:`` (``-e``; 0 for TIME-WAIT/SYN-RECV) | early (unverified) |
| ``uid`` | UInt32 | | ``uid:`` (``-e``); ss omits ``uid:0``, so 0 when ``ino:`` is printed and ``uid:`` is not | early (unverified) |
| ``sk`` | string | | ``sk:`` socket cookie, hex as printed (``-e``) | early (unverified) |
| ``cgroup`` | string | | ``cgroup:`` path (``-e``; cgroup v2 id) | iproute2 ~5.9 (unverified) |
| ``timer`` | string | | ``timer:(name,expiry,retrans)`` contents (``-o``, or TIME-WAIT with ``-e``) | always |
| ``skmem_r`` | UInt32 | bytes | ``skmem:(r…`` rmem_alloc (truesize: receive + OFO queue) / ``mem:(r…`` | v3.4 / older |
| ``skmem_rb`` | UInt32 | bytes | ``rb`` sk_rcvbuf: a limit | v3.4 |
| ``skmem_t`` | UInt32 | bytes | ``t`` wmem_alloc: in flight to the driver / ``mem:(…t)`` | v3.4 / older |
| ``skmem_tb`` | UInt32 | bytes | ``tb`` sk_sndbuf: a limit | v3.4 |
| ``skmem_f`` | UInt32 | bytes | ``f`` forward_alloc / ``mem:(…f…)`` | v3.4 / older |
| ``skmem_w`` | UInt32 | bytes | ``w`` wmem_queued: unsent + unacked (truesize) / ``mem:(…w…)`` | v3.4 / older |
| ``skmem_o`` | UInt32 | bytes | ``o`` optmem | v3.4 |
| ``skmem_bl`` | UInt32 | bytes | ``bl`` backlog (not yet charged) | iproute2 v3.6 + kernel 3.6 |
| ``skmem_d`` | UInt32 | segments | ``d`` drops | iproute2 v4.7 + kernel 4.7 |
| ``rcv_space`` | UInt32 | bytes | ``rcv_space:`` (``-i``) | 2005 (ss050607) |
| ``rcv_ssthresh`` | UInt32 | bytes | ``rcv_ssthresh:`` (``-i``) | v4.15 |
| ``notsent`` | UInt32 | bytes | ``notsent:`` (``-i``; only when > 0) | v4.6 |
| ``bytes_sent`` | Int64 | bytes | ``bytes_sent:`` (``-i``; only when > 0) | kernel 4.19 tcp_info (unverified) |
| ``bytes_acked`` | Int64 | bytes | ``bytes_acked:`` (``-i``; only when > 0) | kernel 4.1 tcp_info (unverified) |
| ``bytes_received`` | Int64 | bytes | ``bytes_received:`` (``-i``; only when > 0) | kernel 4.1 tcp_info (unverified) |
| ``snd_wnd`` | UInt32 | bytes | ``snd_wnd:`` (``-i``) | v5.18 |
| ``rcv_wnd`` | UInt32 | bytes | ``rcv_wnd:`` (``-i``) | v6.6 |
| ``cwnd`` | UInt32 | segments | ``cwnd:`` (``-i``) | always |
| ``mss`` | UInt32 | bytes | ``mss:`` (``-i``) | always |
| ``advmss`` | UInt32 | bytes | ``advmss:`` (``-i``) | early (unverified) |
| ``rcvmss`` | UInt32 | bytes | ``rcvmss:`` (``-i``) | early (unverified) |
| ``rtt_ms`` | Float64 | ms | ``rtt:X/Y`` -> X (smoothed RTT; Y is rttvar) (``-i``) | always |
| ``owners`` | object | | ``users:(("comm",pid=P,fd=F),...)`` -> tuple of ``(comm, pid, fd)``; ``()`` when none (``-p``) | always |
| ``unparsed`` | string | | tokens read_ss does not know, space-joined; NA when none | |

Notes:
- ``UInt32`` columns are the kernel's ``u32`` fields (inet_diag / tcp_info / SK_MEMINFO): a larger
  value is not what ss prints, so it raises ``ParseError`` naming the line rather than wrapping. Sum
  them as they are (pandas sums ``UInt32`` into ``UInt64``), but cast to ``Int64`` before adding or
  multiplying columns (``UInt32 + UInt32`` stays ``UInt32``). ``bytes_*`` are ``u64`` (``Int64``).
- The ``-i`` counters that ss prints only when non-zero (``notsent``, ``bytes_*``) are NA when absent
  on a line that has other ``-i`` fields; read_ss does not guess 0 for them.
- ss (6.1) reads ``comm`` from /proc/PID/stat up to the first ``)``, so a process named ``x)y`` shows
  as ``x``. A comm may hold spaces, commas, quotes and ``(``: the owners block is cut out before the
  other tokens are read, so a hostile comm cannot inject values.
- Known ``-i`` tokens that have no column (``wscale``, ``rto``, ``pacing_rate``, ``bbr:(...)``, flags,
  congestion-control names, ...) are dropped; anything else goes to ``unparsed`` without failing.
- A line that cannot be a socket line (no state / queues / addresses) raises ``ParseError`` naming the
  path, the 1-based line number and ``repr(line)``. The header line and empty lines are skipped.

Speed: the common lines are parsed by a C extractor (``_sstok.c``; or, where it was not built, by
vectorized numpy/pyarrow kernels, ``_ss_fast``); a line the fast path cannot vouch for (unknown
token, odd format, hostile comm) goes through the reference per-line parser
(``_ss_line.parse_line``). See bench/README.md for figures.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers import _ss_fast, _ss_line
from tcpmemlib.parsers._text import read_text, split_lines

__all__ = ["COLUMNS", "DTYPES", "empty_frame", "parse", "read_ss"]

STRING = pd.StringDtype("pyarrow")

DTYPES: dict[str, object] = {
    "netid": "category",
    "state": "category",
    "recv_q": "UInt32",
    "send_q": "UInt32",
    "local_address": STRING,
    "local_port": STRING,
    "peer_address": STRING,
    "peer_port": STRING,
    "inode": "UInt32",
    "uid": "UInt32",
    "sk": STRING,
    "cgroup": STRING,
    "timer": STRING,
    "skmem_r": "UInt32",
    "skmem_rb": "UInt32",
    "skmem_t": "UInt32",
    "skmem_tb": "UInt32",
    "skmem_f": "UInt32",
    "skmem_w": "UInt32",
    "skmem_o": "UInt32",
    "skmem_bl": "UInt32",
    "skmem_d": "UInt32",
    "rcv_space": "UInt32",
    "rcv_ssthresh": "UInt32",
    "notsent": "UInt32",
    "bytes_sent": "Int64",
    "bytes_acked": "Int64",
    "bytes_received": "Int64",
    "snd_wnd": "UInt32",
    "rcv_wnd": "UInt32",
    "cwnd": "UInt32",
    "mss": "UInt32",
    "advmss": "UInt32",
    "rcvmss": "UInt32",
    "rtt_ms": "Float64",
    "owners": object,
    "unparsed": STRING,
}
COLUMNS: tuple[str, ...] = tuple(DTYPES)


def empty_frame() -> pd.DataFrame:
    """The ``read_ss`` frame with no rows: every column, every dtype."""
    return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in DTYPES.items()})  # type: ignore[call-overload]


def _logical_lines(path: str | None, text: str) -> tuple[list[str], list[int]]:
    """Socket lines with their continuation lines (TAB-led, ss without -O) joined, and the 1-based
    number of each one's first physical line; blank and header lines (with anything continuing
    them) are dropped. The same cut as ``_ss_fast.split_lines`` + ``SKIP``."""
    groups: list[list[str]] = []
    numbers: list[int] = []
    for no, raw in enumerate(split_lines(text), start=1):
        if raw.startswith("\t") and groups:
            groups[-1].append(raw)
            continue
        groups.append([raw])
        numbers.append(no)
    lines: list[str] = []
    kept: list[int] = []
    for group, no in zip(groups, numbers, strict=True):
        line = " ".join(group)
        if not line.strip(" \t\n\f\r") or _ss_line.is_header(line):
            continue
        lines.append(line)
        kept.append(no)
    return lines, kept


U32_MAX = (1 << 32) - 1
_ARROW_TYPES: dict[str, pa.DataType] = {
    col: (
        pa.int64()
        if d in ("Int64", "UInt32")
        else pa.float64()
        if d == "Float64"
        else pa.large_string()
    )
    for col, d in DTYPES.items()
    if col != "owners"
}


def _to_pandas(col: str, arr: pa.Array | np.ndarray) -> object:
    dtype = DTYPES[col]
    if isinstance(arr, np.ndarray):  # an integer column as the C extractor wrote it (-1 = NA)
        mask = arr < 0
        arr[mask] = 0
        values = arr.astype(np.uint32) if dtype == "UInt32" else arr  # (range: _check_u32)
        return pd.arrays.IntegerArray(values, mask)
    if dtype == "category":
        return arr.dictionary_encode().to_pandas()
    if dtype in ("Int64", "UInt32"):
        values = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False)
        mask = pc.is_null(arr).to_numpy(zero_copy_only=False)
        if dtype == "UInt32":
            values = values.astype(np.uint32)  # (range checked by _check_u32)
        return pd.arrays.IntegerArray(values, mask)
    if dtype == "Float64":
        return pd.arrays.FloatingArray(
            pc.fill_null(arr, 0.0).to_numpy(zero_copy_only=False),
            pc.is_null(arr).to_numpy(zero_copy_only=False),
        )
    return pd.array(arr.cast(pa.large_string()), dtype=STRING)


def _check_u32(
    columns: dict[str, object], path: str | None, numbers: np.ndarray, lines: object
) -> None:
    """ParseError for the first line with a ``UInt32`` column value above 2**32 - 1."""
    bad = None
    for col, dtype in DTYPES.items():
        if dtype != "UInt32":
            continue
        values = columns[col]
        if isinstance(values, np.ndarray):
            over_np = values > U32_MAX
        else:
            over = pc.fill_null(pc.greater(values, U32_MAX), False)
            over_np = over.to_numpy(zero_copy_only=False) if pc.any(over).as_py() else None
        if over_np is not None and over_np.any():
            row = int(np.flatnonzero(over_np)[0])
            if bad is None or row < bad[0]:
                bad = (row, col)
    if bad is not None:
        row, col = bad
        line = lines[row]  # type: ignore[index]
        line = line.as_py() if hasattr(line, "as_py") else line
        raise ParseError(
            path, int(numbers[row]), str(line).rstrip("\r\n"), f"{col} is above 2**32-1 (a u32)"
        )


_NO_CATEGORIES = pd.CategoricalDtype(pd.Index([], dtype="str"))


def _category(arr: pa.Array) -> object:
    """A string column as a category with ``str`` categories (as ``astype("str").astype("category")``
    makes them, and as the Parquet cache gives them back), even when every value is NA."""
    cat = arr.cast(pa.large_string()).dictionary_encode().to_pandas()
    if len(cat.cat.categories) == 0:
        return pd.Series(pd.Categorical.from_codes(np.full(len(arr), -1), dtype=_NO_CATEGORIES))
    return cat


def _frame(
    columns: dict[str, object], owners: np.ndarray, categories: tuple[str, ...] = ()
) -> pd.DataFrame:
    data: dict[str, object] = {}
    for col in COLUMNS:
        if col == "owners":
            data[col] = owners
        elif col in categories:
            data[col] = _category(columns[col])
        else:
            data[col] = _to_pandas(col, columns[col])
    df = pd.DataFrame(data)
    # ss prints "uid:N" only when N != 0 but always prints "ino:" with -e.
    if "uid" in df:
        df.loc[df["uid"].isna() & df["inode"].notna(), "uid"] = 0
    return df


def _records_to_arrow(records: list[dict[str, object]]) -> tuple[dict[str, pa.Array], np.ndarray]:
    cols = {
        col: pa.array([rec.get(col) for rec in records], type=typ)
        for col, typ in _ARROW_TYPES.items()
    }
    owners = np.empty(len(records), dtype=object)
    owners.fill(())
    for i, rec in enumerate(records):
        owners[i] = rec.get("owners", ())
    return cols, owners


def _read_reference(path: str | None, text: str) -> pd.DataFrame:
    """The per-line reference parser over the whole text (tests compare it with the fast path)."""
    lines, numbers = _logical_lines(path, text)
    records = []
    for line, no in zip(lines, numbers, strict=True):
        rec = _ss_line.parse_line(line)
        if rec is None:
            raise ParseError(path, no, line, "not an ss socket line")
        records.append(rec)
    if not records:
        return empty_frame()
    cols, owners = _records_to_arrow(records)
    _check_u32(cols, path, np.asarray(numbers), lines)
    return _frame(cols, owners)


def _read_fast(
    path: str | None, text: str, threads: int = 2, engine: str | None = None
) -> pd.DataFrame:
    return _read_numbered(path, text, threads, engine)[0]


def _read_numbered(
    path: str | None,
    text: str,
    threads: int = 2,
    engine: str | None = None,
    categories: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, np.ndarray]:
    """``read_ss`` of ``text`` and the 1-based line number each row starts at (load_capture parses
    many files joined and finds each row's file from it); ``categories``: string columns to give
    as ``category`` instead."""
    lines, numbers = _ss_fast.split_lines(text.encode("utf-8"))
    if len(lines):
        skip = pc.match_substring_regex(lines, _ss_fast.SKIP).to_numpy(zero_copy_only=False)
        if skip.any():
            lines = lines.filter(pa.array(~skip))
            numbers = numbers[~skip]
    if len(lines) == 0:
        empty = empty_frame()
        for col in categories:
            empty[col] = empty[col].astype("str").astype("category")
        return empty, numbers
    if (engine or _ss_fast.ENGINES[0]) == "c":
        columns, owners = _columns_c(path, lines, numbers, threads)
    else:
        columns, owners = _columns_chunked(path, lines, numbers, threads)
    _check_u32(columns, path, numbers, lines)
    return _frame(columns, owners, categories), numbers


def _slow_records(
    path: str | None, lines: pa.Array, numbers: np.ndarray, slow_idx: np.ndarray
) -> list[dict[str, object]]:
    """The reference parser on the lines the fast path left to it (ParseError if not ss)."""
    records = []
    for i in slow_idx:
        line = lines[int(i)].as_py()
        rec = _ss_line.parse_line(line)
        if rec is None:
            shown = line.rstrip("\r\n")
            raise ParseError(path, int(numbers[i]), shown, "not an ss socket line")
        records.append(rec)
    return records


def _columns_c(
    path: str | None, lines: pa.Array, numbers: np.ndarray, threads: int
) -> tuple[dict[str, object], np.ndarray]:
    """Columns by the C extractor: integer columns stay the numpy arrays it wrote (-1 = NA),
    strings are cut from the text once per column; slow lines from the reference parser."""
    cc = _ss_fast.parse_all_c(lines, threads)
    owners = cc.owners()
    columns: dict[str, object] = dict(zip(_ss_fast.C_INT_COLUMNS, cc.ints, strict=True))
    for name in _ss_fast.C_SPANS[:-1]:
        columns[name] = cc.strings(name)
    columns["rtt_ms"] = pc.cast(columns["rtt_ms"], pa.float64())
    columns["unparsed"] = pa.nulls(len(lines), pa.large_string())
    slow_idx = np.flatnonzero(cc.slow)
    if len(slow_idx):
        slow_cols, slow_owners = _records_to_arrow(_slow_records(path, lines, numbers, slow_idx))
        mask = pa.array(cc.slow)
        for name, values in columns.items():
            if isinstance(values, np.ndarray):
                values[slow_idx] = pc.fill_null(slow_cols[name], -1).to_numpy()
            else:
                columns[name] = pc.replace_with_mask(values, mask, slow_cols[name])
        owners[slow_idx] = slow_owners
    return columns, owners


def _columns_chunked(
    path: str | None, lines: pa.Array, numbers: np.ndarray, threads: int
) -> tuple[dict[str, object], np.ndarray]:
    """Columns by ``_ss_fast.parse_lines`` (per batch, then concatenated: the numpy engine)."""
    chunks = _ss_fast.parse_lines(lines, threads=threads)
    slow = np.concatenate([c.slow for c in chunks])
    owners = np.concatenate([c.owners for c in chunks]) if len(chunks) > 1 else chunks[0].owners
    columns: dict[str, object] = {}
    for col, typ in _ARROW_TYPES.items():
        parts = [c.columns.get(col) for c in chunks]
        arrays = [
            pa.nulls(len(c.slow), typ) if p is None else p.cast(typ)
            for p, c in zip(parts, chunks, strict=True)
        ]
        columns[col] = pa.concat_arrays(arrays) if len(arrays) > 1 else arrays[0]
    slow_idx = np.flatnonzero(slow)
    if len(slow_idx):
        slow_cols, slow_owners = _records_to_arrow(_slow_records(path, lines, numbers, slow_idx))
        mask = pa.array(slow)
        for col in _ARROW_TYPES:
            columns[col] = pc.replace_with_mask(columns[col], mask, slow_cols[col])
        owners[slow_idx] = slow_owners
    return columns, owners


def read_ss(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse ``ss`` output (path, ``.gz`` path, bytes or text) into one row per socket.

    See the module docstring for the columns. Raises ``ParseError`` (path, line number, line) for a
    line that cannot be a socket line, a missing file or undecodable bytes.
    """
    path, text = read_text(source)
    return _read_fast(path, text)


parse = read_ss


# TEMPORARY SHIM (core branch only; replaced by the ssparse branch's read_numbered)
from dataclasses import dataclass as _dc  # noqa: E402


@_dc
class SsRead:
    frame: pd.DataFrame
    line_numbers: np.ndarray
    errors: list


def read_numbered(path, text, categories=()):
    frame, numbers = _read_numbered(path, text, categories=categories)
    return SsRead(frame, numbers, [])
