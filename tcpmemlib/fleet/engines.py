"""The two engines the fleet questions run on, over the same dataset files.

``open_fleet(dataset, engine="duckdb")`` -> :class:`Fleet`. The files of each table are the ones the
catalog names (``catalog.files``), so a query never sees a capture's old and new generation at once.

- ``duckdb`` (default): an embedded DuckDB connection with one view per table (``read_parquet`` of
  the files, columns matched by name); nothing to start. :meth:`Fleet.sql` runs a query to pandas.
- ``dask``: :meth:`Fleet.frame` gives ``dask.dataframe.read_parquet`` of a table's files (only the
  columns asked for); computed on the current ``distributed`` client if one exists (a
  ``LocalCluster`` or a real cluster whose workers see the dataset path), else Dask's local
  scheduler.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tcpmemlib.fleet import catalog
from tcpmemlib.fleet.layout import CATALOG, TABLES, FleetError

__all__ = [
    "ENGINES",
    "Fleet",
    "FleetError",
    "as_utc",
    "dask_agg",
    "open_fleet",
    "typed",
    "utc_time",
]

ENGINES = ("duckdb", "dask")


@dataclass
class Fleet:
    """A fleet dataset opened on one engine (module doc)."""

    root: Path
    engine: str
    catalog: pd.DataFrame
    _files: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _con: Any = field(default=None, repr=False)
    _views: set[str] = field(default_factory=set, repr=False)

    def files(self, table: str) -> list[str]:
        if table not in self._files:
            self._files[table] = catalog.files(self.root, table, self.catalog)
        return self._files[table]

    def has(self, table: str) -> bool:
        return bool(self.files(table))

    def need(self, table: str) -> list[str]:
        found = self.files(table)
        if not found:
            raise FleetError(
                f"{self.root}: no {table!r} rows in this dataset (ingest captures first)"
            )
        return found

    # --- DuckDB
    @property
    def con(self) -> Any:
        """The DuckDB connection; each table a view over its files, made when a query first names
        it (a view reads its files' footers: the socket rows' only when a query asks for them)."""
        if self._con is None:
            import duckdb

            con = duckdb.connect(":memory:")
            con.execute("SET TimeZone = 'UTC'")
            self._con = con
        return self._con

    def sql(self, query: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run ``query`` on DuckDB (tables by name: ``snapshots``, ``processes``, ...) to pandas."""
        con = self.con
        for table in TABLES:
            if table not in self._views and re.search(rf"\b{table}\b", query) and self.files(table):
                con.read_parquet(self.files(table), union_by_name=True).create_view(table)
                self._views.add(table)
        return con.execute(query, params or []).df()

    # --- Dask
    def frame(self, table: str, columns: list[str]) -> Any:
        """``dask.dataframe`` of ``table`` restricted to ``columns``."""
        import dask.dataframe as dd

        return dd.read_parquet(self.need(table), columns=list(columns))

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
            self._views = set()


def open_fleet(dataset: str | os.PathLike[str], engine: str = "duckdb") -> Fleet:
    """Open a dataset written by ``tcpmem ingest`` on ``engine`` (``duckdb`` or ``dask``)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    root = Path(dataset).resolve()
    if not (root / CATALOG).is_file():
        raise FleetError(f"{dataset}: not a fleet dataset (no {CATALOG}; see `tcpmem ingest`)")
    return Fleet(root=root, engine=engine, catalog=catalog.read(root))


# ----------------------------------------------------------------------- shared by the questions
def as_utc(frame: pd.DataFrame, *cols: str) -> pd.DataFrame:
    for c in cols:
        ts = pd.to_datetime(frame[c])
        frame[c] = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    return frame


def typed(
    frame: pd.DataFrame, ints: Sequence[str] = (), strings: Sequence[str] = ()
) -> pd.DataFrame:
    out = frame.copy()
    for c in ints:
        out[c] = pd.to_numeric(out[c]).astype("Float64").round().astype("Int64")
    for c in strings:
        out[c] = out[c].astype("string")
    return out


def dask_agg(frame: Any, keys: list[str], spec: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """``groupby(keys).agg`` on Dask with named outputs: ``spec`` maps output -> (column, how)."""
    by_col: dict[str, list[str]] = {}
    for col, how in spec.values():
        by_col.setdefault(col, [])
        if how not in by_col[col]:
            by_col[col].append(how)
    got = frame.groupby(keys).agg(by_col).compute()
    out = pd.DataFrame(index=got.index)
    for name, (col, how) in spec.items():
        out[name] = got[(col, how)]
    return out.reset_index()


def utc_time(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
