"""The C engine of ``read_ss``: ``_sstok.c`` cuts and reads the records, this module holds the arrays.

``parse(text, threads)`` -> ``CColumns``: ``_sstok.split`` cuts the text into records (as
``_ss_line.records`` does), then ``_sstok.columns`` reads them in ``threads`` threads, each filling
disjoint ranges of ``BATCH`` records of one set of arrays without the GIL. Integer columns stay the
int64 arrays it wrote (-1 = absent), ``rtt_ms`` a float64 array (NaN = absent), strings are cut from
the text once per column (``strings``), owner tuples are built once per distinct ``users:(...)``
text (``owners``). Records it flags ``slow`` are left to the reference parser (``ss.py`` does that).

``AVAILABLE`` is False where the extension was not built (no C compiler at install time); then
``read_ss`` runs the reference engine alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tcpmemlib.parsers import _ss_line
from tcpmemlib.threads import map_threads

try:  # built by setup.py; optional: without it read_ss runs the reference engine
    from tcpmemlib.parsers import _sstok
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    _sstok = None

__all__ = ["AVAILABLE", "BATCH", "INT_COLUMNS", "SPANS", "CColumns", "parse"]

# The C engine's columns, in the order of its arrays (_sstok.c: the I_* and S_* enums).
INT_COLUMNS = (
    "recv_q", "send_q", "inode", "uid", "mss", "rcvmss", "advmss", "cwnd", "bytes_sent",
    "bytes_acked", "bytes_received", "rcv_space", "rcv_ssthresh", "notsent", "snd_wnd", "rcv_wnd",
    "skmem_r", "skmem_rb", "skmem_t", "skmem_tb", "skmem_f", "skmem_w", "skmem_o", "skmem_bl",
    "skmem_d",
)  # fmt: skip
SPANS = (
    "netid", "state", "local_address", "local_port", "peer_address", "peer_port", "sk", "cgroup",
    "timer", "users",
)  # fmt: skip
_built = tuple(getattr(_sstok, name, None) for name in ("ABI", "N_INT", "N_SPAN"))
if _built != (3, len(INT_COLUMNS), len(SPANS)):  # not built, or stale: pip install -e . again
    _sstok = None
if _sstok is not None:
    _sstok.configure(sorted(_ss_line.IGNORED_KEYS))
AVAILABLE = _sstok is not None
BATCH = 1 << 14  # records per columns() call: keeps each thread's part of the arrays cache-warm


def _spans(buf: pa.Buffer, vs: np.ndarray, ve: np.ndarray) -> pa.Array:
    """``buf[vs[i]:ve[i]]`` as strings, null where ``vs[i] < 0``."""
    n = len(vs)
    absent = vs < 0
    if n == 0 or absent.all():
        return pa.nulls(n, pa.large_string())
    offsets = np.empty(n + 1, dtype=np.int64)
    data = _sstok.gather(buf, vs, ve, offsets)
    nulls = int(absent.sum())
    valid = pa.py_buffer(np.packbits(~absent, bitorder="little")) if nulls else None
    return pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(data), valid, nulls
    )


@dataclass
class CColumns:
    """What the C engine read from a text: the records (``starts``/``ends`` byte offsets and the
    1-based ``line_numbers`` of their first lines), ``ints`` (``INT_COLUMNS`` order, int64, -1 =
    absent), ``rtt_ms`` (float64, NaN = absent), ``spans`` (``SPANS`` order, start and end byte
    offsets, -1 = absent), and ``slow`` for the records the reference parser must take."""

    buf: pa.Buffer
    starts: np.ndarray
    ends: np.ndarray
    line_numbers: np.ndarray
    ints: np.ndarray
    rtt_ms: np.ndarray
    spans: np.ndarray
    slow: np.ndarray

    def span(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        k = SPANS.index(name)
        return self.spans[2 * k], self.spans[2 * k + 1]

    def strings(self, names: tuple[str, ...], threads: int = 2) -> dict[str, pa.Array]:
        """The string columns ``names`` (copied out of the text by ``threads`` threads)."""
        if threads <= 1:
            return {name: _spans(self.buf, *self.span(name)) for name in names}
        arrays = map_threads(lambda name: _spans(self.buf, *self.span(name)), names, threads)
        return dict(zip(names, arrays, strict=True))

    def owners(self) -> np.ndarray:
        """One tuple of ``(comm, pid, fd)`` per record (``()`` for none and for slow records)."""
        tuples = _sstok.owners(self.buf, *self.span("users"))
        return np.fromiter(tuples, dtype=object, count=len(tuples))

    def record(self, i: int) -> str:
        """The text of record ``i``."""
        return memoryview(self.buf)[self.starts[i] : self.ends[i]].tobytes().decode("utf-8")


def parse(text: str, threads: int = 2) -> CColumns:
    """The C engine over ``text``: records cut, then read by ``threads`` threads."""
    if _sstok is None:
        raise RuntimeError("tcpmemlib.parsers._sstok is not built (pip install -e . with gcc)")
    data = _sstok.utf8(text)
    size = len(text) // 64 + 16  # ss lines are longer: no count of the lines first
    while True:
        starts, ends, numbers = (np.empty(size, dtype=np.int64) for _ in range(3))
        n = _sstok.split(data, starts, ends, numbers)
        if n >= 0:
            break
        size = _sstok.count_lines(data) + 1
    starts, ends, numbers = starts[:n], ends[:n], numbers[:n]
    out = CColumns(
        pa.py_buffer(data),
        starts,
        ends,
        numbers,
        np.empty((len(INT_COLUMNS), n), dtype=np.int64),
        np.empty(n, dtype=np.float64),
        np.empty((2 * len(SPANS), n), dtype=np.int64),
        np.zeros(n, dtype=bool),
    )
    flags = out.slow.view(np.uint8)

    def run(start: int) -> None:
        end = min(start + BATCH, n)
        _sstok.columns(data, starts, ends, flags, out.ints, out.rtt_ms, out.spans, start, end)

    ranges = range(0, n, BATCH)
    if threads <= 1 or n <= BATCH:
        for start in ranges:
            run(start)
    else:
        map_threads(run, ranges, threads)
    return out
