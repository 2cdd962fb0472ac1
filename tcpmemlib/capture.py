"""``load_capture(path) -> Capture``: a collect.sh capture (directory or bundle) as tidy frames.

A capture is the ``-o`` directory of collect.sh: one sub-directory per snapshot (named by its UTC
start time), an optional ``phases.tsv``, and dot entries (``.partial-*``, ``.tcpmem-cache``) that are
ignored. A ``.tar.gz``/``.tgz``/``.tar`` bundle of such a directory is extracted safely first
(``tcpmemlib.bundle``). See docs/design.md §1 (layout) and §2 (frames).

Every frame starts with ``ts`` (datetime64[ns, UTC], the snapshot's start time from meta.txt) and
``host`` (category, meta's hostname). Frames and their columns are in ``FRAMES`` and in the design
doc; each parser module's docstring is the schema of its columns.

What cannot be read is data too: ``Capture.problems`` lists every file that was skipped or loaded with a
gap (``snapshot``, ``file``, ``line``, ``reason``, ``severity``):

- ``error``: the file was not loaded (truncated, garbled, binary, a refused bundle member, ...);
- ``warning``: loaded with a gap (an expected file missing from a snapshot, unknown fields skipped);
- ``collector``: collect.sh recorded it at capture time (meta.txt ``missing=``/``failed=`` lines).

Only a capture that cannot be read at all raises ``CaptureError`` (no such path, no snapshots, no
snapshot with a readable meta.txt, a corrupt bundle). Python warnings are issued once per file name
(not per snapshot or line), summarising how many snapshots were affected.

Speed: snapshots are parsed in chunks of consecutive snapshots; within a chunk the ``ss`` files are
parsed with one ``read_ss`` call per batch, each row assigned back to its file by its line number
(a batch that does not parse cleanly is re-read file by file, so an error still names its file and
line). Large captures (``PARALLEL_MIN_BYTES`` of ss files) are parsed in two worker processes
(``tcpmemlib.workers``). ``owners`` tuples are interned (one object per distinct owner list).
Results are cached as Parquet beside the capture (``tcpmemlib.cache``) and reused until it changes.
Measured figures: bench/README.md (``load``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from tcpmemlib import sockstore
from tcpmemlib.errors import CaptureError, ParseError
from tcpmemlib.parsers import (
    _ss_line,
    cgroups,
    meminfo,
    meta,
    netstat,
    phases,
    protocols,
    ps,
    slab_aliases,
    slabinfo,
    sockstat,
    sysctl,
    zoneinfo,
)
from tcpmemlib.parsers._text import read_text
from tcpmemlib.units import pages_to_bytes

__all__ = ["FRAMES", "PROBLEMS_SCHEMA", "Capture", "load_capture"]

PROBLEMS_SCHEMA: dict[str, str] = {
    "snapshot": "string",
    "file": "string",
    "line": "Int64",
    "reason": "string",
    "severity": "category",
}
SEVERITIES = ("error", "warning", "collector")
SEVERITY_DTYPE = pd.CategoricalDtype(pd.Index(SEVERITIES, dtype="str"))
META_COLUMNS: dict[str, str] = {
    "snapshot": "string",
    **{c: d for c, d in meta.SCHEMA.items() if c != "hostname"},
    "phase": "string",
}
OWNERS_SCHEMA: dict[str, str] = {
    "sock_id": "int64",
    "pid": "Int64",
    "comm": "string",
    "fd": "Int64",
}

# Files every snapshot should have (besides meta.txt); ps_args.txt only when meta says args=1.
EXPECTED_FILES = (
    "sockstat.txt",
    "sockstat6.txt",
    "meminfo.txt",
    "slabinfo.txt",
    "slab_aliases.txt",
    "protocols.txt",
    "netstat.txt",
    "snmp.txt",
    "zoneinfo.txt",
    "sysctl.txt",
    "ps.txt",
    "ss_tcp.txt",
    "ss_udp.txt",
    "cgroups.txt",
)
SS_FILES = {"ss_tcp.txt": "tcp", "ss_udp.txt": "udp"}
# A snapshot directory name: UTC start time, e.g. 20261125T231700.123456789Z
_SNAPSHOT_NAME = re.compile(r"^(\d{8}T\d{6})(?:\.(\d{1,9}))?Z$")
# Batches of ss text handed to read_ss at once, and when to use worker processes.
# 1 MB: with 2 MB a day's first load peaked ~420 MB higher over all processes (the chunks in
# flight), and took ~40 s instead of ~46 s (bench/README.md, load).
SS_BATCH_BYTES = 1024**2  # compressed ss bytes per read_ss call (about 50k sockets)
SS_CHUNK_SNAPSHOTS = 512
PARALLEL_MIN_BYTES = 16 * 1024**2  # compressed ss bytes; below this, spawning workers costs more
PROGRESS_MIN_BYTES = 8 * 1024**2  # about 150 snapshots of 2k sockets: a few seconds
# Compressed ss bytes from which load_capture leaves the socket rows on disk (sockets="auto"):
# about 1M socket rows (~500 snapshots of 2k sockets), ~250 MB as frames.
ON_DISK_MIN_SS_BYTES = 16 * 1024**2
SOCKETS_MODES = ("auto", "memory", "disk")
# Reading this many socket rows whole from disk (Capture.sockets) warns once per capture.
LARGE_READ_ROWS = 1_000_000


@dataclass(repr=False)
class Capture:
    """Every frame of a capture (docs/design.md §2). Build it with ``load_capture``.

    ``sockets`` and ``owners`` of a large capture stay on disk (``tcpmemlib.sockstore``): reading
    either attribute reads the whole frame from disk each time; ``socket_batches`` reads a batch of
    whole snapshots at a time, which is what the analyses do.
    """

    sockets: pd.DataFrame
    owners: pd.DataFrame
    sockstat: pd.DataFrame
    meminfo: pd.DataFrame
    processes: pd.DataFrame
    slab: pd.DataFrame
    slab_aliases: pd.DataFrame
    protocols: pd.DataFrame
    netstat: pd.DataFrame
    zoneinfo: pd.DataFrame
    sysctl: pd.DataFrame
    cgroups: pd.DataFrame
    proc_cgroups: pd.DataFrame
    meta: pd.DataFrame
    phases: pd.DataFrame
    problems: pd.DataFrame
    path: str | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every frame by attribute name (``sockets`` and ``owners`` read whole, see the class doc)."""
        return {name: getattr(self, name) for name in FRAMES}

    def __repr__(self) -> str:
        rows = self._socket_rows()
        where = "on disk" if rows.on_disk else "in memory"
        return (
            f"Capture(path={self.path!r}, snapshots={len(self.meta)}, "
            f"socket rows={rows.rows} ({where}), problems={len(self.problems)})"
        )

    # --- socket rows: in memory or on disk (tcpmemlib.sockstore)
    def _socket_rows(self) -> Any:
        return self.__dict__["_rows"]

    @property
    def socket_rows(self) -> int:
        """Number of socket rows (every snapshot), without reading them."""
        return int(self._socket_rows().rows)

    @property
    def sockets_on_disk(self) -> bool:
        """True when ``sockets``/``owners`` are read from disk on access (a large capture)."""
        return bool(self._socket_rows().on_disk)

    def socket_batches(
        self,
        columns: Sequence[str] | None = None,
        *,
        owners: bool = False,
        batch_rows: int | None = None,
    ) -> Any:
        """Iterate ``(sockets, owners)`` over batches of consecutive whole snapshots, in time order.

        ``columns``: the socket columns wanted (``ts``, ``host``, ``sock_id`` always come);
        ``owners``: also the ``owners`` rows of the batch's sockets (else ``None``);
        ``batch_rows``: rows per batch for in-memory sockets (default ``sockstore.BATCH_ROWS``; a
        capture on disk gives one Parquet row group per batch). Categorical columns carry each
        batch's own categories.
        """
        return self._socket_rows().batches(columns, owners, batch_rows)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per capture for ``key`` (forgotten when sockets/owners change):
        the analyses share one pass over the socket rows this way."""
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def _replace(self, **changes: Any) -> Capture:
        """A copy with some frames replaced; socket rows stay where they are (not read)."""
        values = {f.name: self.__dict__.get(f.name) for f in fields(self) if f.name not in _ROWS}
        values.update({k: v for k, v in changes.items() if k not in _ROWS})
        rows = changes.get("_rows", self._socket_rows())
        return Capture(sockets=rows, owners=rows, **values)

    def _one(self, column: str, what: str) -> Any:
        values = self.meta[column].dropna().unique()
        if len(values) == 0:
            raise CaptureError(self.path, f"no snapshot records its {what}")
        if len(values) > 1:
            shown = ", ".join(str(v) for v in sorted(values, key=str))
            raise CaptureError(self.path, f"snapshots disagree on {what}: {shown}")
        return values[0]

    @property
    def page_size_bytes(self) -> int:
        """The capture's page size (from meta.txt; an error if snapshots disagree)."""
        return int(self._one("page_size_bytes", "page size"))

    @property
    def cpus(self) -> int:
        """The capture's online CPU count (from meta.txt; an error if snapshots disagree)."""
        return int(self._one("cpus", "CPU count"))

    @property
    def host(self) -> str:
        """The capture's host name (an error if the capture mixes hosts)."""
        return str(self._one("host", "host"))

    def select(
        self,
        phase: str | Sequence[str] | None = None,
        start: Any = None,
        end: Any = None,
    ) -> Capture:
        """The snapshots of ``phase`` (a label or labels) with ``start <= ts < end``, every frame cut.

        ``start``/``end`` take anything ``pd.Timestamp`` takes; naive times are UTC.
        """
        keep = pd.Series(True, index=self.meta.index)
        if phase is not None:
            labels = [phase] if isinstance(phase, str) else list(phase)
            keep &= self.meta["phase"].isin(labels).fillna(False).astype(bool)
        if start is not None:
            keep &= self.meta["ts"] >= _utc(start)
        if end is not None:
            keep &= self.meta["ts"] < _utc(end)
        chosen = self.meta[keep]
        one_host = self.meta["host"].nunique(dropna=False) <= 1
        pairs = pd.MultiIndex.from_frame(chosen[["ts", "host"]].astype({"host": "string"}))
        snapshots = set(chosen["snapshot"].dropna())
        out: dict[str, Any] = {}
        rows = self._socket_rows()
        if rows.on_disk:
            out["_rows"] = rows.restrict(None if one_host else pairs, chosen["ts"])
        for name in FRAMES:
            if rows.on_disk and name in _ROWS:
                continue
            frame = getattr(self, name)
            if name == "phases":
                out[name] = (
                    frame
                    if phase is None
                    else frame[frame["phase"].isin(labels)].reset_index(drop=True)
                )
            elif name == "problems":
                mask = frame["snapshot"].isna() | frame["snapshot"].isin(snapshots)
                out[name] = frame[mask.astype(bool)].reset_index(drop=True)
            elif one_host:  # the common case: the start time alone names the snapshot
                out[name] = frame[frame["ts"].isin(chosen["ts"])].reset_index(drop=True)
            else:
                key = pd.MultiIndex.from_frame(frame[["ts", "host"]].astype({"host": "string"}))
                out[name] = frame[key.isin(pairs)].reset_index(drop=True)
        if not rows.on_disk:
            out["_rows"] = rows.restrict(out.pop("sockets"), out.pop("owners"))
        return self._replace(**out)


