"""Hostile captures, one test per defect of issue 10 (numbers as there).

Every load runs in a loader process with a timeout and an address-space limit
(``damage_helpers.Loader``), so a hang or a runaway read fails the test instead of stopping the
suite. The capture is real: collect.sh in a network namespace of its own with 15 loopback pairs.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from damage_helpers import (
    PRISTINE_SNAPSHOTS,
    Loader,
    Result,
    edit_file,
    file_stem,
    grow_capture,
    make_bundle,
    named,
    rows_of,
    snapshot_dirs,
    snapshot_name_plus,
    tree_state,
    world_dir,
)

N_SNAPSHOTS = PRISTINE_SNAPSHOTS  # the shared ``pristine`` capture (tests/conftest.py)
HANG_S = 60.0  # a load of this capture takes well under a second; a minute is a hang
FIFO_HANG_S = 20.0  # where a hang is the expected failure, it costs less

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    path = world_dir("tcpmem-hostile-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def loader() -> Iterator[Loader]:
    with Loader() as ld:
        yield ld


@pytest.fixture
def cap(tmp_path: Path, pristine: Path) -> Path:
    dest = tmp_path / "area" / "capture"
    shutil.copytree(pristine, dest, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def baseline(base: Path, pristine: Path, loader: Loader) -> dict[str, Any]:
    copy = base / "baseline"
    shutil.copytree(pristine, copy, symlinks=True)
    res = loader.load(copy, cache=False, workers=1)
    assert res.ok, res.describe()
    return res.summary


def loaded(res: Result) -> dict[str, Any]:
    """The summary of a load that must have succeeded (the failure says how it did not)."""
    assert not res.hung, res.describe()
    assert not res.died, res.describe()
    assert res.ok, res.describe()
    return res.summary


def not_foreign(res: Result) -> None:
    """The load ended, and only a TcpmemError (if anything) escaped."""
    assert not res.hung, res.describe()
    assert not res.died, res.describe()
    assert res.ok or res.tcpmem, f"a foreign exception escaped: {res.describe()}"


def names_file(problems: list[dict[str, Any]], file: str) -> bool:
    """True if a problems row names ``file`` (any snapshot; X and X.gz alike)."""
    return any(
        file_stem(os.path.basename(r.get("file") or "")) == file_stem(file) for r in problems
    )


def harm(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Entries of ``before`` (a ``tree_state``) removed or changed in ``after``."""
    return sorted(k for k in before if after.get(k) != before[k])


# --- 1. a .tcpmem-cache that is a symlink never removes anything outside the capture


@pytest.mark.parametrize("target", ["../victim", ".."])
def test_cache_symlink_removes_nothing_outside(
    cap: Path, pristine: Path, loader: Loader, target: str
) -> None:
    area = cap.parent
    victim = area / "victim"
    (victim / "keep").mkdir(parents=True)
    (victim / "precious.txt").write_text("must survive\n")
    (victim / "keep" / "data.bin").write_bytes(b"\x00\x01" * 100)
    shutil.copytree(pristine, area / "sibling", symlinks=True)
    (cap / ".tcpmem-cache").symlink_to(target)
    before = tree_state(area)
    for _ in range(2):  # the second load finds what the first left
        res = loader.load(cap, timeout_s=HANG_S)
        # the link itself stays; nothing reached through it is removed or rewritten
        assert harm(before, tree_state(area)) == []
        assert len(loaded(res)["snapshots"]) == N_SNAPSHOTS


