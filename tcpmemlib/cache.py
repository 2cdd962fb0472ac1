"""Parquet cache of loaded captures, kept beside the capture.

- Where: ``<dir>/.tcpmem-cache/`` for a capture directory (a dot entry: the loader ignores it),
  ``<bundle>.tcpmem-cache/`` for a bundle.
- Key: a hash of the tcpmemlib version, this cache format, and every entry of the capture as the
  loader sees it (name, type, size, mtime, without following links; a bundle: its size and mtime).
  A changed capture (a new snapshot, a rewritten file, a link added) gets a new key. The listing
  is made by a ``find`` process (``KeyJob``: the caller goes on meanwhile), else in Python; it is
  complete before anything of the capture is read, so an entry is never older than its key.
- Content: one Parquet file per frame in ``<cache>/<key>/`` plus ``complete`` (written last; an
  entry without it is ignored). The socket rows are in ``tcpmemlib.sockstore``'s layout.
- Safety: the cache never follows a link and never removes what it did not make. A cache
  directory that is a symbolic link (``rsync -a`` and ``tar x`` keep them) or not a directory is
  not used at all. Cleanup removes only complete entries named by a key and temporary entries of
  processes that are gone; another process's entry being written is left alone, and two processes
  finishing the same key both succeed (the second keeps the first's entry).
- A cache that cannot be written (read-only capture, full disk) is skipped; an entry that cannot be
  read for any reason (damaged, an unknown dtype, another format) is ignored and the capture parsed
  again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from tcpmemlib import __version__, sockstore
from tcpmemlib.model import Capture
from tcpmemlib.schema import FRAMES, SEVERITY_DTYPE, SOCKET_ROW_FRAMES, sockets_template
from tcpmemlib.tables import Cancelled, read_parquet, write_parquet
from tcpmemlib.threads import map_threads

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
]

# 7: socket rows in part files written by each chunk; 6: netns tcp_mem_pages; 5: sockstat *_after
# columns; keys cover links; 4: socket rows in
# sockstore's layout
CACHE_FORMAT = 7
# Socket rows from which a cached capture leaves them on disk (sockets="auto"): ~250 MB as frames.
ON_DISK_MIN_ROWS = 1_000_000
WRITE_THREADS = 2  # frames written at once by `finish`
READ_THREADS = 2  # frames read at once from an entry
_COMPLETE = "complete"
_DTYPES = "dtypes.json"
_KEY = re.compile(r"^[0-9a-f]{32}$")
_TMP = re.compile(r"^\.tmp-(\d+)-")
_HELD = tuple(n for n in FRAMES if n not in SOCKET_ROW_FRAMES)


def cache_dir(source: str | os.PathLike[str]) -> Path:
    """The cache directory of a capture directory or bundle (it may not exist)."""
    path = Path(os.fspath(source))
    if path.is_dir():
        return path / ".tcpmem-cache"
    return path.with_name(path.name + ".tcpmem-cache")


def _base(source: str | os.PathLike[str], create: bool) -> Path | None:
    """The cache directory if it is (or, with ``create``, now is) a real directory; else None."""
    base = cache_dir(source)
    try:
        st = os.lstat(base)
    except FileNotFoundError:
        if not create:
            return None
        try:
            base.mkdir()
        except FileExistsError:
            return _base(source, create=False)
        except OSError:
            return None
        return base
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return base
    if stat.S_ISLNK(st.st_mode):
        warnings.warn(
            f"tcpmem: {base} is a symbolic link: the cache is not used (it never follows links)",
            stacklevel=4,
        )
    return None


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def capture_key(source: str | os.PathLike[str]) -> str | None:
    """A key that changes whenever the capture does (None if the capture cannot be listed)."""
    return KeyJob(source).result()


# Every non-dot entry up to three levels deep (root/snapshot/file), links not followed (the
# capture's own path may be one: -H), as: path NUL type size mtime NUL.
_FIND_ARGS = ("-mindepth", "1", "-maxdepth", "3", "-name", ".*", "-prune", "-o", "-printf")
_FIND_FORMAT = "%P\\0%y %s %T@\\0"


class KeyJob:
    """``capture_key(source)``, computed while the caller goes on: a directory's listing is made by
    a ``find`` process (a day of snapshots is ~155k files: 0.3 s there, on another CPU; 0.5 s in
    Python, holding the GIL half the time). ``result()`` waits for it; where ``find`` cannot run
    or fails, the listing is made here instead. The key covers what ``find`` printed, in its
    order: an unchanged directory lists the same way, and a listing in another order only costs a
    cache miss."""

    def __init__(self, source: str | os.PathLike[str]) -> None:
        self.path = Path(os.fspath(source))
        self.proc: subprocess.Popen[bytes] | None = None
        if self.path.is_dir():
            with contextlib.suppress(OSError, ValueError):
                self.proc = subprocess.Popen(
                    ["find", "-H", os.path.abspath(self.path), *_FIND_ARGS, _FIND_FORMAT],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=dict(os.environ, LC_ALL="C"),
                )

    def result(self) -> str | None:
        digest = hashlib.sha256(f"tcpmemlib {__version__} cache {CACHE_FORMAT}\n".encode())
        if self.proc is not None:
            proc, self.proc = self.proc, None
            out, _ = proc.communicate()
            if proc.returncode == 0:
                digest.update(b"find\n")
                digest.update(out)
                return digest.hexdigest()[:32]
        try:
            if self.path.is_file():
                st = self.path.stat()
                digest.update(f"bundle {st.st_size} {st.st_mtime_ns}\n".encode())
            else:
                text = "".join(
                    f"{rel}\0{kind}\0{size}\0{mtime}\n"
                    for rel, kind, size, mtime in _listing(self.path)
                )
                digest.update(text.encode("utf-8", "surrogateescape"))
        except OSError:
            return None
        return digest.hexdigest()[:32]

    def close(self) -> None:
        """Stop a ``find`` still running (its result not wanted)."""
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.communicate()
            self.proc = None


def _listing(root: Path) -> list[tuple[str, str, int, int]]:
    """(relative path, type, size, mtime_ns) of every non-dot entry up to three levels deep, links
    and special files included (never followed).

    One ``scandir`` per directory, paths kept as ``str`` (this runs on every cached load: a day of
    snapshots is ~140k files, and Path objects cost as much as the ``stat`` calls).
    """
    out: list[tuple[str, str, int, int]] = []
    append = out.append
    stack = [(os.fspath(root), "", 0)]
    while stack:
        directory, prefix, depth = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if name[0] == ".":
                    continue
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    append((prefix + name + "/", "d", 0, st.st_mtime_ns))
                    if depth < 2:
                        stack.append((entry.path, prefix + name + "/", depth + 1))
                else:
                    kind = "f" if stat.S_ISREG(st.st_mode) else "o"
                    append((prefix + name, kind, st.st_size, st.st_mtime_ns))
    out.sort()
    return out


def has_entry(source: str | os.PathLike[str]) -> bool:
    """Whether the capture's cache holds a complete entry (for any key)."""
    return bool(_complete_entries(source))


