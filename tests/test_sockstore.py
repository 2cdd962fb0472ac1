"""Socket rows on disk (tcpmemlib.sockstore): the same rows as in memory, batches of whole
snapshots, select, files that outlive their cache entry, no temporary file left behind.

The capture is the bundled real sample (data/sample.tar.gz: 21 snapshots, ~44k socket rows), copied
to a temporary directory (loading writes a cache beside it). ``SS_BATCH_BYTES`` is made tiny so that
a cold load streams one Parquet row group per snapshot: many batches.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tcpmemlib import cache as cache_mod
from tcpmemlib import capture as capture_mod
from tcpmemlib import model, schema, sockstore
from tcpmemlib.capture import FRAMES, Capture, load_capture

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.tar.gz"


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    dest = tmp_path / "sample.tar.gz"
    shutil.copy(SAMPLE, dest)
    return dest


@pytest.fixture
def many_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture_mod, "SS_BATCH_BYTES", 1)  # one snapshot per chunk and row group


@pytest.fixture(scope="module")
def memory() -> Capture:
    return load_capture(SAMPLE, cache=False, sockets="memory")


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as strings: categories differ between batches, values must not."""
    out = frame.copy()
    for column, dtype in frame.dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype) and column != "host":
            out[column] = frame[column].astype("string")
    return out.reset_index(drop=True)


def _assert_same(a: Capture, b: Capture) -> None:
    for name in FRAMES:
        if name in ("sockets", "owners"):
            pd.testing.assert_frame_equal(
                _plain(getattr(a, name)), _plain(getattr(b, name)), obj=name
            )
        else:
            pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)


def test_disk_rows_are_the_memory_rows(sample: Path, memory: Capture, many_batches: None):
    no_cache = load_capture(sample, cache=False, sockets="disk")
    streamed = load_capture(sample, sockets="disk")  # cold: rows streamed into the cache entry
    warm = load_capture(sample, sockets="disk")
    warm_memory = load_capture(sample, sockets="memory")
    assert memory.socket_rows == 44105 and not memory.sockets_on_disk
    for cap in (no_cache, streamed, warm):
        assert cap.sockets_on_disk and cap.socket_rows == memory.socket_rows
        _assert_same(memory, cap)
    assert not warm_memory.sockets_on_disk
    _assert_same(memory, warm_memory)
    assert isinstance(warm.sockets["owners"].iloc[0], tuple)
    assert "on disk" in repr(warm) and "44105" in repr(warm)


def test_batches_are_whole_snapshots_in_time_order(sample: Path, many_batches: None):
    cap = load_capture(sample, cache=False, sockets="disk")
    seen: list[pd.Timestamp] = []
    rows = 0
    batches = list(cap.socket_batches(["skmem_r", "state"], owners=True))
    assert len(batches) == len(cap.meta) > 1
    for sockets, owners in batches:
        assert list(sockets.columns) == ["ts", "host", "sock_id", "state", "skmem_r"]
        stamps = sorted(set(sockets["ts"]))
        assert not seen or stamps[0] > seen[-1]
        seen += stamps
        rows += len(sockets)
        assert owners is not None and set(owners["sock_id"]) <= set(sockets["sock_id"])
    assert rows == cap.socket_rows
    whole = cap.owners
    assert sum(len(o) for _, o in batches if o is not None) == len(whole)
    # every snapshot with sockets, once each
    assert seen == sorted(set(cap.meta["ts"]) & set(seen)) and len(seen) == len(set(seen))
    with pytest.raises(KeyError, match="no such socket column: nope"):
        next(cap.socket_batches(["nope"]))


def test_memory_batches_cut_only_between_snapshots(memory: Capture):
    sizes = memory.sockets.groupby("ts").size()
    total = 0
    for sockets, owners in memory.socket_batches(["skmem_w"], owners=True, batch_rows=3000):
        for ts, n in sockets.groupby("ts").size().items():
            assert n == sizes[ts]  # no snapshot split over two batches
        assert owners is not None and set(owners["sock_id"]) <= set(sockets["sock_id"])
        total += len(sockets)
    assert total == len(memory.sockets)
    assert len(list(memory.socket_batches(batch_rows=3000))) > 5


def test_select_on_disk_reads_only_the_chosen_snapshots(
    sample: Path, memory: Capture, many_batches: None
):
    disk = load_capture(sample, cache=False, sockets="disk")
    phase = str(memory.meta["phase"].dropna().iloc[-1])
    a, b = memory.select(phase=phase), disk.select(phase=phase)
    assert b.sockets_on_disk and 0 < b.socket_rows < disk.socket_rows
    _assert_same(a, b)
    late = disk.meta["ts"].iloc[10]
    _assert_same(memory.select(start=late), disk.select(start=late))
    assert disk.select(start="2100-01-01").socket_rows == 0
    assert len(disk.select(start="2100-01-01").sockets) == 0