def test_bundle_cache_symlink_removes_nothing_outside(
    tmp_path: Path, pristine: Path, loader: Loader
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("must survive\n")
    (victim / "old-entry").mkdir()
    (victim / "old-entry" / "x").write_text("x\n")
    bundle = make_bundle(pristine, tmp_path / "capture.tar.gz")
    (tmp_path / "capture.tar.gz.tcpmem-cache").symlink_to("victim")
    before = tree_state(victim)
    res = loader.load(bundle, timeout_s=HANG_S)
    assert harm(before, tree_state(victim)) == []
    assert len(loaded(res)["snapshots"]) == N_SNAPSHOTS


def test_cache_keeps_what_it_did_not_create(cap: Path, loader: Loader) -> None:
    """Entries in .tcpmem-cache that the cache did not write (a user's file, a directory, a link
    to a directory elsewhere) survive a load that writes a new entry."""
    outside = cap.parent / "elsewhere"
    outside.mkdir()
    (outside / "file.txt").write_text("keep me\n")
    cache = cap / ".tcpmem-cache"
    cache.mkdir()
    (cache / "NOTES.txt").write_text("my notes\n")
    (cache / "mine").mkdir()
    (cache / "mine" / "x.txt").write_text("mine\n")
    (cache / "link-out").symlink_to(outside)
    before = {**tree_state(cache), **{f"out/{k}": v for k, v in tree_state(outside).items()}}
    res = loader.load(cap, timeout_s=HANG_S)
    assert len(loaded(res)["snapshots"]) == N_SNAPSHOTS
    after = {**tree_state(cache), **{f"out/{k}": v for k, v in tree_state(outside).items()}}
    assert harm(before, after) == [], "the cache removed or changed what it did not create"


# --- 2. concurrent first loads of one capture all succeed, with equal results


def test_concurrent_first_loads(tmp_path: Path, pristine: Path) -> None:
    n = 6
    loaders = [Loader() for _ in range(n)]
    try:
        warm = tmp_path / "warm"
        shutil.copytree(pristine, warm, symlinks=True)
        for ld in loaders:  # imports done: the loads below start together
            loaded(ld.load(warm, cache=False, timeout_s=HANG_S))
        for round_ in range(4):
            copy = tmp_path / f"round-{round_}"
            shutil.copytree(pristine, copy, symlinks=True)
            for i, ld in enumerate(loaders):  # "disk": socket rows streamed into the entry
                assert ld.send(copy, cache=True, sockets="disk" if i % 2 else "memory")
                time.sleep(0.04 * round_)  # 0, 40, 80 ms apart: one's cleanup meets another's write
            results = [ld.receive(HANG_S) for ld in loaders]
            summaries = [loaded(r) for r in results]
            first = summaries[0]
            for s in summaries[1:]:
                assert s["frames"] == first["frames"]
                assert sorted(map(str, s["problems"])) == sorted(map(str, first["problems"]))
            assert len(first["snapshots"]) == N_SNAPSHOTS
            again = loaded(loaders[0].load(copy, cache=True, timeout_s=HANG_S))
            assert again["frames"] == first["frames"]
    finally:
        for ld in loaders:
            ld.close()


# --- 5. a transient failure while extracting a bundle is not cached


def test_transient_extract_failure_is_not_cached(tmp_path: Path, pristine: Path) -> None:
    """The first load extracts into a 96 KiB tmpfs (TMPDIR, in a private mount namespace): it
    cannot hold the bundle's files. After that, a load with room gives every snapshot."""
    bundle = make_bundle(pristine, tmp_path / "capture.tar.gz")
    small = tmp_path / "small-tmp"
    small.mkdir()
    mount = f'mount -t tmpfs -o size=96k,mode=1777 tcpmem-test {small} && exec "$@"'
    wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh"]
    with Loader(wrapper=wrapper, env={"TMPDIR": str(small)}) as tight:
        first = tight.load(bundle, timeout_s=HANG_S)
    not_foreign(first)
    if first.ok and len(first.summary["snapshots"]) < N_SNAPSHOTS:
        errors = [r for r in first.problems if r["severity"] == "error"]
        assert errors, "a bundle extracted in part, with no problem reported"
    with Loader() as roomy:
        later = loaded(roomy.load(bundle, timeout_s=HANG_S))
    assert len(later["snapshots"]) == N_SNAPSHOTS, (
        f"{len(later['snapshots'])} snapshots: the partial load was cached"
    )


# --- 7. truncation is never silent


def test_ss_cut_mid_line_in_the_info_tail_is_named(
    cap: Path, loader: Loader, baseline: dict[str, Any]
) -> None:
    snap = snapshot_dirs(cap)[1]
    path = snap / "ss_tcp.txt.gz"
    text = gzip.decompress(path.read_bytes())
    lines = text.splitlines(keepends=True)
    mid = len(lines) // 2
    start = sum(len(x) for x in lines[:mid])
    tail = lines[mid].index(b"rtt:")  # inside the -i tail, after skmem
    path.write_bytes(gzip.compress(text[: start + tail + 6]))
    res = loaded(loader.load(cap, cache=False, timeout_s=HANG_S))
    assert named(res["problems"], snap.name, "ss_tcp.txt"), res["problems"]
    # the whole lines before the cut are still read
    assert rows_of(res, "sockets", snap.name) >= mid


def _tar_member_offsets(tar_bytes: bytes) -> list[tuple[str, int]]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return [(m.name, m.offset) for m in tar.getmembers()]


def test_tar_stream_ending_at_a_member_header_is_named(
    tmp_path: Path, pristine: Path, loader: Loader
) -> None:
    bundle = make_bundle(pristine, tmp_path / "whole.tar.gz")
    tar_bytes = gzip.decompress(bundle.read_bytes())
    names = [p.name for p in snapshot_dirs(pristine)]
    members = _tar_member_offsets(tar_bytes)
    # the header of the third file of the third snapshot, and nothing after it
    in_third = [
        (m, off) for m, off in members if m.startswith(names[2] + "/") and m != names[2] + "/"
    ]
    member, offset = in_third[2]
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(gzip.compress(tar_bytes[: offset + 512]))
    res = loader.load(cut, cache=False, timeout_s=HANG_S)
    not_foreign(res)
    summary = loaded(res)
    assert named(summary["problems"], names[2]), (
        f"a bundle cut at {member}'s header: snapshot {names[2]} not named: {summary['problems']}"
    )
    assert {names[0], names[1]} <= set(summary["snapshots"])


# --- 8. numbers that do not fit, and a cache entry that cannot be read


BIG = [2**63, 2**64 + 5]


def _big_meminfo(text: bytes, value: int) -> bytes:
    return re.sub(
        rb"^(MemTotal:\s+)\d+", rb"\g<1>" + str(value).encode(), text, count=1, flags=re.M
    )


def _big_sockstat(text: bytes, value: int) -> bytes:
    return re.sub(rb"^(TCP: inuse )\d+", rb"\g<1>" + str(value).encode(), text, count=1, flags=re.M)


def _big_ps(text: bytes, value: int) -> bytes:
    lines = text.split(b"\n")
    fields = lines[1].split()
    fields[2] = str(value).encode()  # RSS of the first process
    lines[1] = b" ".join(fields)
    return b"\n".join(lines)


def _big_netstat(text: bytes, value: int) -> bytes:
    lines = text.split(b"\n")
    fields = lines[1].split(b" ")
    fields[1] = str(value).encode()  # the first TcpExt counter
    lines[1] = b" ".join(fields)
    return b"\n".join(lines)


BIG_EDITS = {
    "meminfo.txt.gz": _big_meminfo,
    "sockstat.txt": _big_sockstat,
    "ps.txt.gz": _big_ps,
    "netstat.txt.gz": _big_netstat,
}


@pytest.mark.parametrize("value", BIG, ids=["2^63", "2^64+5"])
@pytest.mark.parametrize("file", sorted(BIG_EDITS))
def test_integer_above_int64_is_a_problem_row(
    cap: Path, loader: Loader, file: str, value: int
) -> None:
    snap = snapshot_dirs(cap)[1]
    before = (snap / file).read_bytes()
    edit_file(snap / file, lambda text: BIG_EDITS[file](text, value))
    assert (snap / file).read_bytes() != before
    res = loader.load(cap, cache=False, timeout_s=HANG_S)
    summary = loaded(res)
    assert named(summary["problems"], snap.name, file), summary["problems"]
    assert len(summary["snapshots"]) == N_SNAPSHOTS


def _poison_dtypes(value: Any) -> tuple[Any, int]:
    """``value`` with every string that names a pandas dtype replaced by an unknown one."""
    known = {"Int64", "Int32", "UInt32", "Float64", "string", "category", "bool", "boolean", "str"}
    known |= {"float64", "int64", "object", "datetime64[ns, UTC]"}
    if isinstance(value, dict):
        pairs = [(k, *_poison_dtypes(v)) for k, v in value.items()]
        return {k: v for k, v, _ in pairs}, sum(n for _, _, n in pairs)
    if isinstance(value, list):
        pairs2 = [_poison_dtypes(v) for v in value]
        return [v for v, _ in pairs2], sum(n for _, n in pairs2)
    if isinstance(value, str) and value in known:
        return "no_such_dtype", 1
    return value, 0


def test_cache_entry_with_unknown_dtype_is_rebuilt(
    cap: Path, loader: Loader, baseline: dict[str, Any]
) -> None:
    first = loaded(loader.load(cap, cache=True, timeout_s=HANG_S))
    poisoned = 0
    for path in (cap / ".tcpmem-cache").rglob("*.json"):
        try:
            value = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        value, n = _poison_dtypes(value)
        if n:
            path.write_text(json.dumps(value))
            poisoned += n
    assert poisoned, "no dtype found in the cache entry's JSON files (did the cache format change?)"
    again = loaded(loader.load(cap, cache=True, timeout_s=HANG_S))
    assert again["frames"] == first["frames"] == baseline["frames"]


# --- 9. only regular files inside the capture are read


def test_fifo_phases_does_not_block(cap: Path, loader: Loader) -> None:
    os.mkfifo(cap / "phases.tsv")
    res = loader.load(cap, cache=False, timeout_s=FIFO_HANG_S)
    summary = loaded(res)
    assert names_file(summary["problems"], "phases.tsv"), summary["problems"]
    assert len(summary["snapshots"]) == N_SNAPSHOTS


@pytest.mark.parametrize("where", ["phases.tsv", "ss_tcp.txt.gz", "meminfo.txt.gz", "meta.txt"])
def test_link_to_dev_zero_is_not_read(cap: Path, where: str) -> None:
    """A file that is a symlink to /dev/zero: the load ends, names it, and its loader's peak RSS
    stays within 256 MiB of an ordinary load's (address space capped at 4 GiB)."""
    path = cap / where if where == "phases.tsv" else snapshot_dirs(cap)[1] / where
    plain = cap.parent / "plain"
    shutil.copytree(cap, plain, symlinks=True)
    if path.exists():
        path.unlink()
    path.symlink_to("/dev/zero")
    with Loader() as ld:  # a loader of its own: ru_maxrss is the process's lifetime peak
        ordinary = loaded(ld.load(plain, cache=False, timeout_s=HANG_S))
        assert ordinary
        peak_before = ld.load(plain, cache=False, timeout_s=HANG_S).maxrss_kib
        res = ld.load(cap, cache=False, timeout_s=HANG_S)
    not_foreign(res)
    assert res.maxrss_kib - peak_before < 256 * 1024, (
        f"peak RSS grew by {(res.maxrss_kib - peak_before) // 1024} MiB reading /dev/zero"
    )
    summary = loaded(res)
    assert names_file(summary["problems"], where), summary["problems"]


SECRET_LINE = b"tcpmem-secret-Zq9x hunter2\n"
SECRET_NUMBER = b"987654321"


def test_link_outside_the_capture_is_not_read(tmp_path: Path, cap: Path, loader: Loader) -> None:
    """meminfo.txt -> a root-only file elsewhere that looks like meminfo: its content appears
    nowhere in the frames or problems, and the file is named."""
    secret = tmp_path / "etc-secretfile"
    secret.write_bytes(SECRET_LINE + b"MemTotal:       " + SECRET_NUMBER + b" kB\nMemFree: 1 kB\n")
    secret.chmod(0o600)
    snap = snapshot_dirs(cap)[1]
    (snap / "meminfo.txt.gz").unlink()
    (snap / "meminfo.txt").symlink_to(secret)
    res = loader.load(cap, cache=False, timeout_s=HANG_S, dump=True)
    summary = loaded(res)
    everything = "\n".join(summary["dump"].values())
    assert "Zq9x" not in everything and "hunter2" not in everything
    assert SECRET_NUMBER.decode() not in everything
    assert named(summary["problems"], snap.name, "meminfo.txt"), summary["problems"]


@pytest.mark.parametrize("target", ["outside", "inside"])
def test_snapshot_symlinked_later_is_not_served_stale(
    tmp_path: Path, cap: Path, loader: Loader, target: str
) -> None:
    """A snapshot directory that is a symlink, added after a cached load: the next load sees it
    (loads it, or names it in problems), never the cached result as it was."""
    last = snapshot_dirs(cap)[-1]
    link_target: Path | str
    if target == "outside":  # a snapshot kept elsewhere, linked in
        away = tmp_path / "kept-elsewhere" / last.name
        away.parent.mkdir()
        shutil.move(last, away)
        link, link_target, n_first = last, away, N_SNAPSHOTS - 1
    else:  # a second name for a snapshot of the capture
        link, link_target, n_first = cap / snapshot_name_plus(last.name, 1), last.name, N_SNAPSHOTS
    first = loaded(loader.load(cap, cache=True, timeout_s=HANG_S))
    assert len(first["snapshots"]) == n_first
    link.symlink_to(link_target)
    second = loaded(loader.load(cap, cache=True, timeout_s=HANG_S))
    assert link.name in second["snapshots"] or named(second["problems"], link.name), (
        f"the symlinked snapshot {link.name} is neither loaded nor named: stale cache? "
        f"{second['problems']}"
    )
    fresh = loaded(loader.load(cap, cache=False, timeout_s=HANG_S))
    assert second["frames"] == fresh["frames"], "the cached load differs from a fresh one"


# --- 3. a load under a tight address-space limit ends, and only with a TcpmemError

TIGHT_MIB = (0, 8, 16, 24, 32, 64)


def _tight_loads(ld: Loader, path: Path, workers: int, extras: tuple[int, ...]) -> list[str]:
    """Load ``path`` under RLIMIT_AS = (the loader's address space after an ordinary load) +
    each of ``extras`` MiB. A hang fails at once; foreign outcomes are returned."""
    loaded(ld.load(path, cache=False, workers=1, timeout_s=HANG_S))
    vm = ld.vm_kib * 1024
    foreign = []
    for extra in extras:
        res = ld.load(
            path, cache=False, workers=workers, address_space=vm + extra * 2**20, timeout_s=HANG_S
        )
        assert not res.hung, f"+{extra} MiB, workers={workers}: {res.describe()}"
        if not (res.ok or res.tcpmem):
            what = res.exc_type or "the loader process died"
            foreign.append(f"+{extra} MiB: {what}: {res.message[:160]}")
    return foreign


@pytest.mark.parametrize("workers", [1, 2])
def test_tight_address_space_gives_only_tcpmem_errors(cap: Path, workers: int) -> None:
    with Loader() as ld:
        foreign = _tight_loads(ld, cap, workers, TIGHT_MIB)
    assert foreign == [], "\n".join(foreign)


def test_tight_address_space_with_workers_ends(tmp_path: Path, pristine: Path) -> None:
    """40 snapshots, workers=2: whatever the limit, the load ends (the feeder thread must not die
    silently while the caller waits for it) and raises nothing but a TcpmemError."""
    grown = grow_capture(pristine, tmp_path / "grown", 40)
    with Loader() as ld:
        foreign = _tight_loads(ld, grown, 2, (16, 32, 64, 128))
    assert foreign == [], "\n".join(foreign)
