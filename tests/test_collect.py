"""collect.sh, run for real on this kernel: real loopback sockets, real ss, real /proc.

A module-scoped workload holds 200 connection pairs (and one UDP socket) in a child process; each
test runs collect.sh against it and checks what lands on disk. The ss text is checked only with
simple regexes (the test's ports and `pid=`); parsing it is tcpmemlib.parsers.ss's job.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from collect_helpers import COLLECT, LoopbackPairs, NetnsWorkloads, dir_usage_bytes

N_PAIRS = 200
SNAP_RE = re.compile(r"^\d{8}T\d{6}\.\d{9}Z$")
# the larger small files are gzipped (readers take X and X.gz alike); meta.txt stays plain
ALWAYS = {
    "meta.txt",
    "sockstat.txt",
    "sockstat6.txt",
    "sockstat_after.txt",
    "meminfo.txt.gz",
    "slab_aliases.txt.gz",
    "protocols.txt.gz",
    "netstat.txt.gz",
    "snmp.txt.gz",
    "zoneinfo.txt.gz",
    "sysctl.txt",
    "ps.txt.gz",
    "ss_tcp.txt.gz",
    "ss_udp.txt.gz",
    "cgroups.txt",
    "netns.txt",
}
# the files of the other network namespaces on the box (other tests' too): checked on their own
NS_FILE = re.compile(r"^(?:ss_tcp|ss_udp|sockstat)\.ns\d+\.txt(?:\.gz)?$")
ROOT_ONLY = {"slabinfo.txt.gz"}
SYSCTLS = [
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_moderate_rcvbuf",
    "net.ipv4.tcp_congestion_control",
    "net.ipv4.udp_mem",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.optmem_max",
    "net.core.mem_pcpu_rsv",
]
SHELLS = {"dash": ["dash"], "busybox": ["busybox", "sh"]}
RUN_TIMEOUT_S = 60
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


def run_collect(
    shell: list[str], *args: str, env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*shell, str(COLLECT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def names_of(snap: Path) -> set[str]:
    """The file names of a snapshot but those of other network namespaces (NS_FILE)."""
    return {p.name for p in snap.iterdir() if not NS_FILE.match(p.name)}


def snapshots(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_meta(snap: Path) -> tuple[dict[str, str], list[str]]:
    """meta.txt as {key: value} (last wins) plus the repeatable missing=/failed= lines."""
    meta: dict[str, str] = {}
    repeat: list[str] = []
    for line in (snap / "meta.txt").read_text().splitlines():
        key, _, value = line.partition("=")
        if key in ("missing", "failed"):
            repeat.append(line)
        else:
            meta[key] = value
    return meta, repeat


def ss_text(snap: Path, kind: str = "tcp") -> str:
    return gzip.decompress((snap / f"ss_{kind}.txt.gz").read_bytes()).decode(
        errors="surrogateescape"
    )


def snap_text(snap: Path, name: str) -> str:
    """The text of NAME in a snapshot, whether collect.sh wrote NAME or NAME.gz."""
    gz = snap / f"{name}.gz"
    if gz.exists():
        return gzip.decompress(gz.read_bytes()).decode()
    return (snap / name).read_text()


def expected_cgroup_path(pid: int) -> str:
    """The memory cgroup of pid as the collector should record it (v1 memory path if mounted)."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    v1_memory_mounted = any(
        f.split()[2] == "cgroup" and "memory" in f.split()[3].split(",")
        for f in Path("/proc/self/mounts").read_text().splitlines()
    )
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if v1_memory_mounted and "memory" in controllers.split(","):
            return path
        if not v1_memory_mounted and controllers == "":
            return path
    raise AssertionError(f"no memory cgroup for pid {pid}: {lines}")


@pytest.fixture(scope="module")
def pairs() -> Iterator[LoopbackPairs]:
    lp = LoopbackPairs(N_PAIRS, n_procs=1)
    try:
        yield lp
    finally:
        lp.close()


