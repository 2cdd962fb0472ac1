"""Where a ``Capture`` keeps its per-socket rows: in memory, or on disk in Parquet, read in batches.

A day of snapshots every 10 s of a box with 2k sockets is 17M socket rows: ~4 GB as pandas frames,
while everything the analyses take from them is per snapshot or per (snapshot, process) sums. So a
large capture leaves ``sockets`` and ``owners`` on disk (its Parquet cache entry, or an unlinked
temporary file) and the analyses read them a batch of whole snapshots at a time
(``Capture.socket_batches``). ``Capture.sockets`` / ``Capture.owners`` still give the whole frames:
read from disk on each access (docs/design.md §2, "Socket rows on disk").

Two sources, one interface (``rows``, ``batches``, ``frames``; ``restrict`` takes what each needs):

- ``MemoryRows``: the frames themselves (small captures, and any Capture built by hand);
- ``DiskRows``: Parquet part files, each the rows of consecutive whole snapshots with each row's
  ``snapshot`` number and its owners as an ``owner_code`` into that part's list of distinct owner
  tuples, plus an index (one row per snapshot: ts, host, part, rows). Each worker process of a load
  writes its own parts (``PartWriter``); the loader writes the index (``write_index``). ``ts``,
  ``host`` and ``sock_id`` (rows numbered in snapshot order) are not stored: they come from the
  index and a row's place. The part files are kept open, so a later cache rewrite or removal does
  not change what this capture reads.

Batches: rows of consecutive whole snapshots in snapshot order; a batch's categorical columns have
that batch's own categories (compare them as strings across batches).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tcpmemlib.errors import CaptureError
from tcpmemlib.tables import arrow_to_pandas, concat_columns

__all__ = [
    "BATCH_ROWS",
    "DiskRows",
    "MemoryReader",
    "MemoryRows",
    "PartRows",
    "PartWriter",
    "open_rows",
    "owners_from_codes",
    "part_files",
    "read_memory",
    "write_index",
]

BATCH_ROWS = (
    1 << 20
)  # socket rows per batch from memory (whole snapshots, so a batch may be larger)
OWNER_COLUMNS = ("ts", "host", "sock_id", "pid", "comm", "fd")
KEY_COLUMNS = ("ts", "host", "sock_id")

Batch = tuple[pd.DataFrame, pd.DataFrame | None]


def _wanted(available: Sequence[str], columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return list(available)
    want = set(columns) | set(KEY_COLUMNS)
    unknown = want - set(available)
    if unknown:
        raise KeyError(f"no such socket column: {', '.join(sorted(unknown))}")
    return [c for c in available if c in want]


def _ts_numbers(ts: pd.Series) -> np.ndarray:
    """``ts`` as int64 nanoseconds (a tz-aware column's ``to_numpy`` makes Timestamp objects)."""
    return np.asarray(ts.array.asi8) if hasattr(ts.array, "asi8") else ts.to_numpy()


def _snapshot_bounds(ts: np.ndarray, batch_rows: int) -> list[tuple[int, int]]:
    """Row ranges of about ``batch_rows`` rows that cut only between snapshots (``ts`` sorted)."""
    n = len(ts)
    if n == 0:
        return []
    starts = np.flatnonzero(np.r_[True, ts[1:] != ts[:-1]])
    out: list[tuple[int, int]] = []
    lo = 0
    while lo < n:
        target = lo + max(1, batch_rows)
        k = np.searchsorted(starts, target, side="left")
        hi = int(starts[k]) if k < len(starts) else n
        if hi <= lo:
            hi = n
        out.append((lo, hi))
        lo = hi
    return out


class MemoryRows:
    """Socket rows held as the ``sockets`` and ``owners`` frames themselves."""

    on_disk = False

    def __init__(self, sockets: pd.DataFrame, owners: pd.DataFrame) -> None:
        self.sockets = sockets
        self.owners = owners

    @property
    def rows(self) -> int:
        return len(self.sockets)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return self.sockets, self.owners

    def batches(
        self,
        columns: Sequence[str] | None = None,
        owners: bool = False,
        batch_rows: int | None = None,
    ) -> Iterator[Batch]:
        s = self.sockets
        s = s[_wanted(list(s.columns), columns)]
        if len(s) and not s["ts"].is_monotonic_increasing:
            s = s.sort_values("ts", kind="stable")
        ts = _ts_numbers(s["ts"])
        own = self.owners if owners else None
        for lo, hi in _snapshot_bounds(ts, batch_rows or BATCH_ROWS):
            part = s.iloc[lo:hi]
            if own is None:
                yield part, None
            elif lo == 0 and hi == len(s):
                yield part, own
            else:
                yield part, own[own["sock_id"].isin(part["sock_id"])]

    def restrict(self, sockets: pd.DataFrame, owners: pd.DataFrame) -> MemoryRows:
        return MemoryRows(sockets, owners)


def owners_from_codes(
    keys: pd.DataFrame, codes: np.ndarray, uniques: Sequence[tuple[Any, ...]]
) -> pd.DataFrame:
    """One ``owners`` row per (socket, owning process): ``keys`` holds ts, host, sock_id of each
    socket row, ``codes`` its index into ``uniques`` (distinct tuples of ``(comm, pid, fd)``)."""
    codes = np.asarray(codes, dtype=np.int64)
    lengths_u = np.array([len(u) for u in uniques], dtype=np.int64)
    starts_u = np.concatenate([[0], np.cumsum(lengths_u)[:-1]]) if len(uniques) else lengths_u
    flat = [entry for u in uniques for entry in u]
    comm_u = pd.Categorical(
        [e[0] for e in flat], categories=pd.Index(sorted({e[0] for e in flat}), dtype="str")
    )
    pid_u = pd.array([e[1] for e in flat], dtype="UInt32")  # (pid_t and fd: below 2**31)
    fd_u = pd.array([e[2] for e in flat], dtype="UInt32")
    lengths = lengths_u[codes] if len(codes) else np.array([], dtype=np.int64)
    rows = np.repeat(np.arange(len(codes), dtype=np.int64), lengths)
    within = np.arange(len(rows), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat_index = (starts_u[codes][rows] + within) if len(rows) else rows
    return pd.DataFrame(
        {
            "ts": keys["ts"].array.take(rows),
            "host": keys["host"].array.take(rows),
            "sock_id": keys["sock_id"].to_numpy()[rows],
            "pid": pid_u.take(flat_index),
            "comm": comm_u.take(flat_index),
            "fd": fd_u.take(flat_index),
        }
    )


class _Part:
    """One part file, open, and its owner tuples (JSON read at open, parsed when first used). Read
    whole at each use (not mapped: a part cut on disk is then an error, never a SIGBUS)."""

    def __init__(self, file: Any, owners_json: str, path: str) -> None:
        self.file = file  # the part, open (pyarrow OSFile): readable after its entry is removed
        self.owners_json: str | None = owners_json
        self.parsed: list[tuple[Any, ...]] = []
        self.path = path

    def read(self, columns: Sequence[str] | None = None) -> Any:
        """The part as one Arrow table (``columns``: only those; the others are not decoded). A
        part changed on disk since it was written is a ``CaptureError`` naming it."""
        try:
            data = pa.py_buffer(self.file.read_at(os.fstat(self.file.fileno()).st_size, 0))
            return _read_stream(data, columns)
        except (pa.ArrowException, OSError) as err:
            raise CaptureError(
                self.path, f"socket rows unreadable (changed on disk?): {err}"
            ) from err

    def uniques(self) -> list[tuple[Any, ...]]:
        if self.owners_json is not None:
            self.parsed = [tuple(tuple(e) for e in u) for u in json.loads(self.owners_json)]
            self.owners_json = None
        return self.parsed


class DiskRows:
    """Socket rows in open Parquet part files (see module doc); ``keep`` restricts to snapshots."""

    on_disk = True

    def __init__(
        self,
        parts: dict[int, _Part],
        index: pd.DataFrame,
        template: pd.DataFrame,
        keep: np.ndarray | None = None,
    ) -> None:
        self.parts = parts  # part number -> its open file and owner tuples
        # one row per snapshot with rows, in snapshot order: snapshot, ts, host (string), part, rows
        self.index = index
        self.template = template  # empty sockets frame: every column with its dtype
        self.keep = keep  # boolean per index row, None = all
        counts = index.groupby("part", sort=True)["rows"].sum()
        # the sock_id of each part's first row: rows are numbered in snapshot order, part by part
        self.first_id = dict(
            zip(counts.index.tolist(), (counts.cumsum() - counts).tolist(), strict=True)
        )
        self.snapshots = index["snapshot"].to_numpy(dtype=np.int64)
        self.ts = index["ts"].array
        self.hosts = pd.Categorical(index["host"].astype(object), dtype=template["host"].dtype)

    @property
    def rows(self) -> int:
        counts = self.index["rows"].to_numpy()
        return int(counts.sum() if self.keep is None else counts[self.keep].sum())

    def restrict(self, pairs: pd.MultiIndex | None, ts: pd.Series | None) -> DiskRows:
        """The snapshots whose (ts, host) is in ``pairs`` (or whose ts is in ``ts``)."""
        if pairs is not None:
            key = pd.MultiIndex.from_frame(self.index[["ts", "host"]])
            mask = np.asarray(key.isin(pairs))
        else:
            mask = np.asarray(self.index["ts"].isin(ts))
        if self.keep is not None:
            mask &= self.keep
        return DiskRows(self.parts, self.index, self.template, mask)

    def _parts(self) -> list[int]:
        parts = self.index["part"].to_numpy()
        if self.keep is not None:
            parts = parts[self.keep]
        return sorted(set(parts.tolist()))

    def batches(
        self,
        columns: Sequence[str] | None = None,
        owners: bool = False,
        batch_rows: int | None = None,
    ) -> Iterator[Batch]:
        del batch_rows  # a batch is one part file (whole snapshots, written that way)
        names = _wanted(list(self.template.columns), columns)
        read = ["snapshot", *(c for c in names if c not in ("owners", *KEY_COLUMNS))]
        if owners or "owners" in names:
            read.append("owner_code")
        kept = self.snapshots[self.keep] if self.keep is not None else None
        for part in self._parts():
            uniques = self.parts[part].uniques()
            frame = self._to_pandas(self.parts[part].read(read))
            snapshot = frame.pop("snapshot").to_numpy(dtype=np.int64)
            sock_id = np.arange(len(frame), dtype=np.int64) + self.first_id[part]
            if kept is not None:
                mask = np.isin(snapshot, kept)
                if not mask.all():
                    frame = frame[mask].reset_index(drop=True)
                    snapshot, sock_id = snapshot[mask], sock_id[mask]
            _add_keys(frame, snapshot, sock_id, self.snapshots, self.ts, self.hosts)
            codes = frame.pop("owner_code").to_numpy() if "owner_code" in frame else None
            if "owners" in names and codes is not None:
                frame["owners"] = _objects(uniques)[codes]
            frame = frame[names]
            own = owners_from_codes(frame, codes, uniques) if owners else None
            yield frame, own

    def _to_pandas(self, table: Any) -> pd.DataFrame:
        return arrow_to_pandas(table, self.template)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The whole ``sockets`` and ``owners`` frames (read from disk: as large as they are)."""
        parts = list(self.batches(owners=True))
        if not parts:
            return self.template.copy(), owners_from_codes(
                self.template, np.zeros(0, dtype=np.int64), []
            )
        socks = concat_columns([p[0] for p in parts], parts[0][0].iloc[:0])
        owns = concat_columns([p[1] for p in parts], parts[0][1].iloc[:0])
        return socks, owns


def _add_keys(
    frame: pd.DataFrame,
    snapshot: np.ndarray,
    sock_id: np.ndarray,
    snapshots: np.ndarray,
    ts: Any,
    hosts: Any,
) -> None:
    """Put ``ts``, ``host`` and ``sock_id`` first in ``frame`` (rows of the snapshot numbers
    ``snapshot``; ``snapshots``: sorted numbers, ``ts``/``hosts`` each one's values)."""
    at = np.searchsorted(snapshots, snapshot)
    frame.insert(0, "sock_id", sock_id)
    frame.insert(0, "host", hosts.take(at))
    frame.insert(0, "ts", ts.take(at))


def _objects(uniques: Sequence[tuple[Any, ...]]) -> np.ndarray:
    table = np.empty(len(uniques), dtype=object)
    for i, u in enumerate(uniques):
        table[i] = u
    return table


# --------------------------------------------------------------------------------------------
# On disk: the layout (a directory), its writers and its readers

INDEX_FILE = (
    "socket_index.parquet"  # one row per snapshot with rows: snapshot, ts, host, part, rows
)
_PART = "sockets-{:05d}.arrows"  # a part's rows: ``snapshot``, ``owner_code`` and socket columns
_OWNERS = "owners-{:05d}.json"  # a part's distinct owner tuples, as JSON lists
_PART_NAME = re.compile(r"^sockets-(\d{5})\.arrows$")
# Parts are Arrow IPC streams, lz4-compressed: a third of Parquet's CPU to write, a fifth to read,
# about twice its bytes (bench/bench_parts.py); a stream, not an IPC file, since each batch has its
# own categories (an IPC file allows one dictionary per column).
_IPC_WRITE = pa.ipc.IpcWriteOptions(compression="lz4")
_IPC_READ = pa.ipc.IpcReadOptions(use_threads=False)
_END = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # an IPC stream's end-of-stream marker
_NOT_STORED = ("ts", "host", "sock_id", "owners")  # from the index and the row's place; codes


def _part_schema(template: pd.DataFrame) -> Any:
    """The Arrow schema of a part: ``snapshot`` (int32), the socket columns but ``ts``, ``host``,
    ``sock_id`` and ``owners``, then ``owner_code`` (int32); categories as dictionaries with int32
    indices (a batch's own categories, whatever their number)."""
    frame = template.drop(columns=list(_NOT_STORED), errors="ignore").iloc[:0].copy()
    frame.insert(0, "snapshot", np.zeros(0, dtype=np.int32))
    frame["owner_code"] = np.zeros(0, dtype=np.int32)
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    fields = [
        pa.field(f.name, pa.dictionary(pa.int32(), pa.string()))
        if pa.types.is_dictionary(f.type)
        else f
        for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


@dataclass
class PartRows:
    """What a part file holds: its number, and its snapshots (in order) with their row counts."""

    part: int
    snapshots: np.ndarray  # int64
    rows: np.ndarray  # int64, one count per snapshot


class PartWriter:
    """Writes one part: socket rows of consecutive whole snapshots, in snapshot order, one row
    group per ``write``. A worker process writes its own parts; ``write_index`` ties them up."""

    def __init__(self, directory: Any, part: int, template: pd.DataFrame) -> None:
        self.directory, self.part = Path(directory), part
        self.schema = _part_schema(template)
        self.writer: Any = None
        self.sink: Any = None
        self.snapshots: list[np.ndarray] = []

    def write(self, frame: pd.DataFrame, snapshot: np.ndarray, owner_code: np.ndarray) -> None:
        """Rows (without ``ts``, ``host``, ``sock_id``, ``owners``) of the snapshots ``snapshot``
        (one number per row, never below the last one written) and their owner codes."""
        if not len(frame):
            return
        snapshot = np.asarray(snapshot, dtype=np.int64)
        if self.snapshots and snapshot[0] < self.snapshots[-1][-1]:
            raise ValueError("socket rows must be written in snapshot order")
        columns = frame.drop(columns=list(_NOT_STORED), errors="ignore")
        columns.insert(0, "snapshot", snapshot.astype(np.int32))
        columns["owner_code"] = np.asarray(owner_code, dtype=np.int32)
        table = _arrow_table(columns, self.schema)
        if self.writer is None:
            self.sink = pa.OSFile(str(self.directory / _PART.format(self.part)), "wb")
            self.writer = pa.ipc.new_stream(self.sink, self.schema, options=_IPC_WRITE)
        self.writer.write_table(table)
        self.snapshots.append(snapshot)

    def close(self, uniques: Sequence[tuple[Any, ...]]) -> PartRows | None:
        """Finish the part file and its owners list; None if no row was written."""
        if self.writer is None:
            return None
        self.writer.close()
        self.sink.close()
        owners = json.dumps([[list(e) for e in u] for u in uniques])
        (self.directory / _OWNERS.format(self.part)).write_text(owners)
        snapshots, rows = np.unique(np.concatenate(self.snapshots), return_counts=True)
        return PartRows(self.part, snapshots, rows.astype(np.int64))


def _arrow_table(frame: pd.DataFrame, schema: Any) -> Any:
    """``frame`` as an Arrow table of ``schema``, column by column: a category's codes as int32
    dictionary indices, a masked column through its ``__arrow_array__``. The same table as
    ``pa.Table.from_pandas`` at 0.6 of its cost (bench/bench_parts.py)."""
    arrays = []
    for field in schema:
        column = frame[field.name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy().astype(np.int32, copy=False)
            labels = np.asarray(column.cat.categories, dtype=object)
            arrays.append(
                pa.DictionaryArray.from_arrays(
                    pa.array(codes, mask=codes < 0), pa.array(labels, type=pa.string())
                )
            )
        else:
            arrays.append(pa.array(column.array, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _read_stream(data: Any, columns: Sequence[str] | None = None) -> Any:
    """An IPC stream (a Buffer) as one table; one thread (lz4 on a part is a few ms: threads only
    cost more, and a load's workers hold the CPUs)."""
    reader = pa.ipc.open_stream(pa.BufferReader(data), options=_IPC_READ)
    if columns is not None:
        fields = [i for i, name in enumerate(reader.schema.names) if name in set(columns)]
        options = pa.ipc.IpcReadOptions(included_fields=fields, use_threads=False)
        reader = pa.ipc.open_stream(pa.BufferReader(data), options=options)
    return reader.read_all()


def write_index(directory: Any, parts: Sequence[PartRows], ts: Any, hosts: pd.Categorical) -> None:
    """The index of the parts written to ``directory`` (``ts``, ``hosts``: per snapshot number)."""
    snapshots = [p.snapshots for p in parts]
    snapshot = np.concatenate(snapshots) if snapshots else np.zeros(0, dtype=np.int64)
    index = pd.DataFrame(
        {
            "snapshot": snapshot,
            "ts": pd.Series(ts.take(snapshot), dtype="datetime64[ns, UTC]"),
            "host": pd.Series(hosts.take(snapshot), dtype="string"),
            "part": np.concatenate([np.full(len(p.snapshots), p.part) for p in parts])
            if parts
            else np.zeros(0, dtype=np.int64),
            "rows": np.concatenate([p.rows for p in parts]) if parts else np.zeros(0, np.int64),
        }
    )
    if len(index) and not (np.diff(index["snapshot"].to_numpy()) > 0).all():
        raise ValueError("parts must hold consecutive snapshots, in order")
    index.astype({"part": "int64", "rows": "int64"}).to_parquet(
        Path(directory) / INDEX_FILE, index=False
    )


def open_rows(directory: Any, template: pd.DataFrame) -> DiskRows:
    """The socket rows of an on-disk layout, its part files kept open (see the module doc)."""
    directory = Path(directory)
    index = pd.read_parquet(directory / INDEX_FILE)
    index["host"] = index["host"].astype("string")
    parts = {}
    for part in sorted(set(index["part"].tolist())):
        owners = (directory / _OWNERS.format(part)).read_text()
        path = str(directory / _PART.format(part))
        file = pa.OSFile(path)
        size = os.fstat(file.fileno()).st_size
        if size < len(_END) or file.read_at(len(_END), size - len(_END)) != _END:
            file.close()
            raise ValueError(f"{path}: not a whole Arrow stream (cut)")
        parts[part] = _Part(file, owners, path)
    return DiskRows(parts, index, template)


def part_files(directory: Any) -> list[str]:
    """The names of the part files in ``directory`` (written or being written)."""
    return sorted(n for n in os.listdir(directory) if _PART_NAME.match(n))


class MemoryReader:
    """Reads parts into memory one by one (a load reads each part as soon as it is written, while
    the workers parse the next): each part made a pandas frame as it comes, the frames joined
    once at the end (``concat_columns``), owner codes made global by each part's offset. (Joining
    the parts as one Arrow table converted at the end cost 0.55-0.98 s after an hour's last
    chunk instead of 0.12 s: bench/README.md.)"""

    def __init__(self, template: pd.DataFrame) -> None:
        self.template = template
        self.frames: list[pd.DataFrame] = []
        self.codes: list[np.ndarray] = []
        self.uniques: list[tuple[Any, ...]] = []

    def add(self, table: Any, uniques: list[tuple[Any, ...]]) -> None:
        codes = table.column("owner_code").to_numpy().astype(np.int64)
        self.codes.append(codes + len(self.uniques))
        self.uniques.extend(uniques)
        self.frames.append(arrow_to_pandas(table.drop_columns(["owner_code"]), self.template))

    def add_file(self, directory: Any, part: int) -> None:
        """Part ``part`` of ``directory``, just written by a chunk."""
        directory = Path(directory)
        owners = _Part(None, (directory / _OWNERS.format(part)).read_text(), "").uniques()
        with pa.OSFile(str(directory / _PART.format(part))) as file:
            self.add(_read_stream(file.read_buffer()), owners)

    def rows(self, snapshots: np.ndarray, ts: Any, hosts: Any) -> MemoryRows:
        """The rows read (``snapshots``, ``ts``, ``hosts``: the index's snapshot numbers, in
        order, and each one's ts and host)."""
        template = self.template
        if not self.frames:
            return MemoryRows(
                template.copy(), owners_from_codes(template, np.zeros(0, dtype=np.int64), [])
            )
        frame = concat_columns(self.frames, self.frames[0].iloc[:0])
        snapshot = frame.pop("snapshot").to_numpy(dtype=np.int64)
        codes = np.concatenate(self.codes)
        _add_keys(frame, snapshot, np.arange(len(frame), dtype=np.int64), snapshots, ts, hosts)
        frame["owners"] = _objects(self.uniques)[codes]
        sockets = frame[list(template.columns)]
        return MemoryRows(sockets, owners_from_codes(sockets, codes, self.uniques))


def read_memory(rows: DiskRows) -> MemoryRows:
    """All the socket rows of an opened on-disk layout (not restricted), read into memory."""
    reader = MemoryReader(rows.template)
    for part in rows._parts():
        reader.add(rows.parts[part].read(), rows.parts[part].uniques())
    return reader.rows(rows.snapshots, rows.ts, rows.hosts)
