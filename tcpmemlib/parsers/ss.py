"""``ss`` output (TCP/UDP, ``ss -tanmieOpH`` and its variants) -> one row per socket.

API:

- ``read_ss(source)`` (alias ``parse``): ``source`` is a path (``X`` or ``X.gz``), bytes, or the text.
  Returns the frame below; raises ``ParseError`` (path, line number, line) for the first record that
  is not a socket line (a missing file, a corrupt gzip, NUL bytes: see ``parsers.text``).
- ``starts_record(text)``: whether ``text`` can be read joined after another text (see there).
- ``read_numbered(path, text, categories=()) -> SsRead``: what ``load_capture`` calls. Never raises
  for a bad record: ``SsRead.frame`` holds the good ones, ``SsRead.line_numbers`` the 1-based number
  of each row's first physical line in ``text``, ``SsRead.errors`` one ``ParseError`` per bad record
  (path, line number, the record), in line order. ``categories``: string columns (``STRING_COLUMNS``)
  to give as ``category``. Every ``category`` column has ``str`` categories whatever the text holds,
  so the frames of any two texts concatenate.

Reads what iproute2 ``ss`` prints with or without ``-O`` (without it the ``-m``/``-i`` text is on a
continuation line starting with a TAB), with or without the header (``-H``), with or without the
``Netid`` column (``ss -t`` omits it, ``ss -tu`` prints it), with or without ``-n`` (service names such
as ``127.0.0.1:http`` are kept as printed), skmem with 7, 8 (``bl``) or 9 (``d``) fields and the
pre-2012 ``mem:(r,w,f,t)``.

Schema (one row per socket; a value this ss/kernel did not print is ``<NA>``, never 0). "since"
comes from iproute2/kernel history where it was checked; "(unverified)"
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
| ``owners`` | object | | ``users:(("comm",pid=P,fd=F),...)`` -> tuple of ``(comm, pid, fd)``; ``()`` when none (``-p``); comm escaped (see Notes) | always |
| ``unparsed`` | string | | tokens read_ss does not know, space-joined; NA when none | |

Notes:
- ``UInt32`` columns are the kernel's ``u32`` fields (inet_diag / tcp_info / SK_MEMINFO): a larger
  value is not what ss prints, so its record is a ``ParseError`` naming the line, never a wrapped
  value; any integer above 2**63-1 likewise. Sum ``UInt32`` columns as they are (pandas sums them
  into ``UInt64``), but cast to ``Int64`` before adding or multiplying columns (``UInt32 + UInt32``
  stays ``UInt32``). ``bytes_*`` are ``u64`` (``Int64``).
- The ``-i`` counters that ss prints only when non-zero (``notsent``, ``bytes_*``) are NA when absent
  on a line that has other ``-i`` fields; read_ss does not guess 0 for them.
- Process names: ss prints them raw. Bytes that are not UTF-8 arrive escaped (``caf\\xe9``: see
  ``parsers.text``). A name holding a newline splits ss's line in two; the second piece (a line that
  cannot start a record, after a record whose ``users:((`` block is open) is joined back, and the
  newline kept as the two characters ``\\n`` (as collect.sh writes it). A name may hold spaces,
  commas, quotes and parentheses: each owner ends at the first ``",pid=N,fd=N)``, and the owners
  block is cut out before the other tokens are read, so a name cannot inject values. (ss 6.1 reads
  the name from /proc/PID/stat up to the first ``)``, so ``x)y`` shows as ``x``.) A ``users:((``
  block that does not close is a bad record (the two halves of a split name sorted apart).
- Known ``-i`` tokens that have no column (``wscale``, ``rto``, ``pacing_rate``, ``bbr:(...)``, flags,
  congestion-control names, ...) are dropped; anything else goes to ``unparsed`` without failing.
- A record that cannot be a socket line (no state / queues / addresses) is a ``ParseError`` naming
  the path, the 1-based line number and ``repr(line)``. Header and blank lines are skipped.

Engines (``ENGINES``): the C engine (``_sstok.c``, driven by ``_ss_fast``) cuts and reads the common
records and hands every record it cannot vouch for (an unknown token, an odd format, a hostile name,
a bad record) to the reference engine (``_ss_line``), which also runs alone where the extension was
not built. Both give the same frames and errors (the tests check it). Figures: bench/README.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers import _ss_fast, _ss_line
from tcpmemlib.parsers.text import read_text

__all__ = [
    "COLUMNS",
    "DTYPES",
    "ENGINES",
    "STRING_COLUMNS",
    "SsRead",
    "empty_frame",
    "parse",
    "read_numbered",
    "read_ss",
    "starts_record",
]

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
# The string columns: read_numbered(categories=...) may give any of them as category.
STRING_COLUMNS: tuple[str, ...] = tuple(c for c, d in DTYPES.items() if d is STRING)
_CATEGORY = tuple(c for c, d in DTYPES.items() if d == "category")
_INTS = tuple(c for c, d in DTYPES.items() if d in ("UInt32", "Int64"))
_U32 = tuple(c for c, d in DTYPES.items() if d == "UInt32")
U32_MAX = (1 << 32) - 1
THREADS = min(2, os.cpu_count() or 1)  # threads of the C engine
ENGINES: tuple[str, ...] = ("c", "reference") if _ss_fast.AVAILABLE else ("reference",)


@dataclass
class SsRead:
    """``read_numbered``'s result: the frame of the good records, the 1-based physical line number
    (in the text) of each row's first line (int64), and one ``ParseError`` per bad record, in line
    order."""

    frame: pd.DataFrame
    line_numbers: np.ndarray
    errors: list[ParseError] = field(default_factory=list)


_NO_CATEGORIES = pd.CategoricalDtype(pd.Index([], dtype="str"))


def _category(arr: pa.Array) -> pd.Categorical:
    """Strings -> a category with ``str`` categories (as ``astype("str").astype("category")``
    makes them and the Parquet cache gives them back), even when every value is NA."""
    enc = arr.cast(pa.large_string()).dictionary_encode()
    codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False)
    if len(enc.dictionary) == 0:
        return pd.Categorical.from_codes(codes, dtype=_NO_CATEGORIES)
    cats = pd.Index(enc.dictionary.to_numpy(zero_copy_only=False), dtype="str")
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(cats))


def empty_frame(categories: tuple[str, ...] = ()) -> pd.DataFrame:
    """The ``read_ss`` frame with no rows: every column, every dtype (``categories`` as in
    ``read_numbered``)."""
    data: dict[str, object] = {}
    for col, dtype in DTYPES.items():
        if col in _CATEGORY or col in categories:
            data[col] = pd.Categorical.from_codes(np.zeros(0, dtype=np.int8), dtype=_NO_CATEGORIES)
        else:
            data[col] = pd.Series([], dtype=dtype)  # type: ignore[call-overload]
    return pd.DataFrame(data, copy=False)


@dataclass
class _Columns:
    """The records of a text before the frame: ints int64 (-1 = NA), ``rtt_ms`` float64 (NaN =
    NA), strings as Arrow arrays (null = NA), ``owners``; ``bad`` marks the records in ``errors``;
    ``record(i)`` is record i's text."""

    values: dict[str, object]
    owners: np.ndarray
    line_numbers: np.ndarray
    bad: np.ndarray
    errors: list[ParseError]
    record: Callable[[int], str]