def _complete_entries(source: str | os.PathLike[str]) -> list[Path]:
    base = _base(source, create=False)
    if base is None:
        return []
    try:
        return [
            e
            for e in base.iterdir()
            if _KEY.match(e.name) and _is_dir(e) and (e / _COMPLETE).exists()
        ]
    except OSError:
        return []


def load_current(
    source: str | os.PathLike[str], sockets: str = "auto", job: KeyJob | None = None
) -> tuple[str | None, Capture | None]:
    """``(capture_key(source), the cached Capture for it or None)``; ``job``: the key's
    computation, if the caller started it already.

    When the cache holds one complete entry, it is read while ``find`` lists the capture, and used
    only if its name is the key; a stale read is cancelled at its next row group.
    """
    job = job or KeyJob(source)
    try:
        entries = _complete_entries(source)
        if len(entries) != 1:
            key = job.result()
            return key, (
                load(source, key, sockets=sockets) if key is not None and entries else None
            )
        name = entries[0].name
        stop = threading.Event()

        def key_or_stop() -> str | None:
            key = job.result()
            if key != name:
                stop.set()
            return key

        key, cached = map_threads(
            lambda call: call(), [key_or_stop, lambda: load(source, name, stop, sockets)], 2
        )
        return key, (cached if key == name else None)
    finally:
        job.close()


