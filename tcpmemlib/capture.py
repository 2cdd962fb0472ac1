"""``load_capture(path) -> Capture``: a collect.sh capture (directory or bundle) as tidy frames.

A capture is the ``-o`` directory of collect.sh: one sub-directory per snapshot (named by its UTC
start time), an optional ``phases.tsv``, and dot entries that are ignored; or a bundle of one
(``.tar.gz``/``.tgz``/``.tar``), extracted safely first (``tcpmemlib.bundle``). docs/design.md §1
is the layout, §2 the frames.

The load, in passes, each in its own module:

1. ``discovery``: the snapshot directories (never through a link);
2. ``snapmeta``: each snapshot's meta.txt (time, host, page size, the files collect.sh wrote);
3. ``chunks``: runs of consecutive snapshots parsed (in two worker processes for large captures,
   ``tcpmemlib.workers``), every file read by ``safeio`` and parsed by its ``registry`` kind;
   each chunk writes its socket rows to its own part file (``sockstore``: an Arrow IPC stream),
   in the new cache entry (or a temporary directory): they never cross a pipe;
4. ``assemble``: the chunks merged into the frames; socket rows left on disk for large captures,
   else read into memory;
5. ``cache``: the result kept beside the capture (the frames as Parquet, the socket rows' parts),
   reused until the capture changes.

What cannot be read is data, not an exception: ``Capture.problems`` names every file, line or
bundle member skipped or cut (``tcpmemlib.problems``). Only a capture that cannot be read at all
raises ``CaptureError`` (no such path, no snapshot with a readable meta.txt, an unreadable bundle,
too little memory). Nothing raised is anything but a ``TcpmemError``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tcpmemlib import bundle, cache, workers
from tcpmemlib.assemble import assemble
from tcpmemlib.chunks import SS_BATCH_BYTES, ChunkResult, ChunkTask, load_chunk
from tcpmemlib.discovery import Snapshot, find_snapshots
from tcpmemlib.errors import CaptureError, ScratchError
from tcpmemlib.model import FRAMES, Capture
from tcpmemlib.problems import Problems, warn_cached
from tcpmemlib.registry import socket_file
from tcpmemlib.snapmeta import read_meta, warn_missing

__all__ = ["FRAMES", "Capture", "load_capture"]

SS_CHUNK_SNAPSHOTS = 512
# Compressed ss bytes per chunk (a part file of ~300k socket rows for 2k sockets a snapshot): a
# chunk's result is small (its rows are in its part), so chunks are few; at least 3 per worker.
CHUNK_BATCHES = 4  # SS_BATCH_BYTES each
# compressed ss bytes (~100 snapshots of 2k sockets): below it, starting workers costs more
PARALLEL_MIN_BYTES = 4 * 1024**2
# a directory with this many entries gets its worker processes started before it is listed
EARLY_MIN_ENTRIES = 200
PROGRESS_MIN_BYTES = 8 * 1024**2  # about 150 snapshots of 2k sockets: a few seconds
# Compressed ss bytes from which load_capture leaves the socket rows on disk (sockets="auto"):
# about 1M socket rows (~500 snapshots of 2k sockets), ~250 MB as frames.
ON_DISK_MIN_SS_BYTES = 16 * 1024**2
SOCKETS_MODES = ("auto", "memory", "disk")
CHUNK_TASK = "tcpmemlib.chunks:load_chunk"


def load_capture(
    path: str | os.PathLike[str],
    *,
    progress: bool | None = None,
    cache: bool = True,
    workers: int | None = None,
    sockets: str = "auto",
) -> Capture:
    """Load a collect.sh capture directory or bundle into a ``Capture`` (docs/design.md §2).

    ``progress``: show a tqdm bar (``None``: only for captures over ~8 MB). ``cache``: read/write
    the Parquet cache beside the capture (``tcpmemlib.cache``). ``workers``: worker processes that
    parse the snapshots (``None``: 2 for large captures on 2 CPUs or more, else 1). ``sockets``:
    where the socket rows stay: ``"memory"``, ``"disk"`` (read a batch at a time, see
    ``Capture.socket_batches``), or ``"auto"``: on disk for large captures.
    """
    if sockets not in SOCKETS_MODES:
        raise ValueError(f"sockets must be one of {', '.join(SOCKETS_MODES)}, not {sockets!r}")
    source = Path(os.fspath(path))
    try:
        return _load(source, progress, cache, workers, sockets)
    except MemoryError as err:
        why = f" ({err})" if str(err) else ""
        raise CaptureError(source, f"not enough memory to load this capture{why}") from err
    except RuntimeError as err:  # e.g. "can't start new thread" under a tight process limit
        raise CaptureError(source, f"the load could not go on: {err}") from err


def _load(
    source: Path, progress: bool | None, use_cache: bool, n_workers: int | None, sockets: str
) -> Capture:
    if not source.exists():
        raise CaptureError(source, "no such file or directory")
    is_bundle = source.is_file()
    if is_bundle and not bundle.is_bundle(source):
        raise CaptureError(source, "not a capture directory or a .tar.gz/.tgz/.tar bundle")
    if not is_bundle and not source.is_dir():
        raise CaptureError(source, "not a directory")
    job = cache.KeyJob(source) if use_cache else None  # (a `find` lists the capture meanwhile)
    early = None
    try:
        if not (use_cache and cache.has_entry(source)):  # (a cold load: its workers start now)
            early = _start_workers_early(source, n_workers)
        return _load_or_parse(source, is_bundle, job, _How(progress, n_workers, sockets, early))
    finally:
        if early is not None:
            early.close()
        if job is not None:
            job.close()  # (a no-op once its result was taken)


def _start_workers_early(source: Path, n_workers: int | None) -> workers.Started | None:
    """Worker processes started before the snapshots are listed, for a directory that looks like
    it will want them (``EARLY_MIN_ENTRIES`` entries or more): they import pandas while this
    process lists the capture and reads its meta.txt files. Stopped unused if it wants fewer."""
    if n_workers is not None and n_workers < 2:
        return None
    if (os.cpu_count() or 1) < 2 or workers.in_worker() or not source.is_dir():
        return None
    try:
        with os.scandir(source) as entries:
            if sum(1 for _ in itertools.islice(entries, EARLY_MIN_ENTRIES)) < EARLY_MIN_ENTRIES:
                return None
        return workers.Started(CHUNK_TASK.split(":")[0], n_workers or 2)
    except (OSError, workers.WorkerError):
        return None  # (the load starts its workers later, or says why it cannot)


@dataclass(frozen=True)
class _How:
    """How ``load_capture`` was asked to load (its arguments), and the workers started early."""

    progress: bool | None
    n_workers: int | None
    sockets: str
    early: workers.Started | None = None


def _load_or_parse(source: Path, is_bundle: bool, job: cache.KeyJob | None, how: _How) -> Capture:
    key, cached = cache.load_current(source, how.sockets, job) if job else (None, None)
    if cached is not None:
        warn_cached(cached.problems)
        return cached._replace(path=str(source))
    problems = Problems()
    extracted: Path | None = None
    cut: frozenset[str] = frozenset()
    scratch = _Scratch(source, key)
    try:
        if is_bundle:
            extraction = bundle.extract(source)
            extracted = extraction.root
            for item in extraction.refused:
                reason = f"bundle member refused: {item.reason}"
                problems.add(None, item.member, None, reason, "error", warn=True)
            cut = frozenset(Path(m).parent.name for m in extraction.incomplete)
            for member in extraction.incomplete:
                reason = (
                    "the bundle ends here: this member (removed if it was cut) and the files "
                    "after it in its snapshot may be missing"
                )
                problems.add(None, member, None, reason, "error", warn=True)
            problems.transient = problems.transient or extraction.transient
        try:
            got: tuple[Capture, Problems] | None = None
            try:
                got = _attempt(extracted or source, problems, how, scratch, cut)
            except ScratchError as err:
                if scratch.entry is None:
                    raise
                warnings.warn(
                    f"tcpmem: the cache cannot take this load's socket rows ({err.reason}): "
                    "loading again without writing the cache",
                    stacklevel=3,
                )
            if got is None:  # (out of the except block: the first attempt is all gone)
                scratch.remove()
                scratch = _Scratch(source, None)
                got = _attempt(extracted or source, problems, how, scratch, cut)
            capture, problems = got
        except ScratchError as err:
            why = f"{err.reason} ({err.path}): free space there, or set TMPDIR to a roomier place"
            raise ScratchError(source, err.errno, why) from err
        except CaptureError as err:
            if not is_bundle:
                raise
            why = "; ".join(f"{r.member}: {r.reason}" for r in extraction.refused) or err.reason
            raise CaptureError(source, f"{err.reason.split(' (')[0]}; {why}") from err
        capture = capture._replace(path=str(source))
        problems.emit()
        if key is not None and not problems.transient:
            scratch.keep(capture)
    finally:
        if extracted is not None:
            shutil.rmtree(extracted, ignore_errors=True)
        scratch.remove()
    return capture


class _Scratch:
    """Where the chunks write their socket rows: a new cache entry (finished by ``keep``), or,
    without a cache, a temporary directory; either way removed by ``remove`` unless kept (open
    files stay readable: the capture reads its rows from there)."""

    def __init__(self, source: Path, key: str | None) -> None:
        self.source, self.key = source, key
        self.entry: Path | None = None
        self.temp: Path | None = None

    def make(self) -> Path:
        self.entry = cache.begin(self.source) if self.key is not None else None
        if self.entry is not None:
            return self.entry
        self.temp = Path(tempfile.mkdtemp(prefix="tcpmem-rows-"))
        return self.temp

    def keep(self, capture: Capture) -> None:
        if self.key is not None and self.entry is not None:
            cache.finish(self.source, self.key, self.entry, capture)
            self.entry = None

    def remove(self) -> None:
        cache.abandon(self.entry)
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)


def _attempt(
    directory: Path, problems: Problems, how: _How, scratch: _Scratch, cut: frozenset[str]
) -> tuple[Capture, Problems]:
    """``_load_dir`` on a copy of ``problems`` (a failed attempt leaves no row behind)."""
    mine = Problems()
    mine.extend(problems)
    return _load_dir(directory, mine, how, scratch, cut), mine


def _load_dir(
    directory: Path, problems: Problems, how: _How, scratch: _Scratch, cut: frozenset[str]
) -> Capture:
    listing = find_snapshots(directory)
    for name, reason in listing.refused:
        problems.add(name, None, None, reason, "error", warn=True)
    kept = read_meta(listing.snapshots, problems)
    if not kept.snapshots:
        first = problems.rows[0] if problems.rows else None
        detail = f" (first: {first[0]}/{first[1]}: {first[3]})" if first else ""
        raise CaptureError(listing.root, f"no snapshot with a readable meta.txt{detail}")
    warn_missing(kept, problems, cut)
    ss_bytes = [_socket_bytes(s) for s in kept.snapshots]
    total = sum(ss_bytes)
    on_disk = how.sockets == "disk" or (how.sockets == "auto" and total >= ON_DISK_MIN_SS_BYTES)
    show = how.progress if how.progress is not None else total >= PROGRESS_MIN_BYTES
    bar = _progress_bar(show, len(kept.snapshots))
    try:
        rows_dir = scratch.make()
        results = _run_chunks(kept.snapshots, ss_bytes, how.n_workers, bar, rows_dir, how.early)
        try:
            return assemble(listing.root, kept, results, problems, rows_dir, on_disk)
        finally:
            results.close()  # the workers are stopped now, whatever happened
    finally:
        if bar is not None:
            bar.close()


def _socket_bytes(snap: Snapshot) -> int:
    total = 0
    for base in snap.files:
        if socket_file(base) is not None:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(snap.dir, snap.files[base])).st_size
    return total


def _progress_bar(show: bool, total: int) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm  # only when shown: importing it costs ~0.1 s

    return tqdm(total=total, desc="tcpmem load", unit="snap")


def auto_workers(ss_bytes: int) -> int:
    """2 worker processes for large captures on a machine with 2 CPUs or more; else 1 (and 1
    inside a worker). Workers are ``python -m tcpmemlib.workers`` processes, which import nothing
    of the caller, so this holds for scripts, notebooks and the ``tcpmem`` command alike."""
    if ss_bytes < PARALLEL_MIN_BYTES or (os.cpu_count() or 1) < 2 or workers.in_worker():
        return 1
    return 2


def _chunks(
    snaps: list[Snapshot], ss_bytes: list[int], n_workers: int, rows_dir: Path
) -> list[ChunkTask]:
    """Runs of consecutive snapshots of about ``CHUNK_BATCHES`` x ``SS_BATCH_BYTES`` of ss files
    each, part ``k`` of the socket rows written by chunk ``k``."""
    per_snapshot = max(1, sum(ss_bytes) // max(1, len(snaps)))
    size = int(min(SS_CHUNK_SNAPSHOTS, max(1, CHUNK_BATCHES * SS_BATCH_BYTES // per_snapshot)))
    if n_workers > 1:  # at least three chunks per worker, so both stay busy to the end
        size = max(1, min(size, -(-len(snaps) // (3 * n_workers))))
    items = list(enumerate(snaps))
    return [
        ChunkTask(items[k : k + size], str(rows_dir), part)
        for part, k in enumerate(range(0, len(items), size))
    ]


def _run_chunks(
    snaps: list[Snapshot],
    ss_bytes: list[int],
    n_workers: int | None,
    bar: Any,
    rows_dir: Path,
    early: workers.Started | None = None,
) -> Iterator[ChunkResult]:
    """``ChunkResult`` of each run of snapshots, in order; in worker processes if more than one
    (``early``'s first). If the workers fail (they died, could not start), the remaining runs are
    parsed here."""
    if n_workers is None:
        n_workers = auto_workers(sum(ss_bytes))
    chunks = _chunks(snaps, ss_bytes, n_workers, rows_dir)
    done = 0
    if early is not None and (n_workers < 2 or len(chunks) < 2):
        early.close()  # (not wanted: no need to keep them until the load ends)
    if n_workers > 1 and len(chunks) > 1:
        try:
            for result in workers.run_ordered(CHUNK_TASK, chunks, n_workers, started=early):
                done += 1
                _advance(bar, result)
                yield result
        except workers.WorkerError as err:
            if err.remote_traceback is not None:  # the task itself failed: so would it here
                raise
            if "out of memory" in err.reason:
                raise MemoryError(str(err)) from err  # load_capture names the capture
            warnings.warn(f"tcpmem: {err}; parsing the rest in this process", stacklevel=3)
    for chunk in chunks[done:]:
        result = load_chunk(chunk)
        _advance(bar, result)
        yield result


def _advance(bar: Any, result: ChunkResult) -> None:
    if bar is not None:
        bar.update(result.snapshots)