class _SocketFrame:
    """``Capture.sockets`` / ``Capture.owners``: the frame, read from the socket rows' source.

    Setting a DataFrame keeps the rows in memory; setting a ``sockstore`` source (as ``load`` does)
    sets both attributes. Either way the capture's memo is forgotten."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        rows = obj.__dict__["_rows"]
        if rows.on_disk and rows.rows >= LARGE_READ_ROWS and not obj.__dict__.get("_warned"):
            obj.__dict__["_warned"] = True
            warnings.warn(
                f"tcpmem: Capture.{self.name} reads all {rows.rows:,} socket rows from disk into "
                f"memory (~{rows.rows * 250 / 1e9:.1f} GB) on every access; "
                "Capture.socket_batches(columns) reads them a batch of snapshots at a time",
                stacklevel=2,
            )
        sockets, owners = rows.frames()
        return sockets if self.name == "sockets" else owners

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__.pop("_memo", None)
        if isinstance(value, sockstore.MemoryRows | sockstore.DiskRows):
            obj.__dict__["_rows"] = value
            return
        old = obj.__dict__.get("_rows")
        if isinstance(old, sockstore.MemoryRows):
            sockets, owners = old.sockets, old.owners
        elif old is not None and self.name == "sockets":
            sockets, owners = None, old.frames()[1]
        else:
            sockets, owners = (old.frames()[0] if old is not None else None), None
        if self.name == "sockets":
            sockets = value
        else:
            owners = value
        obj.__dict__["_rows"] = sockstore.MemoryRows(sockets, owners)


_ROWS = ("sockets", "owners", "_rows")
Capture.sockets = _SocketFrame("sockets")  # type: ignore[assignment]
Capture.owners = _SocketFrame("owners")  # type: ignore[assignment]
FRAMES = [f.name for f in fields(Capture) if f.name != "path"]


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _ts_from_name(name: str) -> pd.Timestamp | None:
    match = _SNAPSHOT_NAME.match(name)
    if not match:
        return None
    frac = (match[2] or "0").ljust(9, "0")
    try:
        return pd.Timestamp(match[1]).tz_localize("UTC") + pd.Timedelta(int(frac), "ns")
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Finding the capture and its snapshots


@dataclass
class _Snapshot:
    name: str
    dir: Path
    files: dict[str, Path]  # base name (without .gz) -> path


def _capture_root(directory: Path) -> Path:
    """The directory holding the snapshots (a bundle may wrap them in one top-level directory)."""
    if _snapshot_dirs(directory):
        return directory
    subdirs = [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) == 1 and _snapshot_dirs(subdirs[0]):
        return subdirs[0]
    return directory


def _snapshot_dirs(directory: Path) -> list[Path]:
    try:
        entries = sorted(directory.iterdir())
    except OSError as err:
        raise CaptureError(directory, f"cannot list the capture: {err.strerror or err}") from err
    return [
        p
        for p in entries
        if not p.name.startswith(".")
        and p.is_dir()
        and (_ts_from_name(p.name) is not None or _has_meta(p))
    ]


def _has_meta(directory: Path) -> bool:
    return (directory / "meta.txt").exists() or (directory / "meta.txt.gz").exists()


def _list_snapshot(directory: Path) -> _Snapshot:
    files: dict[str, Path] = {}
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        base = entry.name[:-3] if entry.name.endswith(".gz") else entry.name
        if base not in files or not entry.name.endswith(".gz"):
            files[base] = entry
    return _Snapshot(directory.name, directory, files)


# --------------------------------------------------------------------------------------------
# Loading


class _Problems:
    def __init__(self) -> None:
        self.rows: list[tuple[object, object, object, str, str]] = []
        self.warned: dict[str, list[str]] = {}

    def add(
        self,
        snapshot: str | None,
        file: str | None,
        line: int | None,
        reason: str,
        severity: str,
    ) -> None:
        self.rows.append(
            (
                pd.NA if snapshot is None else snapshot,
                pd.NA if file is None else file,
                pd.NA if line is None else line,
                reason,
                severity,
            )
        )

    def parse_error(self, snapshot: str, file: str, err: ParseError) -> None:
        self.add(snapshot, file, err.line_no, f"not loaded: {_short(err)}", "error")
        where = f"{snapshot}/{file}" + (f":{err.line_no}" if err.line_no is not None else "")
        self.warned.setdefault(file, []).append(f"{where}: not loaded: {_short(err)}")

    def python_warning(self, snapshot: str, file: str, message: str) -> None:
        self.add(snapshot, file, None, message, "warning")
        self.warned.setdefault(file, []).append(f"{snapshot}/{file}: {message}")

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows, columns=list(PROBLEMS_SCHEMA))
        frame = frame.astype({"severity": "string"}).astype(PROBLEMS_SCHEMA)
        frame["severity"] = frame["severity"].astype("string").astype(SEVERITY_DTYPE)
        return frame

    def emit(self) -> None:
        """One Python warning per file name, however many snapshots it concerns."""
        for messages in self.warned.values():
            more = f" (and {len(messages) - 1} more snapshots)" if len(messages) > 1 else ""
            warnings.warn(f"tcpmem: {messages[0]}{more}", stacklevel=3)


def _warn_from_problems(problems: pd.DataFrame) -> None:
    """The once-per-file warnings of a load, re-issued from a cached ``problems`` frame."""
    shown = problems[problems["severity"].isin(["error", "warning"]).fillna(False).astype(bool)]
    for file, rows in shown.groupby("file", sort=False, dropna=False):
        first = rows.iloc[0]
        where = f"{first['snapshot']}/{file}" if pd.notna(first["snapshot"]) else str(file)
        more = f" (and {len(rows) - 1} more snapshots)" if len(rows) > 1 else ""
        warnings.warn(f"tcpmem: {where}: {first['reason']}{more} (cached)", stacklevel=3)


def _short(err: ParseError) -> str:
    text = err.reason
    if err.line is not None:
        shown = err.line if len(err.line) <= 120 else err.line[:120] + "..."
        text += f": {shown!r}"
    return text


def _read(snap: _Snapshot, base: str, problems: _Problems) -> tuple[str, str] | tuple[None, None]:
    """``(path, text)`` of one snapshot file, or ``(None, None)`` with a problem recorded."""
    path = snap.files[base]
    try:
        got_path, text = read_text(path)
    except ParseError as err:
        problems.parse_error(snap.name, path.name, err)
        return None, None
    return got_path or str(path), text


def _parse_file(
    snap: _Snapshot,
    base: str,
    problems: _Problems,
    parser: Callable[[str, str], Any],
) -> Any:
    """Run ``parser(text, path)`` on one file, turning ParseError/warnings into problems."""
    path, text = _read(snap, base, problems)
    if text is None or path is None:
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = parser(text, path)
        except ParseError as err:
            problems.parse_error(snap.name, snap.files[base].name, err)
            return None
    for warning in caught:
        problems.python_warning(snap.name, snap.files[base].name, str(warning.message))
    return result


class _Columns:
    """Column lists of one frame kind, accumulated over snapshots, with the snapshot index."""

    def __init__(self) -> None:
        self.columns: dict[str, list[object]] = {}
        self.index: list[int] = []

    def add(self, snap_index: int, columns: dict[str, list[object]]) -> None:
        if not columns:
            return
        n = len(next(iter(columns.values())))
        if not self.columns:
            self.columns = {c: [] for c in columns}
        for name, values in columns.items():
            self.columns[name].extend(values)
        self.index.extend([snap_index] * n)


def load_capture(
    path: str | os.PathLike[str],
    *,
    progress: bool | None = None,
    cache: bool = True,
    workers: int | None = None,
    sockets: str = "auto",
) -> Capture:
    """Load a collect.sh capture directory or bundle into a ``Capture`` (docs/design.md §2).

    ``progress``: show a tqdm bar (``None``: only for captures over ~32 MB). ``cache``: read/write
    the Parquet cache beside the capture (``tcpmemlib.cache``). ``workers``: worker processes that
    parse the snapshots (``None``: 2 for large captures on 2 CPUs or more, else 1; see
    ``_auto_workers``). ``sockets``: where the socket rows stay: ``"memory"``, ``"disk"`` (the
    cache entry, or an unlinked temporary file without a cache; read a batch at a time, see
    ``Capture.socket_batches``), or ``"auto"``: on disk for large captures (``ON_DISK_MIN_SS_BYTES``
    of ss files; from the cache, ``cache.ON_DISK_MIN_ROWS`` rows).
    """
    from tcpmemlib import bundle as bundle_mod
    from tcpmemlib import cache as cache_mod

    if sockets not in SOCKETS_MODES:
        raise ValueError(f"sockets must be one of {', '.join(SOCKETS_MODES)}, not {sockets!r}")
    source = Path(os.fspath(path))
    if not source.exists():
        raise CaptureError(source, "no such file or directory")
    is_bundle = source.is_file()
    if is_bundle and not bundle_mod.is_bundle(source):
        raise CaptureError(source, "not a capture directory or a .tar.gz/.tgz/.tar bundle")
    key, cached = cache_mod.load_current(source, sockets) if cache else (None, None)
    if cached is not None:
        _warn_from_problems(cached.problems)
        return cached._replace(path=str(source))
    problems = _Problems()
    tmp: Path | None = None
    rows_dirs: list[tuple[Path, bool]] = []  # (where socket rows were streamed, is a cache entry)

    def make_rows_dir() -> Path:
        entry = cache_mod.begin(source) if key is not None else None
        if entry is not None:
            rows_dirs.append((entry, True))
            return entry
        rows_dirs.append((Path(tempfile.mkdtemp(prefix="tcpmem-rows-")), False))
        return rows_dirs[-1][0]

    try:
        if is_bundle:
            tmp, refused = bundle_mod.extract(source)
            for item in refused:
                problems.add(
                    None, item.member, None, f"bundle member refused: {item.reason}", "error"
                )
                problems.warned.setdefault(item.member, []).append(
                    f"bundle member refused: {item.reason}"
                )
            root = _capture_root(tmp)
        else:
            if not source.is_dir():
                raise CaptureError(source, "not a directory")
            root = _capture_root(source)
        try:
            capture = _load_dir(
                root,
                problems,
                progress=progress,
                workers=workers,
                sockets=sockets,
                make_rows_dir=make_rows_dir,
            )
        except CaptureError as err:
            if not is_bundle:
                raise
            why = "; ".join(f"{r.member}: {r.reason}" for r in refused) or err.reason
            raise CaptureError(source, f"{err.reason.split(' (')[0]}; {why}") from err
        capture = capture._replace(path=str(source))
        problems.emit()
        streamed = [d for d, is_entry in rows_dirs if is_entry]
        if streamed and key is not None:  # the rows are in the entry already: finish it
            cache_mod.finish(source, key, streamed[0], capture, rows_written=True)
            rows_dirs.clear()
        elif key is not None and not rows_dirs:
            cache_mod.store(source, key, capture)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for directory, _ in rows_dirs:  # open files stay readable: the capture reads those
            shutil.rmtree(directory, ignore_errors=True)
    return capture


def _load_dir(
    root: Path,
    problems: _Problems,
    *,
    progress: bool | None,
    workers: int | None,
    sockets: str = "memory",
    make_rows_dir: Callable[[], Path] | None = None,
) -> Capture:
    snap_dirs = _snapshot_dirs(root)
    if not snap_dirs:
        if _has_meta(root):
            raise CaptureError(root, "this is one snapshot directory: load its parent, the capture")
        raise CaptureError(root, "no snapshots in the capture (no snapshot directory)")
    snaps = [_list_snapshot(d) for d in snap_dirs]
    total_bytes = sum(p.stat().st_size for s in snaps for p in s.files.values())
    show = progress if progress is not None else total_bytes >= PROGRESS_MIN_BYTES
    bar = _progress_bar(show, len(snaps), "tcpmem load")

    # meta.txt first: a snapshot without a readable meta cannot be placed in time or sized.
    kept: list[_Snapshot] = []
    meta_rows: list[dict[str, object]] = []
    for snap in snaps:
        values = None
        if "meta.txt" not in snap.files:
            problems.add(snap.name, "meta.txt", None, "snapshot skipped: no meta.txt", "error")
        else:
            got = _parse_file(snap, "meta.txt", problems, meta.records)
            if got is not None:
                values, collector = got
                for kind, item, reason in collector:
                    problems.add(snap.name, item, None, f"{kind}: {reason}", "collector")
                if "start" not in values or pd.isna(values["start"]):
                    values["start"] = _ts_from_name(snap.name)
                if values["start"] is None or pd.isna(values["start"]):
                    problems.add(
                        snap.name, "meta.txt", None, "snapshot skipped: no start time", "error"
                    )
                    values = None
            else:
                snapshot, file, line, reason, severity = problems.rows[-1]
                problems.rows[-1] = (snapshot, file, line, f"{reason}; snapshot skipped", severity)
        if values is not None:
            kept.append(snap)
            values["snapshot"] = snap.name
            meta_rows.append(values)
    if not kept:
        first = problems.rows[0] if problems.rows else None
        detail = f" (first: {first[0]}/{first[1]}: {first[3]})" if first else ""
        raise CaptureError(root, f"no snapshot with a readable meta.txt{detail}")

    meta_frame = meta.frame(meta_rows)
    meta_frame.insert(0, "snapshot", [r["snapshot"] for r in meta_rows])
    ts = meta_frame["start"].array
    hosts = _host_categorical(meta_frame["hostname"])
    page_sizes = meta_frame["page_size_bytes"]

    # Expected files that are absent (and not explained by collect.sh's own missing= lines).
    recorded = {(p[0], p[1]) for p in problems.rows if p[4] == "collector"}
    for i, snap in enumerate(kept):
        expected = list(EXPECTED_FILES)
        if meta_rows[i].get("args_collected") is True:
            expected.append("ps_args.txt")
        for base in expected:
            if base not in snap.files and (snap.name, base) not in recorded:
                problems.python_warning(snap.name, base, "file missing from the snapshot")

    parts: dict[str, list[tuple[pd.DataFrame, np.ndarray]]] = {k: [] for k in _BUILDERS}
    ss_bytes = sum(p.stat().st_size for s in kept for b, p in s.files.items() if b in SS_FILES)
    on_disk = sockets == "disk" or (sockets == "auto" and ss_bytes >= ON_DISK_MIN_SS_BYTES)
    rows_dir = make_rows_dir() if on_disk else None
    writer = None
    if rows_dir is not None:
        writer = sockstore.SocketWriter(rows_dir, sockets_template(hosts.dtype))
    ss = _SsMerge(ts, hosts, writer)
    for result in _run_chunks(kept, workers, bar):
        problems.rows.extend(result.problems)
        for file, messages in result.warned.items():
            problems.warned.setdefault(file, []).extend(messages)
        for kind, part in result.small.items():
            parts[kind].append(part)
        ss.add(result)
    if bar is not None:
        bar.close()
    rows = ss.finish()
    if rows_dir is not None:
        rows = sockstore.open_rows(rows_dir, sockets_template(hosts.dtype))
    small: dict[str, tuple[pd.DataFrame, np.ndarray]] = {}
    for kind, chunk_parts in parts.items():
        small[kind] = _concat_parts(chunk_parts, _build(kind, {}))
        chunk_parts.clear()

    def framed(kind: str) -> pd.DataFrame:
        frame, index = small[kind]
        return _with_ts_host(frame, index, ts, hosts)

    sockstat_frame, sockstat_idx = small["sockstat"]
    if len(sockstat_frame):
        sizes = page_sizes.iloc[sockstat_idx].reset_index(drop=True)
        sockstat_frame = _page_bytes(sockstat_frame, sizes, sockstat.with_bytes, problems)
    sockstat_frame = _with_ts_host(sockstat_frame, sockstat_idx, ts, hosts)

    slab_frame, slab_idx = small["slab"]
    if len(slab_frame):
        sizes = page_sizes.iloc[slab_idx].reset_index(drop=True)
        slab_frame = _page_bytes(slab_frame, sizes, _slab_bytes, problems)
    slab_frame = _with_ts_host(slab_frame, slab_idx, ts, hosts)

    processes = framed("processes")
    args_frame, args_idx = small["ps_args"]
    if len(args_frame):
        args = args_frame.assign(_snap=args_idx).drop_duplicates(["_snap", "pid"])
        procs_key = pd.DataFrame({"_snap": small["processes"][1], "pid": processes["pid"]})
        merged = procs_key.merge(args, how="left")
        processes["args"] = merged["args"].astype("string").to_numpy()

    phase_frame = _load_phases(root, problems)
    meta_frame = _meta_with_phase(meta_frame, phase_frame)
    meta_frame = _with_ts_host(
        meta_frame.drop(columns=["hostname"]), np.arange(len(kept)), ts, hosts
    )

    return Capture(
        sockets=rows,
        owners=rows,
        sockstat=sockstat_frame,
        meminfo=framed("meminfo"),
        processes=processes,
        slab=slab_frame,
        slab_aliases=framed("slab_aliases"),
        protocols=framed("protocols"),
        netstat=framed("netstat"),
        zoneinfo=framed("zoneinfo"),
        sysctl=framed("sysctl"),
        cgroups=framed("cgroups"),
        proc_cgroups=framed("proc_cgroups"),
        meta=meta_frame,
        phases=phase_frame,
        problems=problems.frame(),
    )


def _page_bytes(
    frame: pd.DataFrame,
    sizes: pd.Series,
    convert: Callable[[pd.DataFrame, pd.Series], pd.DataFrame],
    problems: _Problems,
) -> pd.DataFrame:
    try:
        return convert(frame, sizes)
    except ValueError as err:
        problems.add(None, "meta.txt", None, f"page size unusable, *_bytes left NA: {err}", "error")
        return frame


def _load_small_files(
    i: int, snap: _Snapshot, problems: _Problems, acc: dict[str, _Columns]
) -> None:
    files = snap.files

    def run(base: str, parser: Callable[[str, str], Any]) -> Any:
        return _parse_file(snap, base, problems, parser) if base in files else None

    v4 = run("sockstat.txt", sockstat.records)
    v6 = run("sockstat6.txt", sockstat.records)
    merged = _merge_sockstat(v4, v6)
    if merged is not None:
        acc["sockstat"].add(i, merged)
    for kind, base, parser in (
        ("meminfo", "meminfo.txt", meminfo.records),
        ("processes", "ps.txt", ps.records),
        ("ps_args", "ps_args.txt", ps.args_records),
        ("protocols", "protocols.txt", protocols.records),
        ("zoneinfo", "zoneinfo.txt", zoneinfo.records),
        ("sysctl", "sysctl.txt", sysctl.records),
    ):
        got = run(base, parser)
        if got is not None:
            acc[kind].add(i, got)
    for base, file in (("netstat.txt", "netstat"), ("snmp.txt", "snmp")):
        got = run(base, lambda text, path, file=file: netstat.records(text, path, file))
        if got is not None:
            acc["netstat"].add(i, got)
    slab = run("slabinfo.txt", slabinfo.records)
    if slab is not None:
        acc["slab"].add(i, slab)
    names = slab["name"] if slab is not None else None
    aliases = run("slab_aliases.txt", lambda text, path: slab_aliases.records(text, path, names))
    if aliases is not None:
        acc["slab_aliases"].add(i, aliases)
    got = run("cgroups.txt", cgroups.records)
    if got is not None:
        acc["cgroups"].add(i, got[0])
        acc["proc_cgroups"].add(i, got[1])


def _merge_sockstat(
    v4: dict[str, list[object]] | None, v6: dict[str, list[object]] | None
) -> dict[str, list[object]] | None:
    rows = [
        r
        for r in (v4, v6)
        if r is not None and r.get("sockets_used") is not None and len(next(iter(r.values()))) == 1
    ]
    if not rows:
        return None
    out = dict(rows[0])
    for other in rows[1:]:
        for column, value in other.items():
            if out[column][0] is pd.NA:
                out[column] = value
    return out


def _with_ts_host(
    frame: pd.DataFrame, snap_index: np.ndarray, ts: Any, hosts: pd.Categorical
) -> pd.DataFrame:
    """Prepend ``ts`` and ``host`` for rows whose snapshot numbers are ``snap_index``.

    ``ts`` is the per-snapshot DatetimeArray (UTC), ``hosts`` the per-snapshot Categorical.
    """
    snap_index = np.asarray(snap_index, dtype=np.int64)
    columns: dict[str, Any] = {"ts": ts.take(snap_index), "host": hosts.take(snap_index)}
    for column in frame.columns:
        columns[column] = frame[column].array
    return pd.DataFrame(columns, index=pd.RangeIndex(len(snap_index)), copy=False)


def _host_categorical(hostnames: pd.Series) -> pd.Categorical:
    """Per-snapshot host names -> Categorical with ``str`` categories (NA where unknown)."""
    names = hostnames.astype(object).where(hostnames.notna(), None).tolist()
    categories = pd.Index(sorted({n for n in names if n is not None}), dtype="str")
    return pd.Categorical(names, categories=categories)


def _load_phases(root: Path, problems: _Problems) -> pd.DataFrame:
    for name in ("phases.tsv", "phases.tsv.gz"):
        path = root / name
        if path.exists():
            try:
                return phases.parse(path)
            except ParseError as err:
                problems.add(None, name, err.line_no, f"not loaded: {_short(err)}", "error")
                problems.warned.setdefault(name, []).append(f"not loaded: {_short(err)}")
                break
    return phases.parse("")


def _meta_with_phase(meta_frame: pd.DataFrame, phase_frame: pd.DataFrame) -> pd.DataFrame:
    out = meta_frame.copy()
    phase = pd.Series(pd.NA, index=out.index, dtype="string")
    if len(phase_frame) and len(out):
        starts = phase_frame["start"].to_numpy(dtype="datetime64[ns]")
        when = out["start"].to_numpy(dtype="datetime64[ns]")
        pos = np.searchsorted(starts, when, side="right") - 1
        labels = phase_frame["phase"].to_numpy(dtype=object)
        phase = pd.Series(
            [labels[p] if p >= 0 else pd.NA for p in pos], index=out.index, dtype="string"
        )
    out["phase"] = phase
    return out[[*META_COLUMNS.keys(), "hostname"]].astype(
        {k: v for k, v in META_COLUMNS.items() if k not in meta.SCHEMA}
    )


def _progress_bar(show: bool, total: int, desc: str) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="snap")


# --------------------------------------------------------------------------------------------
# ss files: batched read_ss


def _line_count(text: str) -> int:
    """Physical lines in ``text`` as ``_join`` leaves it (a last line without newline counts)."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def _join(texts: Sequence[str]) -> str:
    return "".join(t if t.endswith("\n") or not t else t + "\n" for t in texts)


