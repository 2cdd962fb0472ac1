"""The last pass of a load: the chunks' results merged into the frames of one ``Capture``.

Chunk results arrive in snapshot order. Small frames are concatenated once at the end; socket rows
were written by each chunk to its own part file (``sockstore``): the index of the parts is written
here, then the rows are left on disk or read into memory. ``ts`` and ``host`` come from each row's
snapshot's meta.txt.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tcpmemlib import safeio, sockstore
from tcpmemlib.chunks import ChunkResult, build_frame
from tcpmemlib.errors import ParseError
from tcpmemlib.model import Capture
from tcpmemlib.parsers import meta, phases
from tcpmemlib.problems import Problems, short_reason
from tcpmemlib.registry import FRAME_KINDS
from tcpmemlib.schema import META_COLUMNS, sockets_template
from tcpmemlib.snapmeta import SnapshotMeta
from tcpmemlib.tables import concat_columns, host_categorical, with_ts_host
from tcpmemlib.threads import map_threads

__all__ = ["assemble", "snapshot_frame"]


def snapshot_frame(kept: SnapshotMeta) -> pd.DataFrame:
    """One row per kept snapshot: its meta values (``meta.SCHEMA``) and ``snapshot``."""
    frame = meta.frame(kept.values)
    frame.insert(0, "snapshot", [v["snapshot"] for v in kept.values])
    return frame


def _phases(root: Path, problems: Problems) -> pd.DataFrame:
    """``phases.tsv`` of the capture (a regular file only), or the empty frame."""
    try:
        root_fd = safeio.open_dir(root)
    except safeio.Refused as err:
        problems.add(None, None, None, f"capture directory not read: {err.reason}", "error")
        return phases.parse("")
    try:
        for name in ("phases.tsv", "phases.tsv.gz"):
            try:
                got = safeio.read_file(name, root_fd)
            except safeio.Refused as err:
                if "No such file" in err.reason:
                    continue
                problems.add(None, name, None, f"not loaded: {err.reason}", "error", warn=True)
                break
            text, nul_line = safeio.decode_text(got.data)
            if nul_line is not None or got.cut is not None:
                why = got.cut or "binary data (a NUL byte), not text"
                problems.add(None, name, nul_line, f"not loaded: {why}", "error", warn=True)
                break
            try:
                return phases.parse(text)
            except ParseError as err:
                problems.add(
                    None, name, err.line_no, f"not loaded: {short_reason(err)}", "error", warn=True
                )
                break
    finally:
        os.close(root_fd)
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


def _page_bytes(
    kind: str, frame: pd.DataFrame, page_sizes: pd.Series, index: np.ndarray
) -> tuple[pd.DataFrame, str | None]:
    """``frame``'s ``*_bytes`` columns from its page columns, with the page size of each row's
    snapshot (``page_sizes``: one per snapshot; ``index``: each row's snapshot), and why they are
    left NA (or None). One size for the whole capture (the usual case) is passed as a number: no
    per-row column is built."""
    convert = FRAME_KINDS[kind].page_bytes
    if convert is None or not len(frame):
        return frame, None
    distinct = page_sizes.unique()
    sizes: int | pd.Series
    if len(distinct) == 1 and not pd.isna(distinct[0]):
        sizes = int(distinct[0])
    else:
        sizes = pd.Series(page_sizes.array.take(index))
    try:
        return convert(frame, sizes), None
    except ValueError as err:
        return frame, f"page size unusable, *_bytes left NA: {err}"


def _kind_frame(
    kind: str,
    chunk_parts: list[tuple[pd.DataFrame, np.ndarray]],
    page_sizes: pd.Series,
    ts: Any,
    hosts: pd.Categorical,
) -> tuple[pd.DataFrame, np.ndarray, str | None]:
    """One kind's frame from its chunks' parts (emptied): joined, ``*_bytes`` filled, ``ts`` and
    ``host`` put first; with each row's snapshot and a problem's reason (or None)."""
    frame = concat_columns([f for f, _ in chunk_parts], build_frame(kind, {}))
    index = np.concatenate([i for _, i in chunk_parts]) if chunk_parts else np.array([], np.int64)
    chunk_parts.clear()
    frame, problem = _page_bytes(kind, frame, page_sizes, index)
    return with_ts_host(frame, index, ts, hosts), index, problem


def assemble(
    root: Path,
    kept: SnapshotMeta,
    results: Iterable[ChunkResult],
    problems: Problems,
    rows_dir: Path,
    on_disk: bool,
) -> Capture:
    """Every frame of the capture from the chunk results, whose socket rows are part files in
    ``rows_dir`` (``on_disk``: leave them there, read in batches; else read them into memory)."""
    meta_frame = snapshot_frame(kept)
    ts = meta_frame["start"].array
    hosts = host_categorical(meta_frame["hostname"])
    parts: dict[str, list[tuple[pd.DataFrame, np.ndarray]]] = {k: [] for k in FRAME_KINDS}
    written: list[sockstore.PartRows] = []
    reader = None if on_disk else sockstore.MemoryReader(sockets_template(hosts.dtype))
    for result in results:
        problems.extend(result.problems)
        for kind, part in result.small.items():
            parts[kind].append(part)
        if result.rows is not None:
            written.append(result.rows)
            if reader is not None:  # (while the workers parse the next chunks)
                reader.add_file(rows_dir, result.rows.part)
    sockstore.write_index(rows_dir, written, ts, hosts)
    template = sockets_template(hosts.dtype)
    rows: sockstore.DiskRows | sockstore.MemoryRows
    if reader is None:
        rows = sockstore.open_rows(rows_dir, template)
    else:
        rows = reader.rows(np.arange(len(ts)), ts, hosts)  # ts, hosts: per snapshot
    frames: dict[str, pd.DataFrame] = {}
    snap_of_row: dict[str, np.ndarray] = {}
    page_sizes = meta_frame["page_size_bytes"]
    # Two kinds at a time: the copies (and the first touches of new memory, most of this step's
    # time) run in numpy and pyarrow without the GIL.
    built = map_threads(
        lambda kind: _kind_frame(kind, parts[kind], page_sizes, ts, hosts), list(parts), 2
    )
    for kind, (frame, index, problem) in zip(parts, built, strict=True):  # (problems in order)
        frames[kind], snap_of_row[kind] = frame, index
        if problem is not None:
            problems.add(None, "meta.txt", None, problem, "error")
    _join_args(frames, snap_of_row)
    phase_frame = _phases(root, problems)
    meta_out = _meta_with_phase(meta_frame, phase_frame)
    meta_out = with_ts_host(
        meta_out.drop(columns=["hostname"]), np.arange(len(kept.values)), ts, hosts
    )
    return Capture(
        sockets=rows,
        owners=rows,
        **{k: v for k, v in frames.items() if k != "ps_args"},
        meta=meta_out,
        phases=phase_frame,
        problems=problems.frame(),
    )


def _join_args(frames: dict[str, pd.DataFrame], snap_of_row: dict[str, np.ndarray]) -> None:
    """``ps_args.txt``'s command lines into ``processes["args"]`` (by snapshot and pid)."""
    args = frames["ps_args"]
    if not len(args):
        return
    args = args[["pid", "args"]].assign(_snap=snap_of_row["ps_args"])
    args = args.drop_duplicates(["_snap", "pid"])
    processes = frames["processes"]
    key = pd.DataFrame({"_snap": snap_of_row["processes"], "pid": processes["pid"].to_numpy()})
    merged = key.merge(args, how="left", on=["_snap", "pid"])
    processes["args"] = merged["args"].astype("string").to_numpy()
