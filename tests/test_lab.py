"""The lab on real loopback sockets, checked with the real `ss` (no mocks).

Truth is known by construction: N connections, K bytes written and never read, etc. `ss` output is
parsed here with a small regex on purpose (these tests must not depend on tcpmemlib's ss parser).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcpmemlib.lab import LabError, LabRun

N = 200
ROOT = Path(__file__).resolve().parents[1]

_SS_LINE = re.compile(
    r"^(?P<state>\S+)\s+(?P<recv_q>\d+)\s+(?P<send_q>\d+)\s+(?P<local>\S+)\s+(?P<peer>\S+)"
)
_SKMEM = re.compile(r"skmem:\((?P<body>[^)]*)\)")
_USERS = re.compile(r'users:\(\("(?P<comm>[^"]*)",pid=(?P<pid>\d+)')


def ss_sockets(port: int, side: str = "sport") -> list[dict[str, object]]:
    """Every TCP socket whose local (sport) or remote (dport) port is ``port``, from real ss."""
    out = subprocess.run(
        ["ss", "-tanmpOH", f"( {side} = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    socks = []
    for line in out.splitlines():
        m = _SS_LINE.match(line)
        assert m, f"unexpected ss line: {line!r}"
        row: dict[str, object] = dict(m.groupdict())
        row["recv_q"] = int(m["recv_q"])
        row["send_q"] = int(m["send_q"])
        sk = _SKMEM.search(line)
        row["skmem"] = (
            {k: int(v) for k, v in re.findall(r"([a-z]+)(\d+)", sk["body"])} if sk else {}
        )
        u = _USERS.search(line)
        row["comm"] = u["comm"] if u else None
        row["pid"] = int(u["pid"]) if u else None
        socks.append(row)
    return socks


def established_server(port: int) -> list[dict[str, object]]:
    return [s for s in ss_sockets(port) if s["state"] == "ESTAB"]


def leftovers(port: int, pids: tuple[int, ...]) -> list[dict[str, object]]:
    """Sockets on ``port`` that are the lab's: owned by its pids, or owned by nobody (orphans,
    TIME-WAIT). Sockets of other processes that reuse the port number afterwards are not ours."""
    socks = ss_sockets(port) + ss_sockets(port, "dport")
    return [s for s in socks if s["pid"] is None or s["pid"] in pids]


def gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
        if "State:\tZ" in status:  # a zombie holds no sockets; its parent reaps it
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def lab() -> Iterator[LabRun]:
    with LabRun(connections=N, address="127.0.0.1", timeout_s=30) as run:
        yield run


def test_all_connections_established_and_processes_named(lab: LabRun) -> None:
    lab.scenario("idle")
    server = established_server(lab.port)
    assert len(server) == N
    assert {s["comm"] for s in server} == {"tcpmem-server"}
    assert {s["pid"] for s in server} == {lab.server_pid}
    client = [s for s in ss_sockets(lab.port, "dport") if s["state"] == "ESTAB"]
    assert len(client) == N
    assert {s["comm"] for s in client} == {"tcpmem-client"}
    assert {s["pid"] for s in client} == {lab.client_pid}
    assert Path(f"/proc/{lab.server_pid}/comm").read_text().strip() == "tcpmem-server"
    assert Path(f"/proc/{lab.client_pid}/comm").read_text().strip() == "tcpmem-client"
    # idle: no buffer bytes at all, only the limits
    assert all(s["skmem"]["r"] == 0 and s["skmem"]["w"] == 0 for s in server)
    assert len({lab.server_pid, lab.client_pid, os.getpid()}) == 3


def test_recv_backlog_queues_k_bytes_on_every_server_socket(lab: LabRun) -> None:
    k = 64 << 10
    result = lab.scenario("recv_backlog", bytes_per_conn=k)
    assert result["server"]["inq_min"] == result["server"]["inq_max"] == k
    server = established_server(lab.port)
    assert len(server) == N
    assert [s["recv_q"] for s in server] == [k] * N
    # r is truesize: K plus a few percent of skb overhead, never less than K
    for s in server:
        assert k <= s["skmem"]["r"] <= k * 1.25, s


def test_send_backlog_fills_server_send_buffers(lab: LabRun) -> None:
    # 1 MiB each (200 MiB in all) keeps the box far from tcp_mem pressure; 4 MiB works too
    lab.scenario("send_backlog", max_bytes_per_conn=1 << 20)
    server = established_server(lab.port)
    assert len(server) == N
    big = [s for s in server if s["skmem"]["w"] >= 500 << 10]
    assert len(big) >= 0.9 * N, sorted(s["skmem"]["w"] for s in server)[:10]
    assert all(s["send_q"] > 0 for s in big)


def test_trickle_then_drained_empties_every_queue(lab: LabRun) -> None:
    result = lab.scenario("trickle", bits_per_s=250_000)
    assert result["server"]["trickled_sum"] > 0 and result["client"]["trickled_sum"] > 0
    assert result["server"]["read_sum"] > 0 and result["client"]["read_sum"] > 0
    lab.scenario("drained")
    server = established_server(lab.port)
    client = [s for s in ss_sockets(lab.port, "dport") if s["state"] == "ESTAB"]
    assert len(server) == len(client) == N
    for s in server + client:
        assert s["recv_q"] == 0 and s["send_q"] == 0, s
        assert s["skmem"]["r"] == 0 and s["skmem"]["w"] == 0, s


def test_tuned_sets_doubled_limits_and_caps_the_send_backlog() -> None:
    with LabRun(connections=N, timeout_s=30) as run:
        run.scenario("tuned", sndbuf=65536, rcvbuf=32768, max_bytes_per_conn=1 << 20)
        server = established_server(run.port)
        assert len(server) == N
        for s in server:
            assert s["skmem"]["tb"] == 2 * 65536, s
            assert s["skmem"]["rb"] == 2 * 32768, s
            # w may overshoot tb by one skb (sk_stream_memory_free is checked before allocating)
            assert s["skmem"]["w"] <= 2 * 65536 + (64 << 10), s
        listener = [s for s in ss_sockets(run.port) if s["state"] == "LISTEN"]
        assert listener and listener[0]["skmem"]["tb"] == 2 * 65536


def test_constructor_buffers_apply_from_the_start() -> None:
    with LabRun(connections=20, timeout_s=30, sndbuf=50000, rcvbuf=40000) as run:
        server = established_server(run.port)
        assert len(server) == 20
        assert {(s["skmem"]["rb"], s["skmem"]["tb"]) for s in server} == {(80000, 100000)}


def test_ipv6_loopback() -> None:
    with LabRun(connections=50, address="::1", timeout_s=30) as run:
        run.scenario("recv_backlog", bytes_per_conn=10000)
        server = established_server(run.port)
        assert len(server) == 50
        assert all(s["local"].startswith("[::1]") for s in server)
        assert [s["recv_q"] for s in server] == [10000] * 50


def test_exit_leaves_no_process_and_no_socket() -> None:
    with LabRun(connections=N, timeout_s=30) as run:
        run.scenario("send_backlog", max_bytes_per_conn=1 << 20)
        pids, port = (run.server_pid, run.client_pid), run.port
        assert len(established_server(port)) == N
    assert all(gone(p) for p in pids)
    assert leftovers(port, pids) == []


def test_children_exit_when_the_parent_is_killed() -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from tcpmemlib.lab import LabRun
        lab = LabRun(connections=20, timeout_s=30).__enter__()
        print(lab.server_pid, lab.client_pid, lab.port, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert parent.stdout is not None
        server_pid, client_pid, port = map(int, parent.stdout.readline().split())
        assert not gone(server_pid, 0.1)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert gone(server_pid) and gone(client_pid)
        assert leftovers(port, (server_pid, client_pid)) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)


def test_too_many_connections_is_a_clear_error() -> None:
    with pytest.raises(LabError, match="RLIMIT_NOFILE"), LabRun(connections=10_000_000):
        pass


def test_rejects_non_loopback_and_unknown_scenarios(lab: LabRun) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LabRun(address="10.0.0.1")
    with pytest.raises(ValueError, match="unknown scenario"):
        lab.scenario("nope")


def test_experiment_runner_records_every_phase_with_collect_sh(tmp_path: Path) -> None:
    from tcpmemlib.lab.experiment import Experiment

    exp = Experiment(
        out_dir=tmp_path, name="mini", connections=50, interval_s=0, snapshots_per_phase=1
    )
    bundle = exp.run()
    assert bundle == tmp_path / "mini.tar.gz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini.lab.json", "mini.tar.gz"]
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        phases_text = tar.extractfile("phases.tsv").read().decode()  # type: ignore[union-attr]
        snaps = sorted({n.split("/")[0] for n in names if re.match(r"\d{8}T\d{6}\.\d+Z/", n)})
        metas = [tar.extractfile(f"{s}/meta.txt").read().decode() for s in snaps]  # type: ignore[union-attr]
    phases = [line.split("\t") for line in phases_text.splitlines()]
    assert [p[1] for p in phases] == [
        "baseline", "idle", "trickle", "recv_backlog", "send_backlog", "drained", "tuned",
    ]  # fmt: skip
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", p[0]) for p in phases)
    assert len(snaps) == 7
    # each snapshot starts after its phase's mark and before the next phase's mark
    starts = [re.search(r"^start=(\S+)$", m, re.M)[1] for m in metas]  # type: ignore[index]
    marks = [p[0] for p in phases]
    for i, start in enumerate(starts):
        assert marks[i][:23] <= start[:23], (marks[i], start)
        if i + 1 < len(marks):
            assert start[:23] < marks[i + 1][:23], (start, marks[i + 1])
    manifest = json.loads((tmp_path / "mini.lab.json").read_text())
    assert manifest["connections"] == 50
    by_phase = {p["phase"]: p for p in manifest["phases"]}
    assert by_phase["recv_backlog"]["server"]["inq_min"] == 64 << 10
    assert by_phase["send_backlog"]["server"]["outq_min"] > 500 << 10
    assert by_phase["drained"]["server"]["outq_sum"] == 0


def test_experiment_subset_of_phases_with_server_buffers_from_the_start(tmp_path: Path) -> None:
    from tcpmemlib.lab.experiment import Experiment

    exp = Experiment(
        out_dir=tmp_path,
        name="after",
        connections=30,
        interval_s=0,
        snapshots_per_phase=1,
        phases=("send_backlog", "idle"),  # run in the lab's order, without baseline
        sndbuf=65536,
        rcvbuf=65536,
    )
    bundle = exp.run()
    with tarfile.open(bundle) as tar:
        labels = [
            ln.split("\t")[1] for ln in tar.extractfile("phases.tsv").read().decode().splitlines()
        ]  # type: ignore[union-attr]
        ss_members = sorted(n for n in tar.getnames() if n.endswith("/ss_tcp.txt.gz"))
        last_ss = gzip.decompress(tar.extractfile(ss_members[-1]).read()).decode()  # type: ignore[union-attr]
    assert labels == ["idle", "send_backlog"]
    assert len(ss_members) == 2
    manifest = json.loads((tmp_path / "after.lab.json").read_text())
    server = [
        ln for ln in last_ss.splitlines()
        if f"pid={manifest['server_pid']}," in ln and "ESTAB" in ln
    ]  # fmt: skip
    assert len(server) == 30
    for line in server:
        skmem = dict(re.findall(r"([a-z]+)(\d+)", _SKMEM.search(line)["body"]))  # type: ignore[index]
        assert (skmem["tb"], skmem["rb"]) == ("131072", "131072"), line
        assert int(skmem["w"]) <= 131072 + (64 << 10), line
    with pytest.raises(ValueError, match="subset"):
        Experiment(out_dir=tmp_path, phases=("idle", "bogus"))
