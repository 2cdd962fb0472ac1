"""Parquet cache of loaded captures, kept beside the capture.

- Where: ``<dir>/.tcpmem-cache/`` for a capture directory (a dot entry: the loader ignores it),
  ``<bundle>.tcpmem-cache/`` for a bundle.
- Key: a hash of the tcpmemlib version, this cache format, and the capture's file list with sizes and
  modification times (a bundle: its size and mtime). A changed capture (a new snapshot, a rewritten
  file) gets a new key, and the old entry is removed when the new one is written.
- Content: one Parquet file per frame in ``<cache>/<key>/`` plus ``complete`` (written last; an entry
  without it is ignored). The socket rows are in ``tcpmemlib.sockstore``'s on-disk layout
  (``sockets.parquet`` in row groups of whole snapshots, each row's owners as a code into
  ``owners.json``, ``socket_index.parquet``); ``owners`` is rebuilt from the codes. A large capture
  reads them from there a batch at a time (``sockets="auto"``), a small one reads them whole.
- A cache that cannot be written (read-only capture, full disk) is skipped silently; a cache that
  cannot be read is ignored (the capture is parsed again).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = [
    "CACHE_FORMAT",
    "ON_DISK_MIN_ROWS",
    "abandon",
    "begin",
    "cache_dir",
    "capture_key",
    "finish",
    "load",
    "load_current",
    "store",
]

CACHE_FORMAT = 4  # 4: socket rows in sockstore's layout; 3: UInt32 fields, categorical strings
# Socket rows from which a cached capture leaves them on disk (sockets="auto"): ~250 MB as frames.
ON_DISK_MIN_ROWS = 1_000_000
_COMPLETE = "complete"
_DTYPES = "dtypes.json"


def cache_dir(source: str | os.PathLike[str]) -> Path:
    """The cache directory of a capture directory or bundle."""
    path = Path(os.fspath(source))
    if path.is_dir():
        return path / ".tcpmem-cache"
    return path.with_name(path.name + ".tcpmem-cache")


def capture_key(source: str | os.PathLike[str]) -> str | None:
    """A key that changes whenever the capture does (None if the capture cannot be listed)."""
    from tcpmemlib import __version__

    path = Path(os.fspath(source))
    digest = hashlib.sha256(f"tcpmemlib {__version__} cache {CACHE_FORMAT}\n".encode())
    try:
        if path.is_file():
            st = path.stat()
            digest.update(f"bundle {st.st_size} {st.st_mtime_ns}\n".encode())
        else:
            text = "".join(f"{rel}\0{size}\0{mtime}\n" for rel, size, mtime in _listing(path))
            digest.update(text.encode())
    except OSError:
        return None
    return digest.hexdigest()[:32]


def _listing(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every non-dot file up to two levels deep.

    One ``scandir`` per directory, paths kept as ``str`` (this runs on every cached load: a day of
    snapshots is ~140k files, and Path objects cost as much as the ``stat`` calls).
    """
    out: list[tuple[str, int, int]] = []
    append = out.append
    stack = [(os.fspath(root), "", 0)]
    while stack:
        directory, prefix, depth = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if name[0] == ".":
                    continue
                if entry.is_dir(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    append((prefix + name + "/", 0, st.st_mtime_ns))
                    if depth < 2:
                        stack.append((entry.path, prefix + name + "/", depth + 1))
                elif entry.is_file():
                    st = entry.stat()
                    append((prefix + name, st.st_size, st.st_mtime_ns))
    out.sort()
    return out


class _Cancelled(Exception):
    """A speculative read whose entry turned out to be stale."""


def load_current(
    source: str | os.PathLike[str], sockets: str = "auto"
) -> tuple[str | None, Capture | None]:
    """``(capture_key(source), the cached Capture for it or None)``.

    The key needs a ``stat`` of every file of the capture (~140k for a day of snapshots, ~0.6 s),
    and reading the cache is mostly Parquet decoding, which runs without the GIL. So when the cache
    holds one complete entry (``store`` keeps only the newest), that entry is read in a thread while
    the key is computed, and used only if its name is the key; a stale read is cancelled at its next
    row group and its memory dropped before the capture is parsed again.
    """
    base = cache_dir(source)
    try:
        entries = [e for e in base.iterdir() if (e / _COMPLETE).exists()]
    except OSError:
        entries = []
    if len(entries) != 1:
        key = capture_key(source)
        return key, (load(source, key, sockets=sockets) if key is not None else None)
    name = entries[0].name
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, source, name, stop, sockets)
        key = capture_key(source)
        if key != name:
            stop.set()
        cached = pending.result()
    return key, (cached if key == name else None)


