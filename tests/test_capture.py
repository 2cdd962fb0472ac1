"""load_capture: a real collect.sh capture (fixture and live), every frame, bad input, cache, select.

The fixture tests/fixtures/captures/small is a real capture of a known workload (see its SOURCE.md):
per snapshot 23 sockets of one process named ``a b,"c" <img>``, 5 of them holding 65536 unread bytes.
Every test copies it to a temporary directory first (loading writes a cache beside the capture).
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import pandas as pd
import pytest
from worker_helpers import worker_children

from tcpmemlib import cache as cache_mod
from tcpmemlib import read_ss
from tcpmemlib.capture import FRAMES, Capture, load_capture
from tcpmemlib.errors import CaptureError

HERE = Path(__file__).resolve().parent
COLLECT = HERE.parent / "collect.sh"
HOSTILE = 'a b,"c" <img>'

# docs/design.md §2: columns of every frame besides ts, host (sockets: sock_id + read_ss columns).
DESIGN_COLUMNS = {
    "owners": ["sock_id", "pid", "comm", "fd"],
    "sockstat": [
        "sockets_used",
        "tcp_inuse",
        "tcp_orphan",
        "tcp_tw",
        "tcp_alloc",
        "tcp_mem_pages",
        "tcp_mem_bytes",
        "udp_inuse",
        "udp_mem_pages",
        "udp_mem_bytes",
        "udplite_inuse",
        "raw_inuse",
        "frag_inuse",
        "frag_memory_bytes",
        "tcp6_inuse",
        "udp6_inuse",
        "udplite6_inuse",
        "raw6_inuse",
        "frag6_inuse",
        "frag6_memory_bytes",
        "tcp_inuse_after",
        "tcp_mem_after_pages",
        "tcp_mem_after_bytes",
    ],
    "meminfo": ["field", "value", "unit"],
    "netns": [
        "netns",
        "pid",
        "name",
        "cgroup",
        "own",
        "read",
        "sockets_used",
        "tcp_inuse",
        "tcp_tw",
        "tcp_mem_pages",
    ],
    "processes": ["pid", "ppid", "uid", "rss_bytes", "vsz_bytes", "comm", "args"],
    "slab": [
        "name",
        "active_objs",
        "num_objs",
        "objsize_bytes",
        "objperslab",
        "pagesperslab",
        "active_slabs",
        "num_slabs",
        "active_bytes",
        "slab_bytes",
    ],
    "slab_aliases": ["cache", "target", "shown_as"],
    "protocols": [
        "protocol",
        "size_bytes",
        "sockets",
        "memory_pages",
        "press",
        "maxhdr_bytes",
        "slab",
    ],
    "netstat": ["file", "group", "counter", "value"],
    "zoneinfo": ["node", "zone", "cpu", "count_pages", "high_pages", "batch_pages"],
    "sysctl": ["name", "value"],
    "cgroups": ["cgroup", "key", "value_bytes"],
    "proc_cgroups": ["pid", "cgroup"],
    "meta": [
        "snapshot",
        "collector_version",
        "kernel",
        "ss_version",
        "page_size_bytes",
        "cpus",
        "start",
        "end",
        "user",
        "uid",
        "ss_oneline",
        "args_collected",
        "interval_s",
        "cgroup_version",
        "phase",
    ],
}


def _snapshots(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _load(path: Path, **kw: object) -> Capture:
    kw.setdefault("cache", False)
    return load_capture(path, **kw)  # type: ignore[arg-type]


def test_every_frame_has_design_columns_ts_and_host(small: Path):
    cap = _load(small)
    assert set(FRAMES) == set(DESIGN_COLUMNS) | {"sockets", "phases", "problems"}
    starts = {pd.Timestamp(p.name) for p in _snapshots(small)}
    for name, frame in cap.frames().items():
        if name in ("phases", "problems"):
            continue
        assert list(frame.columns[:2]) == ["ts", "host"], name
        assert str(frame["ts"].dtype) == "datetime64[ns, UTC]", name
        assert isinstance(frame["host"].dtype, pd.CategoricalDtype), name
        assert set(frame["host"].astype(str)) == {"vm"} or frame.empty, name
        assert not frame.empty or name == "netns", name  # netns: collector 2 and later
        assert set(frame["ts"]) <= starts, name
        if name in DESIGN_COLUMNS:
            assert list(frame.columns[2:]) == DESIGN_COLUMNS[name], name
    assert list(cap.phases.columns) == ["phase", "start", "end"]
    assert list(cap.problems.columns) == ["snapshot", "file", "line", "reason", "severity"]
    assert len(cap.meta) == 2 and cap.meta["phase"].isna().all()
    assert cap.page_size_bytes == 4096 and cap.cpus >= 1 and cap.host == "vm"


def test_sockets_match_the_known_workload(small: Path):
    cap = _load(small)
    sockets = cap.sockets
    assert sockets["sock_id"].is_unique and str(sockets["sock_id"].dtype) == "int64"
    assert list(sockets.columns[:3]) == ["ts", "host", "sock_id"]
    per_snapshot = sockets.groupby("ts").size()
    assert list(per_snapshot) == [23, 23]
    for _, snap in sockets.groupby("ts"):
        assert (snap["recv_q"] == 65536).sum() == 5
        assert set(snap.loc[snap["recv_q"] == 65536, "skmem_r"]) == {68032}
        assert (snap["state"] == "ESTAB").sum() == 20
        assert snap["netid"].astype(str).value_counts().to_dict() == {"tcp": 22, "udp": 1}
    owners = cap.owners
    assert set(owners["comm"]) == {HOSTILE}
    assert len(owners) == 46 and owners["sock_id"].isin(sockets["sock_id"]).all()
    assert set(cap.processes["comm"]) >= {HOSTILE}
    pid = int(owners["pid"].iloc[0])
    assert pid in set(cap.proc_cgroups["pid"])


def test_sockstat_bytes_use_the_captures_page_size(small: Path):
    cap = _load(small)
    row = cap.sockstat.iloc[0]
    text = (_snapshots(small)[0] / "sockstat.txt").read_text()
    pages = int(text.split("TCP:")[1].split(" mem ")[1].split()[0])
    assert row["tcp_mem_pages"] == pages and row["tcp_mem_bytes"] == pages * 4096
    assert row["tcp6_inuse"] == 1  # the ::1 listener, from sockstat6.txt
    for snap in _snapshots(small):
        meta = snap / "meta.txt"
        meta.write_text(meta.read_text().replace("page_size=4096", "page_size=65536"))
    big = _load(small)
    assert big.page_size_bytes == 65536
    assert big.sockstat["tcp_mem_bytes"].iloc[0] == pages * 65536
    slab4k = cap.slab.set_index(["ts", "name"])["slab_bytes"]
    slab64k = big.slab.set_index(["ts", "name"])["slab_bytes"]
    assert (slab64k == slab4k * 16).all()


def test_mixed_page_sizes_are_an_error_only_when_asked(small: Path):
    meta = _snapshots(small)[1] / "meta.txt"
    meta.write_text(meta.read_text().replace("page_size=4096", "page_size=16384"))
    cap = _load(small)
    assert list(cap.meta["page_size_bytes"]) == [4096, 16384]
    assert cap.sockstat["tcp_mem_bytes"].iloc[1] == cap.sockstat["tcp_mem_pages"].iloc[1] * 16384
    size_of = dict(zip(cap.meta["ts"], [4096, 16384], strict=True))
    slab = cap.slab.assign(size=cap.slab["ts"].map(size_of))
    pages = slab["num_slabs"] * slab["pagesperslab"]
    assert (slab["slab_bytes"] == pages * slab["size"]).all()  # each row its snapshot's size
    with pytest.raises(CaptureError, match="disagree on page size"):
        _ = cap.page_size_bytes


def test_an_unusable_page_size_leaves_the_bytes_na_and_says_so(small: Path):
    for snap in _snapshots(small):
        meta = snap / "meta.txt"
        meta.write_text(meta.read_text().replace("page_size=4096", "page_size=5000"))
    cap = _load(small)
    assert cap.slab["slab_bytes"].isna().all() and cap.sockstat["tcp_mem_bytes"].isna().all()
    said = cap.problems[cap.problems["reason"].str.contains("page size unusable")]
    assert len(said) == 2 and set(said["file"]) == {"meta.txt"}  # slab, sockstat: one row each


def _replicate(snap: Path, out: Path, n: int) -> Path:
    """``n`` copies of snapshot ``snap`` 10 s apart (meta.txt's times shifted, same length; the
    other files hard-linked)."""
    out.mkdir()
    lines = (snap / "meta.txt").read_text().splitlines()
    times = {
        k: pd.Timestamp(line[len(k) + 1 :])
        for line in lines
        for k in ("start", "end")
        if line.startswith(k + "=")
    }

    def iso(ts: pd.Timestamp) -> str:
        return ts.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts.value % 10**9:09d}Z"

    for i in range(n):
        shift = pd.Timedelta(seconds=10 * i)
        when = {k: iso(t + shift) for k, t in times.items()}
        copy = out / when["start"].replace("-", "").replace(":", "")
        copy.mkdir()
        for p in snap.iterdir():
            if p.name != "meta.txt":
                os.link(p, copy / p.name)
        key = [line.split("=", 1)[0] for line in lines]
        text = [f"{k}={when[k]}" if k in when else line for k, line in zip(key, lines, strict=True)]
        (copy / "meta.txt").write_text("\n".join(text) + "\n")
    return out


@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", [2, None])
def test_a_large_directory_starts_its_workers_before_listing(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int | None
):
    """210 snapshots: the workers start before the listing; used (workers=2) or stopped at once
    (None: the automatic choice is one process for so few socket bytes); same frames either way."""
    import tcpmemlib.capture as capture_mod

    capture = _replicate(_snapshots(small)[0], tmp_path / "many", 210)
    made: list[capture_mod.workers.Started] = []

    class Recorded(capture_mod.workers.Started):
        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, **kw)  # type: ignore[arg-type]
            made.append(self)

    monkeypatch.setattr(capture_mod.workers, "Started", Recorded)
    cap = _load(capture, workers=workers)
    assert len(made) == 1 and made[0].procs == [] and worker_children() == []
    one = _load(capture, workers=1, cache=False)
    assert len(made) == 1  # (workers=1: none started ahead)
    assert len(cap.meta) == 210 and cap.socket_rows == one.socket_rows
    for name in FRAMES:
        if name not in ("sockets", "owners"):
            pd.testing.assert_frame_equal(getattr(cap, name), getattr(one, name))


def test_phases_and_select(small: Path):
    first, second = (pd.Timestamp(p.name) for p in _snapshots(small))
    middle = first + (second - first) / 2
    (small / "phases.tsv").write_text(
        f"{first.isoformat()}\tbaseline\n{middle.isoformat()}\tqueued data\n"
    )
    cap = _load(small)
    assert list(cap.meta["phase"]) == ["baseline", "queued data"]
    later = cap.select(phase="queued data")
    assert list(later.meta["ts"]) == [second]
    for name, frame in later.frames().items():
        if "ts" in frame.columns and not (name == "netns" and frame.empty):
            assert set(frame["ts"]) == {second}, name
    assert len(later.sockets) == 23 and len(later.phases) == 1
    assert set(later.owners["sock_id"]) <= set(later.sockets["sock_id"])
    assert len(cap.select(start=second).meta) == 1
    assert len(cap.select(end=second).meta) == 1
    assert len(cap.select(start=first, end=second + pd.Timedelta("1s")).meta) == 2
    assert len(cap.select(start=str(second.tz_localize(None))).meta) == 1  # naive = UTC
    assert cap.select(phase="nope").sockets.empty


def test_truncated_file_is_a_problem_and_the_rest_loads(small: Path):
    snap = _snapshots(small)[0]
    data = (snap / "ss_tcp.txt.gz").read_bytes()
    (snap / "ss_tcp.txt.gz").write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cap = _load(small)
    errors = cap.problems[cap.problems["severity"] == "error"]
    assert len(errors) == 1
    assert errors.iloc[0]["file"] == "ss_tcp.txt.gz" and errors.iloc[0]["snapshot"] == snap.name
    assert "truncated gzip" in errors.iloc[0]["reason"]
    assert [w for w in caught if "ss_tcp.txt.gz" in str(w.message)]
    counts = cap.sockets.groupby("ts").size()
    # the cut snapshot keeps its UDP socket and the complete lines before the cut; the other all
    kept = int(errors.iloc[0]["reason"].split("its ")[1].split(" complete")[0])
    assert list(counts) == [1 + kept, 23] and 0 < kept < 22
    assert len(cap.meminfo.groupby("ts")) == 2 and len(cap.slab.groupby("ts")) == 2


def test_binary_garbage_in_one_file_names_the_line(small: Path):
    snap = _snapshots(small)[0]
    (snap / "meminfo.txt").write_bytes(b"MemTotal: 10 kB\nMemFree: 5 kB\n\x00\x01garbage\xff\n")
    with pytest.warns(UserWarning, match=r"meminfo\.txt:3: not loaded"):
        cap = _load(small)
    row = cap.problems[cap.problems["severity"] == "error"].iloc[0]
    assert row["file"] == "meminfo.txt" and row["line"] == 3 and "NUL" in row["reason"]
    assert cap.meminfo["ts"].nunique() == 1
    assert len(cap.sockets) == 46


def test_malformed_line_names_file_and_line(small: Path):
    snap = _snapshots(small)[1]
    (snap / "sockstat.txt").write_text("sockets: used 3\nTCP: inuse 1 orphan\n")
    with pytest.warns(UserWarning, match=r"sockstat\.txt:2"):
        cap = _load(small)
    row = cap.problems[cap.problems["severity"] == "error"].iloc[0]
    assert (row["snapshot"], row["file"], row["line"]) == (snap.name, "sockstat.txt", 2)
    assert "TCP: inuse 1 orphan" in row["reason"]
    assert len(cap.sockstat) == 2  # the second row still has its sockstat6 values
    assert pd.isna(cap.sockstat["tcp_inuse"].iloc[1]) and cap.sockstat["tcp6_inuse"].iloc[1] == 1


def test_missing_file_is_a_warning(small: Path):
    snap = _snapshots(small)[1]
    (snap / "zoneinfo.txt.gz").unlink()
    with pytest.warns(UserWarning, match=r"zoneinfo\.txt: file missing from the snapshot$"):
        cap = _load(small)
    with pytest.warns(UserWarning, match=r"zoneinfo\.txt: file missing from the snapshot$"):
        load_capture(small)  # writes the cache
    with pytest.warns(UserWarning, match=r"zoneinfo\.txt: file missing from the snapshot \(cached"):
        load_capture(small)  # the same warning from the cache
    warn = cap.problems[cap.problems["severity"] == "warning"]
    assert list(zip(warn["snapshot"], warn["file"], strict=True)) == [(snap.name, "zoneinfo.txt")]
    assert cap.zoneinfo["ts"].nunique() == 1


def test_collector_missing_lines_are_problems(small: Path):
    cap = _load(small)
    collector = cap.problems[cap.problems["severity"] == "collector"]
    assert len(collector) == 6  # 3 unreadable sysctls x 2 snapshots
    assert set(collector["file"]) == {"sysctl.txt"}
    assert collector["reason"].str.contains("net.ipv4.tcp_mem").any()
    assert collector["line"].isna().all()


def test_unreadable_meta_skips_only_that_snapshot(small: Path):
    snap = _snapshots(small)[0]
    (snap / "meta.txt").write_text("page_size=4096\ncpus=two\n")
    with pytest.warns(UserWarning, match=r"meta\.txt:2"):
        cap = _load(small)
    assert len(cap.meta) == 1 and cap.sockets["ts"].nunique() == 1
    row = cap.problems[cap.problems["severity"] == "error"].iloc[0]
    assert row["file"] == "meta.txt" and row["line"] == 2 and "skipped" in row["reason"]


def test_warnings_once_per_file(small: Path):
    for snap in _snapshots(small):
        path = snap / "sockstat.txt"
        path.write_text(path.read_text() + "QUIC: inuse 4\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cap = _load(small)
    about = [w for w in caught if "sockstat.txt" in str(w.message)]
    assert len(about) == 1 and "1 more" in str(about[0].message)
    assert (cap.problems["severity"] == "warning").sum() == 2


def test_owner_missing_from_ps_is_data_not_an_error(small: Path):
    for snap in _snapshots(small):
        ps = snap / "ps.txt"
        ps.write_text("".join(ln for ln in ps.read_text().splitlines(True) if HOSTILE not in ln))
    cap = _load(small)
    assert cap.problems[cap.problems["severity"] != "collector"].empty
    assert not cap.owners["pid"].isin(cap.processes["pid"]).any()


def test_empty_captures_raise(tmp_path: Path):
    with pytest.raises(CaptureError, match="no snapshots"):
        _load(tmp_path)
    (tmp_path / ".partial-20261125T000000.000000000Z").mkdir()
    (tmp_path / ".partial-20261125T000000.000000000Z" / "meta.txt").write_text("cpus=1\n")
    with pytest.raises(CaptureError, match="no snapshots"):
        _load(tmp_path)
    with pytest.raises(CaptureError, match="no such"):
        _load(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CaptureError, match="not a capture"):
        _load(tmp_path / "notes.txt")


def test_all_snapshots_unreadable_is_an_error(small: Path):
    for snap in _snapshots(small):
        (snap / "meta.txt").unlink()
    with pytest.raises(CaptureError, match=r"no snapshot with a readable meta\.txt"):
        _load(small)


def test_partial_snapshot_is_ignored(small: Path):
    partial = small / (".partial-" + _snapshots(small)[0].name)
    shutil.copytree(_snapshots(small)[0], partial)
    (partial / "sockstat.txt").write_text("garbage\n")
    cap = _load(small)
    assert len(cap.meta) == 2 and cap.problems[cap.problems["severity"] == "error"].empty


# ---------------------------------------------------------------------------------------------
# cache


def _assert_same(a: Capture, b: Capture) -> None:
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)


def test_cache_round_trip_and_invalidation(small: Path):
    cold = load_capture(small)
    entries = list((small / ".tcpmem-cache").iterdir())
    assert len(entries) == 1 and (entries[0] / "complete").exists()
    warm = load_capture(small)
    _assert_same(cold, warm)
    assert warm.sockets["owners"].iloc[1] == cold.sockets["owners"].iloc[1]
    assert isinstance(warm.sockets["owners"].iloc[1], tuple)
    # A changed capture gets a new key; the old entry is dropped.
    snap = _snapshots(small)[1]
    (snap / "sockstat.txt").write_text("sockets: used 3\nTCP: inuse 1 orphan\n")
    with pytest.warns(UserWarning, match="sockstat.txt"):
        changed = load_capture(small)
    assert (changed.problems["severity"] == "error").sum() == 1
    assert [p.name for p in (small / ".tcpmem-cache").iterdir()] != [entries[0].name]
    assert len(list((small / ".tcpmem-cache").iterdir())) == 1


def test_cache_unwritable_is_skipped(small: Path):
    (small / ".tcpmem-cache").write_text("a file where the cache directory would go")
    cap = load_capture(small)
    assert len(cap.sockets) == 46
    assert cache_mod.load(small, cache_mod.capture_key(small) or "") is None


def test_progress_bar_runs(small: Path, capsys: pytest.CaptureFixture[str]):
    cap = _load(small, progress=True)
    assert len(cap.meta) == 2
    assert "tcpmem load" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# bundles


def _bundle(src: Path, dest: Path, extra: list[tarfile.TarInfo] | None = None) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        for snap in _snapshots(src):
            tar.add(snap, arcname=snap.name)
        for info in extra or []:
            data = b"evil\n" if info.isfile() else None
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return dest


def test_bundle_loads_like_the_directory(small: Path, tmp_path: Path):
    bundle = _bundle(small, tmp_path / "cap.tar.gz")
    from_dir = _load(small)
    from_bundle = load_capture(bundle)
    _assert_same(from_dir, from_bundle)
    assert (tmp_path / "cap.tar.gz.tcpmem-cache").is_dir()
    _assert_same(from_bundle, load_capture(bundle))


def test_bundle_with_hostile_members(small: Path, tmp_path: Path):
    evil_dir = tmp_path / "x"
    evil_dir.mkdir()
    up = tarfile.TarInfo("../evil")
    absolute = tarfile.TarInfo("/tmp/tcpmem-test-absolute-evil")
    link = tarfile.TarInfo("20261125T000000.000000000Z/meta.txt")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    device = tarfile.TarInfo("dev-null")
    device.type = tarfile.CHRTYPE
    bundle = _bundle(small, evil_dir / "cap.tar.gz", [up, absolute, link, device])
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        cap = load_capture(bundle, cache=False)
    refused = cap.problems[cap.problems["severity"] == "error"]
    assert set(refused["file"]) == {
        "../evil",
        "/tmp/tcpmem-test-absolute-evil",
        "20261125T000000.000000000Z/meta.txt",
        "dev-null",
    }
    reasons = dict(zip(refused["file"], refused["reason"], strict=True))
    assert "'..'" in reasons["../evil"] and "absolute" in reasons["/tmp/tcpmem-test-absolute-evil"]
    assert "link" in reasons["20261125T000000.000000000Z/meta.txt"]
    assert "device" in reasons["dev-null"]
    assert not (tmp_path / "evil").exists() and not (evil_dir.parent / "evil").exists()
    assert not Path("/tmp/tcpmem-test-absolute-evil").exists()
    assert len(cap.meta) == 2 and len(cap.sockets) == 46


def test_truncated_bundle_keeps_what_came_before_the_cut(small: Path, tmp_path: Path):
    bundle = _bundle(small, tmp_path / "cap.tar.gz")
    whole = load_capture(bundle, cache=False)
    data = bundle.read_bytes()
    bundle.write_bytes(data[: len(data) * 9 // 10])  # the cut falls in the last snapshot
    with pytest.warns(UserWarning, match="the bundle ends here"):
        cap = load_capture(bundle, cache=False)
    errors = cap.problems[cap.problems["severity"] == "error"]
    cut = errors[errors["reason"].str.contains("the bundle ends here")]
    assert len(cut) == 1
    snapshot = Path(cut["file"].iloc[0]).parent.name
    assert snapshot == whole.meta["snapshot"].iloc[-1], "names the snapshot the cut falls in"
    missing = errors[(errors["snapshot"] == snapshot) & errors["reason"].str.contains("missing")]
    assert len(missing) >= 1, "the files after the cut are errors, not quiet warnings"
    first = whole.meta["snapshot"].iloc[0]
    for name in ("sockets", "meminfo", "slab"):  # the snapshots before the cut are whole
        before = getattr(whole, name)
        after = getattr(cap, name)
        ts = whole.meta.loc[whole.meta["snapshot"] == first, "ts"].iloc[0]
        assert len(after[after["ts"] == ts]) == len(before[before["ts"] == ts]), name
    # a cut before any snapshot is complete: an error naming the bundle, or the cut named
    bundle.write_bytes(data[:200])
    with pytest.raises(CaptureError) as info:
        load_capture(bundle, cache=False)
    assert str(bundle) in str(info.value)


# ---------------------------------------------------------------------------------------------
# a capture made live, now


@pytest.mark.slow
def test_live_capture_of_loopback_pairs(tmp_path: Path):
    from collect_helpers import LoopbackPairs

    out = tmp_path / "live"
    with LoopbackPairs(100, n_procs=2) as pairs:
        subprocess.run(
            ["sh", str(COLLECT), "-o", str(out), "-n", "2", "-i", "1", "-b"],
            check=True,
            timeout=120,
            capture_output=True,
        )
        pids = set(pairs.pids)
        ports = {h.port for h in pairs.holders}
    cap = load_capture(out)
    assert len(cap.meta) == 2
    mine = cap.owners[cap.owners["pid"].isin(pids)]
    sockets = cap.sockets.set_index("sock_id").loc[mine["sock_id"]]
    for _, snap in sockets.groupby("ts"):
        assert (snap["state"] == "ESTAB").sum() == 200
        assert (snap["state"] == "LISTEN").sum() == 2
        assert set(snap.loc[snap["state"] == "LISTEN", "local_port"].astype(int)) == ports
    assert pids <= set(cap.processes["pid"])
    assert cap.sockstat["tcp_inuse"].min() >= 202
    assert cap.page_size_bytes == os.sysconf("SC_PAGE_SIZE")
    assert cap.problems[cap.problems["severity"] == "error"].empty
    # collect.sh -b: the bundle beside the directory loads to the same frames.
    bundle = out.with_name(out.name + ".tar.gz")
    assert bundle.is_file()
    _assert_same(cap, load_capture(bundle))


def test_gzip_and_plain_files_are_alike(small: Path):
    snap = _snapshots(small)[0]
    plain = snap / "meminfo.txt"
    (snap / "meminfo.txt.gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    cap = _load(small)
    assert cap.meminfo["ts"].nunique() == 2 and cap.problems["severity"].ne("error").all()


def test_worker_processes_give_the_same_frames(small: Path):
    one = _load(small, workers=1)
    two = _load(small, workers=2)  # two chunks of one snapshot, each parsed in a spawned worker
    _assert_same(one, two)
    snap = _snapshots(small)[1]
    (snap / "netstat.txt").write_text("TcpExt: A B\nTcpExt: 1\n")
    with pytest.warns(UserWarning, match=r"netstat\.txt:2"):
        broken = _load(small, workers=2)
    row = broken.problems[broken.problems["severity"] == "error"].iloc[0]
    assert (row["snapshot"], row["file"], row["line"]) == (snap.name, "netstat.txt", 2)
    assert worker_children() == []


def test_cached_load_warns_again_and_single_snapshot_is_explained(small: Path):
    snap = _snapshots(small)[0]
    (snap / "meminfo.txt").write_bytes(b"\x00")
    with pytest.warns(UserWarning, match="meminfo.txt"):
        load_capture(small)
    with pytest.warns(UserWarning, match=r"meminfo\.txt.*cached"):
        load_capture(small)
    with pytest.raises(CaptureError, match="one snapshot directory"):
        _load(snap)


def test_mixed_hosts(small: Path):
    meta = _snapshots(small)[1] / "meta.txt"
    meta.write_text(meta.read_text().replace("hostname=vm", "hostname=db 2"))
    cap = _load(small)
    assert sorted(cap.sockets["host"].astype(str).unique()) == ["db 2", "vm"]
    with pytest.raises(CaptureError, match="disagree on host"):
        _ = cap.host
    second = cap.select(start=pd.Timestamp(_snapshots(small)[1].name))
    assert set(second.sockets["host"].astype(str)) == {"db 2"} and len(second.sockets) == 23
    assert second.host == "db 2"


def test_cache_round_trip_with_empty_frames(small: Path):
    import re

    for snap in _snapshots(small):
        for name in ("ss_tcp.txt.gz", "ss_udp.txt.gz"):
            text = gzip.decompress((snap / name).read_bytes()).decode()
            text = re.sub(r'users:\(\(".*?",pid=\d+,fd=\d+\)\) ', "", text)
            (snap / name).write_bytes(gzip.compress(text.encode()))
        (snap / "cgroups.txt").write_text("")
    cold = load_capture(small)
    assert cold.owners.empty and cold.cgroups.empty and len(cold.sockets) == 46
    _assert_same(cold, load_capture(small))


def test_progress_bar_turns_itself_on_for_large_captures(
    small: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    import tcpmemlib.capture as capture_mod

    _load(small)
    assert "tcpmem load" not in capsys.readouterr().err  # small: no bar
    monkeypatch.setattr(capture_mod, "PROGRESS_MIN_BYTES", 1)
    _load(small)
    assert "tcpmem load" in capsys.readouterr().err


def test_default_workers_for_large_captures_everywhere_but_in_a_worker(tmp_path: Path):
    """Workers are `python -m tcpmemlib.workers` processes: a plain script gets them too."""
    from tcpmemlib.capture import auto_workers

    assert auto_workers(1) == 1
    code = "from tcpmemlib.capture import auto_workers; print(auto_workers(1 << 40))"
    script = tmp_path / "unguarded.py"
    script.write_text(code + "\n")
    want = "2" if (os.cpu_count() or 1) > 1 else "1"
    for args, env in (
        (["-c", code], {}),
        ([str(script)], {}),
        (["-c", code], {"TCPMEM_WORKER": "1"}),
    ):
        run = subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, env={**os.environ, **env}
        )
        assert run.stdout.strip() == ("1" if env else want), (args, env, run.stderr)


def test_an_unguarded_script_with_workers_runs_once(small: Path, tmp_path: Path):
    """multiprocessing's spawned workers would import this script again and run it in each
    worker; tcpmemlib's workers import nothing of the caller."""
    marker = tmp_path / "runs.txt"
    script = tmp_path / "unguarded.py"
    script.write_text(
        f"open({str(marker)!r}, 'a').write('run\\n')\n"
        "import tcpmemlib\n"
        f"cap = tcpmemlib.load_capture({str(small)!r}, cache=False, workers=2)\n"
        "print(len(cap.sockets), len(cap.meminfo))\n"
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert marker.read_text() == "run\n"
    one = _load(small, workers=1)
    assert run.stdout.split() == [str(len(one.sockets)), str(len(one.meminfo))]


def test_an_error_in_a_worker_is_raised_in_the_caller(tmp_path: Path):
    from tcpmemlib.chunks import ChunkTask
    from tcpmemlib.workers import WorkerError, run_ordered

    tasks = [ChunkTask([(0, "not a snapshot")], str(tmp_path), 0), ChunkTask([], str(tmp_path), 1)]
    with pytest.raises(WorkerError, match=r"AttributeError: .*dir"):
        list(run_ordered("tcpmemlib.chunks:load_chunk", tasks, 2))
    assert worker_children() == []


def test_batched_rows_land_in_their_own_snapshot_and_file(small: Path):
    """load_capture parses many ss files in one read_ss call and finds each row's file from its
    line number: headers, blank lines and a cut last line (no newline) must not shift rows; the
    cut line is named, not loaded."""
    snaps = _snapshots(small)
    header = "State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
    tcp0 = snaps[0] / "ss_tcp.txt.gz"
    udp1 = snaps[1] / "ss_udp.txt.gz"
    tcp0.write_bytes(gzip.compress(
        ("\n\n" + header + gzip.decompress(tcp0.read_bytes()).decode() + "\n\n\n").encode()
    ))  # fmt: skip
    udp1.write_bytes(gzip.compress(gzip.decompress(udp1.read_bytes()).rstrip(b"\n")))
    want = {}
    for snap in snaps:
        for base, kind in (("ss_tcp.txt.gz", "tcp"), ("ss_udp.txt.gz", "udp")):
            want[(pd.Timestamp(snap.name), kind)] = len(read_ss(snap / base))
    assert all(want.values())
    want[(pd.Timestamp(snaps[1].name), "udp")] -= 1  # its last line has no newline: cut
    cap = _load(small)
    got = cap.sockets.groupby(["ts", cap.sockets["netid"].astype(str)], observed=True).size()
    assert {k: int(v) for k, v in got.items() if v} == {k: v for k, v in want.items() if v}
    errors = cap.problems[cap.problems["severity"] == "error"]
    assert list(errors["file"]) == ["ss_udp.txt.gz"] and "no newline" in errors.iloc[0]["reason"]