def _error(path: str | None, line_no: int, record: str, reason: str) -> ParseError:
    return ParseError(path, line_no, record.rstrip("\r\n"), reason)


def _parse_records(path: str | None, cols: _Columns, rows: np.ndarray) -> list[dict[str, object]]:
    """The reference parser on records ``rows``; a bad one is marked and added to the errors."""
    parsed = []
    for i in rows.tolist():
        line = cols.record(i)
        try:
            parsed.append(_ss_line.parse_line(line))
        except _ss_line.BadLine as err:
            cols.errors.append(_error(path, int(cols.line_numbers[i]), line, str(err)))
            cols.bad[i] = True
            parsed.append({})
    return parsed


def _reference(path: str | None, text: str) -> _Columns:
    """The reference engine over ``text``."""
    recs = _ss_line.records(text)
    n = len(recs)
    cols = _Columns(
        {},
        np.empty(n, dtype=object),
        np.array([no for _s, _e, no in recs], dtype=np.int64),
        np.zeros(n, dtype=bool),
        [],
        lambda i: text[recs[i][0] : recs[i][1]],
    )
    parsed = _parse_records(path, cols, np.arange(n))
    for col in _INTS:
        cols.values[col] = np.array([r.get(col, -1) for r in parsed], dtype=np.int64)
    cols.values["rtt_ms"] = np.array([r.get("rtt_ms", math.nan) for r in parsed], dtype=float)
    for col in (*_CATEGORY, *STRING_COLUMNS):
        cols.values[col] = pa.array([r.get(col) for r in parsed], type=pa.large_string())
    cols.owners.fill(())
    for i, rec in enumerate(parsed):
        if "owners" in rec:
            cols.owners[i] = rec["owners"]
    return cols


