"""Parsing a run of consecutive snapshots (a chunk): every file but meta.txt, into plain data.

This is what a worker process runs (``tcpmemlib.workers``: ``"tcpmemlib.chunks:load_chunk"``);
the result crosses the process boundary, so it holds only frames, arrays, tuples and lists.

Per snapshot, files are read with ``tcpmemlib.safeio`` (regular files inside the snapshot only,
bounded) and checked against what collect.sh recorded of them (meta.txt ``file=``: size and line
count), then parsed by their ``tcpmemlib.registry`` kind. A file that cannot be read or parsed is a
``problems`` row; a cut file keeps its complete lines and is named as cut. The ``ss`` files of the
whole chunk are parsed with one ``read_numbered`` call per batch, each row assigned back to its
file by its line number; a bad ss line costs that line only, named by file and line.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tcpmemlib import safeio, sockstore
from tcpmemlib.discovery import Snapshot
from tcpmemlib.errors import ParseError, ScratchError
from tcpmemlib.parsers import netns as netns_parser
from tcpmemlib.parsers import sockstat, ss
from tcpmemlib.parsers.text import join_columns
from tcpmemlib.problems import Problems
from tcpmemlib.registry import (
    FILES,
    FRAME_KINDS,
    NETNS_FILE,
    Columns,
    namespace_files,
    socket_file,
)
from tcpmemlib.schema import SOCKET_CATEGORIES, socket_rows_template
from tcpmemlib.tables import str_category

__all__ = [
    "ChunkResult",
    "ChunkTask",
    "OwnerCodes",
    "build_frame",
    "load_chunk",
    "read_snapshot_file",
]

# Compressed ss bytes per read_numbered call (about 50k sockets): one call amortises its fixed cost
# over many snapshots; 1 MB kept a day's load ~420 MB lower at its peak than 2 MB (bench/README.md).
SS_BATCH_BYTES = 1024**2


@dataclass
class ChunkTask:
    """A run of consecutive snapshots to parse: ``items`` (global index, snapshot), and where its
    socket rows go: part file number ``part`` in the directory ``rows_dir``."""

    items: list[tuple[int, Snapshot]]
    rows_dir: str
    part: int


@dataclass
class ChunkResult:
    """What one chunk of snapshots gave (all plain, picklable data); its socket rows are in its
    part file (``rows``: which snapshots, how many rows each; None without a socket row)."""

    snapshots: int
    small: dict[str, tuple[pd.DataFrame, np.ndarray]]  # typed frame, snapshot index per row
    problems: Problems
    rows: sockstore.PartRows | None = None


class OwnerCodes:
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


def build_frame(kind: str, columns: Columns) -> pd.DataFrame:
    """The typed frame of one frame kind, its repeated names as ``str`` categories."""
    spec = FRAME_KINDS[kind]
    frame = spec.build(columns)
    for column in spec.categories:  # categories in order of appearance
        codes, uniques = pd.factorize(frame[column])
        dtype = pd.CategoricalDtype(pd.Index(uniques, dtype="str"))
        frame[column] = pd.Categorical.from_codes(codes, dtype=dtype)
    return frame


def read_snapshot_file(
    snap: Snapshot, base: str, dir_fd: int | None, problems: Problems
) -> str | None:
    """The text of one snapshot file (its complete lines), or None with a problem recorded.

    Names a file that is refused, cut (a gzip stream ending early, a last line without newline,
    fewer bytes or lines than collect.sh recorded) or binary, in ``problems``."""
    got = _read_lines(snap, base, dir_fd, problems)
    return None if got is None else got[0]


def _read_lines(
    snap: Snapshot, base: str, dir_fd: int | None, problems: Problems
) -> tuple[str, int] | None:
    """``read_snapshot_file``'s text and its number of lines."""
    stored = snap.files[base]
    try:
        got = safeio.read_file(stored, dir_fd)
    except safeio.Refused as err:
        problems.add(snap.name, stored, None, f"not loaded: {err.reason}", "error", warn=True)
        problems.transient = problems.transient or err.transient
        return None
    text, nul_line = safeio.decode_text(got.data)
    if nul_line is not None:
        reason = "not loaded: binary data (a NUL byte), not text"
        problems.add(snap.name, stored, nul_line, reason, "error", warn=True)
        return None
    lines = got.data.count(b"\n")  # (as in the text: decoding makes no newline)
    cuts: list[str] = []
    if got.cut is not None:
        cuts.append(got.cut)
    expected = snap.sizes.get(stored)
    if expected is not None and expected[0] != got.stored_bytes:
        cuts.append(f"{got.stored_bytes:,} bytes on disk, collect.sh wrote {expected[0]:,}")
    lines_cut = bool(text) and not text.endswith("\n")
    if lines_cut:
        lines_kept = text.rfind("\n") + 1
        text = text[:lines_kept]
        cuts.append(f"line {lines + 1} cut (no newline at the end): not loaded")
    if expected is not None and expected[1] is not None and lines != expected[1] and not cuts:
        cuts.append(f"{lines:,} lines, collect.sh wrote {expected[1]:,}")
    if cuts:
        what = "truncated" if got.cut or lines_cut else "cut or changed since collect.sh wrote it"
        reason = f"{what}: " + "; ".join(cuts) + f"; its {lines:,} complete lines loaded"
        problems.add(snap.name, stored, None, reason, "error", warn=True)
    return text, lines