def load(
    source: str | os.PathLike[str],
    key: str,
    stop: threading.Event | None = None,
    sockets: str = "auto",
) -> Capture | None:
    """The cached Capture for ``key``, or None (no entry, incomplete, unreadable, or ``stop`` set
    while reading). ``sockets``: ``"memory"`` reads the socket rows whole, ``"disk"`` leaves them
    in the entry (read a batch at a time), ``"auto"``: on disk from ``ON_DISK_MIN_ROWS`` rows."""
    from tcpmemlib import sockstore
    from tcpmemlib.capture import FRAMES, SEVERITY_DTYPE, Capture, sockets_template

    entry = cache_dir(source) / key
    if not (entry / _COMPLETE).exists():
        return None
    try:
        dtypes = json.loads((entry / _DTYPES).read_text())
        frames = {
            name: _read(entry / f"{name}.parquet", dtypes.get(name), stop)
            for name in FRAMES
            if name not in ("sockets", "owners")
        }
        problems = frames["problems"]
        problems["severity"] = problems["severity"].astype("string").astype(SEVERITY_DTYPE)
        _restore_dtypes(frames, dtypes)
        template = sockets_template(frames["meta"]["host"].dtype)
        if stop is not None and stop.is_set():
            raise _Cancelled
        rows = sockstore.open_rows(entry, template)
        if sockets == "memory" or (sockets == "auto" and rows.rows < ON_DISK_MIN_ROWS):
            rows = sockstore.read_memory(rows)
    except (OSError, ValueError, KeyError, json.JSONDecodeError, _Cancelled):
        return None
    return Capture(sockets=rows, owners=rows, **frames)


def _dtype_names(frame: pd.DataFrame) -> dict[str, str]:
    return {
        c: "category" if isinstance(t, pd.CategoricalDtype) else str(t)
        for c, t in frame.dtypes.items()
    }


def _restore_dtypes(frames: dict[str, pd.DataFrame], dtypes: dict[str, dict[str, str]]) -> None:
    """Give back the dtypes Parquet does not keep exactly (mainly empty categorical columns).

    ``host`` gets the capture's host categories (from ``meta``, never empty); another categorical
    column read back as something else gets ``str`` categories, as the loader makes them.
    """
    host_dtype = frames["meta"]["host"].dtype
    for name, frame in frames.items():
        for column, want in dtypes.get(name, {}).items():
            if column not in frame.columns or (name == "sockets" and column == "owners"):
                continue
            have = frame[column].dtype
            if column == "host":
                if have != host_dtype:
                    frame[column] = frame[column].astype("string").astype(host_dtype)
            elif want == "category":
                if not isinstance(have, pd.CategoricalDtype):
                    frame[column] = frame[column].astype("str").astype("category")
                elif len(have.categories) == 0:
                    frame[column] = frame[column].astype(
                        pd.CategoricalDtype(pd.Index([], dtype="str"))
                    )
            elif str(have) != want:
                frame[column] = frame[column].astype(want)


def begin(source: str | os.PathLike[str]) -> Path | None:
    """A fresh temporary entry directory in the capture's cache, or None if it cannot be made."""
    base = cache_dir(source)
    try:
        base.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".tmp-", dir=base))
    except OSError:
        return None


def abandon(tmp: Path | None) -> None:
    """Remove a temporary entry that will not be finished."""
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


def finish(
    source: str | os.PathLike[str], key: str, tmp: Path, capture: Capture, rows_written: bool
) -> bool:
    """Complete the temporary entry ``tmp`` with ``capture``'s frames and make it the entry for
    ``key`` (older entries removed). ``rows_written``: the socket rows are already in ``tmp``
    (a streamed load); else they are written from the capture's frames. False if it failed."""
    from tcpmemlib import sockstore
    from tcpmemlib.capture import FRAMES

    base = cache_dir(source)
    done = False
    try:
        for name in FRAMES:
            if name in ("sockets", "owners"):
                continue
            _write(getattr(capture, name), tmp / f"{name}.parquet")
        if not rows_written:
            sockstore.write_frames(tmp, capture.sockets)
        dtypes = {
            name: _dtype_names(getattr(capture, name))
            for name in FRAMES
            if name not in ("sockets", "owners")
        }
        (tmp / _DTYPES).write_text(json.dumps(dtypes))
        (tmp / _COMPLETE).write_text(key + "\n")
        final = base / key
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        done = True
        for old in base.iterdir():
            if old.name != key:
                shutil.rmtree(old, ignore_errors=True)
    except (OSError, ValueError, TypeError):
        return False
    finally:
        if not done:
            abandon(tmp)
    return True