def test_rows_outlive_their_cache_entry(sample: Path, many_batches: None):
    cap = load_capture(sample, sockets="disk")
    before = _plain(cap.sockets)
    shutil.rmtree(cache_mod.cache_dir(sample))  # what a changed capture's next load does
    again = load_capture(sample, sockets="disk")  # parses again, a new entry
    pd.testing.assert_frame_equal(_plain(cap.sockets), before)
    pd.testing.assert_frame_equal(_plain(again.sockets), before)


def test_no_temporary_file_left_without_a_cache(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    cap = load_capture(sample, cache=False, sockets="disk")
    assert list(private.iterdir()) == []  # unlinked at once: the open file is what is read
    assert cap.socket_rows == sum(len(s) for s, _ in cap.socket_batches(["skmem_r"]))
    assert not (sample.parent / (sample.name + ".tcpmem-cache")).exists()


def test_auto_leaves_large_captures_on_disk(sample: Path, monkeypatch: pytest.MonkeyPatch):
    assert not load_capture(sample).sockets_on_disk  # cold, small: in memory
    assert not load_capture(sample).sockets_on_disk  # warm, small
    monkeypatch.setattr(cache_mod, "ON_DISK_MIN_ROWS", 1000)
    assert load_capture(sample).sockets_on_disk  # warm, "large"
    monkeypatch.setattr(capture_mod, "ON_DISK_MIN_SS_BYTES", 1000)
    assert load_capture(sample, cache=False).sockets_on_disk  # cold, "large"
    with pytest.raises(ValueError, match="sockets must be one of auto, memory, disk"):
        load_capture(sample, sockets="ram")


def test_setting_frames_moves_rows_to_memory_and_forgets_the_memo(sample: Path):
    cap = load_capture(sample, cache=False, sockets="disk")
    calls = []
    assert cap.memo("k", lambda: calls.append(1) or 41) == 41
    assert cap.memo("k", lambda: calls.append(1) or 42) == 41 and calls == [1]
    cut = cap.sockets.iloc[:100]
    cap.sockets = cut
    assert not cap.sockets_on_disk and cap.socket_rows == 100
    assert len(cap.owners) > 0  # owners kept (read from disk once)
    assert cap.memo("k", lambda: 43) == 43


def test_parts_round_trip(tmp_path: Path, memory: Capture):
    """Rows written as several parts (each with its own owner codes) read back as they were:
    sock_id numbered in snapshot order across parts, each owner tuple back on its socket."""
    sockets = memory.sockets[memory.sockets["ts"].isin(memory.meta["ts"].iloc[:5])]
    sockets = sockets.reset_index(drop=True)
    snapshot, pairs = pd.factorize(sockets["ts"])
    cuts = np.flatnonzero(np.diff(snapshot)) + 1  # one part per snapshot
    parts = []
    for part, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, len(sockets)], strict=True)):
        rows = sockets.iloc[lo:hi]
        codes, uniques = pd.factorize(rows["owners"].to_numpy(), use_na_sentinel=False)
        writer = sockstore.PartWriter(tmp_path, part, schema.socket_rows_template())
        writer.write(rows, snapshot[lo:hi], codes)
        parts.append(writer.close([tuple(u) if u else () for u in uniques]))
    hosts = pd.Categorical(["vm"] * len(pairs), dtype=memory.meta["host"].dtype)
    sockstore.write_index(tmp_path, parts, pd.array(pairs), hosts)
    template = schema.sockets_template(memory.meta["host"].dtype)
    back = sockstore.read_memory(sockstore.open_rows(tmp_path, template))
    pd.testing.assert_frame_equal(_plain(back.sockets), _plain(sockets))
    disk = sockstore.open_rows(tmp_path, template)
    assert len(disk.parts) == 5 and disk.rows == len(sockets)
    owners = pd.concat([o for _, o in disk.batches(owners=True)], ignore_index=True)
    want = memory.owners[memory.owners["sock_id"].isin(sockets["sock_id"])]
    assert len(owners) == len(want)
    np.testing.assert_array_equal(owners["pid"].to_numpy(), want["pid"].to_numpy())
    np.testing.assert_array_equal(owners["sock_id"].to_numpy(), want["sock_id"].to_numpy())
    names = sorted(os.listdir(tmp_path))
    assert names == [
        *(f"owners-{k:05d}.json" for k in range(5)),
        "socket_index.parquet",
        *(f"sockets-{k:05d}.arrows" for k in range(5)),
    ]
    assert sockstore.part_files(tmp_path) == [f"sockets-{k:05d}.arrows" for k in range(5)]


def test_a_part_refuses_rows_out_of_snapshot_order(tmp_path: Path, memory: Capture):
    rows = memory.sockets.iloc[:10]
    writer = sockstore.PartWriter(tmp_path, 0, schema.socket_rows_template())
    writer.write(rows, np.full(10, 3), np.zeros(10, dtype=np.int64))
    with pytest.raises(ValueError, match="snapshot order"):
        writer.write(rows, np.full(10, 2), np.zeros(10, dtype=np.int64))


