"""The dataset's catalog: one row per ingested capture, and the one place that changes it.

``_catalog.parquet`` columns:

| column | meaning |
|---|---|
| key | the capture: host and first snapshot start (``layout.capture_key``); ``failed:<source>`` for a capture that could not be read |
| host, source | the capture's host; the path it was ingested from (absolute) |
| status | ``ok`` (ingested, perhaps with problems) or ``failed`` (not readable: ``error`` says why) |
| error | why it failed; for ``ok``: NA, or a note (e.g. it overlaps another capture) |
| fingerprint | what the source looked like (sizes and times): an unchanged source is not read again |
| content_key | what was ingested (snapshots, rows, problems): the same content is not written again |
| first_ts, last_ts, snapshots, socket_rows, problem_rows | what the capture holds |
| generation, files | the files of the capture's current generation (JSON list, relative to the dataset) |
| ingested_at | when |

``commit(root, entries)`` applies the outcomes of ingest tasks under an exclusive lock: a capture's
new generation replaces its old one (same key), a capture of the same host whose snapshots lie
inside the new one's time span is superseded (a capture that grew, or a bundle of an ingested
directory), and one that overlaps it in part is trimmed to its snapshots outside that span (a
capture whose oldest snapshots the collector's disk budget removed: the dataset keeps them); the
catalog is rewritten through a rename, then the files no generation names any more
are removed. Readers list files through :func:`files`, so they see a capture's old or new rows,
never both.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tcpmemlib.fleet.layout import CATALOG, LOCK, TABLES, FleetError, write_atomic

__all__ = ["COLUMNS", "commit", "files", "read"]

COLUMNS: dict[str, str] = {
    "key": "string",
    "host": "string",
    "source": "string",
    "status": "string",
    "error": "string",
    "fingerprint": "string",
    "content_key": "string",
    "first_ts": "datetime64[ns, UTC]",
    "last_ts": "datetime64[ns, UTC]",
    "snapshots": "Int64",
    "socket_rows": "Int64",
    "problem_rows": "Int64",
    "generation": "string",
    "files": "string",
    "ingested_at": "datetime64[ns, UTC]",
}


def empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in COLUMNS.items()})


def read(root: str | os.PathLike[str]) -> pd.DataFrame:
    """The catalog (empty, with every column, for a new dataset)."""
    path = Path(root) / CATALOG
    if not path.exists():
        return empty()
    try:
        frame = pd.read_parquet(path)
        return frame.astype(COLUMNS)[list(COLUMNS)]
    except (OSError, pa.ArrowException, KeyError, ValueError, TypeError) as err:
        raise FleetError(f"{path}: not a readable catalog ({type(err).__name__}: {err})") from err


def files(
    root: str | os.PathLike[str], table: str, catalog: pd.DataFrame | None = None
) -> list[str]:
    """Absolute paths of the current files of ``table`` (every ``ok`` capture's generation)."""
    if table not in TABLES:
        raise ValueError(f"no table {table!r}; tables: {', '.join(TABLES)}")
    cat = read(root) if catalog is None else catalog
    base = Path(root).resolve()
    out = []
    for listed in cat.loc[cat["status"] == "ok", "files"].dropna():
        out.extend(str(base / f) for f in json.loads(listed) if f.split("/", 1)[0] == table)
    return sorted(out)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _row(entry: dict[str, Any]) -> pd.DataFrame:
    row = {c: [entry.get(c, pd.NA)] for c in COLUMNS}
    if isinstance(entry.get("files"), list):
        row["files"] = [json.dumps(entry["files"])]
    return pd.DataFrame(row).astype(COLUMNS)


def commit(root: str | os.PathLike[str], entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply ingest outcomes to the catalog (module doc). ``unchanged`` entries change nothing.
    Returns the entries, each with ``outcome`` (``added``, ``updated``, ``unchanged``, ``failed``)
    and ``replaced`` (the keys it superseded)."""
    base = Path(root)
    done = []
    with locked(base):
        cat = read(base)
        before = _named_files(cat)
        for entry in entries:
            entry = dict(entry)
            entry["replaced"] = []
            if entry.get("status") == "unchanged":
                entry["outcome"] = "unchanged"
                done.append(entry)
                # the source was read (its files look different) but holds the same content:
                # remember how it looks now, so the next ingest does not read it again
                same_source = (cat["key"] == entry["key"]) & (cat["source"] == entry["source"])
                if entry.get("fingerprint") is not None and bool(same_source.any()):
                    cat.loc[same_source.to_numpy(dtype=bool), "fingerprint"] = entry["fingerprint"]
                continue
            same = cat["key"] == entry["key"]
            if entry["status"] == "ok":
                host = cat["host"] == entry["host"]
                inside = (cat["first_ts"] >= entry["first_ts"]) & (
                    cat["last_ts"] <= entry["last_ts"]
                )
                stale = (cat["status"] == "failed") & (cat["source"] == entry["source"])
                drop = (same | (host & inside).fillna(False) | stale).fillna(False)
                entry["replaced"] = sorted(k for k in cat.loc[drop & ~same, "key"] if k)
                entry["outcome"] = "updated" if bool(same.any()) else "added"
                overlap = (
                    host
                    & ~drop
                    & (cat["first_ts"] <= entry["last_ts"])
                    & (cat["last_ts"] >= entry["first_ts"])
                ).fillna(False)
                for i in cat.index[overlap.to_numpy(dtype=bool)]:
                    cat.loc[i, list(COLUMNS)] = _row(_trim(base, cat.loc[i], entry)).iloc[0]
                    entry["replaced"].append(f"{cat.at[i, 'key']} (trimmed)")
            else:
                drop = same
                entry["outcome"] = "failed"
            empty_now = (cat["snapshots"] == 0).fillna(False) & (cat["status"] == "ok")
            keep = ~(drop | empty_now).to_numpy(dtype=bool)
            cat = pd.concat([cat[keep], _row(entry)], ignore_index=True)
            done.append(entry)
        cat = cat.sort_values(["host", "first_ts", "key"], na_position="last", kind="stable")
        table = pa.Table.from_pandas(cat.reset_index(drop=True), preserve_index=False)
        write_atomic(table, base / CATALOG)
        for gone in before - _named_files(cat):
            with contextlib.suppress(FileNotFoundError):
                (base / gone).unlink()
    return done


def _trim(base: Path, old: pd.Series, new: dict[str, Any]) -> dict[str, Any]:
    """``old`` (a catalog row) without the snapshots inside ``new``'s time span: a new generation
    of its files keeps only its rows before or after that span (a capture that lost its oldest
    snapshots to collect.sh's disk budget keeps them here once, the newer ones come from ``new``).
    Its verdicts stay those computed on the whole capture; ``error`` says it was trimmed."""
    gen = uuid.uuid4().hex[:12]
    kept: list[str] = []
    out = old.to_dict()
    for rel in json.loads(old["files"]):
        table = pq.read_table(base / rel)
        if "ts" in table.column_names:
            ts = table.column("ts")
            ns = pc.cast(pc.cast(ts, pa.timestamp("ns", "UTC")), pa.int64())
            first, last = pd.Timestamp(new["first_ts"]).value, pd.Timestamp(new["last_ts"]).value
            outside = pc.or_(pc.less(ns, first), pc.greater(ns, last))
            table = table.filter(outside)
            if rel.split("/", 1)[0] == "snapshots":
                out["snapshots"] = table.num_rows
                times = table.column("ts")
                if table.num_rows:
                    out["first_ts"] = pd.Timestamp(pc.min(times).as_py()).tz_convert("UTC")
                    out["last_ts"] = pd.Timestamp(pc.max(times).as_py()).tz_convert("UTC")
            if rel.split("/", 1)[0] == "sockets":
                dropped = ts.length() - table.num_rows
                out["socket_rows"] = int(out["socket_rows"]) - dropped
        if not table.num_rows:
            continue
        head, _, name = rel.rpartition("/")
        stem = name.rsplit(".", 2)[0]
        target = f"{head}/{stem}.{gen}.parquet"
        write_atomic(table, base / target)
        kept.append(target)
    out["files"] = sorted(kept)
    out["generation"] = gen
    out["content_key"] = f"trimmed:{gen}"  # never equal to a load's: a re-ingest rewrites it
    out["fingerprint"] = pd.NA
    out["error"] = f"trimmed: its snapshots inside {new['key']}'s time span are that capture's"
    return out


def _named_files(cat: pd.DataFrame) -> set[str]:
    out: set[str] = set()
    for listed in cat["files"].dropna():
        out.update(json.loads(listed))
    return out


def orphans(root: str | os.PathLike[str]) -> list[Path]:
    """Data files no catalog generation names (left by an ingest that stopped before its commit)."""
    base = Path(root)
    named = _named_files(read(base))
    found = []
    for table in TABLES:
        for path in (base / table).rglob("*.parquet"):
            if path.relative_to(base).as_posix() not in named:
                found.append(path)
    return found
