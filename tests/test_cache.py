"""tcpmemlib.cache: never follows a link, never removes what it did not make, never fails a load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from tcpmemlib import cache
from tcpmemlib.capture import load_capture


def _load(path: Path, **kw: object):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_capture(path, **kw)  # type: ignore[arg-type]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("target", ["../victim", ".."])
def test_a_cache_that_is_a_symlink_is_not_used_and_nothing_outside_is_touched(
    small: Path, target: str
):
    victim = small.parent / "victim"
    victim.mkdir()
    for i in range(3):
        (victim / f"keep{i}.txt").write_text("precious\n")
    sibling = small.parent / "sibling"
    sibling.mkdir()
    (sibling / "data.txt").write_text("sibling\n")
    before = {p: _tree(p) for p in (victim, sibling, small)}
    (small / ".tcpmem-cache").symlink_to(target)
    with pytest.warns(UserWarning, match="symbolic link: the cache is not used"):
        first = load_capture(small)
    second = _load(small)
    assert {p: _tree(p) for p in (victim, sibling)} == {p: before[p] for p in (victim, sibling)}
    assert [e for e in _tree(small) if not e.startswith(".tcpmem-cache")] == before[small]
    assert len(first.meta) == len(second.meta) == 2


def test_cleanup_removes_only_its_own_entries(small: Path):
    _load(small)
    base = small / ".tcpmem-cache"
    (base / "notes.txt").write_text("a user's file\n")
    (base / "0123456789abcdef0123456789abcdef").mkdir()  # looks like a key, not complete
    alive = base / f".tmp-{os.getppid()}-writing"  # another live process's entry in progress
    alive.mkdir()
    outside = small.parent / "outside"
    outside.mkdir()
    (outside / "x").write_text("x\n")
    (base / "link").symlink_to(outside)
    (
        small / next(p.name for p in small.iterdir() if not p.name.startswith(".")) / "new.txt"
    ).write_text("changes the key\n")
    _load(small)
    names = sorted(p.name for p in base.iterdir())
    complete = [n for n in names if (base / n / "complete").exists()]
    assert len(complete) == 1
    for kept in ("notes.txt", "0123456789abcdef0123456789abcdef", alive.name, "link"):
        assert kept in names
    assert (outside / "x").exists()


def test_concurrent_first_loads_all_succeed(small: Path):
    code = (
        "import sys, warnings; warnings.simplefilter('ignore');"
        "from tcpmemlib import load_capture;"
        "c = load_capture(sys.argv[1]); print(len(c.sockets), len(c.meta))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(small)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [e for _, e in outs]
    assert len({o for o, _ in outs}) == 1
    base = small / ".tcpmem-cache"
    assert len([p for p in base.iterdir() if (p / "complete").exists()]) == 1
    assert not [p for p in base.iterdir() if p.name.startswith(".tmp-")]


def test_a_damaged_entry_is_a_miss_not_an_error(small: Path):
    first = _load(small)
    entry = next(p for p in (small / ".tcpmem-cache").iterdir() if (p / "complete").exists())
    dtypes = json.loads((entry / "dtypes.json").read_text())
    dtypes["meminfo"]["value"] = "no-such-dtype[ns]"
    (entry / "dtypes.json").write_text(json.dumps(dtypes))
    again = _load(small)
    pd.testing.assert_frame_equal(first.meminfo, again.meminfo)
    (entry / "meminfo.parquet").write_bytes(b"garbage")
    pd.testing.assert_frame_equal(first.meminfo, _load(small).meminfo)


def test_a_cut_part_of_socket_rows_is_a_miss(small: Path):
    """A part cut short is seen when the entry is opened, even where its rows would stay on disk
    (read only later, by the analyses): the capture is parsed again, every row there."""
    first = _load(small)
    entry = next(p for p in (small / ".tcpmem-cache").iterdir() if (p / "complete").exists())
    part = next(entry.glob("sockets-*.arrows"))
    part.write_bytes(part.read_bytes()[:-100])
    assert cache.load(small, entry.name, sockets="disk") is None
    again = _load(small, sockets="disk")
    assert again.sockets_on_disk and again.socket_rows == first.socket_rows
    assert sum(len(b) for b, _ in again.socket_batches(["skmem_w"])) == first.socket_rows


def test_the_key_covers_links_and_special_entries(small: Path):
    key = cache.capture_key(small)
    snap = next(p for p in small.iterdir() if not p.name.startswith("."))
    (small / "20991231T000000Z").symlink_to(snap)
    assert cache.capture_key(small) != key


@pytest.mark.parametrize("find", [True, False])
def test_the_key_follows_every_change_with_find_or_without(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, find: bool
):
    if not find:  # no `find` on PATH: the listing is made in Python
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    job = cache.KeyJob(small)
    assert (job.proc is not None) == find
    key = job.result()
    assert key is not None and cache.capture_key(small) == key
    (small / ".tcpmem-cache").mkdir()
    (small / ".tcpmem-cache" / "x").write_text("the cache's own entries are not the capture")
    assert cache.capture_key(small) == key
    link = tmp_path / "link"
    link.symlink_to(small)  # the capture's path itself may be a link
    assert cache.capture_key(link) == key
    snap = next(p for p in sorted(small.iterdir()) if not p.name.startswith("."))
    meminfo = snap / "meminfo.txt"
    st = meminfo.stat()
    os.utime(meminfo, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # touched, same size
    touched = cache.capture_key(small)
    assert touched not in (None, key)
    with meminfo.open("a") as f:
        f.write("x")
    grown = cache.capture_key(small)
    assert grown not in (None, key, touched)
    (snap / "new.txt").write_text("")
    assert cache.capture_key(small) not in (None, key, touched, grown)


def test_a_key_job_not_waited_for_is_stopped(small: Path):
    job = cache.KeyJob(small)
    proc = job.proc
    job.close()
    assert proc is not None and proc.returncode is not None and job.proc is None