def _parse_ss_batch(texts: list[str]) -> tuple[pd.DataFrame, np.ndarray] | None:
    """read_ss on the concatenation of ``texts``: the frame and each row's index in ``texts``;
    None if any file is odd (a file starting with a continuation line would join the one before)
    or the batch does not parse cleanly (then load_capture reads it file by file)."""
    from tcpmemlib.parsers import ss

    if any(t[:1] in (" ", "\t") for t in texts):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning in a batch: re-do per file to name the file
            frame, numbers = ss._read_numbered(None, _join(texts), categories=SOCKET_CATEGORIES)
    except (ParseError, Warning):
        return None
    ends = np.cumsum([_line_count(t) for t in texts])
    return frame, np.searchsorted(ends, numbers - 1, side="right")


class _OwnerCodes:
    """Interns ``owners`` tuples: one code per socket row, each distinct tuple kept once."""

    def __init__(self) -> None:
        self.index: dict[tuple[Any, ...], int] = {}
        self.uniques: list[tuple[Any, ...]] = []

    def code(self, owner: tuple[Any, ...]) -> int:
        c = self.index.get(owner)
        if c is None:
            c = self.index[owner] = len(self.uniques)
            self.uniques.append(owner)
        return c

    def codes(self, owners: np.ndarray) -> np.ndarray:
        """One code per element of ``owners`` (tuples; a falsy element counts as ``()``): the
        distinct tuples are found by ``pd.factorize`` (hashing in C), then interned."""
        local, uniques = pd.factorize(owners, use_na_sentinel=False)
        remap = np.fromiter(
            (self.code(u if u else ()) for u in uniques), dtype=np.int64, count=len(uniques)
        )
        return remap[local] if len(local) else np.zeros(0, dtype=np.int64)

    def objects(self) -> np.ndarray:
        out = np.empty(len(self.uniques), dtype=object)
        for i, u in enumerate(self.uniques):
            out[i] = u
        return out