def _parse(
    snap: Snapshot,
    stored: str,
    problems: Problems,
    parse: Callable[[], Any],
) -> Any:
    """``parse()``, its ParseError and warnings recorded as problems of ``stored``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = parse()
        except ParseError as err:
            last = problems.rows[-1] if problems.rows else None
            if last is not None and last[0] == snap.name and last[1] == stored:
                problems.rows.pop()  # the file's cut, said with the error it caused: one row
                err = ParseError(
                    err.path, err.line_no, err.line, f"{err.reason} (the file is {last[3]})"
                )
            problems.parse_error(snap.name, stored, err)
            return None
    for warning in caught:
        problems.warning(snap.name, stored, str(warning.message))
    return result


def _one_row(parts: list[Columns]) -> Columns:
    """Several files' single rows of a one-row frame (sockstat, sockstat6, the after-read) as one
    row: each column's first non-NA value."""
    out = {c: list(v) for c, v in parts[0].items()}
    for other in parts[1:]:
        for column, values in other.items():
            if out.get(column, [pd.NA])[0] is pd.NA:
                out[column] = list(values)
    return out


class _Accumulator:
    """Column values of each frame kind over the chunk's snapshots, with each row's snapshot: each
    file's columns (lists or int64 arrays) kept as parsed, joined once when the frame is built
    (``text.join_columns``)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[Columns]] = {}
        self.index: dict[str, list[np.ndarray]] = {}

    def add(self, kind: str, snap_index: int, columns: Columns) -> None:
        if not columns:
            return
        n = len(next(iter(columns.values())))
        self.parts.setdefault(kind, []).append(columns)
        self.index.setdefault(kind, []).append(np.full(n, snap_index, dtype=np.int64))

    def frames(self) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
        return {
            kind: (build_frame(kind, join_columns(parts)), np.concatenate(self.index[kind]))
            for kind, parts in self.parts.items()
        }


def _small_files(
    i: int, snap: Snapshot, dir_fd: int | None, problems: Problems, acc: _Accumulator
) -> dict[str, Columns]:
    """Parse the snapshot's registry kinds; their column lists by file name."""
    texts: dict[str, str | None] = {}
    parsed: dict[str, Columns] = {}
    one_row: dict[str, list[Columns]] = {}
    for kind in FILES:
        if kind.file not in snap.files:
            continue
        if kind.file not in texts:
            texts[kind.file] = read_snapshot_file(snap, kind.file, dir_fd, problems)
        text = texts[kind.file]
        if text is None:
            continue
        stored = snap.files[kind.file]
        path = os.path.join(snap.dir, stored)
        got = _parse(snap, stored, problems, lambda k=kind, t=text, p=path: k.records(t, p, parsed))
        if got is None:
            texts[kind.file] = None  # a file feeding two frames: one problem row, not two
            continue
        parsed[kind.file] = got
        if FRAME_KINDS[kind.frame].one_row:
            if got and len(next(iter(got.values()))) == 1:
                one_row.setdefault(kind.frame, []).append(got)
        else:
            acc.add(kind.frame, i, got)
    for frame, parts in one_row.items():
        acc.add(frame, i, _one_row(parts))
    return parsed


