"""tcpmemlib.discovery and snapmeta: snapshots are directories inside the capture, read once."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest

from tcpmemlib.capture import load_capture
from tcpmemlib.discovery import find_snapshots
from tcpmemlib.errors import CaptureError


def _load(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_capture(path, cache=False)


def _snaps(capture: Path) -> list[Path]:
    return sorted(p for p in capture.iterdir() if not p.name.startswith("."))


def test_links_and_special_entries_are_named_not_followed(small: Path, tmp_path: Path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(_snaps(small)[0], outside)
    (small / "20300101T000000Z").symlink_to(outside)
    os.mkfifo(small / "20300102T000000Z")
    snap = _snaps(small)[0]
    (snap / "meminfo.txt").unlink()
    (snap / "meminfo.txt").symlink_to("/etc/hostname")
    cap = _load(small)
    assert len(cap.meta) == 2
    reasons = " ".join(str(r) for r in cap.problems["reason"])
    assert "a symbolic link: not followed" in reasons and "a FIFO" in reasons
    named = cap.problems[cap.problems["file"] == "meminfo.txt"]
    assert len(named) == 1 and "symbolic link" in named.iloc[0]["reason"]
    hostname = Path("/etc/hostname").read_text().strip()
    assert not any(hostname in str(r) for r in cap.problems["reason"])


def test_a_copied_snapshot_is_loaded_once(small: Path):
    first = _snaps(small)[0]
    shutil.copytree(first, small / "copy-of-first")
    cap = _load(small)
    assert len(cap.meta) == 2
    row = cap.problems[cap.problems["snapshot"] == "copy-of-first"].iloc[0]
    assert "the same start time and host" in row["reason"]


def test_one_wrapping_directory_is_looked_into(tmp_path: Path, small: Path):
    outer = tmp_path / "outer"
    outer.mkdir()
    shutil.move(small, outer / "tcpmem-vm")
    assert find_snapshots(outer).root == outer / "tcpmem-vm"
    assert len(_load(outer).meta) == 2


def test_one_snapshot_directory_is_named_as_such(small: Path):
    with pytest.raises(CaptureError, match="one snapshot directory"):
        load_capture(_snaps(small)[0], cache=False)
