"""``ingest(sources, into)``: captures into a fleet dataset (``tcpmemlib.fleet.layout``).

Each capture is one task, :func:`build`: load it (``tcpmemlib.load_capture``), stream its socket rows
to the dataset while summing them (``fleet.sockets``), compute its small tables and the
single-capture analyses' verdicts (``fleet.figures``), write a new generation of its files, and
return a catalog entry. Only the caller commits entries to the catalog (``catalog.commit``), so
tasks may run anywhere that sees the dataset's directory: in this process one after another, or as
Dask tasks on a cluster (``dask=`` a scheduler address or a ``distributed.Client``).

- Idempotent: a source whose files look as they did at its last ingest (``fingerprint``) is not
  read again; a capture whose content is unchanged (``content_key``) is not written again. A capture
  that grew is written again under the same key and replaces its old rows.
- A capture that cannot be read (``TcpmemError``), or whose task fails in any other way, is a
  ``failed`` entry naming the error; the batch goes on. A capture read with problems is ingested
  and its ``problems`` rows stored.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tcpmemlib.capture import load_capture
from tcpmemlib.errors import TcpmemError
from tcpmemlib.fleet import catalog
from tcpmemlib.fleet.figures import capture_tables
from tcpmemlib.fleet.layout import RowWriter, capture_key
from tcpmemlib.fleet.sockets import SocketPass

__all__ = ["IngestResult", "build", "expand_sources", "fingerprint", "ingest"]

BUNDLE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_SNAPSHOT_NAME = re.compile(r"^\d{8}T\d{6}")


@dataclass(frozen=True)
class IngestResult:
    """What one ingest did to each capture: ``rows`` (one per source: ``source``, ``outcome``
    (``added``, ``updated``, ``unchanged``, ``failed``), ``key``, ``host``, ``snapshots``,
    ``socket_rows``, ``problem_rows``, ``error``, ``seconds``) and the dataset's ``catalog``."""

    rows: pd.DataFrame
    catalog: pd.DataFrame

    @property
    def failed(self) -> pd.DataFrame:
        return self.rows[self.rows["outcome"] == "failed"]


# ------------------------------------------------------------------------------- sources
def _is_capture_dir(path: Path) -> bool:
    with os.scandir(path) as it:
        return any(e.is_dir(follow_symlinks=False) and _SNAPSHOT_NAME.match(e.name) for e in it)