@pytest.fixture(scope="module", params=sorted(SHELLS))
def capture(
    request: pytest.FixtureRequest, pairs: LoopbackPairs, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Three snapshots, 1 s apart, under each shell."""
    out = tmp_path_factory.mktemp(f"cap-{request.param}") / "out"
    res = run_collect(SHELLS[request.param], "-o", str(out), "-n", "3", "-i", "1")
    assert res.returncode == 0, res.stderr
    return out, res


def path_with(
    tmp_path: Path, scripts: dict[str, str] | None = None, busybox: tuple[str, ...] = ()
) -> dict[str, str]:
    """An environment whose PATH starts with a private bin/ holding ``scripts`` (name -> sh body,
    made executable) and busybox applets named ``busybox``; the rest of PATH is unchanged."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (scripts or {}).items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    for tool in busybox:
        (bin_dir / tool).symlink_to(shutil.which("busybox") or "/bin/busybox")
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")


def test_every_file_is_there(capture: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = capture
    snaps = snapshots(out)
    assert len(snaps) == 3
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    for snap in snaps:
        assert SNAP_RE.match(snap.name), snap.name
        names = names_of(snap)
        assert names == ALWAYS | ROOT_ONLY, names ^ (ALWAYS | ROOT_ONLY)
        for name in names - {"cgroups.txt"}:
            assert (snap / name).stat().st_size > 0, name
        for name in names:
            if name.endswith(".gz"):
                gzip.decompress((snap / name).read_bytes())  # a complete gzip stream
        assert gzip.decompress((snap / "slabinfo.txt.gz").read_bytes()).startswith(b"slabinfo")
        assert "Node 0, zone" in gzip.decompress((snap / "zoneinfo.txt.gz").read_bytes()).decode()
        assert (snap / "sockstat.txt").read_text().startswith("sockets: used")
        assert "MemTotal:" in snap_text(snap, "meminfo.txt")
        assert "TcpExt:" in snap_text(snap, "netstat.txt")
        assert "Tcp:" in snap_text(snap, "snmp.txt")
        assert snap_text(snap, "protocols.txt").startswith("protocol")
        assert " -> " not in snap_text(snap, "slab_aliases.txt")
        assert len(snap_text(snap, "slab_aliases.txt").splitlines()[0].split()) == 2
        ps_head = snap_text(snap, "ps.txt").splitlines()[0].split()
        assert ps_head == ["PID", "PPID", "RSS", "VSZ", "UID", "COMMAND"]


def check_file_lines(snap: Path) -> dict[str, tuple[int, int]]:
    """meta.txt's file= lines (#10.7) match the snapshot: one per stored file but meta.txt, with
    its stored size and the newline count of its uncompressed text. Returns {name: (bytes, lines)}."""
    recs = [
        ln[len("file=") :].split("\t")
        for ln in (snap / "meta.txt").read_text().splitlines()
        if ln.startswith("file=")
    ]
    got = {r[0]: (int(r[1]), int(r[2])) for r in recs}
    assert len(got) == len(recs) and all(len(r) == 3 for r in recs), recs
    stored = {p.name for p in snap.iterdir()} - {"meta.txt"}
    assert set(got) == stored, set(got) ^ stored
    for name, (size, lines) in got.items():
        data = (snap / name).read_bytes()
        assert size == len(data), name
        text = gzip.decompress(data) if name.endswith(".gz") else data
        assert lines == text.count(b"\n"), (name, lines, text.count(b"\n"))
    return got


def test_meta_records_each_files_size_and_lines(
    capture: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = capture
    for snap in snapshots(out):
        got = check_file_lines(snap)
        assert got["ss_tcp.txt.gz"][1] >= 2 * N_PAIRS + 1
        # meta.txt: the file= lines come last, then meta.txt's own size
        text = (snap / "meta.txt").read_text()
        lines = text.splitlines()
        assert all(ln.startswith("file=") for ln in lines[-len(got) - 1 : -1])
        body = text[: text.rindex("meta_bytes=")]
        assert lines[-1] == f"meta_bytes={len(body.encode())}"


def test_snapshots_are_one_interval_apart(
    capture: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = capture
    starts = [read_meta(s)[0]["start"] for s in snapshots(out)]
    secs = [
        time.mktime(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) + float("0." + s[20:29])
        for s in starts
    ]
    gaps = [b - a for a, b in itertools.pairwise(secs)]
    assert all(0.9 <= g <= 1.5 for g in gaps), gaps


def test_sockets_carry_their_owner(
    capture: tuple[Path, subprocess.CompletedProcess[str]], pairs: LoopbackPairs
) -> None:
    out, _ = capture
    holder = pairs.holders[0]
    for snap in snapshots(out):
        text = ss_text(snap)
        lines = text.splitlines()
        assert all(line.startswith("tcp ") for line in lines), "one line per socket with -O"
        # below 10000 sockets the lines are sorted (C locale): they compress better
        assert lines == sorted(lines)
        mine = [ln for ln in lines if f"pid={holder.pid}," in ln]
        # the listener, then both ends of every pair
        assert len(mine) == 2 * N_PAIRS + 1, len(mine)
        for port in holder.client_ports:
            ends = [ln for ln in mine if f"127.0.0.1:{port} " in ln]
            assert len(ends) == 2, (port, ends)
            assert all("ESTAB" in ln and "skmem:(r" in ln for ln in ends)
        assert re.search(rf"LISTEN .*127\.0\.0\.1:{holder.port} .*pid={holder.pid},", text)
        udp = ss_text(snap, "udp")
        assert re.search(rf"^udp .*127\.0\.0\.1:{holder.udp_port} .*pid={holder.pid},", udp, re.M)
        # the UDP socket is not in the TCP file (another test's TCP socket may reuse the number)
        assert not [ln for ln in mine if f"127.0.0.1:{holder.udp_port} " in ln]


def test_meta_is_right(capture: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = capture
    ss_v = subprocess.run(["ss", "-V"], capture_output=True, text=True, check=True).stdout.strip()
    mounts = Path("/proc/self/mounts").read_text()
    v1 = re.search(r" cgroup \S+,memory", mounts) or re.search(r" cgroup memory", mounts)
    v2 = " cgroup2 " in mounts
    cg_version = "hybrid" if v1 and v2 else "1" if v1 else "2" if v2 else "none"
    for snap in snapshots(out):
        meta, repeat = read_meta(snap)
        assert meta["collector_version"] == "3"
        assert meta["hostname"] == os.uname().nodename
        assert meta["kernel"] == os.uname().release
        assert meta["ss_version"] == ss_v
        assert int(meta["page_size"]) == os.sysconf("SC_PAGE_SIZE")
        assert int(meta["cpus"]) == os.sysconf("SC_NPROCESSORS_ONLN")
        assert meta["user"] == "root" and meta["uid"] == "0"
        assert meta["ss_oneline"] == "1" and meta["args"] == "0"
        assert meta["interval_s"] == "1"
        assert meta["cgroup_version"] == cg_version
        assert meta["clock"] == "date-ns"
        iso = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$"
        assert re.match(iso, meta["start"]) and re.match(iso, meta["end"])
        assert meta["start"] < meta["end"]
        assert meta["start"].replace("-", "").replace(":", "") == snap.name
        # every sysctl present on this kernel was read; none failed
        assert [r for r in repeat if r.startswith("failed=")] == []
        for r in repeat:
            assert r.startswith("missing=sysctl.txt: "), r


def test_sysctls_match_proc_sys(capture: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = capture
    snap = snapshots(out)[-1]
    got = dict(
        line.split(" = ", 1) for line in (snap / "sysctl.txt").read_text().splitlines() if line
    )
    _, repeat = read_meta(snap)
    for name in SYSCTLS:
        f = Path("/proc/sys") / name.replace(".", "/")
        if f.exists():
            # tcp_mem moves with the box; the others are fixed here
            if name != "net.ipv4.tcp_mem":
                assert got[name] == f.read_text().rstrip("\n"), name
            assert name in got
        else:
            assert name not in got
            assert any(name in r for r in repeat), repeat


def test_cgroups_of_socket_owners(
    capture: tuple[Path, subprocess.CompletedProcess[str]], pairs: LoopbackPairs
) -> None:
    out, _ = capture
    pid = pairs.holders[0].pid
    want = expected_cgroup_path(pid)
    for snap in snapshots(out):
        recs = [ln.split("\t") for ln in (snap / "cgroups.txt").read_text().splitlines()]
        assert all(r[0] in ("pid", "stat") for r in recs), recs
        pids = {int(r[1]): r[2] for r in recs if r[0] == "pid"}
        assert pids[pid] == want
        stats = {(r[1], r[2]): r[3] for r in recs if r[0] == "stat"}
        keys = {k for (path, k) in stats if path == want}
        assert keys in (
            {"kmem.tcp.usage_in_bytes", "kmem.tcp.limit_in_bytes"},
            {"sock", "memory.current"},
            {"sock"},
        ), keys
        assert all(v.isdigit() for v in stats.values())
        # each distinct cgroup is read once: one record per (cgroup, key)
        assert len(stats) == len([r for r in recs if r[0] == "stat"])


def test_args_are_opt_in(pairs: LoopbackPairs, tmp_path: Path) -> None:
    res = run_collect(["dash"], "-o", str(tmp_path / "o"), "-n", "1", "-a")
    assert res.returncode == 0, res.stderr
    (snap,) = snapshots(tmp_path / "o")
    assert read_meta(snap)[0]["args"] == "1"
    args = snap_text(snap, "ps_args.txt")
    assert re.search(rf"^\s*{pairs.holders[0].pid} .*python.* -c", args, re.M)


def test_sigterm_leaves_only_complete_snapshots(pairs: LoopbackPairs, tmp_path: Path) -> None:
    out = tmp_path / "o"
    proc = subprocess.Popen(
        ["dash", str(COLLECT), "-o", str(out), "-i", "0", "-d", "60", "-b"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        seen: set[str] = set()
        while len(seen) < 3 and time.monotonic() < deadline:
            if out.exists():
                for snap in snapshots(out):
                    seen.add(snap.name)
                    # a visible snapshot is complete at every moment
                    assert (snap / "meta.txt").exists() or not snap.exists()
            time.sleep(0.01)
        assert len(seen) >= 3
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    snaps = snapshots(out)
    for snap in snaps:
        assert names_of(snap) >= ALWAYS
    with tarfile.open(f"{out}.tar.gz") as tar:
        top = {m.name.split("/")[0] for m in tar.getmembers()}
    assert top == {s.name for s in snaps}


def test_sigkill_leaves_only_a_hidden_partial(pairs: LoopbackPairs, tmp_path: Path) -> None:
    out = tmp_path / "o"
    proc = subprocess.Popen(
        ["dash", str(COLLECT), "-o", str(out), "-i", "0", "-d", "60"], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        # wait for a snapshot in progress after at least one complete one
        while time.monotonic() < deadline:
            if out.exists() and snapshots(out) and any(out.glob(".partial-*/ps.txt")):
                break
            time.sleep(0.005)
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    for snap in snapshots(out):
        assert names_of(snap) >= ALWAYS, snap
    leftovers = [p.name for p in out.iterdir() if not SNAP_RE.match(p.name)]
    assert leftovers, "the kill was meant to land mid-snapshot"
    assert all(name.startswith(".partial-") for name in leftovers), leftovers
    # children of the killed shell (ss, awk) finish on their own; then a new run tidies up
    time.sleep(1)
    res = run_collect(["dash"], "-o", str(out), "-n", "1")
    assert res.returncode == 0, res.stderr
    assert "removing" in res.stderr and ".partial-" in res.stderr
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_budget_is_never_exceeded(pairs: LoopbackPairs, tmp_path: Path) -> None:
    one = tmp_path / "one"
    assert run_collect(["dash"], "-o", str(one), "-n", "1").returncode == 0
    snap_bytes = dir_usage_bytes(snapshots(one)[0])
    budget_mb = round(4 * snap_bytes / 2**20, 3)
    budget_bytes = int(budget_mb * 1024) * 1024
    out = tmp_path / "o"
    proc = subprocess.Popen(
        ["dash", str(COLLECT), "-o", str(out), "-i", "0", "-n", "12", "-m", str(budget_mb)],
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    try:
        while proc.poll() is None:
            if out.exists():
                peak = max(peak, dir_usage_bytes(out))
            time.sleep(0.002)
        _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    final = dir_usage_bytes(out)
    assert 0 < peak <= budget_bytes, (peak, budget_bytes)
    assert final <= budget_bytes
    kept = snapshots(out)
    assert 1 <= len(kept) < 12
    assert "deleted the" in err and "oldest" in err


def test_duration_bounds_the_run(tmp_path: Path) -> None:
    t = time.monotonic()
    res = run_collect(["dash"], "-o", str(tmp_path / "o"), "-d", "2", "-i", "1")
    assert res.returncode == 0, res.stderr
    assert len(snapshots(tmp_path / "o")) == 2
    assert time.monotonic() - t < 4


def test_budget_too_small_for_one_snapshot(tmp_path: Path) -> None:
    out = tmp_path / "o"
    res = run_collect(["dash"], "-o", str(out), "-n", "1", "-m", "0.01")
    assert res.returncode == 6, res.stderr
    assert res.stderr.count("\n") == 1 and "budget" in res.stderr
    assert list(out.iterdir()) == []


def test_full_disk(tmp_path: Path) -> None:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)], check=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        pytest.skip(f"cannot mount a tmpfs here: {err}")
    try:
        res = run_collect(["dash"], "-o", str(mnt / "o"), "-n", "1")
        assert res.returncode == 5, res.stderr
        assert res.stderr.count("\n") == 1 and "error:" in res.stderr and "disk full" in res.stderr
        assert [p.name for p in (mnt / "o").iterdir()] == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_no_ss_in_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("awk", "sed", "gzip", "ps", "du", "df", "ls", "date", "uname", "id", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    for tool in ("mv", "rm", "mkdir", "grep", "sleep", "head", "getconf", "stat", "tar", "tr"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    res = run_collect(
        ["/usr/bin/dash"], "-o", str(tmp_path / "o"), "-n", "1", env={"PATH": str(bin_dir)}
    )
    assert res.returncode == 3
    assert res.stderr.strip().count("\n") == 0 and "ss" in res.stderr
    assert not (tmp_path / "o").exists()


def test_unwritable_output_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    res = run_collect(["dash"], "-o", str(tmp_path / "file" / "o"), "-n", "1")
    assert res.returncode == 4
    assert res.stderr.strip().count("\n") == 0


def test_old_ss_without_oneline(pairs: LoopbackPairs, tmp_path: Path) -> None:
    """An ss older than 5.2 (no -O): the multi-line form, recorded as ss_oneline=0."""
    real_ss = shutil.which("ss")
    no_oneline = (
        'case "$*" in *O*) echo "ss: invalid option -- \'O\'" >&2; exit 255 ;; esac\n'
        f'exec {real_ss} "$@"\n'
    )
    env = path_with(tmp_path, {"ss": no_oneline})
    res = run_collect(["dash"], "-o", str(tmp_path / "o"), "-n", "1", env=env)
    assert res.returncode == 0, res.stderr
    (snap,) = snapshots(tmp_path / "o")
    meta, repeat = read_meta(snap)
    assert meta["ss_oneline"] == "0" and "O" not in meta["ss_command"]
    assert not [r for r in repeat if r.startswith("failed=")]
    text = ss_text(snap)
    assert "\n\t skmem:(" in text  # continuation lines kept with their socket
    pid = pairs.holders[0].pid
    assert text.count(f"pid={pid},") == 2 * N_PAIRS + 1
    udp = ss_text(snap, "udp")
    assert f":{pairs.holders[0].udp_port} " in udp and "\tskmem" not in text.split("\n")[0]


def test_busybox_date_clock_fallback(tmp_path: Path) -> None:
    """busybox date has no %N: names still sub-second, unique and sorted (file mtime clock)."""
    env = path_with(tmp_path, busybox=("date",))
    res = run_collect(["busybox", "sh"], "-o", str(tmp_path / "o"), "-n", "3", "-i", "0", env=env)
    assert res.returncode == 0, res.stderr
    snaps = snapshots(tmp_path / "o")
    assert len(snaps) == 3 and all(SNAP_RE.match(s.name) for s in snaps)
    assert len({s.name[:-1] for s in snaps}) == 3
    metas = [read_meta(s)[0] for s in snaps]
    assert {m["clock"] for m in metas} == {"file-mtime"}
    assert all(m["start"] <= m["end"] for m in metas)
    assert res.stderr.count("clock=file-mtime") == 1


def test_non_root_degrades_as_documented(pairs: LoopbackPairs) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    work = Path(tempfile.mkdtemp(prefix="collect-nonroot-", dir="/tmp"))
    try:
        work.chmod(0o777)
        script = work / "collect.sh"
        shutil.copy(COLLECT, script)
        script.chmod(0o755)
        res = subprocess.run(
            [*NOBODY, "dash", str(script), "-o", str(work / "o"), "-n", "2", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        # said once on stderr, recorded in every meta.txt
        lines = res.stderr.splitlines()
        assert len([ln for ln in lines if "slabinfo" in ln]) == 1, res.stderr
        assert len([ln for ln in lines if "ss_tcp.txt.gz" in ln]) == 1, res.stderr
        assert len([ln for ln in lines if "network namespaces" in ln]) == 1, res.stderr
        snaps = snapshots(work / "o")
        assert len(snaps) == 2
        for snap in snaps:
            names = names_of(snap)
            assert names == ALWAYS, names ^ ALWAYS
            meta, repeat = read_meta(snap)
            assert meta["uid"] == "65534"
            assert any(r.startswith("missing=slabinfo.txt.gz: ") for r in repeat), repeat
            assert any(r.startswith("missing=ss_tcp.txt.gz: ") for r in repeat), repeat
            # other network namespaces: not entered (nsenter needs root), said in meta
            assert any(r.startswith("missing=netns: ") and "not root" in r for r in repeat)
            assert int(netns_rows(snap)[0][0]) == os.stat("/proc/self/ns/net").st_ino
            text = ss_text(snap)
            # root's sockets are listed, but not who owns them
            assert text.count(f"127.0.0.1:{pairs.holders[0].port} ") >= 2 * N_PAIRS + 1
            assert f"pid={pairs.holders[0].pid}," not in text
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_bundle_members_are_relative_snapshot_dirs(tmp_path: Path) -> None:
    out = tmp_path / "o"
    res = run_collect(["dash"], "-o", str(out), "-n", "2", "-i", "0", "-b")
    assert res.returncode == 0, res.stderr
    names = {s.name for s in snapshots(out)}
    with tarfile.open(tmp_path / "o.tar.gz") as tar:
        members = tar.getmembers()
        for m in members:
            assert not m.name.startswith(("/", "./", "..")), m.name
            assert m.name.split("/")[0] in names
        files = {m.name for m in members if m.isfile() and not NS_FILE.match(m.name.split("/")[1])}
    assert files == {f"{n}/{f}" for n in names for f in ALWAYS | ROOT_ONLY}


def test_shellcheck_clean() -> None:
    res = subprocess.run(
        ["shellcheck", "-s", "sh", str(COLLECT)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout


def test_help_and_usage_errors() -> None:
    res = run_collect(["dash"], "-h")
    assert res.returncode == 0
    for opt in ("-o DIR", "-i SECONDS", "-n COUNT", "-d SECONDS", "-m MB", "-a", "-f", "-b", "-h"):
        assert opt in res.stdout, opt
    assert "EXIT STATUS" in res.stdout and "Examples" in res.stdout
    for bad in (["-x"], ["-i", "soon"], ["-n", "0"], ["-m", "lots"], ["extra"]):
        res = run_collect(["dash"], *bad)
        assert res.returncode == 2, (bad, res.stderr)
        assert res.stderr.strip().count("\n") == 0, res.stderr


def test_script_is_executable_posix_sh() -> None:
    assert COLLECT.read_text().startswith("#!/bin/sh\n")
    assert COLLECT.stat().st_mode & stat.S_IXUSR


HOSTILE_CHILD = r"""
import socket, sys
open("/proc/self/comm", "w").write(sys.argv[1])
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(8)
c = socket.create_connection(lst.getsockname())
a, _ = lst.accept()
print(lst.getsockname()[1], flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("name", ['a b"c,(d)', "<img src=x>", 'x",pid=1,fd=9', "s segs_ ino:  x"])
def test_hostile_process_names(name: str, tmp_path: Path) -> None:
    """Names with spaces, quotes, commas, parentheses, markup: still one snapshot, right pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOSTILE_CHILD, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        res = run_collect(["dash"], "-o", str(tmp_path / "o"), "-n", "1")
        assert res.returncode == 0, res.stderr
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    (snap,) = snapshots(tmp_path / "o")
    text = ss_text(snap)
    mine = [ln for ln in text.splitlines() if f"pid={proc.pid}," in ln]
    # ss reads comm from /proc/PID/stat up to the first ")": that is what it prints
    shown = name.split(")")[0]
    assert len(mine) == 3 and all(f'(("{shown}",pid=' in ln for ln in mine), mine
    assert any(f"127.0.0.1:{port} " in ln for ln in mine)
    recs = [ln.split("\t") for ln in (snap / "cgroups.txt").read_text().splitlines()]
    pids = {int(r[1]) for r in recs if r[0] == "pid"}
    # every ss file: the host's and those of the other network namespaces (other tests' too)
    every_ss = "".join(gzip.decompress(f.read_bytes()).decode() for f in snap.glob("ss_*.txt.gz"))
    owners = {int(p) for p in re.findall(r",pid=(\d+),fd=\d+\)", every_ss)}
    assert proc.pid in pids
    # a name holding ",pid=1,fd=9" does not add pid 1 (the set is exactly the real owners)
    assert pids <= owners and owners - pids <= {
        p for p in owners if not Path(f"/proc/{p}").exists()
    }
    ps_lines = snap_text(snap, "ps.txt").splitlines()
    assert any(ln.split(None, 5)[0] == str(proc.pid) and ln.endswith(name) for ln in ps_lines)
    assert read_meta(snap)[1] == []


def test_pure_cgroup_v2_layout(pairs: LoopbackPairs, tmp_path: Path) -> None:
    """This box is hybrid (v1 memory); a pure-v2 box is read through the v2 files.

    Not the kernel's own v2 tree (memory cannot be on v1 and v2 at once): a directory laid out like
    one, named as the cgroup2 mount by TCPMEM_MOUNTS. The pids and their 0:: paths are real.
    """
    root = tmp_path / "cg2"
    pid = pairs.holders[0].pid
    v2_path = next(
        ln[3:] for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if ln[:3] == "0::"
    )
    cg = root / v2_path.lstrip("/")
    cg.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (cg / "memory.stat").write_text("anon 4096\nfile 8192\nsock 123456\nshmem 0\n")
    (cg / "memory.current").write_text("987654\n")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup2 {root} cgroup2 rw,nosuid,nodev,noexec 0 0\n")
    env = dict(os.environ, TCPMEM_MOUNTS=str(mounts))
    res = run_collect(["dash"], "-o", str(tmp_path / "o"), "-n", "1", env=env)
    assert res.returncode == 0, res.stderr
    (snap,) = snapshots(tmp_path / "o")
    assert read_meta(snap)[0]["cgroup_version"] == "2"
    recs = [ln.split("\t") for ln in (snap / "cgroups.txt").read_text().splitlines()]
    assert ["pid", str(pid), v2_path] in recs
    stats = [r for r in recs if r[0] == "stat" and r[1] == v2_path]
    assert sorted(stats) == [
        ["stat", v2_path, "memory.current", "987654"],
        ["stat", v2_path, "sock", "123456"],
    ]


def test_hostname_with_blanks_is_kept_whole(tmp_path: Path) -> None:
    """A hostname may hold blanks: meta.txt records it whole (not its first word)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    name = "tcpmem test  box"
    res = subprocess.run(
        [
            "unshare",
            "--uts",
            "sh",
            "-c",
            'printf "%s" "$1" >/proc/sys/kernel/hostname && exec dash "$2" -o "$3" -n 1',
            "sh",
            name,
            str(COLLECT),
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    (snap,) = snapshots(tmp_path / "o")
    meta, _ = read_meta(snap)
    assert meta["hostname"] == name
    assert meta["kernel"] == os.uname().release


LONG_ARGV_CHILD = "import sys; sys.stdin.read()"


@pytest.mark.parametrize("ps_tool", ["procps", "busybox"])
def test_args_are_recorded_in_full(ps_tool: str, tmp_path: Path) -> None:
    """-a records whole command lines (ps -ww), far past 80 columns; busybox ps (no -w) too."""
    tail = [f"arg{i:03d}-{'x' * 20}" for i in range(20)]  # ~500 characters
    proc = subprocess.Popen(
        [sys.executable, "-c", LONG_ARGV_CHILD, *tail], stdin=subprocess.PIPE, text=True
    )
    env = None
    if ps_tool == "busybox":
        env = path_with(tmp_path, busybox=("ps",))
    try:
        res = run_collect(["dash"], "-o", str(tmp_path / "o"), "-n", "1", "-a", env=env)
        assert res.returncode == 0, res.stderr
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    (snap,) = snapshots(tmp_path / "o")
    # (busybox ps has no uid column: ps.txt comes from /proc there; ps_args.txt from ps)
    assert [r for r in read_meta(snap)[1] if "pid,args:" in r] == []
    lines = snap_text(snap, "ps_args.txt").splitlines()
    mine = [ln for ln in lines if ln.split(None, 1)[0] == str(proc.pid)]
    assert len(mine) == 1, lines
    assert mine[0].rstrip().endswith(" ".join(tail)), mine[0]


UNREAD_CHILD = r"""
import socket, sys
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(64)
held = []
for _ in range(int(sys.argv[1])):
    c = socket.create_connection(lst.getsockname())
    a, _ = lst.accept()
    c.sendall(b"x" * 50000)  # left unread in a's receive queue
    a.sendall(b"y" * 30000)  # left unread in c's
    held += [c, a]
print(lst.getsockname()[1], flush=True)
sys.stdin.read()
"""
DROPPED = re.compile(
    r" (?:minrtt|lastsnd|lastrcv|lastack|delivered|segs_out|segs_in|data_segs_out"
    r"|data_segs_in|busy|rwnd_limited|sndbuf_limited|rcv_rtt):| (?:send|pacing_rate|delivery_rate) "
    r"| (?:bbr|bbr2|dctcp):\(| app_limited| $"
)


def test_lean_ss_drops_volatile_tokens_and_parses_the_same(tmp_path: Path) -> None:
    """Default (lean) vs -f (full) on the same idle sockets holding unread data: the volatile -i
    tokens are gone from the lean text, and tcpmemlib's parser reads the same values from both."""
    from tcpmemlib.parsers.ss import read_ss

    proc = subprocess.Popen(
        [sys.executable, "-c", UNREAD_CHILD, "20"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        int(proc.stdout.readline())
        time.sleep(0.3)  # let the data settle into the receive queues
        res_lean = run_collect(["dash"], "-o", str(tmp_path / "lean"), "-n", "1")
        res_full = run_collect(["dash"], "-o", str(tmp_path / "full"), "-n", "1", "-f")
        assert res_lean.returncode == 0 and res_full.returncode == 0, (res_lean, res_full)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    (lean,) = snapshots(tmp_path / "lean")
    (full,) = snapshots(tmp_path / "full")
    assert read_meta(lean)[0]["ss_filter"] == "lean"
    assert read_meta(full)[0]["ss_filter"] == "full"
    tag = f"pid={proc.pid},"
    lean_mine = [ln for ln in ss_text(lean).splitlines() if tag in ln]
    full_mine = [ln for ln in ss_text(full).splitlines() if tag in ln]
    assert len(lean_mine) == len(full_mine) == 41
    assert not [ln for ln in lean_mine if DROPPED.search(ln)]
    # full is verbatim: these ESTAB sockets carried data, so ss printed the volatile tokens
    assert all(" lastsnd:" in ln and " segs_out:" in ln for ln in full_mine if "ESTAB" in ln)
    for ln in lean_mine:
        for key in ("skmem:(r", "ino:", "sk:", "cgroup:"):
            assert key in ln, (key, ln)
    frames = {}
    for name, snap in (("lean", lean), ("full", full)):
        df = read_ss(snap / "ss_tcp.txt.gz")
        df = df[df["owners"].astype(str).str.contains(str(proc.pid))]
        frames[name] = df.set_index("inode").sort_index()
    assert len(frames["lean"]) == 41
    assert (frames["lean"]["skmem_r"] > 0).sum() == 40  # unread data, as the workload left it
    assert frames["lean"]["bytes_sent"].notna().sum() == 40
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(
        frames["lean"].drop(columns=["unparsed"]), frames["full"].drop(columns=["unparsed"])
    )


def test_failed_udp_gzip_is_recorded(tmp_path: Path) -> None:
    """The UDP gzip runs inside the ss pipeline: its failure is still caught and recorded in meta."""
    real_gzip = shutil.which("gzip")
    # only the UDP gzip (started by the split's awk) has TCPMEM_UDP_GZ in its environment
    udp_fails = (
        'if [ -n "${TCPMEM_UDP_GZ:-}" ]; then echo "gzip: no space (simulated)" >&2; exit 1; fi\n'
        f'exec {real_gzip} "$@"\n'
    )
    env = path_with(tmp_path, {"gzip": udp_fails})
    res = run_collect(["dash"], "-o", str(tmp_path / "o"), "-n", "1", env=env)
    assert res.returncode == 0, res.stderr
    (snap,) = snapshots(tmp_path / "o")
    _, repeat = read_meta(snap)
    bad = [r for r in repeat if r.startswith("failed=")]
    # awk, writing to the dead gzip, may die of SIGPIPE (141) first: either way it is recorded
    assert len(bad) == 1 and "ss_udp.txt.gz" in bad[0] and "(simulated)" in bad[0], repeat
    assert re.search(r"\(exit (1|141)\)$", bad[0]), bad[0]
    # (the split's awk writes cgroups.txt at its end: after SIGPIPE there is none; meta says so)
    assert names_of(snap) >= ALWAYS - {"cgroups.txt"}


def test_busybox_tools(pairs: LoopbackPairs, tmp_path: Path) -> None:
    """busybox awk, sort, gzip and sed (a box without mawk/coreutils): the same snapshot."""
    env = path_with(tmp_path, busybox=("awk", "sort", "gzip", "sed"))
    res = run_collect(["busybox", "sh"], "-o", str(tmp_path / "o"), "-n", "1", env=env)
    assert res.returncode == 0, res.stderr
    (snap,) = snapshots(tmp_path / "o")
    assert names_of(snap) == ALWAYS | ROOT_ONLY
    assert [r for r in read_meta(snap)[1] if r.startswith("failed=")] == []
    pid = pairs.holders[0].pid
    lines = ss_text(snap).splitlines()
    assert len([ln for ln in lines if f"pid={pid}," in ln]) == 2 * N_PAIRS + 1
    assert not [ln for ln in lines if DROPPED.search(ln)]
    assert lines == sorted(lines)
    recs = [ln.split("\t") for ln in (snap / "cgroups.txt").read_text().splitlines()]
    assert ["pid", str(pid), expected_cgroup_path(pid)] in recs
    check_file_lines(snap)


PRCTL_CHILD = r"""
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NAME = 15
def set_name(name: bytes) -> None:
    if libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl")
set_name(bytes.fromhex(sys.argv[1]))
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(8)
c = socket.create_connection(lst.getsockname())
a, _ = lst.accept()
kid = os.fork()
if kid == 0:
    # a second owner of the same sockets, with a plain name
    set_name(b"tcpmem-kid")
    sys.stdin.read()
    os._exit(0)
print(lst.getsockname()[1], kid, flush=True)
sys.stdin.read()
os.waitpid(kid, 0)
"""
PRCTL_NAMES = {
    "newline+latin1": b"ab\ncd\xe9\xff x",
    "only-newline": b"\n",
    "newlines+record-start": b"x\n\ny\nudp 1 2",
}


@pytest.mark.parametrize("tools", ["dash", "busybox"])
@pytest.mark.parametrize("label", sorted(PRCTL_NAMES))
def test_name_with_newline_keeps_its_socket_line_whole(
    label: str, tools: str, tmp_path: Path
) -> None:
    """prctl(PR_SET_NAME) with a newline / non-UTF-8 bytes (#10.6): ss prints the name raw and breaks
    its socket lines; each record stays one line (the newline stored as the two characters \\n, other
    bytes raw), sorted as one unit, under LC_ALL=C, dash or busybox sh + awk/sort/gzip/sed."""
    name = PRCTL_NAMES[label]
    proc = subprocess.Popen(
        [sys.executable, "-c", PRCTL_CHILD, name.hex()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    env = dict(os.environ, LC_ALL="C")
    shell = ["dash"]
    if tools == "busybox":
        env = dict(path_with(tmp_path, busybox=("awk", "sort", "gzip", "sed")), LC_ALL="C")
        shell = ["busybox", "sh"]
    try:
        assert proc.stdout is not None
        port_s, kid_s = proc.stdout.readline().split()
        port, kid = int(port_s), int(kid_s)
        assert Path(f"/proc/{proc.pid}/comm").read_bytes() == name[:15] + b"\n"
        res = run_collect(shell, "-o", str(tmp_path / "o"), "-n", "1", env=env)
        assert res.returncode == 0, res.stderr
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    (snap,) = snapshots(tmp_path / "o")
    raw = gzip.decompress((snap / "ss_tcp.txt.gz").read_bytes())
    lines = raw.split(b"\n")
    assert lines[-1] == b"" and all(ln.startswith(b"tcp ") for ln in lines[:-1])
    assert lines[:-1] == sorted(lines[:-1])
    stored = b'"' + name.replace(b"\n", b"\\n") + b'",pid=' + str(proc.pid).encode() + b","
    mine = [ln for ln in lines if f"pid={proc.pid},".encode() in ln]
    # the listener and both ends of the pair, each one whole record: both owners, then the rest
    assert len(mine) == 3, mine
    for ln in mine:
        assert stored in ln, ln
        assert f'("tcpmem-kid",pid={kid},'.encode() in ln, ln
        assert b" ino:" in ln and b"skmem:(r" in ln, ln
    assert any(f"127.0.0.1:{port} ".encode() in ln for ln in mine)
    recs = [ln.split("\t") for ln in (snap / "cgroups.txt").read_text().splitlines()]
    assert {str(proc.pid), str(kid)} <= {r[1] for r in recs if r[0] == "pid"}
    assert [r for r in read_meta(snap)[1] if r.startswith("failed=")] == []
    # the line count in meta counts the joined records
    check_file_lines(snap)


GROWER = r"""
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(1024)
held = []
t_end = time.monotonic() + 8
for i in range(3000):
    c = socket.create_connection(lst.getsockname())
    a, _ = lst.accept()
    held += [c, a]
    if i == 50:
        print("ready", flush=True)
    time.sleep(0.0005)
    if time.monotonic() > t_end:
        break
sys.stdin.read()
"""
# runs in a fresh network namespace: its sockstat counts only the grower's sockets
IN_NETNS = r"""
import subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
grower = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
try:
    assert grower.stdout.readline() == "ready\n"
    res = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=60)
finally:
    grower.stdin.close()
    grower.wait(timeout=30)
sys.stderr.write(res.stderr)
sys.exit(res.returncode)
"""


def sockstat_tcp_inuse(path: Path) -> int:
    m = re.search(r"^TCP: inuse (\d+) ", path.read_text(), re.M)
    assert m, path.read_text()
    return int(m.group(1))


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_sockstat_is_read_before_and_after_ss(shell: str, tmp_path: Path) -> None:
    """sockstat.txt is read right before ss, sockstat_after.txt right after (#11.5): in a network
    namespace where a process keeps opening connections (none close), TCP inuse before <= the
    sockets ss saw <= inuse after, and the two reads differ."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    out = tmp_path / "o"
    res = subprocess.run(
        [
            "unshare",
            "--net",
            sys.executable,
            "-c",
            IN_NETNS,
            GROWER,
            *SHELLS[shell],
            str(COLLECT),
            "-o",
            str(out),
            "-n",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    (snap,) = snapshots(out)
    before = sockstat_tcp_inuse(snap / "sockstat.txt")
    after = sockstat_tcp_inuse(snap / "sockstat_after.txt")
    states = [ln.split()[1] for ln in ss_text(snap).splitlines()]
    seen = len([s for s in states if s not in ("TIME-WAIT", "SYN-RECV")])
    assert 100 <= before <= seen <= after, (before, seen, after)
    assert before < after
    assert (snap / "sockstat_after.txt").read_text().startswith("sockets: used")
    check_file_lines(snap)


def test_bundle_fails_when_tar_fails(tmp_path: Path) -> None:
    """-b exits 7 with a clear message when tar fails (#10.11), not 0 with a stub bundle. A real tar
    failure: a run as nobody bundles DIR's snapshots, one of them an older root-only directory."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    work = Path(tempfile.mkdtemp(prefix="collect-bundle-", dir="/tmp"))
    try:
        work.chmod(0o777)
        out = work / "o"
        out.mkdir()
        out.chmod(0o777)
        locked = out / "20200101T000000.000000000Z"
        locked.mkdir(mode=0o700)
        (locked / "meta.txt").write_text("collector_version=1\n")
        locked.chmod(0o700)
        script = work / "collect.sh"
        shutil.copy(COLLECT, script)
        script.chmod(0o755)
        res = subprocess.run(
            [*NOBODY, "dash", str(script), "-o", str(out), "-n", "1", "-b"],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        assert res.returncode == 7, res.stderr
        err = [ln for ln in res.stderr.splitlines() if "error:" in ln]
        assert len(err) == 1 and "o.tar.gz" in err[0] and "tar exit 2" in err[0], res.stderr
        assert "Permission denied" in err[0], err
        # no bundle, no leftovers beside it; the snapshot itself was taken
        assert sorted(p.name for p in work.iterdir()) == ["collect.sh", "o"]
        assert len(snapshots(out)) == 2
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_two_runs_share_an_output_directory(pairs: LoopbackPairs, tmp_path: Path) -> None:
    """Two collect.sh runs into one DIR (#10.11): neither deletes the other's snapshot in progress
    (partials are .partial-PID-NAME; only a dead run's are removed); a dead run's leftovers still go."""
    out = tmp_path / "o"
    out.mkdir()
    # leftovers: one of a run that is alive (a sleeping process stands for it), one of a dead run,
    # one in the format of collectors before version 2
    alive = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    keep = out / f".partial-{alive.pid}-20261125T231700.123456789Z"
    gone = [
        out / f".partial-{dead.pid}-20261125T231700.123456789Z",
        out / ".partial-20261125T231700.123456789Z",
    ]
    for d in [keep, *gone]:
        d.mkdir()
        (d / "ps.txt").write_text("x\n")
    try:
        long_run = subprocess.Popen(
            ["dash", str(COLLECT), "-o", str(out), "-i", "0", "-d", "60"],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while len(snapshots(out)) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            for _ in range(4):
                res = run_collect(["busybox", "sh"], "-o", str(out), "-n", "1")
                assert res.returncode == 0, res.stderr
                # the long run's partial is never touched, nor the live pid's
                assert f".partial-{long_run.pid}-" not in res.stderr, res.stderr
                assert str(keep) not in res.stderr
            long_run.send_signal(signal.SIGTERM)
            _, err = long_run.communicate(timeout=30)
        finally:
            if long_run.poll() is None:
                long_run.kill()
                long_run.wait(timeout=10)
        assert long_run.returncode == 0, err
        assert "error" not in err and "removing" in err, err
        assert keep.exists() and not any(d.exists() for d in gone)
        for snap in snapshots(out):
            names = names_of(snap)
            assert names == ALWAYS | ROOT_ONLY, (snap, names ^ (ALWAYS | ROOT_ONLY))
            assert [r for r in read_meta(snap)[1] if r.startswith("failed=")] == []
    finally:
        alive.kill()
        alive.wait(timeout=10)


def test_busybox_ps_falls_back_to_proc(pairs: LoopbackPairs, tmp_path: Path) -> None:
    """busybox ps cannot print uid (and prints RSS as "15m"): detected once at start, ps.txt is
    read from /proc/PID/status instead (#10.11), with the same values as procps ps."""
    env = path_with(tmp_path, busybox=("ps",))
    res = run_collect(["busybox", "sh"], "-o", str(tmp_path / "o"), "-n", "2", "-i", "0", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("ps_source=proc") == 1, res.stderr
    pid = pairs.holders[0].pid
    want = subprocess.run(
        ["ps", "-o", "pid=,ppid=,rss=,vsz=,uid=,comm=", "-p", str(pid)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for snap in snapshots(tmp_path / "o"):
        meta, repeat = read_meta(snap)
        assert meta["ps_source"] == "proc"
        assert [r for r in repeat if r.startswith("failed=")] == []
        lines = snap_text(snap, "ps.txt").splitlines()
        assert lines[0].split() == ["PID", "PPID", "RSS", "VSZ", "UID", "COMMAND"]
        rows = {ln.split(None, 5)[0]: ln.split(None, 5) for ln in lines[1:]}
        assert len(rows) > 10 and all(
            r[0:5] == [x for x in r[0:5] if x.isdigit()] for r in rows.values()
        )
        got = rows[str(pid)]
        assert got[0:2] == want[0:2] and got[4:] == want[4:], (got, want)
        assert abs(int(got[2]) - int(want[2])) <= int(want[2]) // 5  # RSS moves a little
        assert got[3] == want[3]
        assert rows["1"][1] == "0"
        check_file_lines(snap)
    res = run_collect(["dash"], "-o", str(tmp_path / "p"), "-n", "1")
    assert read_meta(snapshots(tmp_path / "p")[0])[0]["ps_source"] == "ps"


TIME_WAIT_CHILD = r"""
import fcntl, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", 0x1 | 0x8 | 0x40))  # SIOCSIFFLAGS: lo up
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(64)
ports = []
for _ in range(int(sys.argv[1])):
    c = socket.create_connection(lst.getsockname())
    a, _ = lst.accept()
    ports.append(c.getsockname()[1])
    c.close()  # the client closes first: its end stays in TIME-WAIT (60 s), with no process
    a.close()
print(" ".join(map(str, ports)), flush=True)
"""
N_NS, N_CONNS, UNREAD = 9, 5, 10000  # from 8 namespaces on, two workers read them


def netns_rows(snap: Path) -> list[list[str]]:
    return [ln.split("\t") for ln in (snap / "netns.txt").read_text().splitlines()]


@pytest.mark.serial  # every namespace on the box is read: none of the run's own come or go meanwhile
@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_every_network_namespace_is_read(shell: str, tmp_path: Path) -> None:
    """#12: every network namespace on the box is found (by /proc/PID/ns/net, and by /run/netns
    when only a bind mount keeps it) and read with the same ss command through nsenter: its sockets,
    their owners' cgroups, its own sockstat, its name and a pid's cgroup in netns.txt."""
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        pytest.skip("ip (iproute2) or nsenter (util-linux) is not installed")
    tag = f"tcpmem-t{os.getpid()}-{shell}"
    named, kept = f"{tag}-named", f"{tag}-kept"
    subprocess.run(["ip", "netns", "add", kept], check=True)
    try:
        tw = subprocess.run(
            ["ip", "netns", "exec", kept, sys.executable, "-c", TIME_WAIT_CHILD, "4"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        tw_ports = [int(x) for x in tw.stdout.split()]
        kept_ino = os.stat(f"/run/netns/{kept}").st_ino
        # a name ss prints raw (newline, Latin-1, cut at ")"): stored as in the host's ss file
        with NetnsWorkloads(N_NS, N_CONNS, UNREAD, name=b"ns\nk\xe9)z") as ns:
            subprocess.run(["ip", "netns", "attach", named, str(ns.holders[0].pid)], check=True)
            env = None
            if shell == "busybox":
                # busybox's nsenter, ls, awk, sort, gzip and sed too
                tools = ("nsenter", "ls", "awk", "sort", "gzip", "sed")
                env = path_with(tmp_path, busybox=tools)
            res = run_collect(SHELLS[shell], "-o", str(tmp_path / "o"), "-n", "1", env=env)
            assert res.returncode == 0, res.stderr
            holders = ns.holders
            # what ss -p prints there, to compare the owners collect.sh adds without -p
            ref = subprocess.run(
                ["nsenter", f"--net=/proc/{holders[1].pid}/ns/net", "ss", "-tanpeOH"],
                capture_output=True,
                check=True,
            ).stdout.decode(errors="surrogateescape")
            cgroups = {h.pid: expected_cgroup_path(h.pid) for h in holders}
    finally:
        for name in (named, kept):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    (snap,) = snapshots(tmp_path / "o")
    _, repeat = read_meta(snap)
    assert [r for r in repeat if r.startswith(("failed=", "missing=netns"))] == []
    rows = netns_rows(snap)
    assert all(len(r) == 4 for r in rows), rows
    by_ino = {int(r[0]): r for r in rows}
    assert len(by_ino) == len(rows)
    # the collector's own namespace first; its files keep their old names
    assert int(rows[0][0]) == os.stat("/proc/self/ns/net").st_ino
    assert not (snap / f"ss_tcp.ns{rows[0][0]}.txt.gz").exists()
    host = ss_text(snap)
    for h in holders:
        row = by_ino[h.inode]
        name = named if h is holders[0] else "-"
        assert row == [str(h.inode), str(h.pid), name, cgroups[h.pid]], row
        text = ss_text(snap, f"tcp.ns{h.inode}")
        mine = [ln for ln in text.splitlines() if f"pid={h.pid}," in ln]
        assert len(mine) == 1 + 2 * N_CONNS, text
        # the owners as ss -p prints them: one entry per fd, the name cut at ")", \n for a newline
        for ln in mine:
            assert re.search(rf' users:\(\("ns\\nk\udce9",pid={h.pid},fd=\d+\)\) ', ln), ln
        assert f"pid={h.pid}," not in host
        # the server ends hold the unread bytes (Recv-Q, then skmem r)
        servers = [ln for ln in mine if re.search(rf" 127\.0\.0\.1:{h.port} +127\.0\.0\.1:", ln)]
        assert len(servers) == N_CONNS and all(ln.split()[2] == str(UNREAD) for ln in servers)
        sockstat = (snap / f"sockstat.ns{h.inode}.txt").read_text()
        assert re.search(rf"^TCP: inuse {1 + 2 * N_CONNS} ", sockstat, re.M), sockstat
        # no UDP socket there: an empty plain file (readers take X and X.gz alike)
        assert (snap / f"ss_udp.ns{h.inode}.txt").stat().st_size == 0
    users = re.compile(r" (users:\(\(.*?\)\)).*? ino:(\d+) ")
    # (ss prints the name's newline raw: joined here as collect.sh stores it)
    ref = ref.replace('(("ns\nk', '(("ns\\nk')
    want = {m[2]: m[1] for m in map(users.search, ref.splitlines()) if m}
    got = {
        m[2]: m[1]
        for m in map(users.search, ss_text(snap, f"tcp.ns{holders[1].inode}").splitlines())
        if m
    }
    assert len(want) == 1 + 2 * N_CONNS and got == want, (got, want)
    # kept only by a bind mount: no pid, no cgroup; its TIME-WAIT sockets read through /run/netns
    assert by_ino[kept_ino] == [str(kept_ino), "-", kept, "-"]
    text = ss_text(snap, f"tcp.ns{kept_ino}")
    for port in tw_ports:
        assert re.search(rf"^tcp TIME-WAIT .* 127\.0\.0\.1:{port} ", text, re.M), (port, text)
    kept_sockstat = (snap / f"sockstat.ns{kept_ino}.txt").read_text()
    assert re.search(r"^TCP: inuse 0 orphan 0 tw 4 ", kept_sockstat, re.M), kept_sockstat
    pids = {
        int(r[1])
        for r in (ln.split("\t") for ln in (snap / "cgroups.txt").read_text().splitlines())
        if r[0] == "pid"
    }
    assert {h.pid for h in holders} <= pids
    check_file_lines(snap)


@pytest.mark.serial  # every namespace on the box is read: none of the run's own come or go meanwhile
def test_namespaces_appearing_mid_run_keep_the_budget(tmp_path: Path) -> None:
    """The other namespaces' ss text is plain until ss is done, and bounded by what the budget has
    left: namespaces appearing mid-run (here 9 x 121 sockets, two workers) never push DIR over -m;
    text cut for it is said in meta.txt (missing=... cut)."""
    with NetnsWorkloads(9, 60, 1000):
        big = tmp_path / "big"
        assert run_collect(["dash"], "-o", str(big), "-n", "1").returncode == 0
        (snap,) = snapshots(big)
        # its whole size while it was written: the files, plus the namespaces' plain text
        plain = sum(
            len(gzip.decompress(f.read_bytes())) + 8192 for f in snap.glob("ss_*.ns*.txt.gz")
        )
        peak_one = dir_usage_bytes(snap) + plain
    budget_mb = round(2.5 * peak_one / 2**20, 3)
    budget_bytes = int(budget_mb * 1024) * 1024
    out = tmp_path / "o"
    proc = subprocess.Popen(
        ["dash", str(COLLECT), "-o", str(out), "-i", "0", "-n", "16", "-m", str(budget_mb)],
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    try:
        # a few snapshots without them first (smaller: more of them fit), then they appear
        deadline = time.monotonic() + 30
        while len(snapshots(out) if out.exists() else []) < 3 and time.monotonic() < deadline:
            peak = max(peak, dir_usage_bytes(out) if out.exists() else 0)
            time.sleep(0.002)
        with NetnsWorkloads(9, 60, 1000):
            while proc.poll() is None:
                peak = max(peak, dir_usage_bytes(out))
                time.sleep(0.002)
        _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert 0 < peak <= budget_bytes, (peak, budget_bytes)
    assert dir_usage_bytes(out) <= budget_bytes
    kept = snapshots(out)
    assert kept and any(list(s.glob("ss_tcp.ns*.txt.gz")) for s in kept)
    for snap in kept:
        _, repeat = read_meta(snap)
        assert [r for r in repeat if r.startswith("failed=")] == [], repeat
        # text cut to keep the budget is said; a snapshot that says nothing is whole
        if not [r for r in repeat if ": cut" in r]:
            check_file_lines(snap)


@pytest.mark.serial  # every namespace on the box is read: none of the run's own come or go meanwhile
def test_no_nsenter_lists_the_namespaces_and_says_so(tmp_path: Path) -> None:
    """Root without nsenter: the other namespaces are listed in netns.txt, not read, and meta.txt
    says so (once per namespace, and why); the run goes on."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = "ss awk sed gzip ps du df ls date uname id cat mv rm mkdir grep sleep head sort wc"
    for tool in (*tools.split(), "getconf", "stat", "tr"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    with NetnsWorkloads(2, 3) as ns:
        res = run_collect(
            ["/usr/bin/dash"], "-o", str(tmp_path / "o"), "-n", "1", env={"PATH": str(bin_dir)}
        )
        assert res.returncode == 0, res.stderr
    assert res.stderr.count("no nsenter") == 1, res.stderr
    (snap,) = snapshots(tmp_path / "o")
    _, repeat = read_meta(snap)
    assert "missing=netns: other network namespaces not read: no nsenter command" in " ".join(
        repeat
    )
    listed = {int(r[0]) for r in netns_rows(snap)}
    for h in ns.holders:
        assert h.inode in listed
        assert any(r.startswith(f"missing=ss_tcp.ns{h.inode}.txt.gz: ") for r in repeat), repeat
        assert not list(snap.glob(f"*.ns{h.inode}.*"))
    assert [r for r in repeat if r.startswith("failed=")] == []
