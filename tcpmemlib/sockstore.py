"""Where a ``Capture`` keeps its per-socket rows: in memory, or on disk in Parquet, read in batches.

A day of snapshots every 10 s of a box with 2k sockets is 17M socket rows: ~4 GB as pandas frames,
while everything the analyses take from them is per snapshot or per (snapshot, process) sums. So a
large capture leaves ``sockets`` and ``owners`` on disk (its Parquet cache entry, or an unlinked
temporary file) and the analyses read them a batch of whole snapshots at a time
(``Capture.socket_batches``). ``Capture.sockets`` / ``Capture.owners`` still give the whole frames:
read from disk on each access (docs/design.md §2, "Socket rows on disk").

Two sources, one interface (``rows``, ``batches``, ``frames``; ``restrict`` takes what each needs):

- ``MemoryRows``: the frames themselves (small captures, and any Capture built by hand);
- ``DiskRows``: one Parquet file of socket rows, row groups of consecutive whole snapshots, each
  row's owners as an ``owner_code`` into a list of distinct owner tuples; ``owners`` rows are built
  from those codes per batch. The file is kept open, so a later cache rewrite or removal does not
  change what this capture reads.

Batches: rows of consecutive whole snapshots in snapshot order; a batch's categorical columns have
that batch's own categories (compare them as strings across batches).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tcpmemlib.tables import arrow_fix, arrow_to_pandas, concat_columns, read_parquet

__all__ = ["BATCH_ROWS", "DiskRows", "MemoryRows", "owners_from_codes"]

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


class DiskRows:
    """Socket rows in one open Parquet file (see module doc); ``keep`` restricts it to snapshots."""

    on_disk = True

    def __init__(
        self,
        parquet: Any,
        uniques: Sequence[tuple[Any, ...]],
        index: pd.DataFrame,
        template: pd.DataFrame,
        keep: np.ndarray | None = None,
    ) -> None:
        self.parquet = parquet  # pyarrow.parquet.ParquetFile on an open file
        self.uniques = list(uniques)
        # one row per snapshot in the file: ts, host (string), row_group, rows
        self.index = index
        self.template = template  # empty sockets frame: every column with its dtype
        self.keep = keep  # boolean per index row, None = all

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
        return DiskRows(self.parquet, self.uniques, self.index, self.template, mask)

    def _groups(self) -> list[int]:
        groups = self.index["row_group"].to_numpy()
        if self.keep is not None:
            groups = groups[self.keep]
        return sorted(set(groups.tolist()))

    def batches(
        self,
        columns: Sequence[str] | None = None,
        owners: bool = False,
        batch_rows: int | None = None,
    ) -> Iterator[Batch]:
        del batch_rows  # a batch is one row group (whole snapshots, written that way)
        names = _wanted(list(self.template.columns), columns)
        read = [c for c in names if c != "owners"]
        if owners or "owners" in names:
            read.append("owner_code")
        if self.keep is not None:
            kept = self.index[self.keep]
            kept_pairs = pd.MultiIndex.from_frame(kept[["ts", "host"]])
        for group in self._groups():
            table = self.parquet.read_row_group(group, columns=read, use_threads=True)
            frame = self._to_pandas(table)
            del table
            if self.keep is not None:
                key = pd.MultiIndex.from_frame(frame[["ts", "host"]].astype({"host": "string"}))
                mask = np.asarray(key.isin(kept_pairs))
                if not mask.all():
                    frame = frame[mask].reset_index(drop=True)
            codes = frame.pop("owner_code").to_numpy() if "owner_code" in frame else None
            if "owners" in names and codes is not None:
                frame["owners"] = self.owner_objects()[codes]
                frame = frame[names]
            own = owners_from_codes(frame, codes, self.uniques) if owners else None
            yield frame, own

    def owner_objects(self) -> np.ndarray:
        table = np.empty(len(self.uniques), dtype=object)
        for i, u in enumerate(self.uniques):
            table[i] = u
        return table

    def _to_pandas(self, table: Any) -> pd.DataFrame:
        return arrow_to_pandas(table, self.template)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The whole ``sockets`` and ``owners`` frames (read from disk: as large as they are)."""
        parts = list(self.batches(owners=True))
        if not parts:
            return self.template.copy(), owners_from_codes(
                self.template, np.zeros(0, dtype=np.int64), self.uniques
            )
        socks = concat_columns([p[0] for p in parts], parts[0][0].iloc[:0])
        owns = concat_columns([p[1] for p in parts], parts[0][1].iloc[:0])
        return socks, owns


# --------------------------------------------------------------------------------------------
# On disk: the layout (a directory) and its writer

