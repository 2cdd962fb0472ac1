"""Run a workload driver as a bounded subprocess (the Redis one inside a network namespace of our own,
where ``net.ipv4.tcp_wmem`` is set) and return its ground truth (``truth.json``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from realserver.netns import NetNs
from realserver.procs import child_env
from realserver.truth import sockstat_tcp

DEFAULT_WMEM = "4096 16384 4194304"  # the kernel's default, set explicitly for like-for-like
LOW_WMEM = "4096 16384 262144"

REQUIRED = {"redis": ("redis-server", "ip", "nsenter"), "nginx": ("nginx", "ip", "nsenter")}


def missing(kind: str) -> list[str]:
    """What a workload needs and does not have: commands not installed (``scripts/system-deps.sh``
    installs them), and root (``ip netns add``)."""
    gone = [c for c in REQUIRED[kind] if shutil.which(c) is None]
    if os.geteuid() != 0:
        gone.append("root (to create a network namespace)")
    return gone


def tcp_headroom_bytes() -> int:
    """How much more TCP memory the box can take before 80 % of ``tcp_mem[1]`` (the pressure
    threshold; box-wide, read in the host's namespace, where that sysctl exists)."""
    page = os.sysconf("SC_PAGE_SIZE")
    pressure_pages = int(Path("/proc/sys/net/ipv4/tcp_mem").read_text().split()[1])
    used_pages = sockstat_tcp()["mem"]
    return int(0.8 * pressure_pages * page) - used_pages * page


def wait_for_headroom(needed_bytes: int, timeout_s: float = 120.0) -> None:
    """Wait (bounded) until the box has ``needed_bytes`` of TCP memory headroom: a workload must not
    push a shared box into TCP memory pressure (a box-wide state that would change every other
    workload's sockets). RuntimeError naming the figures after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (have := tcp_headroom_bytes()) < needed_bytes:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the box's TCP memory is too close to tcp_mem[1]: {have} B of headroom below 80 % "
                f"of it, the workload needs {needed_bytes} B (waited {timeout_s:g} s)"
            )
        time.sleep(1.0)


def _drive(argv: list[str], out: Path, timeout_s: float) -> dict[str, Any]:
    proc = subprocess.Popen(argv, env=child_env(), stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGTERM)  # the driver stops its children in ``finally``
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)  # its children get SIGTERM (PR_SET_PDEATHSIG)
            _, err = proc.communicate()
        raise RuntimeError(f"workload timed out after {timeout_s:g} s:\n{err}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"workload exited {proc.returncode}:\n{err}")
    sys.stderr.write(err)
    return json.loads((out / "truth.json").read_text())


def run_redis(
    out: Path,
    tcp_wmem: str = DEFAULT_WMEM,
    *,
    subscribers: int = 1000,
    slow: int = 200,
    per_sub_mib: int = 6,
    rate_mib_s: float = 0.75,
    snapshots: tuple[int, int, int] = (3, 6, 3),
    load_interval_s: float = 1.0,
    name: str = "capture",
    bundle: bool = False,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """The Redis slow-subscriber workload (``realserver.redis_run``) in a fresh network namespace
    with ``net.ipv4.tcp_wmem = tcp_wmem``; collect.sh runs there too. ``snapshots``: how many in the
    connect, slow and drained phases (the load phase takes one a second while publishing)."""
    argv = [
        sys.executable, "-m", "realserver.redis_run", "--out", str(out), "--name", name,
        "--subscribers", str(subscribers), "--slow", str(slow), "--per-sub-mib", str(per_sub_mib),
        "--rate-mib-s", str(rate_mib_s), "--snapshots-connect", str(snapshots[0]),
        "--snapshots-slow", str(snapshots[1]), "--snapshots-drained", str(snapshots[2]),
        "--load-interval", str(load_interval_s), "--max-seconds", str(timeout_s),
    ]  # fmt: skip
    if bundle:
        argv.append("--bundle")
    # the slow sockets fill to tcp_wmem[2] (+10 % skb overhead); their peers' receive queues ~128 KiB
    wait_for_headroom(int(slow * (int(tcp_wmem.split()[2]) * 1.1 + 256 * 1024)))
    with NetNs(sysctls={"net.ipv4.tcp_wmem": tcp_wmem}) as ns:
        return _drive([*ns.prefix, *argv], out, timeout_s + 30)


def run_nginx(
    out: Path,
    *,
    clients: int = 1000,
    workers: int = 2,
    snapshots: tuple[int, int, int] = (2, 5, 2),
    name: str = "capture",
    bundle: bool = False,
    netns: bool = False,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """The nginx idle keep-alive workload (``realserver.nginx_run``) on the host's loopback (no
    sysctl needed), or with ``netns`` in a namespace of our own (a capture that holds only nginx's
    and its clients' sockets). ``snapshots``: how many in the baseline, idle and closed phases."""
    argv = [
        sys.executable, "-m", "realserver.nginx_run", "--out", str(out), "--name", name,
        "--clients", str(clients), "--workers", str(workers),
        "--snapshots-baseline", str(snapshots[0]), "--snapshots-idle", str(snapshots[1]),
        "--snapshots-closed", str(snapshots[2]), "--max-seconds", str(timeout_s),
    ]  # fmt: skip
    if bundle:
        argv.append("--bundle")
    if not netns:
        return _drive(argv, out, timeout_s + 30)
    with NetNs() as ns:
        return _drive([*ns.prefix, *argv], out, timeout_s + 30)