_SMALL_KINDS = (
    "sockstat",
    "meminfo",
    "processes",
    "slab",
    "slab_aliases",
    "protocols",
    "netstat",
    "zoneinfo",
    "sysctl",
    "cgroups",
    "proc_cgroups",
    "ps_args",
)


def _new_acc() -> dict[str, _Columns]:
    return {k: _Columns() for k in _SMALL_KINDS}


def _ps_args_frame(columns: dict[str, list[object]]) -> pd.DataFrame:
    return pd.DataFrame(columns, columns=list(ps.ARGS_SCHEMA)).astype(ps.ARGS_SCHEMA)


# Column lists of one kind -> its typed frame (bytes that need the page size are filled later).
_BUILDERS: dict[str, Callable[[dict[str, list[object]]], pd.DataFrame]] = {
    "sockstat": sockstat.frame,
    "meminfo": meminfo.frame,
    "processes": ps.frame,
    "slab": slabinfo.frame,
    "slab_aliases": slab_aliases.frame,
    "protocols": protocols.frame,
    "netstat": netstat.frame,
    "zoneinfo": zoneinfo.frame,
    "sysctl": sysctl.frame,
    "cgroups": cgroups.frame,
    "proc_cgroups": cgroups.pids_frame,
    "ps_args": _ps_args_frame,
}