def _namespaces(
    i: int,
    snap: Snapshot,
    dir_fd: int | None,
    problems: Problems,
    parsed: dict[str, Columns],
    acc: _Accumulator,
) -> int | None:
    """One ``netns`` row per namespace of netns.txt, with whether its sockets were read and its own
    sockstat counts; returns the collector's own namespace's inode (None when unknown)."""
    if NETNS_FILE not in snap.files:
        return None
    text = read_snapshot_file(snap, NETNS_FILE, dir_fd, problems)
    if text is None:
        return None
    stored = snap.files[NETNS_FILE]
    path = os.path.join(snap.dir, stored)
    rows = _parse(snap, stored, problems, lambda: netns_parser.records(text, path))
    if not rows or not rows["netns"]:
        return None
    counted = ("sockets_used", "tcp_inuse", "tcp_tw", "tcp_mem_pages")
    columns: Columns = {**rows, "read": [], **{column: [] for column in counted}}
    for inode, own in zip(rows["netns"], rows["own"], strict=True):
        tcp, _udp, counts = (
            ("ss_tcp.txt", "ss_udp.txt", "sockstat.txt") if own else namespace_files(int(inode))
        )
        columns["read"].append(tcp in snap.files)
        got = parsed.get(counts) if own else None
        if not own and counts in snap.files:
            counts_text = read_snapshot_file(snap, counts, dir_fd, problems)
            if counts_text is not None:
                stored_counts = snap.files[counts]
                got = _parse(
                    snap,
                    stored_counts,
                    problems,
                    lambda t=counts_text, s=stored_counts: sockstat.records(t, s),
                )
        for column in counted:
            values = got.get(column) if got else None
            columns[column].append(values[0] if values else pd.NA)
    acc.add("netns", i, columns)
    return int(rows["netns"][0])


