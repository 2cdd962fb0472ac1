"""The last pass of a load: the chunks' results merged into the frames of one ``Capture``.

Chunk results arrive in snapshot order. Small frames are concatenated once at the end; socket rows
are merged as they come: kept in memory, or written to disk chunk by chunk (``sockstore``), so the
whole socket frame is never held. ``ts`` and ``host`` come from each row's snapshot's meta.txt.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tcpmemlib import safeio, sockstore
from tcpmemlib.chunks import ChunkResult, OwnerCodes, build_frame
from tcpmemlib.errors import ParseError
from tcpmemlib.model import Capture
from tcpmemlib.parsers import meta, phases
from tcpmemlib.problems import Problems, short_reason
from tcpmemlib.registry import FRAME_KINDS
from tcpmemlib.schema import META_COLUMNS, socket_rows_template, sockets_template
from tcpmemlib.snapmeta import SnapshotMeta
from tcpmemlib.tables import concat_columns, host_categorical, str_category, with_ts_host

__all__ = ["SocketMerge", "assemble", "snapshot_frame"]


def snapshot_frame(kept: SnapshotMeta) -> pd.DataFrame:
    """One row per kept snapshot: its meta values (``meta.SCHEMA``) and ``snapshot``."""
    frame = meta.frame(kept.values)
    frame.insert(0, "snapshot", [v["snapshot"] for v in kept.values])
    return frame


class SocketMerge:
    """Merges the chunks' socket rows: in memory, or, with a ``writer``, to disk chunk by chunk."""

    def __init__(self, ts: Any, hosts: pd.Categorical, writer: Any = None) -> None:
        self.ts, self.hosts, self.writer = ts, hosts, writer
        self.frames: list[pd.DataFrame] = []
        self.snap_index: list[np.ndarray] = []
        self.kinds: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []
        self.interner = OwnerCodes()
        self.next_id = 0
        self.template = socket_rows_template().drop(columns=["owners"])

    def add(self, result: ChunkResult) -> None:
        remap = np.array([self.interner.code(u) for u in result.owner_uniques], dtype=np.int64)
        self.frames.extend(result.ss_frames)
        self.snap_index.extend(result.ss_index)
        self.kinds.extend(result.ss_kind)
        self.codes.extend(remap[c] if len(c) else c for c in result.owner_codes)
        if self.writer is not None:
            sockets, codes = self._build()
            self.writer.write(sockets.assign(owner_code=codes))

    def _build(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The rows added since the last call (without ``owners``) and each row's owner code."""
        sockets = concat_columns(self.frames, self.template)
        index = np.concatenate(self.snap_index) if self.snap_index else np.array([], np.int64)
        kind = np.concatenate(self.kinds) if self.kinds else np.array([], dtype=object)
        codes = np.concatenate(self.codes) if self.codes else np.array([], np.int64)
        self.snap_index, self.kinds, self.codes = [], [], []
        netid = sockets["netid"].astype("string").fillna(pd.Series(kind, dtype="string"))
        sockets["netid"] = str_category(netid)
        n = len(sockets)
        sockets.insert(0, "sock_id", np.arange(self.next_id, self.next_id + n, dtype=np.int64))
        self.next_id += n
        return with_ts_host(sockets, index, self.ts, self.hosts), codes

    def finish(self) -> sockstore.MemoryRows | None:
        """The socket rows in memory; with a writer, None (closed: the rows are on disk)."""
        if self.writer is not None:
            self.writer.close(self.interner.uniques)
            return None
        sockets, codes = self._build()
        uniques = self.interner.objects()
        at = list(socket_rows_template().columns).index("owners") + 3  # after ts, host, sock_id
        sockets.insert(at, "owners", uniques[codes] if len(codes) else np.empty(0, dtype=object))
        owners = sockstore.owners_from_codes(sockets, codes, self.interner.uniques)
        return sockstore.MemoryRows(sockets, owners)


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
    kind: str, frame: pd.DataFrame, sizes: pd.Series, problems: Problems
) -> pd.DataFrame:
    convert = FRAME_KINDS[kind].page_bytes
    if convert is None or not len(frame):
        return frame
    try:
        return convert(frame, sizes.reset_index(drop=True))
    except ValueError as err:
        problems.add(None, "meta.txt", None, f"page size unusable, *_bytes left NA: {err}", "error")
        return frame


def assemble(
    root: Path,
    kept: SnapshotMeta,
    results: Iterable[ChunkResult],
    problems: Problems,
    rows_dir: Path | None,
) -> Capture:
    """Every frame of the capture from the chunk results (``rows_dir``: write the socket rows
    there instead of keeping them in memory)."""
    meta_frame = snapshot_frame(kept)
    ts = meta_frame["start"].array
    hosts = host_categorical(meta_frame["hostname"])
    writer = None
    if rows_dir is not None:
        writer = sockstore.SocketWriter(rows_dir, sockets_template(hosts.dtype))
    sockets = SocketMerge(ts, hosts, writer)
    parts: dict[str, list[tuple[pd.DataFrame, np.ndarray]]] = {k: [] for k in FRAME_KINDS}
    for result in results:
        problems.extend(result.problems)
        for kind, part in result.small.items():
            parts[kind].append(part)
        sockets.add(result)
    rows = sockets.finish()
    if rows_dir is not None:
        rows = sockstore.open_rows(rows_dir, sockets_template(hosts.dtype))
    frames: dict[str, pd.DataFrame] = {}
    snap_of_row: dict[str, np.ndarray] = {}
    for kind, chunk_parts in parts.items():
        empty = build_frame(kind, {})
        frame = concat_columns([f for f, _ in chunk_parts], empty)
        index = (
            np.concatenate([i for _, i in chunk_parts]) if chunk_parts else np.array([], np.int64)
        )
        chunk_parts.clear()
        frame = _page_bytes(kind, frame, meta_frame["page_size_bytes"].iloc[index], problems)
        frames[kind] = with_ts_host(frame, index, ts, hosts)
        snap_of_row[kind] = index
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