# Names that repeat in every snapshot, kept as categories in the Capture (1-2 bytes a row instead
# of ~20: for a day of snapshots, ~200 MB less).
_CATEGORIES: dict[str, tuple[str, ...]] = {
    "slab": ("name",),
    "slab_aliases": ("cache", "target", "shown_as"),
    "netstat": ("counter",),
}


def _build(kind: str, columns: dict[str, list[object]]) -> pd.DataFrame:
    """The typed frame of one kind, its repeated names as categories (``str`` categories)."""
    frame = _BUILDERS[kind](columns)
    for column in _CATEGORIES.get(kind, ()):
        values = frame[column]
        frame[column] = values.astype(
            pd.CategoricalDtype(pd.Index(values.dropna().unique(), dtype="str"))
        )
    return frame


def _slab_bytes(frame: pd.DataFrame, sizes: pd.Series) -> pd.DataFrame:
    frame = frame.copy(deep=False)
    pages = frame["num_slabs"] * frame["pagesperslab"]
    frame["slab_bytes"] = pages_to_bytes(pages, sizes.set_axis(frame.index))
    return frame


def _concat_parts(
    parts: list[tuple[pd.DataFrame, np.ndarray]], empty: pd.DataFrame
) -> tuple[pd.DataFrame, np.ndarray]:
    """Chunk frames of one kind -> one frame (categories united, not turned into objects)."""
    frames = [f for f, _ in parts]
    index = np.concatenate([i for _, i in parts]) if parts else np.array([], dtype=np.int64)
    return _concat_columns(frames, empty), index


