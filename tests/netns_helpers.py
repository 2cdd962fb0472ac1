"""Helpers for the network-namespace tests (#12): real namespaces, real servers, real collect.sh.

- ``Containers(specs)``: for each ``(N, K)`` a network namespace of its own (``LabNetns``: ``ip
  netns add``, loopback up), the lab's server and N clients inside it, every server socket holding
  K bytes its server has not read (``recv_backlog``, measured by the server with SIOCINQ). Closing
  stops the processes (by pid) and deletes the namespaces.
- ``HeldElsewhere(n_pairs, unread_bytes)``: a namespace with no process in it and no bind mount,
  kept alive only by its sockets, which this (test) process holds: a child made with ``unshare
  --net`` opens them, hands the descriptors over (SCM_RIGHTS) and exits. collect.sh cannot find
  such a namespace; its sockets are what sockstat counts and no ss lists.
- ``collect(out, user=None, snapshots=1)``: collect.sh of this checkout, bounded in time; as root,
  or as ``nobody`` through setpriv.
- ``leave_time_wait(ns, n)``: n TIME-WAIT sockets in a namespace, their process gone.
- ``sockstat_mem_reads(snapshot)``: the host-wide TCP ``mem`` of every sockstat read of a snapshot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tcpmemlib.lab import LabNetns, LabRun

REPO = Path(__file__).resolve().parent.parent
COLLECT = REPO / "collect.sh"
NOBODY_UID = 65534
SIOCGSKNS = 0x894C  # linux/sockios.h: an fd of the socket's network namespace
NOBODY = ["setpriv", "--reuid", str(NOBODY_UID), "--regid", str(NOBODY_UID), "--clear-groups"]


def can_make_namespaces() -> str | None:
    """None if this machine lets the tests make namespaces, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nsenter", "unshare", "ss"):
        if shutil.which(tool) is None:
            return f"no {tool} command"
    return None


class Containers:
    """One namespace per ``(N, K)`` of ``specs``, each with the lab's server and N clients, K
    unread bytes on every server socket. ``items``: ``(LabNetns, LabRun, N, K)``."""

    def __init__(self, specs: list[tuple[int, int]], timeout_s: float = 60.0) -> None:
        self.items: list[tuple[LabNetns, LabRun, int, int]] = []
        self._stack = contextlib.ExitStack()
        try:
            for i, (n, k) in enumerate(specs):
                ns = self._stack.enter_context(LabNetns(f"tcpmem-t{os.getpid()}-{i}"))
                lab = self._stack.enter_context(
                    LabRun(connections=n, netns=ns, timeout_s=timeout_s)
                )
                lab.scenario("recv_backlog", bytes_per_conn=k)
                self.items.append((ns, lab, n, k))
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Containers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_OPENER = r"""
import array, socket, subprocess, sys
n, k = int(sys.argv[1]), int(sys.argv[2])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(n)
held = []
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", lst.getsockname()[1]))
    a, _addr = lst.accept()
    c.sendall(b"x" * k)  # a never reads it
    held += [c, a]
lst.close()
chan = socket.socket(fileno=int(sys.argv[3]))
socket.send_fds(chan, [b"fds"], [s.fileno() for s in held])
chan.recv(1)  # the parent has them: exit (the namespace has no process left)
"""


class HeldElsewhere:
    """``n_pairs`` loopback connection pairs of a namespace that only their sockets keep alive,
    held by this process (``sockets``); K unread bytes on each accepted side. ``inode``: the
    namespace's inode (SIOCGSKNS on one of the sockets)."""

    def __init__(self, n_pairs: int, unread_bytes: int, timeout_s: float = 30.0) -> None:
        self.sockets: list[socket.socket] = []
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mine.settimeout(timeout_s)
        try:
            args = [str(n_pairs), str(unread_bytes), str(theirs.fileno())]
            proc = subprocess.Popen(
                ["unshare", "--net", sys.executable, "-c", _OPENER, *args],
                pass_fds=(theirs.fileno(),),
            )
            theirs.close()
            try:
                _, fds, _, _ = socket.recv_fds(mine, 16, 2 * n_pairs)
                self.sockets = [socket.socket(fileno=fd) for fd in fds]
                self.inode = _socket_netns_inode(self.sockets[0]) if self.sockets else None
                mine.sendall(b".")
                proc.wait(timeout=timeout_s)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=timeout_s)
        finally:
            mine.close()
        if len(self.sockets) != 2 * n_pairs:
            self.close()
            raise RuntimeError(f"got {len(self.sockets)} sockets, not {2 * n_pairs}")

    def close(self) -> None:
        for s in self.sockets:
            # abortive close: no TIME-WAIT, no orphan left behind
            with contextlib.suppress(OSError):
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            s.close()
        self.sockets = []

    def __enter__(self) -> HeldElsewhere:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _socket_netns_inode(sock: socket.socket) -> int | None:
    """The namespace inode of a socket this process holds (SIOCGSKNS gives an fd of it)."""
    try:
        fd = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


_TIME_WAIT = r"""
import socket, sys
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(64)
for _ in range(int(sys.argv[1])):
    c = socket.create_connection(lst.getsockname())
    a, _addr = lst.accept()
    c.close()  # the side that closes first keeps the TIME-WAIT socket
    a.close()
"""


def leave_time_wait(ns: LabNetns, n: int, timeout_s: float = 30.0) -> None:
    """``n`` TIME-WAIT sockets in ``ns``, left by a process that has exited (they stay ~60 s):
    a namespace with sockets and no process, kept by its bind mount."""
    subprocess.run(
        [*ns.prefix(), sys.executable, "-c", _TIME_WAIT, str(n)], check=True, timeout=timeout_s
    )


def sockstat_mem_reads(snapshot: Path) -> list[int]:
    """Every host-wide TCP ``mem`` (pages) a snapshot's sockstat files read: before and after the
    collector's own ss (sockstat.txt, sockstat_after.txt) and each other namespace's, read right
    before ss ran there (sockstat.ns<inode>.txt)."""
    out = []
    for path in sorted(snapshot.glob("sockstat*.txt")):
        if path.name == "sockstat6.txt":
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["TCP:"] and "mem" in words:
                out.append(int(words[words.index("mem") + 1]))
    return out


def collect(
    out: Path, user: str | None = None, snapshots: int = 1, timeout_s: float = 120.0
) -> str:
    """Run collect.sh -o OUT -n SNAPSHOTS (-i 1); as ``nobody`` when asked. Returns its stderr."""
    script = COLLECT
    if user == "nobody":  # a copy nobody can read wherever the checkout is (a mktemp -d clone)
        copy_dir = Path(tempfile.mkdtemp(prefix="tcpmem-collect-"))
        copy_dir.chmod(0o755)
        script = copy_dir / "collect.sh"
        shutil.copy(COLLECT, script)
        script.chmod(0o755)
    elif user is not None:
        raise ValueError(f"user must be None or 'nobody', not {user!r}")
    cmd = ["sh", str(script), "-o", str(out), "-n", str(snapshots), "-i", "1"]
    if user == "nobody":
        cmd = [*NOBODY, *cmd]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    finally:
        if script != COLLECT:
            shutil.rmtree(script.parent, ignore_errors=True)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr}")
    return r.stderr