# ------------------------------------------------------------- the small real capture, edge cases
def _snapshot_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_mixed_hosts_select_on_disk(small: Path):
    meta = _snapshot_dirs(small)[1] / "meta.txt"
    meta.write_text(meta.read_text().replace("hostname=vm", "hostname=db 2"))
    memory = load_capture(small, cache=False, sockets="memory")
    disk = load_capture(small, cache=False, sockets="disk")
    _assert_same(memory, disk)
    start = pd.Timestamp(_snapshot_dirs(small)[1].name)
    second = disk.select(start=start)
    assert second.socket_rows == 23 and set(second.sockets["host"].astype(str)) == {"db 2"}
    _assert_same(memory.select(start=start), second)


def test_a_bad_ss_file_on_disk_is_a_problem_like_in_memory(small: Path, many_batches: None):
    import gzip

    path = _snapshot_dirs(small)[0] / "ss_tcp.txt.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    lines[3] = "ESTAB 0 0 garbage\n"
    path.write_bytes(gzip.compress("".join(lines).encode()))
    with pytest.warns(UserWarning, match=r"ss_tcp\.txt\.gz:4"):
        memory = load_capture(small, cache=False, sockets="memory")
    with pytest.warns(UserWarning, match=r"ss_tcp\.txt\.gz:4"):
        disk = load_capture(small, sockets="disk")
    _assert_same(memory, disk)
    row = disk.problems[disk.problems["severity"] == "error"].iloc[0]
    assert (row["file"], row["line"]) == ("ss_tcp.txt.gz", 4)
    assert disk.socket_rows == memory.socket_rows < 46  # that file's rows only are missing
    assert disk.select(start=pd.Timestamp(_snapshot_dirs(small)[1].name)).socket_rows == 23


def _warnings(load: Any) -> tuple[Capture, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cap = load()
    return cap, sorted(str(w.message) for w in caught)


def test_a_capture_without_sockets_on_disk(small: Path):
    for snap in _snapshot_dirs(small):
        for name in ("ss_tcp.txt.gz", "ss_udp.txt.gz"):
            (snap / name).unlink()
    first = _snapshot_dirs(small)[0].name
    said = [
        f"tcpmem: {first}/{f}: file missing from the snapshot (and 1 more)"
        for f in ("ss_tcp.txt", "ss_udp.txt")
    ]
    disk, cold = _warnings(lambda: load_capture(small, sockets="disk"))
    assert cold == said
    missing = disk.problems[disk.problems["file"].isin(["ss_tcp.txt", "ss_udp.txt"])]
    assert len(missing) == 4 and set(missing["severity"]) == {"warning"}
    assert disk.sockets_on_disk and disk.socket_rows == 0
    assert list(disk.socket_batches()) == []
    memory, _ = _warnings(lambda: load_capture(small, cache=False, sockets="memory"))
    _assert_same(memory, disk)
    warm, cached = _warnings(lambda: load_capture(small, sockets="disk"))
    assert cached == [m + " (cached)" for m in said]
    assert warm.socket_rows == 0 and len(warm.sockets) == 0 and len(warm.owners) == 0


def test_unwritable_cache_puts_rows_in_a_temporary_file(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (small / ".tcpmem-cache").write_text("a file where the cache directory would go")
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    disk = load_capture(small, sockets="disk")
    assert disk.sockets_on_disk and disk.socket_rows == 46 and list(private.iterdir()) == []
    _assert_same(load_capture(small, cache=False, sockets="memory"), disk)


def test_reading_many_rows_whole_warns_once(sample: Path, monkeypatch: pytest.MonkeyPatch):
    cap = load_capture(sample, cache=False, sockets="disk")
    _, said = _warnings(lambda: cap.sockets)
    assert said == []  # 44k rows: no warning
    monkeypatch.setattr(model, "LARGE_READ_ROWS", 40_000)
    _, said = _warnings(lambda: (cap.sockets, cap.owners))
    assert len(said) == 1 and "reads all 44,105 socket rows from disk" in said[0]
    assert "socket_batches" in said[0]


def test_a_part_changed_on_disk_is_a_capture_error_naming_it(sample: Path):
    from tcpmemlib.errors import CaptureError

    cap = load_capture(sample, sockets="disk")
    (part,) = sorted((sample.parent / "sample.tar.gz.tcpmem-cache").glob("*/sockets-*.arrows"))[:1]
    data = bytearray(part.read_bytes())
    data[5000:5200] = b"x" * 200
    part.write_bytes(bytes(data))  # in place: the capture's map sees it
    with pytest.raises(CaptureError, match=r"sockets-\d{5}\.arrows: socket rows unreadable"):
        sum(len(b) for b, _ in cap.socket_batches(["skmem_w"]))