@dataclass
class _ChunkResult:
    """What one worker made of a run of consecutive snapshots (all plain, picklable data)."""

    snapshots: int
    small: dict[str, tuple[pd.DataFrame, np.ndarray]]  # typed frame, snapshot index per row
    problems: list[tuple[object, object, object, str, str]]
    warned: dict[str, list[str]]
    ss_frames: list[pd.DataFrame]
    ss_index: list[np.ndarray]
    ss_kind: list[np.ndarray]
    owner_codes: list[np.ndarray]  # codes into owner_uniques (local to this chunk)
    owner_uniques: list[tuple[Any, ...]]


def _load_chunk(items: list[tuple[int, _Snapshot]]) -> _ChunkResult:
    """Parse every file but meta.txt of the snapshots ``items`` (global index, snapshot)."""
    problems = _Problems()
    acc = _new_acc()
    for i, snap in items:
        _load_small_files(i, snap, problems, acc)
    ss = _SsChunk(problems)
    for i, snap in items:
        ss.add(i, snap)
    ss.flush()
    return _ChunkResult(
        snapshots=len(items),
        small={
            k: (_build(k, c.columns), np.asarray(c.index, dtype=np.int64))
            for k, c in acc.items()
            if c.columns
        },
        problems=problems.rows,
        warned=problems.warned,
        ss_frames=ss.frames,
        ss_index=ss.snap_index,
        ss_kind=ss.kinds,
        owner_codes=ss.owner_codes,
        owner_uniques=ss.interner.uniques,
    )