def expand_sources(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Capture paths from ``paths``: a capture directory or bundle as is; any other directory
    stands for the captures directly inside it (bundles and capture directories). A path that does
    not exist is kept: its task fails and says so."""
    out: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and not _is_capture_dir(path):
            inner = [
                p
                for p in sorted(path.iterdir())
                if not p.name.startswith(".")
                and (
                    (p.is_file() and p.name.endswith(BUNDLE_SUFFIXES))
                    or (p.is_dir() and not p.is_symlink() and _is_capture_dir(p))
                )
            ]
            out.extend(str(p.resolve()) for p in inner) if inner else out.append(
                str(path.resolve())
            )
        else:
            out.append(str(path.resolve()) if path.exists() else str(path.absolute()))
    return list(dict.fromkeys(out))


def fingerprint(source: str) -> str | None:
    """What the source looks like without reading it: size and mtime of a bundle; of a directory,
    each snapshot's name with its meta.txt's size and mtime, and phases.tsv's. None if unreadable."""
    h = hashlib.sha256()
    try:
        st = os.stat(source)
        if not os.path.isdir(source):
            h.update(f"file {st.st_size} {st.st_mtime_ns}".encode())
            return h.hexdigest()
        with os.scandir(source) as it:
            names = sorted(e.name for e in it if not e.name.startswith("."))
        for name in names:
            for sub in (os.path.join(source, name, "meta.txt"), os.path.join(source, name)):
                try:
                    s = os.stat(sub, follow_symlinks=False)
                    h.update(f"{name} {s.st_size} {s.st_mtime_ns}\n".encode())
                    break
                except (FileNotFoundError, NotADirectoryError):
                    continue
    except OSError:
        return None
    return h.hexdigest()


# ------------------------------------------------------------------------------- one capture
def _content_key(cap: Any, rows: int) -> str:
    h = hashlib.sha256()
    snaps = cap.meta[["ts", "snapshot"]].astype({"snapshot": "string"})
    h.update(pd.util.hash_pandas_object(snaps, index=False).to_numpy().tobytes())
    h.update(f"{rows} {len(cap.problems)}".encode())
    return h.hexdigest()


def _dates(ts: pd.Series) -> pd.Series:
    days = ts.dt.floor("D")
    labels = {d: d.strftime("%Y-%m-%d") for d in days.unique()}
    return days.map(labels).astype("string")


def _failed(source: str, fp: str | None, error: str) -> dict[str, Any]:
    return {
        "key": f"failed:{source}",
        "source": source,
        "status": "failed",
        "error": error,
        "fingerprint": fp,
        "ingested_at": pd.Timestamp.now(tz="UTC"),
    }


def build(
    source: str,
    root: str,
    known: dict[str, str] | None = None,
    workers: int | None = None,
    cache: bool = False,
) -> dict[str, Any]:
    """Ingest one capture's files into ``root`` and return its catalog entry (not committed).

    ``known``: catalog ``key -> content_key``; a capture whose content is already there is not
    written again (status ``unchanged``). Never raises for a bad capture: it is a ``failed`` entry."""
    t0 = time.perf_counter()
    fp = fingerprint(source)
    try:
        entry = _build(source, Path(root), known or {}, workers, cache)
    except TcpmemError as err:
        entry = _failed(source, fp, str(err))
    except Exception as err:  # one capture's unexpected failure must not stop the batch
        entry = _failed(source, fp, f"{type(err).__name__}: {err}")
    entry["fingerprint"] = fp
    entry["seconds"] = time.perf_counter() - t0
    return entry


def _build(
    source: str, root: Path, known: dict[str, str], workers: int | None, cache: bool
) -> dict[str, Any]:
    cap = load_capture(source, progress=False, cache=cache, workers=workers)
    host = cap.host
    first, last = cap.meta["ts"].min(), cap.meta["ts"].max()
    key = capture_key(host, first)
    entry: dict[str, Any] = {
        "key": key,
        "host": host,
        "source": source,
        "first_ts": first,
        "last_ts": last,
        "snapshots": len(cap.meta),
        "problem_rows": len(cap.problems),
        "ingested_at": pd.Timestamp.now(tz="UTC"),
    }
    content = _content_key(cap, cap.socket_rows)
    if known.get(key) == content:
        return {**entry, "status": "unchanged", "content_key": content}
    gen = uuid.uuid4().hex[:12]

    def stamp(frame: pd.DataFrame, ts: pd.Series | None = None) -> pd.DataFrame:
        when = frame["ts"] if ts is None else ts
        out = frame.assign(host=host, capture_key=key)
        out["date"] = _dates(when).to_numpy() if len(out) else pd.Series([], dtype="string")
        return out

    sockets = RowWriter(root, "sockets", host, key, gen)
    written: list[Path] = []
    try:
        passed = SocketPass(stamp, sockets.write)
        for batch, owners in cap.socket_batches(None, owners=True):
            passed.add(batch, owners)
        tables = capture_tables(cap, passed)
        first_day = pd.Series([first])
        for name, frame in tables.items():
            writer = RowWriter(root, name, host, key, gen)
            try:
                if "ts" in frame.columns:
                    writer.write(stamp(frame))
                else:  # per capture (problems, verdicts): dated by the capture's first snapshot
                    writer.write(stamp(frame, first_day.repeat(len(frame)).reset_index(drop=True)))
                written.extend(writer.close())
            finally:
                writer.abort()
        written.extend(sockets.close())
    except BaseException:
        sockets.abort()
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return {
        **entry,
        "status": "ok",
        "content_key": content,
        "socket_rows": passed.rows,
        "generation": gen,
        "files": sorted(p.relative_to(root).as_posix() for p in written),
    }


# ------------------------------------------------------------------------------- many captures
def ingest(
    sources: Sequence[str | os.PathLike[str]],
    into: str | os.PathLike[str],
    *,
    dask: Any = None,
    workers: int | None = None,
    cache: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> IngestResult:
    """Ingest every capture of ``sources`` (``expand_sources``) into the dataset ``into``.

    ``dask``: a scheduler address (``tcp://host:8786``) or a ``distributed.Client``: each capture is
    a task there (workers must see the sources and the dataset at the same paths); ``"local"`` or
    ``"local:N"``: a ``LocalCluster`` of N worker processes (default: CPUs − 1) started for this
    ingest; ``None``: one after another here. ``workers``: ``load_capture``'s parse workers per capture (1 on Dask).
    ``cache``: let ``load_capture`` keep its Parquet cache beside each capture. ``progress``: a
    tqdm bar (``None``: when more than one capture). ``log``: called with a line per capture."""
    root = Path(into)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    paths = expand_sources(sources)
    cat = catalog.read(root)
    ok = cat[cat["status"] == "ok"]
    printed = ok[ok["fingerprint"].notna()]
    seen = dict(zip(printed["source"], printed["fingerprint"], strict=True))
    known = dict(zip(ok["key"], ok["content_key"], strict=True))
    results: list[dict[str, Any]] = []
    todo = []
    for src in paths:
        fp = fingerprint(src)
        if fp is not None and seen.get(src) == fp:
            row = printed[(printed["source"] == src) & (printed["fingerprint"] == fp)].iloc[0]
            results.append({**row.to_dict(), "outcome": "unchanged", "seconds": 0.0})
        else:
            todo.append(src)
    show = progress if progress is not None else len(paths) > 1
    bar = _bar(show, len(paths), len(paths) - len(todo))
    try:
        for entry in _run(todo, root, known, dask, workers, cache):
            (entry,) = catalog.commit(root, [entry])
            results.append(entry)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{entry.get('host') or '?'}: {entry['outcome']}")
            if log is not None:
                log(_line(entry))
    finally:
        if bar is not None:
            bar.close()
    return IngestResult(_rows(results), catalog.read(root))


def _run(
    todo: list[str], root: Path, known: dict[str, str], dask: Any, workers: int | None, cache: bool
) -> Iterable[dict[str, Any]]:
    if dask is None:
        for src in todo:
            yield build(src, str(root), known, workers, cache)
        return
    from distributed import Client, LocalCluster, as_completed  # only with --dask: ~1 s to import

    cluster = None
    if isinstance(dask, Client):
        client = dask
    elif isinstance(dask, str) and (dask == "local" or dask.startswith("local:")):
        n = int(dask.partition(":")[2] or max(1, (os.cpu_count() or 2) - 1))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(dask)
    try:
        futures = {
            client.submit(build, src, str(root), known, 1, cache, pure=False): src for src in todo
        }
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as err:  # the worker died or the cluster failed: a row, not a stop
                why = f"Dask task failed: {type(err).__name__}: {err}"
                yield _failed(futures[future], None, why)
    finally:
        if client is not dask:
            client.close()
        if cluster is not None:
            cluster.close()


def _bar(show: bool, total: int, done: int) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm  # only when shown

    return tqdm(total=total, initial=done, desc="tcpmem ingest", unit="capture")


def _line(entry: dict[str, Any]) -> str:
    what = f"{entry['outcome']:9} {entry.get('source')}"
    if entry["outcome"] == "failed":
        error = str(entry.get("error"))
        return (
            f"{entry['outcome']:9} {error}" if error.startswith(what[10:]) else f"{what}: {error}"
        )
    extra = f" ({entry.get('error')})" if isinstance(entry.get("error"), str) else ""
    return (
        f"{what}: host {entry.get('host')}, {entry.get('snapshots')} snapshots, "
        f"{entry.get('socket_rows') or 0:,} socket rows, {entry.get('problem_rows') or 0} problems"
        f"{extra}"
    )


def _rows(results: list[dict[str, Any]]) -> pd.DataFrame:
    cols = {
        "source": "string",
        "outcome": "string",
        "key": "string",
        "host": "string",
        "snapshots": "Int64",
        "socket_rows": "Int64",
        "problem_rows": "Int64",
        "error": "string",
        "seconds": "Float64",
    }
    frame = pd.DataFrame([{c: r.get(c, pd.NA) for c in cols} for r in results], columns=list(cols))
    return frame.astype(cols)
