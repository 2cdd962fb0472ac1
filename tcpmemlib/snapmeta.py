"""The first pass of a load: each snapshot's meta.txt, which places it in time and says how to
read the rest (page size, which files collect.sh wrote and their sizes, what it could not do).

A snapshot without a readable meta.txt, without a start time, or repeating another snapshot's
start time and host (a copied snapshot directory) is skipped, with a ``problems`` row saying why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from tcpmemlib import safeio
from tcpmemlib.chunks import read_snapshot_file
from tcpmemlib.discovery import Snapshot, ts_from_name
from tcpmemlib.errors import ParseError
from tcpmemlib.parsers import meta
from tcpmemlib.problems import Problems, short_reason
from tcpmemlib.registry import EXPECTED_FILES, META_FILE

__all__ = ["SnapshotMeta", "read_meta", "warn_missing"]


@dataclass
class SnapshotMeta:
    """The snapshots kept, in order, and their meta values (one dict each, ``meta.records``)."""

    snapshots: list[Snapshot]
    values: list[dict[str, object]]


def _one(snap: Snapshot, problems: Problems) -> dict[str, object] | None:
    if snap.unreadable is not None:
        problems.add(
            snap.name, None, None, f"snapshot skipped: {snap.unreadable}", "error", warn=True
        )
        return None
    if META_FILE not in snap.files:
        problems.add(snap.name, META_FILE, None, "snapshot skipped: no meta.txt", "error")
        return None
    try:
        dir_fd = safeio.open_dir(snap.dir)
    except safeio.Refused as err:
        problems.add(snap.name, None, None, f"snapshot skipped: {err.reason}", "error", warn=True)
        problems.transient = problems.transient or err.transient
        return None
    try:
        text = read_snapshot_file(snap, META_FILE, dir_fd, problems)
    finally:
        os.close(dir_fd)
    stored = snap.files[META_FILE]
    if text is None:
        snapshot, file, line, reason, severity = problems.rows[-1]
        problems.rows[-1] = (snapshot, file, line, f"{reason}; snapshot skipped", severity)
        return None
    path = os.path.join(snap.dir, stored)
    try:
        values, collector = meta.records(text, path)
        snap.sizes = meta.file_sizes(text, path)
    except ParseError as err:
        problems.add(
            snap.name,
            stored,
            err.line_no,
            f"snapshot skipped: {short_reason(err)}",
            "error",
            warn=True,
        )
        return None
    if not values:
        problems.add(
            snap.name, stored, None, "snapshot skipped: meta.txt holds no key", "error", warn=True
        )
        return None
    damaged = meta.self_check(text, values.get("collector_version"))
    if damaged is not None:
        reason = f"meta.txt {damaged}; the snapshot loaded as it is"
        problems.add(snap.name, stored, None, reason, "error", warn=True)
    values["_collector"] = collector
    if "start" not in values or pd.isna(values["start"]):
        values["start"] = ts_from_name(snap.name)
    if values["start"] is None or pd.isna(values["start"]):
        problems.add(snap.name, stored, None, "snapshot skipped: no start time", "error")
        return None
    values["snapshot"] = snap.name
    return values


def read_meta(snapshots: list[Snapshot], problems: Problems) -> SnapshotMeta:
    """meta.txt of every snapshot; the snapshots that can be placed in time, once each."""
    kept = SnapshotMeta([], [])
    seen: dict[tuple[object, object], str] = {}
    for snap in snapshots:
        for name, reason in snap.refused:  # links, FIFOs, devices: named, kept or not
            problems.add(snap.name, name, None, reason, "error", warn=True)
        values = _one(snap, problems)
        if values is None:
            continue
        key = (values["start"], values.get("hostname"))
        if key in seen:
            reason = f"snapshot skipped: the same start time and host as {seen[key]} (a copy)"
            problems.add(snap.name, None, None, reason, "error", warn=True)
            continue
        seen[key] = snap.name
        for kind, item, reason in values.pop("_collector"):
            problems.add(snap.name, item, None, f"{kind}: {reason}", "collector")
        kept.snapshots.append(snap)
        kept.values.append(values)
    return kept


def warn_missing(kept: SnapshotMeta, problems: Problems, cut: frozenset[str] = frozenset()) -> None:
    """A warning for each expected file a snapshot lacks (unless collect.sh said why), and an
    error for a file collect.sh recorded writing (meta ``file=``) that is not there. In the
    snapshots named in ``cut`` (where a truncated bundle ends), a missing file is an error."""
    recorded = {(p[0], p[1]) for p in problems.rows if p[4] == "collector"}
    for snap, values in zip(kept.snapshots, kept.values, strict=True):
        expected = list(EXPECTED_FILES)
        if values.get("args_collected") is True:
            expected.append("ps_args.txt")
        stored = set(snap.files.values())
        refused = {name for name, _ in snap.refused}
        for base in expected:
            if base in refused or base + ".gz" in refused:
                continue
            listed = base in snap.sizes or base + ".gz" in snap.sizes
            if base not in snap.files and (snap.name, base) not in recorded and not listed:
                if snap.name in cut:
                    reason = "missing: the bundle ends before this file"
                    problems.add(snap.name, base, None, reason, "error", warn=True)
                else:
                    problems.warning(snap.name, base, "file missing from the snapshot")
        for name in snap.sizes:
            # (collect.sh wrote it: a missing= line about its content does not explain it away)
            if name not in stored and name not in refused:
                problems.add(
                    snap.name,
                    name,
                    None,
                    "missing: collect.sh wrote it, it is gone",
                    "error",
                    warn=True,
                )