def _auto_workers(ss_bytes: int) -> int:
    """2 worker processes for large captures on a machine with 2 CPUs or more; else 1 (and 1
    inside a worker). Workers are ``python -m tcpmemlib.workers`` processes, which import nothing
    of the caller, so this holds for scripts, notebooks and the ``tcpmem`` command alike."""
    from tcpmemlib import workers

    if ss_bytes < PARALLEL_MIN_BYTES or (os.cpu_count() or 1) < 2 or workers.in_worker():
        return 1
    return 2


def _run_chunks(snaps: list[_Snapshot], workers: int | None, bar: Any) -> Any:
    """Yield ``_ChunkResult`` for runs of snapshots, in order; in worker processes if ``workers`` > 1.

    A run holds about ``SS_BATCH_BYTES`` of (compressed) ss files, so one ``read_ss`` call parses
    many snapshots at once. Workers are fresh ``python -m tcpmemlib.workers`` processes (not
    forked: the parent may hold pyarrow threads; not multiprocessing: it would import the caller's
    script again). If a worker dies or cannot start, the remaining runs are parsed in this process.
    """
    ss_bytes = sum(p.stat().st_size for s in snaps for b, p in s.files.items() if b in SS_FILES)
    if workers is None:
        workers = _auto_workers(ss_bytes)
    per_snapshot = max(1, ss_bytes // max(1, len(snaps)))
    size = int(min(SS_CHUNK_SNAPSHOTS, max(1, SS_BATCH_BYTES // per_snapshot)))
    if workers > 1:  # at least two chunks per worker, so both stay busy
        size = max(1, min(size, -(-len(snaps) // (2 * workers))))
    chunks = [list(enumerate(snaps))[k : k + size] for k in range(0, len(snaps), size)]
    done = 0
    if workers > 1 and len(chunks) > 1:
        from tcpmemlib.workers import WorkerError, run_ordered

        try:
            for result in run_ordered("_load_chunk", chunks, workers):
                done += 1
                if bar is not None:
                    bar.update(result.snapshots)
                yield result
        except WorkerError as err:
            warnings.warn(f"tcpmem: {err}; parsing the rest in this process", stacklevel=3)
    for chunk in chunks[done:]:
        result = _load_chunk(chunk)
        if bar is not None:
            bar.update(result.snapshots)
        yield result


# Every read_ss string column, kept as a category in ``Capture.sockets``: the same few addresses,
# ports, cookies and cgroup paths repeat in every snapshot (2-4 bytes a row instead of ~15).
SOCKET_CATEGORIES = (*_ss_line.STRING_FIELDS, "unparsed")


def _socket_template() -> pd.DataFrame:
    """The empty ``read_ss`` frame with ``SOCKET_CATEGORIES`` as categories."""
    from tcpmemlib.parsers import ss

    return ss._read_numbered(None, "", categories=SOCKET_CATEGORIES)[0]


class _SsChunk:
    """The ss files of one chunk: read, then parsed with one ``read_ss`` call per batch."""

    def __init__(self, problems: _Problems) -> None:
        self.problems = problems
        self.batch: list[tuple[int, _Snapshot, str, str]] = []
        self.frames: list[pd.DataFrame] = []
        self.snap_index: list[np.ndarray] = []
        self.kinds: list[np.ndarray] = []
        self.owner_codes: list[np.ndarray] = []
        self.interner = _OwnerCodes()

    def add(self, i: int, snap: _Snapshot) -> None:
        for base in SS_FILES:
            if base in snap.files:
                _path, text = _read(snap, base, self.problems)
                if text is not None:
                    self.batch.append((i, snap, base, text))

    def flush(self) -> None:
        batch, self.batch = self.batch, []
        if not batch:
            return
        result = _parse_ss_batch([t for *_, t in batch])
        if result is not None:
            frame, file_of_row = result
            snap_of_file = np.array([i for i, *_ in batch], dtype=np.int64)
            kind_of_file = np.array([SS_FILES[b] for _, _, b, _ in batch], dtype=object)
            self._keep(frame, snap_of_file[file_of_row], kind_of_file[file_of_row])
            return
        for i, snap, base, _text in batch:  # something in this batch is bad: file by file
            self._one_file(i, snap, base)

    def _keep(self, frame: pd.DataFrame, index: np.ndarray, kind: np.ndarray) -> None:
        if "owners" in frame.columns:
            self.owner_codes.append(self.interner.codes(frame["owners"].to_numpy()))
            frame = frame.drop(columns=["owners"])
        else:
            self.owner_codes.append(np.full(len(frame), self.interner.code(()), dtype=np.int64))
        for column in SOCKET_CATEGORIES:  # (str categories, as the cache gives them back)
            if not isinstance(frame[column].dtype, pd.CategoricalDtype):
                frame[column] = frame[column].astype("str").astype("category")
        self.frames.append(frame)
        self.snap_index.append(index)
        self.kinds.append(kind)

    def _one_file(self, i: int, snap: _Snapshot, base: str) -> None:
        from tcpmemlib.parsers.ss import read_ss

        _path, text = _read(snap, base, self.problems)  # the file as it is: true line numbers
        if text is None:
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                frame = read_ss(text)
            except ParseError as err:
                err.path = str(snap.files[base])
                self.problems.parse_error(snap.name, snap.files[base].name, err)
                return
        for warning in caught:
            self.problems.python_warning(snap.name, snap.files[base].name, str(warning.message))
        self._keep(
            frame,
            np.full(len(frame), i, dtype=np.int64),
            np.full(len(frame), SS_FILES[base], dtype=object),
        )


class _SsMerge:
    """Merges the chunks' ss results into socket rows: the ``sockets`` and ``owners`` frames in
    memory, or, with a ``writer``, written to disk chunk by chunk (``sockstore``), so that the whole
    frame is never held."""

    def __init__(self, ts: Any, hosts: pd.Categorical, writer: Any = None) -> None:
        self.ts, self.hosts, self.writer = ts, hosts, writer
        self.frames: list[pd.DataFrame] = []
        self.snap_index: list[np.ndarray] = []
        self.kinds: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []
        self.interner = _OwnerCodes()
        self.next_id = 0

    def add(self, result: _ChunkResult) -> None:
        remap = np.array([self.interner.code(u) for u in result.owner_uniques], dtype=np.int64)
        self.frames.extend(result.ss_frames)
        self.snap_index.extend(result.ss_index)
        self.kinds.extend(result.ss_kind)
        self.codes.extend(remap[c] if len(c) else c for c in result.owner_codes)
        if self.writer is not None:
            sockets, codes = self._build()
            self.writer.write(sockets.assign(owner_code=codes))

    def _build(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The rows added since the last call: a sockets frame without ``owners``, and the owner
        code of each row."""
        empty = _socket_template()
        sockets = _concat_columns(self.frames, empty.drop(columns=["owners"]))
        index = np.concatenate(self.snap_index) if self.snap_index else np.array([], np.int64)
        kind = np.concatenate(self.kinds) if self.kinds else np.array([], dtype=object)
        codes = np.concatenate(self.codes) if self.codes else np.array([], np.int64)
        self.snap_index, self.kinds, self.codes = [], [], []
        netid = sockets["netid"].astype("string").fillna(pd.Series(kind, dtype="string"))
        sockets["netid"] = netid.astype("str").astype("category")
        n = len(sockets)
        sockets.insert(0, "sock_id", np.arange(self.next_id, self.next_id + n, dtype=np.int64))
        self.next_id += n
        return _with_ts_host(sockets, index, self.ts, self.hosts), codes

    def finish(self) -> Any:
        """The socket rows: ``sockstore.MemoryRows``, or with a writer, None (closed; the rows are
        on disk)."""
        if self.writer is not None:
            self.writer.close(self.interner.uniques)
            return None
        sockets, codes = self._build()
        uniques = self.interner.objects()
        sockets.insert(
            list(_socket_template().columns).index("owners") + 3,
            "owners",
            uniques[codes] if len(codes) else np.empty(0, dtype=object),
        )
        owners = sockstore.owners_from_codes(sockets, codes, self.interner.uniques)
        return sockstore.MemoryRows(sockets, owners)


def sockets_template(host_dtype: Any = None) -> pd.DataFrame:
    """The empty ``Capture.sockets`` frame: every column with its dtype (``host_dtype``: the
    capture's host categories)."""
    frame = _socket_template()
    frame["netid"] = frame["netid"].astype(pd.CategoricalDtype(pd.Index([], dtype="str")))
    frame.insert(0, "sock_id", np.zeros(0, dtype=np.int64))
    frame.insert(
        0, "host", pd.Series([], dtype=host_dtype or _host_categorical(pd.Series([])).dtype)
    )
    frame.insert(0, "ts", pd.Series([], dtype="datetime64[ns, UTC]"))
    return frame


def _concat_columns(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    """Concatenate batch frames column by column, freeing each batch column once copied."""
    if not frames:
        return empty.copy()
    columns: dict[str, Any] = {}
    for column in empty.columns:
        parts = [f[column] for f in frames]
        if isinstance(empty[column].dtype, pd.CategoricalDtype):
            cats = [p.array if isinstance(p.dtype, pd.CategoricalDtype) else None for p in parts]
            if all(c is not None for c in cats):
                merged = pd.Series(union_categoricals(cats))
            else:
                merged = pd.concat(parts, ignore_index=True).astype("str").astype("category")
        else:
            merged = pd.concat(parts, ignore_index=True)
        columns[column] = merged.array
        del parts, merged
        for f in frames:
            del f[column]
    frames.clear()
    return pd.DataFrame(columns, copy=False)