SOCKETS_FILE = "sockets.parquet"  # socket rows, ``owners`` as ``owner_code``
OWNERS_FILE = "owners.json"  # the distinct owner tuples, as JSON lists
INDEX_FILE = "socket_index.parquet"  # one row per snapshot: ts, host, row_group, rows


def _arrow_schema(template: pd.DataFrame) -> Any:
    """The Parquet schema of socket rows: ``owners`` as ``owner_code`` (int32), categories as
    dictionaries with int32 indices (a batch's own categories, whatever their number)."""
    frame = template.drop(columns=["owners"], errors="ignore").iloc[:0].copy()
    frame["owner_code"] = np.zeros(0, dtype=np.int32)
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    fields = [
        pa.field(f.name, pa.dictionary(pa.int32(), pa.string()))
        if pa.types.is_dictionary(f.type)
        else f
        for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


class SocketWriter:
    """Writes socket rows to ``directory`` as the on-disk layout, one row group per ``write``.

    Each ``write`` takes whole snapshots, in snapshot order, with an ``owner_code`` column (int)
    indexing the ``uniques`` list given to ``close``.
    """

    def __init__(self, directory: Any, template: pd.DataFrame) -> None:
        self.directory = Path(directory)
        self.schema = _arrow_schema(template)
        self.writer = pq.ParquetWriter(
            self.directory / SOCKETS_FILE, self.schema, compression="lz4", write_statistics=False
        )
        self.index: list[pd.DataFrame] = []
        self.groups = 0

    def write(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            return
        frame = frame.drop(columns=["owners"], errors="ignore")
        frame = frame.assign(owner_code=frame["owner_code"].to_numpy(dtype=np.int32))
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        self.writer.write_table(table, row_group_size=len(frame))
        del table
        counts = (
            frame[["ts", "host"]]
            .astype({"host": "string"})
            .groupby(["ts", "host"], sort=False, dropna=False)
            .size()
        )
        part = counts.rename("rows").reset_index()
        part["row_group"] = self.groups
        self.index.append(part)
        self.groups += 1

    def close(self, uniques: Sequence[tuple[Any, ...]]) -> None:
        self.writer.close()
        index = (
            pd.concat(self.index, ignore_index=True)
            if self.index
            else pd.DataFrame(
                {
                    "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
                    "host": pd.Series([], dtype="string"),
                    "rows": pd.Series([], dtype="int64"),
                    "row_group": pd.Series([], dtype="int64"),
                }
            )
        )
        index.astype({"rows": "int64", "row_group": "int64"}).to_parquet(
            self.directory / INDEX_FILE, index=False
        )
        (self.directory / OWNERS_FILE).write_text(
            json.dumps([[list(e) for e in u] for u in uniques])
        )


def write_frames(directory: Any, sockets: pd.DataFrame, batch_rows: int = BATCH_ROWS) -> None:
    """Write in-memory ``sockets`` (with its ``owners`` tuples column) as the on-disk layout."""
    template = sockets.iloc[:0]
    codes, uniques = pd.factorize(sockets["owners"].to_numpy(), use_na_sentinel=False)
    writer = SocketWriter(directory, template)
    try:
        if len(sockets) and not sockets["ts"].is_monotonic_increasing:
            order = np.argsort(_ts_numbers(sockets["ts"]), kind="stable")
            sockets, codes = sockets.iloc[order], codes[order]
        for lo, hi in _snapshot_bounds(_ts_numbers(sockets["ts"]), batch_rows):
            writer.write(sockets.iloc[lo:hi].assign(owner_code=codes[lo:hi]))
    finally:
        writer.close([tuple(u) if u else () for u in uniques])


def open_rows(directory: Any, template: pd.DataFrame) -> DiskRows:
    """The socket rows of an on-disk layout, kept open (see the module doc)."""
    directory = Path(directory)
    uniques = [
        tuple(tuple(e) for e in u) for u in json.loads((directory / OWNERS_FILE).read_text())
    ]
    index = pd.read_parquet(directory / INDEX_FILE)
    index["host"] = index["host"].astype("string")
    parquet = pq.ParquetFile(pa.OSFile(str(directory / SOCKETS_FILE)))
    return DiskRows(parquet, uniques, index, template)


def read_memory(rows: DiskRows) -> MemoryRows:
    """All the socket rows of an opened on-disk layout, read into memory."""
    template = rows.template
    wanted = {c: str(t) for c, t in template.dtypes.items()}
    frame = arrow_fix(read_parquet(rows.parquet, wanted), template)
    codes = frame.pop("owner_code").to_numpy()
    owners_column = rows.owner_objects()[codes] if len(codes) else np.empty(0, dtype=object)
    frame.insert(list(template.columns).index("owners"), "owners", owners_column)
    return MemoryRows(frame, owners_from_codes(frame, codes, rows.uniques))