class _SocketFiles:
    """The ss files of one chunk: read, parsed with one ``read_numbered`` call per batch, and
    written to the chunk's part file a batch at a time (never the chunk's rows at once)."""

    def __init__(self, problems: Problems, writer: sockstore.PartWriter) -> None:
        self.problems = problems
        self.writer = writer
        self.interner = OwnerCodes()
        self.batch: list[tuple[int, Snapshot, str, str, int, int]] = []
        self.batch_bytes = 0

    def add(self, i: int, snap: Snapshot, dir_fd: int | None, own: int | None) -> None:
        """Queue the snapshot's ss files (``own``: the collector's namespace's inode)."""
        for base in sorted(snap.files):
            which = socket_file(base)
            if which is None:
                continue
            inode = which[1] if which[1] is not None else own
            got = _read_lines(snap, base, dir_fd, self.problems)
            if got is None or not got[0].strip():  # unreadable (named), or no socket at all
                continue
            text, lines = got
            item = (i, snap, base, text, -1 if inode is None else inode, lines)
            if not ss.starts_record(text):  # it would join the file before it: parse it alone
                self.flush()  # (after the files before it: rows stay in snapshot order)
                self._parse([item])
                continue
            self.batch.append(item)
            self.batch_bytes += len(text)
            if self.batch_bytes >= SS_BATCH_BYTES * 8:  # ~8x compression: about SS_BATCH_BYTES
                self.flush()

    def flush(self) -> None:
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        if batch:
            self._parse(batch)

    def _parse(self, batch: list[tuple[int, Snapshot, str, str, int, int]]) -> None:
        texts = [item[3] for item in batch]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = ss.read_numbered(None, "".join(texts), categories=SOCKET_CATEGORIES)
        starts = np.cumsum([0] + [item[5] for item in batch])  # first line of each file - 1
        file_of_row = np.searchsorted(starts, got.line_numbers - 1, side="right") - 1
        for err in got.errors:
            k = int(np.searchsorted(starts, (err.line_no or 1) - 1, side="right") - 1)
            _i, snap, base, *_ = batch[k]
            line_no = None if err.line_no is None else err.line_no - int(starts[k])
            err = ParseError(
                os.path.join(snap.dir, snap.files[base]), line_no, err.line, err.reason
            )
            self.problems.parse_error(snap.name, snap.files[base], err)
        for warning in caught:  # not tied to a line: name the batch's first file
            _i, snap, base, *_ = batch[0]
            self.problems.warning(snap.name, snap.files[base], str(warning.message))
        snap_of_file = np.array([item[0] for item in batch], dtype=np.int64)
        kind_of_file = np.array([socket_file(item[2])[0] for item in batch], dtype=object)  # type: ignore[index]
        netns_of_file = np.array([item[4] for item in batch], dtype=np.int64)
        self._write(
            got.frame,
            snap_of_file[file_of_row],
            kind_of_file[file_of_row],
            netns_of_file[file_of_row],
        )

    def _write(
        self, frame: pd.DataFrame, index: np.ndarray, kind: np.ndarray, netns: np.ndarray
    ) -> None:
        """The batch's rows as the loader keeps them (``netid`` from the file name where ss did
        not print one, ``netns``, owner codes, ``str`` categories), into the part file."""
        if not len(frame):
            return
        frame["netid"] = _fill_category(frame["netid"], kind)
        frame["netns"] = pd.arrays.IntegerArray(netns, netns < 0)
        owners = frame.pop("owners").to_numpy()
        codes = self.interner.codes(owners)
        for column in SOCKET_CATEGORIES:
            if not isinstance(frame[column].dtype, pd.CategoricalDtype):
                frame[column] = str_category(frame[column])
        try:
            self.writer.write(frame, index, codes)
        except OSError as err:
            raise _scratch_error(self.writer.directory, err) from err


def _scratch_error(directory: Any, err: OSError) -> ScratchError:
    why = os.strerror(err.errno) if err.errno else str(err)  # (Arrow's messages are longer)
    return ScratchError(directory, err.errno, f"socket rows not written here: {why}")


def _fill_category(values: pd.Series, fill: np.ndarray) -> pd.Series:
    """``values`` (a category, or anything ``str_category`` takes) with its missing values taken
    from ``fill`` (one string per row), as a ``str`` category."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        values = str_category(values.astype("string").fillna(pd.Series(fill, dtype="string")))
        return values
    codes = values.cat.codes.to_numpy()
    missing = codes < 0
    if not missing.any():
        return values
    labels = np.asarray(values.cat.categories, dtype=object)
    filled = np.where(missing, fill, labels[np.where(missing, 0, codes)] if len(labels) else fill)
    return str_category(pd.Series(filled, dtype=object))


def load_chunk(task: ChunkTask) -> ChunkResult:
    """Parse every file but meta.txt of the task's snapshots; its socket rows into its part."""
    problems = Problems()
    acc = _Accumulator()
    result = ChunkResult(snapshots=len(task.items), small={}, problems=problems)
    writer = sockstore.PartWriter(task.rows_dir, task.part, socket_rows_template())
    sockets = _SocketFiles(problems, writer)
    for i, snap in task.items:
        try:
            dir_fd = safeio.open_dir(snap.dir)
        except safeio.Refused as err:
            problems.add(
                snap.name, None, None, f"snapshot not read: {err.reason}", "error", warn=True
            )
            problems.transient = problems.transient or err.transient
            continue
        try:
            parsed = _small_files(i, snap, dir_fd, problems, acc)
            own = _namespaces(i, snap, dir_fd, problems, parsed, acc)
            sockets.add(i, snap, dir_fd, own)
        finally:
            os.close(dir_fd)
    sockets.flush()
    result.small = acc.frames()
    try:
        result.rows = writer.close(sockets.interner.uniques)
    except OSError as err:
        raise _scratch_error(task.rows_dir, err) from err
    return result