def _c_engine(path: str | None, text: str) -> _Columns:
    """The C engine over ``text``; the records it flags slow go to the reference parser."""
    try:
        cc = _ss_fast.parse(text, THREADS)
    except UnicodeEncodeError:  # a lone surrogate (text decoded with surrogateescape): no UTF-8
        return _reference(path, text)
    n = len(cc.starts)
    values: dict[str, object] = dict(zip(_ss_fast.INT_COLUMNS, cc.ints, strict=True))
    values["rtt_ms"] = cc.rtt_ms
    values.update(cc.strings(_ss_fast.SPANS[:-1], THREADS))
    values["unparsed"] = pa.nulls(n, pa.large_string())
    cols = _Columns(values, cc.owners(), cc.line_numbers, np.zeros(n, dtype=bool), [], cc.record)
    slow = np.flatnonzero(cc.slow)
    if len(slow) == 0:
        return cols
    parsed = _parse_records(path, cols, slow)
    for i, rec in zip(slow.tolist(), parsed, strict=True):
        cols.owners[i] = rec.get("owners", ())
    mask = pa.array(cc.slow)
    for col, arr in values.items():
        if isinstance(arr, np.ndarray):
            fill = math.nan if arr.dtype.kind == "f" else -1
            arr[slow] = [r.get(col, fill) for r in parsed]
        else:
            new = pa.array([r.get(col) for r in parsed], type=pa.large_string())
            values[col] = pc.replace_with_mask(arr, mask, new)
    return cols


def _check_u32(path: str | None, cols: _Columns) -> None:
    """A record with a ``UInt32`` column above 2**32-1 is an error (naming the first such column)."""
    for col in _U32:
        values = cols.values[col]
        assert isinstance(values, np.ndarray)
        for i in np.flatnonzero((values > U32_MAX) & ~cols.bad).tolist():
            reason = f"{col} is above 2**32-1 (a u32)"
            cols.errors.append(_error(path, int(cols.line_numbers[i]), cols.record(i), reason))
            cols.bad[i] = True


def _frame(cols: _Columns, categories: tuple[str, ...]) -> pd.DataFrame:
    keep = ~cols.bad
    everything = bool(keep.all())
    uid, inode = cols.values["uid"], cols.values["inode"]
    assert isinstance(uid, np.ndarray) and isinstance(inode, np.ndarray)
    uid[(uid < 0) & (inode >= 0)] = 0  # ss omits "uid:0" but always prints "ino:" with -e
    data: dict[str, object] = {}
    for col, dtype in DTYPES.items():
        if col == "owners":
            data[col] = cols.owners if everything else cols.owners[keep]
            continue
        arr = cols.values[col]
        if isinstance(arr, np.ndarray):
            arr = arr if everything else arr[keep]
            if dtype == "Float64":
                na = np.isnan(arr)
                data[col] = pd.arrays.FloatingArray(np.where(na, 0.0, arr), na)
            else:
                na = arr < 0
                arr[na] = 0
                values = arr.astype(np.uint32) if dtype == "UInt32" else arr
                data[col] = pd.arrays.IntegerArray(values, na)
        else:
            assert isinstance(arr, pa.Array)
            arr = arr if everything else arr.filter(pa.array(keep))
            if col in _CATEGORY or col in categories:
                data[col] = _category(arr)
            else:
                data[col] = pd.array(arr, dtype=STRING)
    return pd.DataFrame(data, copy=False)


def read_numbered(
    path: str | None,
    text: str,
    categories: tuple[str, ...] = (),
    *,
    engine: str | None = None,
) -> SsRead:
    """Parse ``text`` (ss output; ``path`` only names it in the errors) without raising for bad
    records: see ``SsRead``. ``categories``: columns of ``STRING_COLUMNS`` to give as category.
    ``engine``: one of ``ENGINES`` (default: the first, the fastest one built here)."""
    engine = engine or ENGINES[0]
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    unknown = set(categories) - set(STRING_COLUMNS)
    if unknown:
        raise ValueError(f"categories must be among {STRING_COLUMNS}, not {sorted(unknown)}")
    cols = _c_engine(path, text) if engine == "c" else _reference(path, text)
    _check_u32(path, cols)
    if len(cols.bad) == 0:
        return SsRead(empty_frame(categories), np.zeros(0, dtype=np.int64), [])
    cols.errors.sort(key=lambda e: e.line_no or 0)
    numbers = cols.line_numbers[~cols.bad]
    return SsRead(_frame(cols, categories), numbers, cols.errors)


def starts_record(text: str) -> bool:
    """True when the first line of ``text`` starts a socket record (or is ss's header). Texts read
    as one (``"".join(texts)``) stay apart when each after the first does this: otherwise its first
    line would continue the text before (a TAB-led line, or the rest of a process name that held a
    newline when the last record before is open) and its rows would be counted in that text."""
    return _ss_line.can_start(text.split("\n", 1)[0])


def read_ss(source: str | bytes | os.PathLike[str]) -> pd.DataFrame:
    """Parse ``ss`` output (path, ``.gz`` path, bytes or text) into one row per socket.

    See the module docstring for the columns. Raises ``ParseError`` (path, line number, line) for
    the first record that cannot be a socket line, and for a missing or unreadable file.
    """
    path, text = read_text(source)
    result = read_numbered(path, text)
    if result.errors:
        raise result.errors[0]
    return result.frame


parse = read_ss
