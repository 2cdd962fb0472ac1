"""Finding a capture's snapshots: directories inside the capture, never through a link.

A capture directory holds one directory per snapshot (named by its UTC start time, or any
directory with a ``meta.txt``), an optional ``phases.tsv`` and dot entries (``.partial-*`` being
written, ``.tcpmem-cache``), which are ignored. A bundle may wrap all that in one top directory.
Symbolic links, FIFOs, devices and sockets are never followed or opened: each is listed with the
reason it was not read (``Snapshot.refused``, ``Listing.refused``), so ``problems`` can name it.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tcpmemlib.errors import CaptureError

__all__ = ["Listing", "Snapshot", "find_snapshots", "ts_from_name"]

# A snapshot directory name: UTC start time, e.g. 20261125T231700.123456789Z
_SNAPSHOT_NAME = re.compile(r"^(\d{8}T\d{6})(?:\.(\d{1,9}))?Z$")
_GZ = ".gz"


@dataclass
class Snapshot:
    """One snapshot directory: ``files`` maps a base name (``X`` for ``X`` or ``X.gz``) to the
    entry's name; ``refused``: (entry name, reason) of entries that are not read; ``sizes``: what
    collect.sh recorded of each stored file (meta.txt ``file=``: bytes, newlines), filled later."""

    name: str
    dir: str
    files: dict[str, str]
    refused: list[tuple[str, str]] = field(default_factory=list)
    sizes: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    unreadable: str | None = None


@dataclass
class Listing:
    """The snapshots of a capture (sorted by name), its root, and top-level entries not read."""

    root: Path
    snapshots: list[Snapshot]
    refused: list[tuple[str, str]]


def ts_from_name(name: str) -> pd.Timestamp | None:
    """The start time a snapshot directory's name gives, or None."""
    match = _SNAPSHOT_NAME.match(name)
    if not match:
        return None
    frac = (match[2] or "0").ljust(9, "0")
    try:
        return pd.Timestamp(match[1]).tz_localize("UTC") + pd.Timedelta(int(frac), "ns")
    except ValueError:
        return None


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link: not followed"
    if stat.S_ISFIFO(mode):
        return "a FIFO: not read"
    if stat.S_ISSOCK(mode):
        return "a socket: not read"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device: not read"
    return "not a regular file: not read"


def _scan(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as err:
        raise CaptureError(directory, f"cannot list: {err.strerror or err}") from err


def _has_meta(directory: str) -> bool:
    for name in ("meta.txt", "meta.txt.gz"):
        try:
            st = os.lstat(os.path.join(directory, name))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            return True
    return False


def _looks_like_snapshot(entry: os.DirEntry[str]) -> bool:
    return ts_from_name(entry.name) is not None or (
        entry.is_dir(follow_symlinks=False) and _has_meta(entry.path)
    )


def _snapshot_entries(directory: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Snapshot directories of ``directory`` and the snapshot-like entries that are not read."""
    found: list[str] = []
    refused: list[tuple[str, str]] = []
    for entry in _scan(directory):
        if not _looks_like_snapshot(entry):
            continue
        if entry.is_dir(follow_symlinks=False):
            found.append(entry.path)
        else:
            reason = _kind(entry.stat(follow_symlinks=False).st_mode)
            refused.append((entry.name, f"snapshot skipped: {reason}"))
    return found, refused


def list_snapshot(directory: str) -> Snapshot:
    """The files of one snapshot directory (regular files only; the rest refused). A directory
    that cannot be listed has no files and says why in ``unreadable``."""
    files: dict[str, str] = {}
    refused: list[tuple[str, str]] = []
    try:
        entries = _scan(directory)
    except CaptureError as err:
        return Snapshot(os.path.basename(directory), directory, files, unreadable=err.reason)
    for entry in entries:
        mode = entry.stat(follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            if not stat.S_ISDIR(mode):
                refused.append((entry.name, _kind(mode)))
            continue
        name = entry.name
        base = name[: -len(_GZ)] if name.endswith(_GZ) else name
        if base not in files or not name.endswith(_GZ):
            files[base] = name
    return Snapshot(os.path.basename(directory), directory, files, refused)


def find_snapshots(directory: Path) -> Listing:
    """The snapshots of a capture directory (or of its one top directory, as a bundle holds it)."""
    root = os.fspath(directory)
    found, refused = _snapshot_entries(root)
    if not found and not refused:
        subdirs = [e for e in _scan(root) if e.is_dir(follow_symlinks=False)]
        if len(subdirs) == 1:
            inner, inner_refused = _snapshot_entries(subdirs[0].path)
            if inner or inner_refused:
                root, found, refused = subdirs[0].path, inner, inner_refused
    if not found:
        if _has_meta(root):
            raise CaptureError(root, "this is one snapshot directory: load its parent, the capture")
        why = f" ({refused[0][0]}: {refused[0][1]})" if refused else ""
        raise CaptureError(root, f"no snapshots in the capture (no snapshot directory){why}")
    return Listing(Path(root), [list_snapshot(d) for d in found], refused)