def load(
    source: str | os.PathLike[str],
    key: str,
    stop: threading.Event | None = None,
    sockets: str = "auto",
) -> Capture | None:
    """The cached Capture for ``key``, or None (no entry, incomplete, unreadable for any reason, or
    ``stop`` set while reading). ``sockets``: ``"memory"`` reads the socket rows whole, ``"disk"``
    leaves them in the entry, ``"auto"``: on disk from ``ON_DISK_MIN_ROWS`` rows."""
    base = _base(source, create=False)
    if base is None or not _KEY.match(key):
        return None
    entry = base / key
    if not _is_dir(entry) or not (entry / _COMPLETE).exists():
        return None
    try:
        return _read_entry(entry, stop, sockets)
    except Exception:  # any damage to an entry means a cache miss, never a failed load
        return None


def _read_entry(entry: Path, stop: threading.Event | None, sockets: str) -> Capture | None:
    dtypes = json.loads((entry / _DTYPES).read_text())

    def read(name: str) -> pd.DataFrame:
        if stop is not None and stop.is_set():
            raise Cancelled
        with pq.ParquetFile(entry / f"{name}.parquet") as parquet:
            return read_parquet(parquet, dtypes.get(name, {}), stop)

    # two frames at a time: decoding, copies and first touches of new memory run without the GIL
    frames = dict(zip(_HELD, map_threads(read, _HELD, READ_THREADS), strict=True))
    problems = frames["problems"]
    problems["severity"] = problems["severity"].astype("string").astype(SEVERITY_DTYPE)
    _restore_dtypes(frames, dtypes)
    template = sockets_template(frames["meta"]["host"].dtype)
    if stop is not None and stop.is_set():
        raise Cancelled
    rows = sockstore.open_rows(entry, template)
    if sockets == "memory" or (sockets == "auto" and rows.rows < ON_DISK_MIN_ROWS):
        rows = sockstore.read_memory(rows)
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
            if column not in frame.columns:
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
    base = _base(source, create=True)
    if base is None:
        return None
    try:
        return Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=base))
    except OSError:
        return None


def abandon(tmp: Path | None) -> None:
    """Remove a temporary entry (made by ``begin``) that will not be finished."""
    if tmp is not None and _TMP.match(tmp.name) and _is_dir(tmp):
        shutil.rmtree(tmp, ignore_errors=True)


def finish(source: str | os.PathLike[str], key: str, tmp: Path, capture: Capture) -> bool:
    """Complete the temporary entry ``tmp`` (the load wrote its socket rows there) with
    ``capture``'s other frames and make it the entry for ``key`` (older entries removed). False if
    it failed."""
    try:
        # two frames at a time: Arrow's conversion and Parquet's encoding run without the GIL
        map_threads(
            lambda name: write_parquet(getattr(capture, name), tmp / f"{name}.parquet"),
            _HELD,
            WRITE_THREADS,
        )
        dtypes = {name: _dtype_names(getattr(capture, name)) for name in _HELD}
        (tmp / _DTYPES).write_text(json.dumps(dtypes))
        (tmp / _COMPLETE).write_text(key + "\n")
        try:
            os.rename(tmp, tmp.parent / key)
        except OSError:  # another process finished this key first: its entry serves
            if not (tmp.parent / key / _COMPLETE).exists():
                return False
    except (OSError, ValueError, TypeError):
        return False
    finally:
        abandon(tmp)  # a no-op once renamed
    _remove_old(tmp.parent, key)
    return True


def _remove_old(base: Path, key: str) -> None:
    """Remove complete entries of other keys and temporary entries of processes that are gone."""
    try:
        names = [e.name for e in os.scandir(base)]
    except OSError:
        return
    for name in names:
        path = base / name
        if _KEY.match(name) and name != key and _is_dir(path) and (path / _COMPLETE).exists():
            shutil.rmtree(path, ignore_errors=True)
            continue
        match = _TMP.match(name)
        if match and int(match[1]) != os.getpid() and not _alive(int(match[1])) and _is_dir(path):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
