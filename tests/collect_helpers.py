"""Helpers for the collect.sh tests and benchmark: real loopback connections held by child processes.

`LoopbackPairs(n_pairs, n_procs)` starts `n_procs` Python child processes; each opens a listener on
127.0.0.1 port 0 and connect/accept pairs until it holds its share of `n_pairs`, then reports its pid
and ports (plus one bound UDP socket's) on stdout and blocks until its stdin is closed. The parent keeps them by pid and stops them
in `close()` (stdin closed, then SIGKILL after a timeout), so a test can never leak them.

`NetnsWorkloads(n_ns, n_conns, unread_bytes)` does the same in `n_ns` network namespaces of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COLLECT = REPO / "collect.sh"

_CHILD = r"""
import json, resource, socket, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(1024)
port = lst.getsockname()[1]
held = []
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    a, _addr = lst.accept()
    held += [c, a]
info = {"port": port, "udp_port": udp.getsockname()[1]}
info["client_ports"] = [s.getsockname()[1] for s in held[::2]]
print(json.dumps(info), flush=True)
sys.stdin.read()  # hold until the parent closes our stdin
"""


@dataclass
class Holder:
    """One child process holding connection pairs."""

    proc: subprocess.Popen[str]
    port: int
    udp_port: int = 0
    client_ports: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid


class LoopbackPairs:
    """`n_pairs` established TCP pairs on 127.0.0.1, spread over `n_procs` child processes."""

    def __init__(self, n_pairs: int, n_procs: int = 1, timeout_s: float = 120.0) -> None:
        self.holders: list[Holder] = []
        share = [n_pairs // n_procs + (1 if i < n_pairs % n_procs else 0) for i in range(n_procs)]
        try:
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", _CHILD, str(k)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for k in share
            ]
            self.holders = [Holder(proc=p, port=0) for p in procs]
            for h in self.holders:
                assert h.proc.stdout is not None
                line = h.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"connection holder pid {h.pid} exited early")
                info = json.loads(line)
                h.port = info["port"]
                h.udp_port = info["udp_port"]
                h.client_ports = info["client_ports"]
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list[int]:
        return [h.pid for h in self.holders]

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop every holder by pid: close stdin, wait, SIGKILL if it lingers."""
        for h in self.holders:
            if h.proc.stdin is not None and not h.proc.stdin.closed:
                with contextlib.suppress(OSError):
                    h.proc.stdin.close()
        for h in self.holders:
            try:
                h.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(h.pid, signal.SIGKILL)
                h.proc.wait(timeout=timeout_s)
            if h.proc.stdout is not None:
                h.proc.stdout.close()

    def __enter__(self) -> LoopbackPairs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_NETNS_LAUNCHER = r"""
import ctypes, fcntl, json, os, signal, socket, struct, sys
n_ns, n_conns, unread = (int(x) for x in sys.argv[1:4])
name = bytes.fromhex(sys.argv[4])
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
SIOCSIFFLAGS = 0x8914
IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40

def child(w):
    if name and libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0) != 0:  # PR_SET_NAME
        raise OSError(ctypes.get_errno(), "prctl")
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ifr = struct.pack("16sH14x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING)
    fcntl.ioctl(s, SIOCSIFFLAGS, ifr)
    s.close()
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1024)
    held = []
    for _ in range(n_conns):
        c = socket.create_connection(lst.getsockname())
        a, _ = lst.accept()
        if unread:
            c.sendall(b"x" * unread)  # left unread in a's receive queue
        held += [c, a]
    info = {
        "pid": os.getpid(),
        "inode": os.stat("/proc/self/ns/net").st_ino,
        "port": lst.getsockname()[1],
        "client_ports": [x.getsockname()[1] for x in held[::2]],
    }
    os.write(w, (json.dumps(info) + "\n").encode())
    os.close(w)
    signal.pause()

kids = []
r, w = os.pipe()
try:
    for _ in range(n_ns):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                child(w)
            finally:
                os._exit(1)
        kids.append(pid)
    os.close(w)
    with os.fdopen(r) as f:
        for _ in range(n_ns):
            line = f.readline()
            if not line:
                raise SystemExit("a namespace holder exited early")
            sys.stdout.write(line)
    sys.stdout.flush()
    sys.stdin.read()  # hold until the parent closes our stdin
finally:
    for pid in kids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in kids:
        os.waitpid(pid, 0)
"""


@dataclass
class NetnsHolder:
    """One process alone in its own network namespace, holding connections on its loopback."""

    pid: int
    inode: int
    port: int
    client_ports: list[int]


class NetnsWorkloads:
    """`n_ns` network namespaces (root only), each made by one forked child of a launcher process
    with unshare(CLONE_NEWNET): loopback up, a listener and `n_conns` connection pairs on it, each
    client having sent `unread_bytes` the server never reads; with `name`, the children set it as
    their process name (prctl PR_SET_NAME). `close()` ends the launcher, which SIGKILLs its children
    by pid (the namespaces go with them)."""

    def __init__(self, n_ns: int, n_conns: int, unread_bytes: int = 0, name: bytes = b"") -> None:
        args = [str(n_ns), str(n_conns), str(unread_bytes), name.hex()]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _NETNS_LAUNCHER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.holders: list[NetnsHolder] = []
        try:
            assert self.proc.stdout is not None
            for _ in range(n_ns):
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"netns launcher pid {self.proc.pid} exited early")
                self.holders.append(NetnsHolder(**json.loads(line)))
        except BaseException:
            self.close()
            raise

    def close(self, timeout_s: float = 30.0) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout_s)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> NetnsWorkloads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dir_usage_bytes(path: Path) -> int:
    """Disk use of a directory tree as du counts it: allocated blocks of every entry."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            # an entry may vanish while we walk: the collector is pruning
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    with contextlib.suppress(FileNotFoundError):
        total += os.lstat(path).st_blocks * 512
    return total


def apparent_bytes(path: Path) -> int:
    """Sum of file sizes under path (what the files hold, not the blocks they occupy)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