def store(source: str | os.PathLike[str], key: str, capture: Capture) -> bool:
    """Write ``capture`` under ``key`` (replacing older entries); False if it cannot be written."""
    tmp = begin(source)
    return tmp is not None and finish(source, key, tmp, capture, rows_written=False)


_SLICE_ROWS = 1 << 20


_MASKED = {"Int64": np.int64, "Int32": np.int32, "UInt32": np.uint32, "Float64": np.float64}


def _read(
    path: Path, dtypes: dict[str, str] | None = None, stop: threading.Event | None = None
) -> pd.DataFrame:
    """One frame back from Parquet, to pandas with one copy of each nullable numeric column.

    Read one row group at a time: nullable numeric columns (``dtypes`` names them as they were
    stored: ``Int64``, ``Float64``) are copied from that row group's Arrow buffers into one
    preallocated array per column, and the row group's copy of them is dropped before the next is
    read (pandas' own conversion copied every row group, then concatenated: twice the fresh memory,
    whose page faults were most of the cached load's time). Every other column goes through
    ``to_pandas`` (string columns stay Arrow-backed, dictionary columns become categories).
    No ``self_destruct``: with Arrow's allocator it made the load several times slower.
    Measured: bench/README.md (``load``).
    """
    import pyarrow.parquet as pq

    wanted = dtypes or {}
    if stop is not None and stop.is_set():
        raise _Cancelled
    with pq.ParquetFile(path) as parquet:
        return _read_file(parquet, wanted, stop)


def read_parquet_file(parquet: Any, template: pd.DataFrame) -> pd.DataFrame:
    """A whole open ``ParquetFile`` of socket rows as one frame, dtypes as in ``template``."""
    wanted = {c: str(t) for c, t in template.dtypes.items()}
    return arrow_fix(_read_file(parquet, wanted), template)


def arrow_to_pandas(table: Any, template: pd.DataFrame) -> pd.DataFrame:
    """One batch of socket rows from Arrow, dtypes as in ``template`` (categories: the batch's)."""
    return arrow_fix(table.to_pandas(split_blocks=True), template)


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


def _read_file(
    parquet: Any, wanted: dict[str, str], stop: threading.Event | None = None
) -> pd.DataFrame:
    schema = parquet.schema_arrow
    masked = [
        c
        for c in schema.names
        if _MASKED.get(wanted.get(c, "")) is not None and schema.field(c).type.num_fields == 0
    ]
    if not masked:
        return parquet.read(use_threads=True).to_pandas(split_blocks=True)
    rest = [c for c in schema.names if c not in masked]
    n = parquet.metadata.num_rows
    out = {c: _MaskedBuilder(n, wanted[c]) for c in masked}
    rest_parts = []
    for group in range(parquet.num_row_groups):  # one row group's Arrow copy at a time
        if stop is not None and stop.is_set():
            raise _Cancelled
        table = parquet.read_row_group(group, use_threads=True)
        for c in masked:
            out[c].add(table.column(c))
        rest_parts.append(table.select(rest))
        del table
    columns: dict[str, Any] = {c: b.finish() for c, b in out.items()}
    if rest:
        import pyarrow as pa

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

    def add(self, column: Any) -> None:
        import pyarrow as pa

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


def _write(frame: pd.DataFrame, path: Path) -> None:
    """Parquet in slices of ``_SLICE_ROWS`` rows, so the Arrow copy never holds the whole frame."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(frame) <= _SLICE_ROWS:
        frame.to_parquet(path, index=False, compression="lz4", write_statistics=False)
        return
    schema = pa.Schema.from_pandas(frame.iloc[:0], preserve_index=False)
    # No column statistics: the cache is always read whole, and they were ~40% of the write time.
    with pq.ParquetWriter(path, schema, compression="lz4", write_statistics=False) as writer:
        for start in range(0, len(frame), _SLICE_ROWS):
            part = frame.iloc[start : start + _SLICE_ROWS]
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))
