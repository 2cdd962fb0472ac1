"""The lab's ``--netns`` (#12): a namespace the lab makes, the server and clients inside it, gone after.

Real namespaces (``ip netns add``), real processes, real ss; root only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from netns_helpers import REPO, can_make_namespaces

import tcpmemlib
from tcpmemlib.analysis import namespaces as N
from tcpmemlib.lab import LabNetns, LabRun, NetnsError
from tcpmemlib.lab.experiment import Experiment

pytestmark = pytest.mark.skipif(
    can_make_namespaces() is not None, reason=str(can_make_namespaces())
)


def _ss(prefix: list[str], port: int) -> list[str]:
    out = subprocess.run(
        [*prefix, "ss", "-tanH", f"( sport = :{port} or dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return out.splitlines()


def test_lab_runs_inside_its_namespace_and_removes_it() -> None:
    name = f"tcpmem-t{os.getpid()}-lab"
    with LabNetns(name) as ns:
        assert ns.inode == os.stat(f"/run/netns/{name}").st_ino
        link = subprocess.run(
            ["ip", "-n", name, "-o", "link", "show", "lo"], capture_output=True, text=True
        )
        assert "UP" in link.stdout.split("<", 1)[1].split(">", 1)[0]
        with LabRun(connections=20, netns=ns, timeout_s=30) as lab:
            for pid in (lab.server_pid, lab.client_pid):
                assert os.stat(f"/proc/{pid}/ns/net").st_ino == ns.inode
            lab.scenario("recv_backlog", bytes_per_conn=4096)
            inside = _ss(ns.prefix(), lab.port)
            assert len(inside) == 41  # listener + 20 + 20
            # the host's ss does not list them: the container case
            host = _ss([], lab.port)
            assert not [ln for ln in host if "ESTAB" in ln and ln.split()[1] == "4096"]
            pids = (lab.server_pid, lab.client_pid)
    assert not os.path.lexists(f"/run/netns/{name}")
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_an_existing_namespace_is_refused_and_kept() -> None:
    name = f"tcpmem-t{os.getpid()}-taken"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        with pytest.raises(NetnsError, match="exists already"), LabNetns(name):
            pass
        assert os.path.lexists(f"/run/netns/{name}")
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)
    with pytest.raises(ValueError, match="usable"):
        LabNetns("../etc")


def test_sysctls_are_set_inside_only() -> None:
    key = "net/ipv4/tcp_rmem"
    host_before = Path(f"/proc/sys/{key}").read_text()
    with LabNetns(
        f"tcpmem-t{os.getpid()}-sysctl", {"net.ipv4.tcp_rmem": "4096 65536 1048576"}
    ) as ns:
        inside = subprocess.run(
            [*ns.prefix(), "cat", f"/proc/sys/{key}"], capture_output=True, text=True, check=True
        ).stdout
        assert inside.split() == ["4096", "65536", "1048576"]
        assert Path(f"/proc/sys/{key}").read_text() == host_before


def test_experiment_records_the_namespace(tmp_path: Path) -> None:
    """``experiment --netns``: the capture holds the lab's namespace (name, inode), its server is
    attributed its unread bytes, and the manifest says which namespace it was."""
    exp = Experiment(
        out_dir=tmp_path,
        name="ns",
        connections=30,
        snapshots_per_phase=1,
        interval_s=0.0,
        phases=("recv_backlog",),
        timeout_s=60,
        netns=True,
    )
    bundle = exp.run()
    manifest = json.loads((tmp_path / "ns.lab.json").read_text())
    inode, name = manifest["netns_inode"], manifest["netns"]
    assert name == f"tcpmem-lab-{os.getpid()}" and not os.path.lexists(f"/run/netns/{name}")
    cap = tcpmemlib.load_capture(bundle, cache=False)
    row = cap.netns[cap.netns["netns"] == inode]
    assert len(row) == 1 and row["name"].iloc[0] == name and bool(row["read"].iloc[0])
    bp = tcpmemlib.by_process(cap)
    server = bp[bp["pid"] == manifest["server_pid"]]
    assert 1.0 <= float(server["buffer_bytes"].iloc[0]) / (30 * 65536) <= 1.2
    bn = N.by_namespace(cap)
    mine = bn[bn["netns"] == inode]
    assert int(mine["queued_bytes"].iloc[0]) == 30 * 65536


def test_cli_run_netns() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tcpmemlib.lab", "run", "--netns", "-N", "5", "--seconds", "0.2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 0, r.stderr
    found = re.search(r"in network namespace (tcpmem-lab-\d+) \(inode (\d+)\)", r.stdout)
    assert found, r.stdout
    assert f"nsenter --net=/run/netns/{found[1]} ss" in r.stdout
    assert "stopped" in r.stdout and not os.path.lexists(f"/run/netns/{found[1]}")
