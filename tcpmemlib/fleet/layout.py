"""Where a fleet dataset keeps what: the tables, their Hive paths, and atomic file writes.

A dataset is a directory::

    DATASET/
      _catalog.parquet                      one row per ingested capture (tcpmemlib.fleet.catalog)
      .lock                                 held while the catalog is rewritten
      <table>/host=<host>/date=<YYYY-MM-DD>/<capture key>.<generation>.parquet

``<host>`` is the host name percent-encoded (``urllib.parse.quote``, nothing kept: a name from a
capture's meta.txt never makes a path of its own); ``date`` is the UTC date of the rows' snapshot
start. Every file also holds ``host`` and ``date`` as plain columns, so a reader needs no partition
parsing, and a Hive-aware reader (DuckDB ``read_parquet('DATASET/sockets/**/*.parquet')``, Arrow,
Spark) finds the same values in the paths.

A capture writes one file per (table, date); a new ingest of that capture writes a new generation
and the catalog then points at it (``catalog.commit``): readers that go through the catalog see one
generation or the other, never a mix. Files are written under a dot name and renamed into place.

Tables (one row per ...; columns besides ``host``, ``date``, ``capture_key``):

| table | one row per | built by |
|---|---|---|
| ``snapshots`` | snapshot | ``fleet.figures``: sockstat, tcp_mem/rmem/wmem limits, meminfo, Σ socket sums, reconcile's bound |
| ``processes`` | (snapshot, process owning TCP sockets; pid NA: unattributed) | ``fleet.sockets`` |
| ``netns`` | (snapshot, network namespace), when the socket rows name them | ``fleet.sockets`` |
| ``namespaces`` | whatever ``Capture.netns`` holds, when a capture has that frame | ``fleet.figures`` |
| ``counters`` | (snapshot, memory-pressure counter) | ``fleet.figures`` |
| ``sysctls`` | (snapshot, sysctl) | ``fleet.figures`` |
| ``meta`` | snapshot | ``Capture.meta`` |
| ``problems`` | problem of the load | ``Capture.problems`` |
| ``verdicts`` | (analysis, phase) | the single-capture analyses' labels |
| ``sockets`` | socket per snapshot (plus its primary owner) | ``fleet.sockets`` |
"""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tcpmemlib.errors import TcpmemError

__all__ = [
    "CATALOG",
    "TABLES",
    "FleetError",
    "capture_key",
    "host_dir",
    "table_path",
    "to_arrow",
    "write_atomic",
]


class FleetError(TcpmemError):
    """A fleet dataset that cannot answer: missing, unreadable, or without the table a question
    needs."""


CATALOG = "_catalog.parquet"
LOCK = ".lock"
TABLES = (
    "snapshots",
    "processes",
    "netns",
    "namespaces",
    "counters",
    "sysctls",
    "meta",
    "problems",
    "verdicts",
    "sockets",
)
_SAFE_KEY = re.compile(r"[^0-9A-Za-z._-]")


def host_dir(host: str) -> str:
    """The ``host=`` directory name of ``host`` (percent-encoded, so never a path of its own)."""
    return "host=" + urllib.parse.quote(str(host), safe="")


def capture_key(host: str, first_ts: pd.Timestamp) -> str:
    """A capture's key: its host and first snapshot's start (what stays when a capture grows)."""
    stamp = first_ts.tz_convert("UTC").strftime("%Y%m%dT%H%M%S") + f".{first_ts.value % 10**9:09d}Z"
    return f"{_SAFE_KEY.sub('_', str(host))[:64]}@{stamp}"


def table_path(root: Path, table: str, host: str, date: str, key: str, generation: str) -> Path:
    """The file of one capture's rows of ``table`` on ``date`` (relative paths stay inside root)."""
    name = f"{urllib.parse.quote(key, safe='@')}.{generation}.parquet"
    return root / table / host_dir(host) / f"date={date}" / name


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """A frame as an Arrow table for the dataset: categories as plain strings (each batch has its
    own; Parquet dictionary-encodes them again), one string type, nullable integers kept, no pandas
    index or metadata."""
    out = frame.copy(deep=False)
    for col in out.columns:
        if pd.api.types.is_object_dtype(out[col].dtype):
            out[col] = out[col].astype("string")
    table = pa.Table.from_pandas(out, preserve_index=False)
    # Arrow casts dictionaries to strings in C++ (pandas' categorical astype is ~10x slower), and
    # one string type in every file: readers that merge the files' schemas (Dask) refuse a mix
    fields = []
    for f in table.schema:
        kind = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        fields.append(
            pa.field(f.name, pa.string())
            if pa.types.is_large_string(kind)
            else pa.field(f.name, kind)
        )
    return table.cast(pa.schema(fields)).replace_schema_metadata(None)


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through a dot-named file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class RowWriter:
    """Rows of one table appended batch by batch, one file per date (the socket rows of a large
    capture never sit in memory at once). ``close`` renames the files into place and returns them;
    ``abort`` removes them."""

    def __init__(self, root: Path, table: str, host: str, key: str, generation: str) -> None:
        self.root, self.table, self.host, self.key, self.gen = root, table, host, key, generation
        self.writers: dict[str, tuple[pq.ParquetWriter, Path, Path]] = {}
        self.schema: pa.Schema | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            return
        for date, part in frame.groupby("date", sort=True):
            table = to_arrow(part)
            if self.schema is None:
                self.schema = table.schema
            else:  # a column all NA in one batch reads as null: cast to the first batch's types
                table = table.select(self.schema.names).cast(self.schema)
            entry = self.writers.get(str(date))
            if entry is None:
                path = table_path(self.root, self.table, self.host, str(date), self.key, self.gen)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                entry = (pq.ParquetWriter(tmp, self.schema, compression="zstd"), tmp, path)
                self.writers[str(date)] = entry
            entry[0].write_table(table)
            self.rows += len(part)

    def close(self) -> list[Path]:
        done = []
        for writer, tmp, path in self.writers.values():
            writer.close()
            os.replace(tmp, path)
            done.append(path)
        self.writers = {}
        return done

    def abort(self) -> None:
        for writer, tmp, _ in self.writers.values():
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
        self.writers = {}
