"""pandas and Arrow helpers shared by the loader, the socket-row store and the cache.

A leaf module: it imports nothing of tcpmemlib. Every function here keeps dtypes exact (nullable
integers stay masked arrays, categories keep ``str`` categories) and copies as little as it can:
a day of snapshots is 17M socket rows, and a needless copy of a column is hundreds of MB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api.types import union_categoricals

__all__ = [
    "arrow_fix",
    "arrow_to_pandas",
    "concat_columns",
    "host_categorical",
    "read_parquet",
    "str_category",
    "with_ts_host",
    "write_parquet",
]

# Rows per Parquet slice written at once: the Arrow copy never holds a whole large frame.
SLICE_ROWS = 1 << 20
EMPTY_STR_CATEGORY = pd.CategoricalDtype(pd.Index([], dtype="str"))
_MASKED = {"Int64": np.int64, "Int32": np.int32, "UInt32": np.uint32, "Float64": np.float64}


class Cancelled(Exception):
    """A read stopped on request (a speculative cache read whose entry turned out stale)."""


def str_category(values: pd.Series) -> pd.Series:
    """``values`` as a category with ``str`` categories (the loader's form of repeated labels)."""
    out = values.astype("str").astype("category")
    if len(out.dtype.categories) == 0:
        out = out.astype(EMPTY_STR_CATEGORY)
    return out


def host_categorical(hostnames: pd.Series) -> pd.Categorical:
    """Per-snapshot host names -> Categorical with ``str`` categories (NA where unknown)."""
    names = hostnames.astype(object).where(hostnames.notna(), None).tolist()
    categories = pd.Index(sorted({n for n in names if n is not None}), dtype="str")
    return pd.Categorical(names, categories=categories)


def with_ts_host(
    frame: pd.DataFrame, snap_index: np.ndarray, ts: Any, hosts: pd.Categorical
) -> pd.DataFrame:
    """``frame`` with ``ts`` and ``host`` prepended, for rows whose snapshot numbers are
    ``snap_index`` (``ts``: the per-snapshot DatetimeArray, ``hosts``: the per-snapshot
    Categorical)."""
    snap_index = np.asarray(snap_index, dtype=np.int64)
    columns: dict[str, Any] = {"ts": ts.take(snap_index), "host": hosts.take(snap_index)}
    for column in frame.columns:
        columns[column] = frame[column].array
    return pd.DataFrame(columns, index=pd.RangeIndex(len(snap_index)), copy=False)


def concat_columns(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    """Concatenate batch frames column by column (``empty``: the column set and dtypes); the
    batches are released at the end (``frames`` is emptied); categories are united, never turned
    into objects."""
    if not frames:
        return empty.copy()
    columns: dict[str, Any] = {}
    for column in empty.columns:
        parts = [f[column] for f in frames]
        if isinstance(empty[column].dtype, pd.CategoricalDtype):
            cats = [p.array if isinstance(p.dtype, pd.CategoricalDtype) else None for p in parts]
            if all(c is not None for c in cats) and len({c.categories.dtype for c in cats}) == 1:
                merged = pd.Series(union_categoricals(cats))
            else:
                merged = str_category(pd.concat(parts, ignore_index=True))
        else:
            merged = pd.concat(parts, ignore_index=True)
        columns[column] = merged.array
        del parts, merged
    frames.clear()  # (deleting each batch's column as it is copied cost more than it saved)
    return pd.DataFrame(columns, copy=False)


def arrow_fix(frame: pd.DataFrame, template: pd.DataFrame) -> pd.DataFrame:
    """Give ``frame``'s columns ``template``'s dtypes where Arrow gave back something else."""
    for column in frame.columns:
        if column not in template.columns:
            continue
        want, have = template[column].dtype, frame[column].dtype
        if isinstance(want, pd.CategoricalDtype):
            if column == "host":
                if have != want:
                    frame[column] = frame[column].astype("string").astype(want)
            elif not isinstance(have, pd.CategoricalDtype) or (
                len(have.categories) == 0 and have.categories.dtype != want.categories.dtype
            ):
                frame[column] = frame[column].astype("str").astype("category")
        elif have != want:
            frame[column] = frame[column].astype(want)
    return frame


def arrow_to_pandas(table: pa.Table, template: pd.DataFrame) -> pd.DataFrame:
    """One Arrow batch of rows as pandas, dtypes as in ``template`` (categories: the batch's)."""
    return arrow_fix(table.to_pandas(split_blocks=True), template)


def read_parquet(parquet: pq.ParquetFile, dtypes: dict[str, str], stop: Any = None) -> pd.DataFrame:
    """A whole open ``ParquetFile`` as pandas, with one copy of each nullable numeric column.

    One row group at a time: nullable numeric columns (``dtypes`` names them as stored:
    ``Int64``, ``Float64``, ...) are copied from that row group's Arrow buffers into one
    preallocated array per column, and the row group's copy is dropped before the next is read
    (pandas' own conversion copied every row group, then concatenated: twice the memory, whose page
    faults were most of a cached load's time). Every other column goes through ``to_pandas``.
    ``stop``: a ``threading.Event``; when set, the read ends with ``Cancelled``.
    """
    schema = parquet.schema_arrow
    masked = [
        c
        for c in schema.names
        if _MASKED.get(dtypes.get(c, "")) is not None and schema.field(c).type.num_fields == 0
    ]
    if not masked:
        return parquet.read(use_threads=True).to_pandas(split_blocks=True)
    rest = [c for c in schema.names if c not in masked]
    n = parquet.metadata.num_rows
    out = {c: _MaskedBuilder(n, dtypes[c]) for c in masked}
    rest_parts = []
    for group in range(parquet.num_row_groups):
        if stop is not None and stop.is_set():
            raise Cancelled
        table = parquet.read_row_group(group, use_threads=True)
        for c in masked:
            out[c].add(table.column(c))
        rest_parts.append(table.select(rest))
        del table
    columns: dict[str, Any] = {c: b.finish() for c, b in out.items()}
    if rest:
        rest_table = (
            pa.concat_tables(rest_parts) if rest_parts else schema.empty_table().select(rest)
        )
        plain = rest_table.to_pandas(split_blocks=True)
        columns.update({c: plain[c].array for c in rest})
    return pd.DataFrame({c: columns[c] for c in schema.names}, copy=False)


class _MaskedBuilder:
    """A pandas masked array (Int64, Float64, ...) filled chunk by chunk from Arrow: one copy."""

    def __init__(self, n: int, dtype: str) -> None:
        self.dtype = dtype
        self.np_dtype = np.dtype(_MASKED[dtype])
        self.data = np.empty(n, dtype=self.np_dtype)
        self.mask = np.zeros(n, dtype=bool)
        self.pos = 0

    def add(self, column: pa.ChunkedArray) -> None:
        want = pa.from_numpy_dtype(self.np_dtype)
        for chunk in column.chunks:
            m, pos = len(chunk), self.pos
            self.pos += m
            if m == 0:
                continue
            if chunk.null_count == m:  # all missing (may have no data buffer: Arrow's null type)
                self.mask[pos : pos + m] = True
                continue
            if chunk.type != want:
                chunk = chunk.cast(want)
            values = np.frombuffer(chunk.buffers()[1], dtype=self.np_dtype, count=m + chunk.offset)
            np.copyto(self.data[pos : pos + m], values[chunk.offset :])
            if chunk.null_count:
                self.mask[pos : pos + m] = chunk.is_null().to_numpy(zero_copy_only=False)

    def finish(self) -> Any:
        if self.dtype.startswith("Float"):
            return pd.arrays.FloatingArray(self.data, self.mask, copy=False)
        return pd.arrays.IntegerArray(self.data, self.mask, copy=False)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as Parquet (lz4, no statistics: always read whole; they cost ~40% of the write),
    in slices of ``SLICE_ROWS`` rows so the Arrow copy never holds the whole frame."""
    if len(frame) <= SLICE_ROWS:
        frame.to_parquet(path, index=False, compression="lz4", write_statistics=False)
        return
    schema = pa.Schema.from_pandas(frame.iloc[:0], preserve_index=False)
    with pq.ParquetWriter(path, schema, compression="lz4", write_statistics=False) as writer:
        for start in range(0, len(frame), SLICE_ROWS):
            part = frame.iloc[start : start + SLICE_ROWS]
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))
